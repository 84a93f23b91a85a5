#!/usr/bin/env bash
# Benchmark ferrokeeper against the real Apache ZooKeeper 3.8.0 (Debian package) in one run and
# print one table: each figure for both servers and the ratio. On demand only (not run by
# scripts/test.sh): it takes about 35 minutes (standalone rows and ensembles) and its figures
# depend on the machine.
#
# Usage: scripts/bench.sh            full run
#        BENCH_QUICK=1 scripts/bench.sh   short windows, 100k znodes, 2000-session storm, each
#                                         1 x 1 row once (smoke test)
#        BENCH_REPEATS=N                  how many times each 1 x 1 row runs (default 3; the
#                                         table gives medians)
#
# Both servers get the same zoo.cfg (fsync on: ZooKeeper's default forceSync=yes; dataDir on the
# same disk, under $BENCH_DIR), maxClientCnxns=0 so the 10,000-session storm is not refused per
# source IP, and run one at a time so neither steals CPU from the other. ZooKeeper runs with
# default JVM settings plus -Xmx$ZK_HEAP. The generator (ferrokeeper-bench) shares the cores with
# the server; it reports its own CPU and the server's for every row.
#
# Outputs in $BENCH_OUT: results.jsonl (one JSON object per row), table.txt, bench.png.
#
# Adding a server kind is a start_<kind> function plus its name in BENCH_SERVERS; the suite and
# the report pick it up. A kind with durable_<kind>=true gets its data-dir and restart rows
# measured (both servers are durable now). Each kind in BENCH_ENSEMBLES also runs as a 3-server
# ensemble on 127.0.<net>.1-3 (rows labelled <kind>-ensemble): request load through a follower,
# then the failover (SIGKILL the leader, time to the first acknowledged write on a survivor).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ferrokeeper-target}
BENCH_DIR=${BENCH_DIR:-/tmp/ferrokeeper-bench}
BENCH_OUT=${BENCH_OUT:-$ROOT/bench-results}
BENCH_SERVERS=${BENCH_SERVERS-"zookeeper ferrokeeper"}
BENCH_ENSEMBLES=${BENCH_ENSEMBLES-"zookeeper ferrokeeper"}
ENSEMBLE_WORKLOADS=${BENCH_ENSEMBLE_WORKLOADS-"create set-data get-data mixed"}
ZK_HEAP=${ZK_HEAP:-2g}
# Ports PORT_BASE+10..PORT_BASE+22 on 127.0.0.1 (kind i uses +10i, +10i+1, +10i+2). 24100 keeps clear
# of the 21850-23999 range other work on this machine uses.
PORT_BASE=${PORT_BASE:-24100}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    WARMUP=0.5 SECS=2 ZNODES=100000 STORM=2000 WATCHERS=200 ROUNDS=10 REPEATS=${BENCH_REPEATS:-1}
else
    WARMUP=2 SECS=8 ZNODES=1000000 STORM=10000 WATCHERS=1000 ROUNDS=300 REPEATS=${BENCH_REPEATS:-3}
fi
WORKLOADS="create set-data get-data exists get-children mixed"

# Durability of each kind: decides the restart row.
durable_zookeeper=true
durable_ferrokeeper=true # RocksDB txn log, synced per group commit (forceSync=yes)

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

ensure_tools() {
    if ! python3 -c 'import matplotlib' 2>/dev/null; then
        log "installing matplotlib (pip)"
        python3 -m pip install --quiet matplotlib
    fi
    [ -r /usr/share/java/zookeeper.jar ] || bash scripts/install-test-deps.sh
    command -v nc >/dev/null || { echo "nc is needed" >&2; exit 1; }
}

write_zoo_cfg() { # <dir> <port>
    mkdir -p "$1/data"
    cat > "$1/zoo.cfg" <<CFG
tickTime=2000
dataDir=$1/data
clientPort=$2
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=*
CFG
}

wait_ready() { # <port> <pid> [host]
    local i
    for i in $(seq 1 600); do
        kill -0 "$2" 2>/dev/null || return 1
        [ "$(printf ruok | nc -q1 -w1 "${3:-127.0.0.1}" "$1" 2>/dev/null)" = imok ] && return 0
        sleep 0.1
    done
    return 1
}

