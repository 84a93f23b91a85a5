#!/usr/bin/env bash
# zkCli.sh compat suite: drives the Java ZooKeeper shell (Debian /usr/share/zookeeper/bin/zkCli.sh)
# through stdin, one long-lived zkCli.sh process per session, and asserts on its printed output.
# Runs against an already running server:
#   ZK_CONNECT (host:port), ZK_PORT, ZK_TARGET (zookeeper|ferrokeeper), ZK_WORKDIR.
# Needs: zookeeper (zkCli.sh + jars), a JRE, python3. Override the shell with ZKCLI=/path/to/zkCli.sh.
# Prints one line per check and finishes with "N passed, N failed"; exit status 1 on failure.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${ZK_CONNECT:?set ZK_CONNECT to host:port}"
LOGDIR="${ZK_WORKDIR:-/tmp}/zkcli-suite.$$"
mkdir -p "$LOGDIR"
trap 'rm -rf "$LOGDIR"' EXIT
echo "# zkCli.sh suite against ${ZK_TARGET:-?} at $ZK_CONNECT"
ZKCLI_LOGDIR="$LOGDIR" timeout 300 python3 "$HERE/zkcli_test.py" "$ZK_CONNECT" 2>&1 | tee "$LOGDIR/out"
status=${PIPESTATUS[0]}
if ! tail -1 "$LOGDIR/out" | grep -qE '^[0-9]+ passed, [0-9]+ failed$'; then
    p=$(grep -c '^ok ' "$LOGDIR/out"); f=$(grep -c '^FAIL ' "$LOGDIR/out")
    echo "FAIL - zkcli_test.py did not finish (status $status)"
    echo "$p passed, $((f + 1)) failed"
    exit 1
fi
exit "$status"
