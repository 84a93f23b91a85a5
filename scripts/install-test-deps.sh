#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian 12 machine: the real Apache ZooKeeper
# 3.8.0 server and its clients (Java client, C client, zkCli.sh, Curator 5.4), kazoo, and the
# build tools. Idempotent.
set -eu
export DEBIAN_FRONTEND=noninteractive
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
$sudo_cmd apt-get update -qq
$sudo_cmd apt-get install -y -qq --no-install-recommends \
    zookeeper zookeeper-bin libzookeeper-java libzookeeper-mt-dev libjetty9-java libservlet-api-java \
    libcurator-framework-java libcurator-recipes-java libcurator-client-java \
    default-jdk-headless netcat-openbsd gcc g++ make clang libclang-dev python3-pip >/dev/null
python3 -m pip install -q kazoo==2.11.0 pytest 2>&1 | grep -v "Running pip as the 'root' user" || true
command -v cargo-nextest >/dev/null || cargo install -q cargo-nextest --locked
