#!/usr/bin/env bash
# Durability suite: kills its own server (of kind ZK_TARGET) with SIGKILL at random moments while
# clients write, restarts it on the same data dir, and checks that every acknowledged write is
# there and nothing is half-applied; also restart of sessions, ephemerals and sequence numbers.
# It ignores the server compat-tests/run.sh started and runs its own on ZK_PORT+300.
set -u
here=$(cd "$(dirname "$0")" && pwd)
export PYTHONDONTWRITEBYTECODE=1
exec timeout 600 python3 "$here/crash_test.py"
