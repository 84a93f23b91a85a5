#!/usr/bin/env bash
# Runs every compat suite against the real Apache ZooKeeper 3.8.0 and against ferrokeeper.
# A suite passing against ZooKeeper proves the test right; passing against ferrokeeper proves
# ferrokeeper right. Each suite gets a freshly started server.
#
# Env: FERROKEEPER_BIN (required for the ferrokeeper target), COMPAT_TARGETS (default
# "zookeeper ferrokeeper"), COMPAT_SUITES (default: every suite directory with a run.sh),
# COMPAT_PORT (default 21850), COMPAT_WORKDIR (default a temp dir).
set -u
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/servers.sh"
targets=${COMPAT_TARGETS:-"zookeeper ferrokeeper"}
suites=${COMPAT_SUITES:-$(cd "$here" && for d in */; do [ -f "$d/run.sh" ] && echo "${d%/}"; done)}
port=${COMPAT_PORT:-21850}
work=${COMPAT_WORKDIR:-$(mktemp -d /tmp/ferrokeeper-compat.XXXXXX)}
passed=0
failed=0
failures=""
for target in $targets; do
    for suite in $suites; do
        dir="$work/$target-$suite"
        echo "=== compat suite '$suite' against $target (port $port) ==="
        # Only the admin suite runs ferrokeeper with ZooKeeper's Prometheus provider configured.
        if [ "$suite" = admin ]; then export COMPAT_PROMETHEUS=1; else export COMPAT_PROMETHEUS=0; fi
        if ! pid=$(start_server "$target" "$port" "$dir"); then
            echo "!!! could not start $target"
            failed=$((failed + 1)); failures="$failures $target/$suite(start)"
            continue
        fi
        start=$(date +%s)
        if ZK_CONNECT="127.0.0.1:$port" ZK_PORT="$port" ZK_TARGET="$target" ZK_WORKDIR="$dir" \
            timeout 900 bash "$here/$suite/run.sh"; then
            passed=$((passed + 1))
            echo "=== '$suite' against $target passed in $(( $(date +%s) - start ))s ==="
        else
            failed=$((failed + 1)); failures="$failures $target/$suite"
            echo "!!! '$suite' against $target FAILED; server log tail:"
            tail -20 "$dir/server.log"
        fi
        stop_server "$pid"
        if ! grep -q . /dev/null; then :; fi
        # ferrokeeper must never panic, whatever the suite sent it.
        if [ "$target" = ferrokeeper ] && grep -q "panicked" "$dir/server.log"; then
            echo "!!! ferrokeeper panicked during '$suite':"; grep -A5 panicked "$dir/server.log" | head -20
            failed=$((failed + 1)); failures="$failures $target/$suite(panic)"
        fi
    done
done
[ -n "$failures" ] && echo "failed suites:$failures"
echo "compat: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
