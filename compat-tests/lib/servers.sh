#!/usr/bin/env bash
# Start and stop the two servers every compat suite runs against: the real Apache
# ZooKeeper 3.8.0 (Debian package) and ferrokeeper. Both get the same settings, written
# once in write_zoo_cfg; the real server additionally gets the JVM -D flags for the
# settings it cannot read from zoo.cfg (PROTOCOL.md §6.2).
#
# Usage (sourced):  start_server <zookeeper|ferrokeeper> <port> <workdir>  → prints pid
#                   stop_server <pid>
# The AdminServer (Jetty) needs servlet-api.jar, which zookeeper.jar's manifest class path omits
# (Debian package libservlet-api-java); the Jetty jars it names come from libjetty9-java.
# Test credentials: the super user is super:test; extendedTypesEnabled is on; containers are
# checked every second; tickTime is 500 ms so min session timeout is 1000 ms.
# JVMFLAGS (e.g. -Dzookeeper.snapCount=10) reaches both servers, as zkServer.sh passes it to the JVM
# and ferrokeeper reads it from the environment. COMPAT_ZK_MAIN picks ZooKeeper's main class: the
# default ZooKeeperServerMain, or QuorumPeerMain (what zkServer.sh runs), which is the one that
# starts the autopurge task.

COMPAT_SUPER_DIGEST='super:D/InIHSb7yEEbrWz8b9l71RjZJU='

# Observability ports, derived from the client port so every suite's server gets its own:
# AdminServer on port+100 (both servers), Prometheus /metrics on port+200 (ferrokeeper only, and
# only when COMPAT_PROMETHEUS=1: the provider changes mntr's spelling, and the real ZooKeeper
# cannot load it since Debian ships without its jar).
admin_port() { echo $(( $1 + 100 )); }
metrics_port() { echo $(( $1 + 200 )); }

write_zoo_cfg() { # <port> <workdir> [kind]
    local port=$1 dir=$2 kind=${3:-zookeeper}
    mkdir -p "$dir/data"
    cat > "$dir/zoo.cfg" <<CFG
tickTime=500
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
maxClientCnxns=60
minSessionTimeout=1000
maxSessionTimeout=60000
4lw.commands.whitelist=*
admin.enableServer=true
admin.serverAddress=127.0.0.1
admin.serverPort=$(admin_port "$port")
extendedTypesEnabled=true
znode.container.checkIntervalMs=${COMPAT_CONTAINER_CHECK_MS:-1000}
DigestAuthenticationProvider.superDigest=$COMPAT_SUPER_DIGEST
CFG
    if [ "$kind" = ferrokeeper ] && [ "${COMPAT_PROMETHEUS:-0}" = 1 ]; then
        cat >> "$dir/zoo.cfg" <<CFG
metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider
metricsProvider.httpHost=127.0.0.1
metricsProvider.httpPort=$(metrics_port "$port")
CFG
    fi
}

wait_for_port() { # <port> <pid>
    local port=$1 pid=$2 i
    for i in $(seq 1 150); do
        if ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        # srvr is answered whatever 4lw.commands.whitelist says.
        if printf srvr | nc -q1 -w1 127.0.0.1 "$port" 2>/dev/null | grep -q "^Zookeeper version"; then return 0; fi
        sleep 0.2
    done
    return 1
}

start_server() { # <zookeeper|ferrokeeper> <port> <workdir>   (wipes the work dir)
    local kind=$1 port=$2 dir=$3
    rm -rf "$dir"; mkdir -p "$dir"
    write_zoo_cfg "$port" "$dir" "$kind"
    launch_server "$kind" "$port" "$dir"
}

restart_server() { # <zookeeper|ferrokeeper> <port> <workdir>   (keeps the data dir)
    local kind=$1 port=$2 dir=$3
    mkdir -p "$dir"
    [ -f "$dir/zoo.cfg" ] || write_zoo_cfg "$port" "$dir" "$kind"
    launch_server "$kind" "$port" "$dir"
}

launch_server() { # <kind> <port> <workdir>: starts the server on an existing zoo.cfg
    local kind=$1 port=$2 dir=$3 pid
    case "$kind" in
        zookeeper)
            # shellcheck disable=SC2086 # JVMFLAGS is a list of flags
            java -Xmx512m ${JVMFLAGS:-} \
                -Dzookeeper.extendedTypesEnabled=true \
                -Dznode.container.checkIntervalMs=${COMPAT_CONTAINER_CHECK_MS:-1000} \
                -Dzookeeper.DigestAuthenticationProvider.superDigest="$COMPAT_SUPER_DIGEST" \
                -cp "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar:/usr/share/java/servlet-api.jar" \
                "${COMPAT_ZK_MAIN:-org.apache.zookeeper.server.ZooKeeperServerMain}" "$dir/zoo.cfg" >> "$dir/server.log" 2>&1 &
            pid=$!
            ;;
        ferrokeeper)
            "${FERROKEEPER_BIN:?set FERROKEEPER_BIN to the ferrokeeper binary}" "$dir/zoo.cfg" >> "$dir/server.log" 2>&1 &
            pid=$!
            ;;
        *) echo "unknown server kind $kind" >&2; return 2 ;;
    esac
    if ! wait_for_port "$port" "$pid"; then
        echo "server $kind did not start on port $port; log:" >&2
        tail -50 "$dir/server.log" >&2
        kill "$pid" 2>/dev/null
        return 1
    fi
    echo "$pid"
}

stop_server() { # <pid>
    local pid=$1 i
    kill "$pid" 2>/dev/null || return 0
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
}
