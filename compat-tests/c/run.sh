#!/usr/bin/env bash
# C client compat suite: a C program using the libzookeeper_mt sync + async API, and the
# cli_mt shell driven through stdin. Runs against an already running server:
#   ZK_CONNECT (host:port), ZK_PORT, ZK_TARGET (zookeeper|ferrokeeper), ZK_WORKDIR.
# Needs: gcc, libzookeeper-mt-dev, zookeeper-bin (cli_mt), python3, coreutils (stdbuf, timeout).
# Prints one line per check and finishes with "N passed, N failed"; exit status 1 on failure.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${ZK_CONNECT:?set ZK_CONNECT to host:port}"
BUILD="${ZK_WORKDIR:-/tmp}/c-suite-build.$$"
mkdir -p "$BUILD"
trap 'rm -rf "$BUILD"' EXIT

total_pass=0
total_fail=0
tally() { # <output file> <suite name>
    local last p f
    last=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" | tail -1)
    if [ -z "$last" ]; then
        echo "FAIL - $2: no summary line (crashed or timed out)"
        total_pass=$((total_pass + $(grep -c '^ok ' "$1")))
        total_fail=$((total_fail + $(grep -c '^FAIL ' "$1") + 1))
        return
    fi
    p=${last%% passed*}
    f=${last#*, }; f=${f%% failed*}
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
}

echo "# C API suite (zk_c_test) against $ZK_TARGET at $ZK_CONNECT"
if gcc -std=gnu11 -O1 -g -Wall -DTHREADED -o "$BUILD/zk_c_test" "$HERE/zk_c_test.c" -lzookeeper_mt -lpthread \
        > "$BUILD/gcc.log" 2>&1; then
    timeout 180 "$BUILD/zk_c_test" "$ZK_CONNECT" 2>"$BUILD/zk_c_test.stderr" | tee "$BUILD/c.out" | grep -vE '^[0-9]+ passed, [0-9]+ failed$'
    tally "$BUILD/c.out" "zk_c_test"
else
    cat "$BUILD/gcc.log"
    echo "FAIL - compile zk_c_test.c"
    total_fail=$((total_fail + 1))
fi

echo "# cli_mt suite against $ZK_TARGET at $ZK_CONNECT"
timeout 180 python3 "$HERE/cli_mt_test.py" "$ZK_CONNECT" 2>&1 | tee "$BUILD/cli.out" | grep -vE '^[0-9]+ passed, [0-9]+ failed$'
tally "$BUILD/cli.out" "cli_mt_test"

echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
