#!/usr/bin/env bash
# Migration compat, through the `ferrokeeper import` / `ferrokeeper export` commands, starting from
# real files written by Apache ZooKeeper 3.8.0 (src/storage/zk_format/testdata/zk380: snapshots +
# txn logs, and expected.txt = the tree ZooKeeper held when it stopped):
#   ZK_TARGET=zookeeper:   import into a ferrokeeper data dir, export back to ZooKeeper's format,
#                          start the real ZooKeeper on the export, check every node, data, Stat, ACL,
#                          session, and that ZooKeeper's digest equals the one we wrote.
#   ZK_TARGET=ferrokeeper: import, start ferrokeeper on the imported dir, check the same things.
# Both run their own server on ZKFILES_PORT (default ZK_PORT+1); the suite's server is not used.
# Same contract as the other suites; prints "N passed, N failed".
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
: "${ZK_PORT:=21810}"
: "${ZK_TARGET:=zookeeper}"
: "${ZK_WORKDIR:=$(mktemp -d /tmp/ferrokeeper-zkfiles.XXXXXX)}"
: "${FERROKEEPER_BIN:?set FERROKEEPER_BIN to the ferrokeeper binary}"
port=${ZKFILES_PORT:-$((ZK_PORT + 1))}
# The fixture's TTL nodes were written at a fixed time; by now they may be past their TTL. The
# suite checks the migrated state, not TTL expiry (tested elsewhere), so the servers it starts
# don't run the container manager within its lifetime.
export COMPAT_CONTAINER_CHECK_MS=86400000
source "$repo/compat-tests/lib/servers.sh"
fixture="$repo/src/storage/zk_format/testdata/zk380"
dir="$ZK_WORKDIR/zkfiles"
rm -rf "$dir"; mkdir -p "$dir"
write_zoo_cfg "$port" "$dir" "$ZK_TARGET"   # $dir/zoo.cfg with dataDir=$dir/data

if ! "$FERROKEEPER_BIN" import --from "$fixture/data" --from-log-dir "$fixture/log" --to "$dir/fk"; then
    echo "import failed"; echo "0 passed, 1 failed"; exit 1
fi
if [ "$ZK_TARGET" = zookeeper ]; then
    if ! "$FERROKEEPER_BIN" export --from "$dir/fk" --to "$dir/data"; then
        echo "export failed"; echo "0 passed, 1 failed"; exit 1
    fi
    log_to_check="$dir/server.log"
else
    # Serve the imported data: point the generated zoo.cfg at it.
    sed -i "s|^dataDir=.*|dataDir=$dir/fk|" "$dir/zoo.cfg"
    log_to_check="-"
fi
if ! pid=$(restart_server "$ZK_TARGET" "$port" "$dir"); then
    echo "$ZK_TARGET did not start on the migrated data dir"
    echo "0 passed, 1 failed"; exit 1
fi
PYTHONDONTWRITEBYTECODE=1 timeout 120 python3 "$here/check.py" "127.0.0.1:$port" "$fixture/expected.txt" "$log_to_check"
status=$?
stop_server "$pid"
exit $status