start_zookeeper() { # <dir> <port>  (prints pid)
    java -Xmx"$ZK_HEAP" -cp "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar" \
        org.apache.zookeeper.server.ZooKeeperServerMain "$1/zoo.cfg" >> "$1/server.log" 2>&1 &
    echo $!
}

start_zookeeper_member() { # <dir>  (prints pid)
    java -Xmx"$ZK_HEAP" -cp "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar" \
        org.apache.zookeeper.server.quorum.QuorumPeerMain "$1/zoo.cfg" >> "$1/server.log" 2>&1 &
    echo $!
}

start_ferrokeeper_member() { # <dir>  (prints pid)
    start_ferrokeeper "$1" ""
}

start_ferrokeeper() { # <dir> <port>  (prints pid)
    "$CARGO_TARGET_DIR/release/ferrokeeper" "$1/zoo.cfg" >> "$1/server.log" 2>&1 &
    echo $!
}

stop_pid() { # <pid>
    local i
    kill "$1" 2>/dev/null || return 0
    for i in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
}

# Starts <kind> in <dir> (keeping its data) and waits until it answers; sets PID.
start() { # <kind> <dir> <port>
    PID=$("start_$1" "$2" "$3")
    wait_ready "$3" "$PID" || { log "$1 did not start; log:"; tail -30 "$2/server.log" >&2; exit 1; }
}

bench() { # <kind> <port> <pid> <args...>
    local kind=$1 port=$2 pid=$3 durable_var="durable_$1"
    shift 3
    "$CARGO_TARGET_DIR/release/ferrokeeper-bench" --server "127.0.0.1:$port" --label "$kind" --server-pid "$pid" \
        --durable "${!durable_var}" --json "$BENCH_OUT/results.jsonl" --source-ips 64 "$@"
}

row() { # <json>: a row the generator does not measure itself
    echo "$1" >> "$BENCH_OUT/results.jsonl"
}

listen_overflows() { # kernel-wide count of connections dropped because an accept queue was full
    awk '/^TcpExt:/ { if (!seen) { split($0, keys); seen = 1 } else { split($0, values);
        for (i in keys) if (keys[i] == "ListenOverflows") print values[i] } }' /proc/net/netstat
}

# What the disk under the dataDirs allows: fdatasync calls per second on a preallocated file
# (ZooKeeper's txn log does force(false) = fdatasync on a preallocated 64 MB file). This caps a
# durable server's group commits per second; it is measured, not assumed.
measure_disk_syncs() {
    python3 - "$BENCH_DIR/synctest" <<'PY'
import os, sys, time
path = sys.argv[1]
fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
os.posix_fallocate(fd, 0, 64 << 20)
os.fsync(fd)
n, start, pos = 0, time.monotonic(), 0
while time.monotonic() - start < 3.0:
    os.pwrite(fd, b"x" * 512, pos)
    os.fdatasync(fd)
    pos = (pos + 512) % (64 << 20)
    n += 1
elapsed = time.monotonic() - start
os.close(fd)
os.unlink(path)
print(f"{n / elapsed:.1f}")
PY
}

