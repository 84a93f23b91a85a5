#!/usr/bin/env bash
# Storage suite: a full disk (diskfull_test.py), autopurge (autopurge_test.py) and a clean stop
# and restart (clean_stop_test.py), each on servers of its own (kind ZK_TARGET) on ZK_PORT+300, one
# after the other; the server compat-tests/run.sh started is not used. The disk-full test mounts a small tmpfs and so needs root: without it the
# suite fails, it is never skipped.
set -u
here=$(cd "$(dirname "$0")" && pwd)
export PYTHONDONTWRITEBYTECODE=1
status=0
timeout 300 python3 "$here/diskfull_test.py" || status=1
timeout 300 python3 "$here/autopurge_test.py" || status=1
timeout 300 python3 "$here/clean_stop_test.py" || status=1
exit $status
