#!/usr/bin/env bash
# Run the Python (kazoo + raw jute) compat suite against an ALREADY RUNNING server.
# Env: ZK_CONNECT (host:port), ZK_PORT, ZK_TARGET (zookeeper|ferrokeeper), ZK_WORKDIR.
# Needs: python3, pytest, kazoo 2.11. Exits non-zero on any failure.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${ZK_PORT:=21810}"
: "${ZK_CONNECT:=127.0.0.1:${ZK_PORT}}"
: "${ZK_TARGET:=zookeeper}"
: "${ZK_WORKDIR:=}"
export ZK_CONNECT ZK_PORT ZK_TARGET ZK_WORKDIR
cd "$here" || exit 2
# pytest.ini disables the cache provider; no __pycache__ is written either
export PYTHONDONTWRITEBYTECODE=1
exec timeout 280 python3 -m pytest -q "$@"