run_suite() { # <kind>
    local kind=$1 dir="$BENCH_DIR/$1" port durable_var="durable_$1"
    # The request rows run in run_request_rows. Here: watch fan-out and the connection storm on a
    # fresh server, then the big tree on another.
    port=$(kind_port "$kind")
    rm -rf "$dir"; write_zoo_cfg "$dir" "$port"
    start "$kind" "$dir" "$port"
    bench "$kind" "$port" "$PID" watch --sessions "$WATCHERS" --rounds "$ROUNDS"
    local overflows_before
    overflows_before=$(listen_overflows)
    bench "$kind" "$port" "$PID" connect --sessions "$STORM"
    row "{\"server\":\"$kind\",\"workload\":\"connect\",\"mode\":\"listenOverflows\",\"count\":$(($(listen_overflows) - overflows_before)),\"durable\":${!durable_var}}"
    stop_pid "$PID"

    # Phase 2, fresh server: the big tree, its memory and disk footprint, restart with it.
    port=$((port + 1))
    rm -rf "$dir"; write_zoo_cfg "$dir" "$port"
    start "$kind" "$dir" "$port"
    bench "$kind" "$port" "$PID" load populate --mode populate --sessions 32 --outstanding 1000 --count "$ZNODES"
    sleep 3
    local rss_kib data_bytes
    rss_kib=$(ps -o rss= -p "$PID" | tr -d ' ')
    data_bytes=$(du -sb "$dir/data" | cut -f1)
    log "$kind: RSS ${rss_kib} KiB, data dir ${data_bytes} bytes with $ZNODES znodes"
    row "{\"server\":\"$kind\",\"workload\":\"memory\",\"mode\":\"$ZNODES znodes\",\"rss_kib\":$rss_kib,\"durable\":${!durable_var}}"
    row "{\"server\":\"$kind\",\"workload\":\"dataDir\",\"mode\":\"$ZNODES znodes\",\"data_dir_bytes\":$data_bytes,\"durable\":${!durable_var}}"
    stop_pid "$PID"
    if [ "${!durable_var}" = true ]; then
        port=$((port + 1))
        sed -i "s/^clientPort=.*/clientPort=$port/" "$dir/zoo.cfg"
        local since_ms
        since_ms=$(date +%s%3N)
        PID=$("start_$kind" "$dir" "$port")
        bench "$kind" "$port" "$PID" first-read --since-epoch-ms "$since_ms" --path /bench/big/0/0
        stop_pid "$PID"
    else
        row "{\"server\":\"$kind\",\"workload\":\"restart\",\"mode\":\"firstRead\",\"restart_ms\":null,\"durable\":false}"
    fi
}

kind_port() { # <kind>: the first of its ports
    echo $((PORT_BASE + 10 * $(echo "$BENCH_SERVERS" | tr ' ' '\n' | grep -n -x "$1" | cut -d: -f1)))
}

# The request rows, workload by workload: each server kind on a fresh server (so that no row runs
# beside the nodes an earlier row made and the snapshots of them: the create row at 32 x 1,000
# leaves up to a million nodes, and a 1 x 1 row on that server ran while a snapshot of them, 0.8-1.7 s
# of writes on the data disk, slowed its log syncs), then for the 1 x 1 rows the floor, back to
# back, so that all of them meet the machine in the same state. On the virtual machines these runs
# get, the same binary's rates drifted by a quarter to a third within an hour (README, BENCHMARKS);
# with each kind's rows minutes apart, a ratio measured the drift as much as the servers. The
# floor is a server process that does no work (ferrokeeper-bench null-server: replies of the real
# sizes, no tree; one fdatasync per write, as a durable server must), driven by the same generator
# code: what a server process cannot avoid on this machine (the generator, loopback, the wake-ups
# of two processes, the sync) is in it; nothing a server could do better is. Rows labelled
# _nullServer.
run_request_rows() {
    local null_port=$((PORT_BASE + 5)) null_pid w kind dir port row_shape mode sessions outstanding rep
    [ -n "$BENCH_SERVERS" ] || return 0
    "$CARGO_TARGET_DIR/release/ferrokeeper-bench" null-server --port "$null_port" --sync-dir "$BENCH_DIR/null-floor" \
        2>> "$BENCH_DIR/null-floor.log" &
    null_pid=$!
    wait_ready "$null_port" "$null_pid" || { log "null server did not start"; cat "$BENCH_DIR/null-floor.log" >&2; exit 1; }
    for row_shape in "throughput 32 1000" "latency 1 1"; do
        read -r mode sessions outstanding <<< "$row_shape"
        for w in $WORKLOADS; do
            for rep in $(seq 1 "$([ "$mode" = latency ] && echo "$REPEATS" || echo 1)"); do
                for kind in $BENCH_SERVERS; do
                    dir="$BENCH_DIR/$kind"; port=$(kind_port "$kind")
                    rm -rf "$dir"; write_zoo_cfg "$dir" "$port"
                    start "$kind" "$dir" "$port"
                    log "$kind: $w $mode ($rep), pid $PID on port $port"
                    bench "$kind" "$port" "$PID" load "$w" --mode "$mode" --sessions "$sessions" \
                        --outstanding "$outstanding" --warmup-secs "$WARMUP" --secs "$SECS"
                    stop_pid "$PID"
                done
                [ "$mode" = latency ] || continue
                log "null server: $w latency ($rep)"
                "$CARGO_TARGET_DIR/release/ferrokeeper-bench" --server "127.0.0.1:$null_port" --label _nullServer \
                    --server-pid "$null_pid" --json "$BENCH_OUT/results.jsonl" --source-ips 64 load "$w" --mode latency \
                    --sessions 1 --outstanding 1 --warmup-secs "$WARMUP" --secs "$SECS" >&2
            done
        done
    done
    stop_pid "$null_pid"
}

