#!/usr/bin/env bash
# The one test command: installs what the tests need, builds ferrokeeper (release profile, the
# only one we build), runs the unit tests, then every compat suite against both the real
# ZooKeeper 3.8.0 and ferrokeeper.
set -eu
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ferrokeeper-target}
bash scripts/install-test-deps.sh
cargo build --release --locked --all-targets
cargo clippy --release --locked --all-targets -- -D warnings
cargo nextest run --release --locked --no-fail-fast
FERROKEEPER_BIN="$CARGO_TARGET_DIR/release/ferrokeeper" bash compat-tests/run.sh
