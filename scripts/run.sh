#!/usr/bin/env bash
# Builds ferrokeeper and runs it. With no argument it serves clients on port 2181 with data under
# ./data; pass a ZooKeeper zoo.cfg to use your own configuration.
set -eu
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ferrokeeper-target}
# RocksDB is built from source by the rocksdb crate: it needs a C++ compiler and libclang.
if ! dpkg -s clang libclang-dev g++ >/dev/null 2>&1; then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends clang libclang-dev g++ >/dev/null
fi
cargo build --release --locked
exec "$CARGO_TARGET_DIR/release/ferrokeeper" "$@"