srvr_mode() { # <host> <port>
    printf srvr | nc -q1 -w1 "$1" "$2" 2>/dev/null | sed -n 's/^Mode: //p'
}

# A 3-server ensemble of <kind> on 127.0.<net>.1-3 (client port ENSEMBLE_PORT, quorum 2888,
# election 3888), the same zoo.cfg as the standalone rows plus the quorum lines (initLimit=10,
# syncLimit=5, ZooKeeper's sample values). Request load goes through a follower, as most client
# traffic does in an ensemble, each row on a fresh ensemble; at the end the leader is killed
# with SIGKILL and the time to the first acknowledged write through a survivor is measured (new
# session, create).
ENSEMBLE_PORT=$((PORT_BASE + 50))
start_members() { # <kind> <net>; sets MEMBER_PIDS, LEADER, FOLLOWER, SURVIVOR
    local kind=$1 net=$2 label="$1-ensemble" sid m dir serving
    MEMBER_PIDS=()
    for sid in 1 2 3; do
        dir="$BENCH_DIR/$label/$sid"
        rm -rf "$dir"; write_zoo_cfg "$dir" "$ENSEMBLE_PORT"
        sed -i "s/^clientPortAddress=.*/clientPortAddress=127.0.$net.$sid/" "$dir/zoo.cfg"
        printf 'initLimit=10\nsyncLimit=5\n' >> "$dir/zoo.cfg"
        for m in 1 2 3; do echo "server.$m=127.0.$net.$m:2888:3888" >> "$dir/zoo.cfg"; done
        echo "$sid" > "$dir/data/myid"
        MEMBER_PIDS+=("$("start_${kind}_member" "$dir")")
    done
    LEADER=""
    for _ in $(seq 1 600); do
        for sid in 1 2 3; do
            [ "$(srvr_mode "127.0.$net.$sid" "$ENSEMBLE_PORT")" = leader ] && LEADER=$sid
        done
        serving=0
        for sid in 1 2 3; do
            case "$(srvr_mode "127.0.$net.$sid" "$ENSEMBLE_PORT")" in leader|follower) serving=$((serving + 1)) ;; esac
        done
        [ -n "$LEADER" ] && [ "$serving" = 3 ] && break
        LEADER=""
        sleep 0.1
    done
    [ -n "$LEADER" ] || { log "$label did not form"; tail -20 "$BENCH_DIR/$label"/*/server.log >&2; exit 1; }
    FOLLOWER=$(( LEADER % 3 + 1 ))
    SURVIVOR=$(( FOLLOWER % 3 + 1 ))
}

stop_members() {
    local p
    for p in "${MEMBER_PIDS[@]}"; do stop_pid "$p"; done
}

# One row of <workload> (throughput: 32 x 1,000; latency: 1 x 1) through a follower of a fresh
# ensemble (so a 1 x 1 row does not run beside the snapshots and log of a 32 x 1,000 row's writes,
# as in the standalone rows).
ensemble_row() { # <kind> <net> <workload> <mode>
    local label="$1-ensemble" net=$2 w=$3 mode=$4 sessions=32 outstanding=1000
    [ "$mode" = latency ] && sessions=1 outstanding=1
    start_members "$1" "$net"
    log "$label: $w $mode through follower $FOLLOWER (leader $LEADER)"
    ensemble_bench "$label" "127.0.$net.$FOLLOWER:$ENSEMBLE_PORT" "${MEMBER_PIDS[$((FOLLOWER - 1))]}" load "$w" \
        --mode "$mode" --sessions "$sessions" --outstanding "$outstanding" --warmup-secs "$WARMUP" --secs "$SECS"
    stop_members
}

ensemble_failover() { # <kind> <net>
    local label="$1-ensemble" net=$2 since_ms
    start_members "$1" "$net"
    # Let every member settle into broadcast (a write through each) before the kill.
    "$CARGO_TARGET_DIR/release/ferrokeeper-bench" --server "127.0.$net.$SURVIVOR:$ENSEMBLE_PORT" first-write \
        --since-epoch-ms 0 --path /bench-settled >/dev/null
    since_ms=$(date +%s%3N)
    kill -9 "${MEMBER_PIDS[$((LEADER - 1))]}"
    log "$label: killed leader $LEADER; writing through $SURVIVOR"
    ensemble_bench "$label" "127.0.$net.$SURVIVOR:$ENSEMBLE_PORT" "${MEMBER_PIDS[$((SURVIVOR - 1))]}" first-write \
        --since-epoch-ms "$since_ms"
    stop_members
}

# The floor of the ensembles' 1 x 1 rows: a null ensemble on 127.0.<net>.1-3 (ferrokeeper-bench
# null-member: three processes that reply as the null server does and replicate each write as a
# Zab quorum must: forwarded to the leader, proposed to both followers, one record synced to every
# member's log, on the same disk, committed on a majority's acks), member 1 leading, the rows
# through member 2. Rows labelled _nullEnsemble. Sets NULL_PIDS.
start_null_ensemble() { # <net>
    local net=$1 sid
    NULL_PIDS=()
    for sid in 1 2 3; do
        rm -rf "$BENCH_DIR/null-ensemble/$sid"
        "$CARGO_TARGET_DIR/release/ferrokeeper-bench" null-member --host "127.0.$net.$sid" --port "$ENSEMBLE_PORT" \
            --leader "127.0.$net.1" --sync-dir "$BENCH_DIR/null-ensemble/$sid" 2>> "$BENCH_DIR/null-ensemble.log" &
        NULL_PIDS+=($!)
    done
    for sid in 1 2 3; do
        wait_ready "$ENSEMBLE_PORT" "${NULL_PIDS[$((sid - 1))]}" "127.0.$net.$sid" \
            || { log "null ensemble did not start"; cat "$BENCH_DIR/null-ensemble.log" >&2; exit 1; }
    done
}

# Each kind in BENCH_ENSEMBLES on 127.0.91.x, 127.0.92.x, ...: each workload's rows of every kind
# back to back, its 1 x 1 rows REPEATS times each with the null ensemble's (on the next net), so
# they meet the machine in the same state, as the standalone rows do; then each kind's failover.
run_ensembles() {
    local kinds=($BENCH_ENSEMBLES) i w null_net rep
    [ ${#kinds[@]} -gt 0 ] || return 0
    null_net=$((91 + ${#kinds[@]}))
    start_null_ensemble "$null_net"
    for w in $ENSEMBLE_WORKLOADS; do
        for i in "${!kinds[@]}"; do
            ensemble_row "${kinds[$i]}" $((91 + i)) "$w" throughput
        done
        for rep in $(seq 1 "$REPEATS"); do
            for i in "${!kinds[@]}"; do
                ensemble_row "${kinds[$i]}" $((91 + i)) "$w" latency
            done
            log "null ensemble: $w latency ($rep)"
            ensemble_bench _nullEnsemble "127.0.$null_net.2:$ENSEMBLE_PORT" "${NULL_PIDS[1]}" load "$w" --mode latency \
                --sessions 1 --outstanding 1 --warmup-secs "$WARMUP" --secs "$SECS"
        done
    done
    for i in "${!NULL_PIDS[@]}"; do stop_pid "${NULL_PIDS[$i]}"; done
    for i in "${!kinds[@]}"; do
        ensemble_failover "${kinds[$i]}" $((91 + i))
    done
}

ensemble_bench() { # <label> <host:port> <pid> <args...>; durable as the standalone kind
    local label=$1 server=$2 pid=$3
    shift 3
    # A row an ensemble does not finish (ZooKeeper's once stalled for half a minute and closed the
    # session) is left out of the table, not the end of the run.
    "$CARGO_TARGET_DIR/release/ferrokeeper-bench" --server "$server" --label "$label" --server-pid "$pid" \
        --durable true --json "$BENCH_OUT/results.jsonl" --source-ips 64 "$@" \
        || log "$label: the row '$*' failed; left out of the table"
}

main() {
    ensure_tools
    # Whatever way the script ends, no server it started outlives it (a member left running
    # would hold its ports and break the next run's ensemble).
    trap 'pkill -f -- "$BENCH_DIR/" 2>/dev/null || true' EXIT
    log "building ferrokeeper and ferrokeeper-bench (release)"
    cargo build --release --locked --bins >&2
    mkdir -p "$BENCH_OUT" "$BENCH_DIR"
    : > "$BENCH_OUT/results.jsonl"
    ulimit -n "$(ulimit -Hn)"
    local syncs
    syncs=$(measure_disk_syncs)
    log "disk: $syncs fdatasync/s"
    row "{\"server\":\"_machine\",\"workload\":\"disk\",\"mode\":\"fdatasync\",\"syncs_per_sec\":$syncs}"
    # The latency rows' floor: a loopback round trip through the generator to a bare echo server.
    "$CARGO_TARGET_DIR/release/ferrokeeper-bench" --label _machine --json "$BENCH_OUT/results.jsonl" \
        rtt-floor --secs "$SECS" >&2
    # The fan-out rows' floor: the generator's watchers reading one event each from a bare server
    # that only writes them (a thread per core), so no log sync, no request, no bookkeeping.
    "$CARGO_TARGET_DIR/release/ferrokeeper-bench" --label _machine --json "$BENCH_OUT/results.jsonl" \
        watch-floor --sessions "$WATCHERS" --rounds "$ROUNDS" >&2
    # The same two floors for a durable server: one record fdatasynced on the data disk per round
    # trip, and per fan-out round (started by a request over loopback), as no durable write can skip.
    "$CARGO_TARGET_DIR/release/ferrokeeper-bench" --label _machine --json "$BENCH_OUT/results.jsonl" \
        rtt-floor --secs "$SECS" --sync-dir "$BENCH_DIR/floor" >&2
    "$CARGO_TARGET_DIR/release/ferrokeeper-bench" --label _machine --json "$BENCH_OUT/results.jsonl" \
        watch-floor --sessions "$WATCHERS" --rounds "$ROUNDS" --sync-dir "$BENCH_DIR/floor" >&2
    log "=== request rows"
    run_request_rows
    local kind
    for kind in $BENCH_SERVERS; do
        log "=== $kind"
        run_suite "$kind"
    done
    log "=== ensembles"
    run_ensembles
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(free -g | awk '/Mem:/{print $2}') GiB, kernel $(uname -r)"
        echo "zookeeper: $(java -version 2>&1 | head -1), -Xmx$ZK_HEAP, forceSync=yes (default); ferrokeeper: $(git rev-parse --short HEAD)$([ "$durable_ferrokeeper" = true ] || echo ', in-memory: does NOT fsync (durable storage not landed yet)')"
        echo "dataDir disk: $(df --output=source "$BENCH_DIR" | tail -1), $syncs fdatasync/s measured; windows: ${WARMUP}s warm-up + ${SECS}s measured"
        echo "1 x 1 rows (and their floors): each figure the median of $REPEATS rows, ZooKeeper's, ferrokeeper's and the floor's taking turns"
        echo "listen backlog: somaxconn $(cat /proc/sys/net/core/somaxconn); generator and server share the cores: see cpu columns in results.jsonl"
    } > "$BENCH_OUT/header.txt"
    python3 scripts/bench_report.py "$BENCH_OUT"
}

main "$@"
