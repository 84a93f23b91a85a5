#!/usr/bin/env bash
# Builds ferrokeeper and runs it. With no argument it serves clients on port 2181 with data under
# ./data; pass a ZooKeeper zoo.cfg to use your own configuration.
set -eu
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ferrokeeper-target}
cargo build --release --locked
exec "$CARGO_TARGET_DIR/release/ferrokeeper" "$@"
