#!/usr/bin/env bash
# Admin/observability compat suite: AdminServer commands (/commands/<name>), mntr keys, and, where
# the server has ZooKeeper's Prometheus provider configured, /metrics. Runs against an already
# running server started by compat-tests/run.sh (lib/servers.sh enables the admin server on
# ZK_PORT+100 and, for ferrokeeper in this suite, /metrics on ZK_PORT+200).
# Env: ZK_CONNECT, ZK_PORT, ZK_TARGET (zookeeper|ferrokeeper), ZK_WORKDIR.
# Prints one line per check and "N passed, N failed"; exits non-zero on failure.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${ZK_PORT:?set ZK_PORT}"
: "${ZK_CONNECT:=127.0.0.1:$ZK_PORT}"
: "${ZK_TARGET:=zookeeper}"
source "$here/../lib/servers.sh"
export ZK_CONNECT ZK_PORT ZK_TARGET
export ZK_ADMIN_PORT="$(admin_port "$ZK_PORT")"
if [ "$ZK_TARGET" = ferrokeeper ]; then
    export ZK_METRICS_PORT="$(metrics_port "$ZK_PORT")"
else
    # Debian's ZooKeeper has no zookeeper-prometheus-metrics jar: no /metrics to check.
    export ZK_METRICS_PORT=0
fi
export PYTHONDONTWRITEBYTECODE=1
timeout 240 python3 "$here/admin_test.py"
status=$?
[ $status -eq 124 ] && echo "FAIL - admin suite timed out" && echo "0 passed, 1 failed"
exit $status
