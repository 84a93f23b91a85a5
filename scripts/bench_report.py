#!/usr/bin/env python3
"""Turns scripts/bench.sh's results.jsonl into the comparison table (table.txt, printed) and the
plot (bench.png). The first server kind in the file is the baseline; every other kind gets a
ratio column against it, so ensemble rows need no change here.

Ratios are written so that > 1 means "better than the baseline": throughput and sessions/s are
other/baseline; latency, memory, disk and restart time are baseline/other.
"""
import json
import os
import sys

WORKLOAD_ORDER = ["create", "setData", "getData", "exists", "getChildren", "mixed"]
# Targets of issue 4 (ferrokeeper vs ZooKeeper): ratio that counts as met, per figure.
TARGETS = {"ops": 3.0, "p99": 3.0, "rss": 4.0, "restart": 5.0}


ENSEMBLE = "-ensemble"
# Rows of the null server, the 1 x 1 rows' floor.
NULL = "_nullServer"
# Rows of the null ensemble, the ensembles' 1 x 1 rows' floor.
NULL_ENSEMBLE = "_nullEnsemble"
FLOOR_COLUMNS = ["floor ops/s", "floor p50", "floor p99", "best x", "best p99 x"]


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def merge_repeats(rows):
    """One row per (server, workload, mode): a row measured several times (bench.sh REPEATS) gets
    the median of each numeric figure, each taken on its own, and `repeats` = how many."""
    groups = {}
    for r in rows:
        groups.setdefault((r["server"], r["workload"], r["mode"]), []).append(r)
    merged = []
    for group in groups.values():
        row = dict(group[0])
        if len(group) > 1:
            for key, value in group[0].items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    row[key] = median([r[key] for r in group
                                       if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)])
            row["repeats"] = len(group)
        merged.append(row)
    return merged


def fmt_rate(v):
    return "-" if v is None else f"{v:,.0f}"


def fmt_us(v):
    if v is None:
        return "-"
    return f"{v / 1000:.2f}ms" if v >= 1000 else f"{v:.0f}us"


def ratio(base, other, higher_is_better):
    if base in (None, 0) or other in (None, 0):
        return None
    return other / base if higher_is_better else base / other


def fmt_ratio(r, target=None, best=None):
    """`best`: the ratio a server that does no work gets; under the target, a miss is the floor's."""
    if r is None:
        return "-"
    mark = "" if target is None else (" ok" if r >= target else " MISS")
    if mark == " MISS" and best is not None and best < target:
        mark = " MISS (floor)"
    return f"{r:.2f}x{mark}"


def main(out_dir):
    rows = merge_repeats(load(os.path.join(out_dir, "results.jsonl")))
    servers = []
    for r in rows:
        # Rows about the machine itself ("_machine") are not a server to compare.
        if not r["server"].startswith("_") and not r["server"].endswith(ENSEMBLE) and r["server"] not in servers:
            servers.append(r["server"])
    ensembles = []
    for r in rows:
        if r["server"].endswith(ENSEMBLE) and r["server"] not in ensembles:
            ensembles.append(r["server"])
    base = servers[0] if servers else ""
    index = {(r["server"], r["workload"], r["mode"]): r for r in rows}

    def get(server, workload, mode, key):
        r = index.get((server, workload, mode))
        return None if r is None else r.get(key)

    def floor_of(base, null, w, mode):
        """The ratios a server that does no work (`null`'s rows) gets against `base`, and its cells."""
        best_ops = ratio(get(base, w, mode, "ops_per_sec"), get(null, w, mode, "ops_per_sec"), True)
        best_p99 = ratio(get(base, w, mode, "p99_us"), get(null, w, mode, "p99_us"), False)
        cells = [fmt_rate(get(null, w, mode, "ops_per_sec")), fmt_us(get(null, w, mode, "p50_us")),
                 fmt_us(get(null, w, mode, "p99_us")), fmt_ratio(best_ops), fmt_ratio(best_p99)]
        return best_ops, best_p99, cells

    lines = []
    header = os.path.join(out_dir, "header.txt")
    if os.path.exists(header):
        lines += open(header).read().rstrip().splitlines()
    lines.append("ratio columns: other/base for rates, base/other for latency/memory/disk/time (>1 = better than "
                 f"{base}); 'ok'/'MISS' against the targets (3x throughput, 1/3 p99, 1/4 RSS, 5x restart)")
    lines.append("")

    def table(title, columns, body):
        widths = [max(len(str(c)), *(len(str(row[i])) for row in body)) for i, c in enumerate(columns)]
        lines.append(title)
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(columns, widths)))
        lines.append("  ".join("-" * w for w in widths))
        for row in body:
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
        lines.append("")

    others = servers[1:]
    for mode, title in [("throughput", "Throughput mode: 32 sessions, 1,000 requests outstanding"),
                        ("latency", "Latency mode: 1 session, 1 request in flight")]:
        # The 1 x 1 rows' floor: the same rows against a server process that does no work
        # (bench.sh run_null_floor). A ratio under the target whose floor is under it too can
        # not be met by any server on this machine: marked "MISS (floor)".
        floored = mode == "latency" and any(index.get((NULL, w, mode)) for w in WORKLOAD_ORDER)
        cols = ["workload"]
        for s in servers:
            cols += [f"{s} ops/s"]
        cols += [f"x {o}" for o in others]
        for s in servers:
            cols += [f"{s} p50", f"{s} p99", f"{s} p99.9"]
        cols += [f"p99 x {o}" for o in others]
        for s in servers:
            cols += [f"{s} cpu us/op"]
        if floored:
            cols += FLOOR_COLUMNS
        body = []
        for w in WORKLOAD_ORDER:
            best_ops, best_p99, floor_cells = floor_of(base, NULL, w, mode)
            row = [w]
            row += [fmt_rate(get(s, w, mode, "ops_per_sec")) for s in servers]
            row += [fmt_ratio(ratio(get(base, w, mode, "ops_per_sec"), get(o, w, mode, "ops_per_sec"), True),
                              TARGETS["ops"], best_ops) for o in others]
            for s in servers:
                row += [fmt_us(get(s, w, mode, k)) for k in ("p50_us", "p99_us", "p999_us")]
            row += [fmt_ratio(ratio(get(base, w, mode, "p99_us"), get(o, w, mode, "p99_us"), False),
                              TARGETS["p99"], best_p99) for o in others]
            for s in servers:
                v = get(s, w, mode, "server_cpu_us_per_op")
                row += ["-" if v is None else f"{v:.1f}"]
            if floored:
                row += floor_cells
            body.append(row)
        table(title, cols, body)
        if floored:
            lines.insert(len(lines) - 1, "floor columns: the same rows against a server process that does no work "
                         "(ferrokeeper-bench null-server: replies of the real sizes, one fdatasync per write); "
                         "best x = what it gets against the baseline")
        floor = index.get(("_machine", "rttFloor", "latency"))
        if mode == "latency" and floor is not None:
            lines.insert(len(lines) - 1, "floor of this machine, 1 in flight: a loopback round trip to a server that only "
                         f"echoes (ferrokeeper-bench rtt-floor): p50 {fmt_us(floor['p50_us'])}, "
                         f"p99 {fmt_us(floor['p99_us'])}, p99.9 {fmt_us(floor['p999_us'])}")
        durable = index.get(("_machine", "durableRttFloor", "latency"))
        if mode == "latency" and durable is not None:
            lines.insert(len(lines) - 1, "floor of a durable write, 1 in flight: the same round trip with one record "
                         "fdatasynced into a preallocated file on the data disk before the answer (rtt-floor "
                         f"--sync-dir): p50 {fmt_us(durable['p50_us'])}, p99 {fmt_us(durable['p99_us'])}, "
                         f"p99.9 {fmt_us(durable['p999_us'])}")

    cols = ["figure"] + servers + [f"x {o}" for o in others]
    body = []
    def special(label, workload, mode, key, fmt, higher_is_better, target=None, na=None, best=None):
        """One figure per server; `na` replaces the value of a server that is not durable; `best`: the
        ratio a server that does no work gets (a miss under a best under the target is the floor's)."""
        def not_durable(s):
            r = index.get((s, workload, mode))
            return na is not None and r is not None and not r.get("durable", True)
        row = [label] + [na if not_durable(s) else fmt(get(s, workload, mode, key)) for s in servers]
        for o in others:
            r = None if not_durable(base) or not_durable(o) else ratio(
                get(base, workload, mode, key), get(o, workload, mode, key), higher_is_better)
            row.append(fmt_ratio(r, target, best))
        body.append(row)

    mode_of = lambda w: next((r["mode"] for r in rows if r["workload"] == w), "")
    watchers = next((r["sessions"] for r in rows if r["workload"] == "watchFanout"), 0)
    special(f"watch fan-out p50 (setData -> last of {watchers:,} events)", "watchFanout", "fanout", "p50_us", fmt_us,
            False)
    # The fan-out's floor: events written by a server that does nothing else (watch-floor).
    fan_best = ratio(get(base, "watchFanout", "fanout", "p99_us"), get("_machine", "watchFloor", "fanout", "p99_us"), False)
    special("watch fan-out p99", "watchFanout", "fanout", "p99_us", fmt_us, False, TARGETS["p99"], best=fan_best)
    special("watch fan-out after setData's reply, p50", "watchFanout", "fanout", "after_answer_p50_us", fmt_us, False)
    special("watch fan-out after setData's reply, p99", "watchFanout", "fanout", "after_answer_p99_us", fmt_us, False)
    special("connect storm: sessions/s", "connect", "storm", "ops_per_sec", fmt_rate, True)
    special("connect storm: time to all connected", "connect", "storm", "secs",
            lambda v: "-" if v is None else f"{v:.2f}s", False)
    special("connect storm: p99 connect latency", "connect", "storm", "p99_us", fmt_us, False)
    special("connect storm: failed connects", "connect", "storm", "errors", lambda v: "-" if v is None else str(v), False)
    special("connect storm: accept-queue overflows (kernel)", "connect", "listenOverflows", "count",
            lambda v: "-" if v is None else f"{v:,}", False)
    pm = mode_of("populate")
    special(f"populate ({pm}) creates/s", "populate", pm, "ops_per_sec", fmt_rate, True)
    mm = mode_of("memory")
    special(f"RSS with {mm}", "memory", mm, "rss_kib", lambda v: "-" if v is None else f"{v / 1024:,.0f} MiB", False,
            TARGETS["rss"])
    special(f"data dir with {mm}", "dataDir", mm, "data_dir_bytes",
            lambda v: "-" if v is None else f"{v / 2**20:,.0f} MiB", False, na="n/a (in-memory)")
    special("restart to first served read", "restart", "firstRead", "restart_ms",
            lambda v: "-" if v is None else f"{v / 1000:.2f}s", False, TARGETS["restart"], na="n/a (in-memory)")
    table("Other figures", cols, body)
    fan_floor = index.get(("_machine", "watchFloor", "fanout"))
    if fan_floor is not None:
        lines.insert(len(lines) - 1, f"floor of this machine for the fan-out: {fan_floor['sessions']:,} events from a server that "
                     "only writes them, one thread per core, read by the same watcher code (ferrokeeper-bench "
                     f"watch-floor): p50 {fmt_us(fan_floor['p50_us'])}, p99 {fmt_us(fan_floor['p99_us'])}; a server "
                     "can at best match it, so ZooKeeper's figure over it bounds the fan-out ratios")
    durable_fan = index.get(("_machine", "durableWatchFloor", "fanout"))
    if durable_fan is not None:
        lines.insert(len(lines) - 1, "floor of a durable fan-out: the same, started by a request over loopback whose "
                     "server thread fdatasyncs one log record before telling the writers (watch-floor --sync-dir): "
                     f"p50 {fmt_us(durable_fan['p50_us'])}, p99 {fmt_us(durable_fan['p99_us'])}")
    if ensembles:
        ebase, eothers = ensembles[0], ensembles[1:]
        cols = ["workload", "mode"] + [f"{e} ops/s" for e in ensembles] + [f"x {o}" for o in eothers]
        for e in ensembles:
            cols += [f"{e} p50", f"{e} p99"]
        cols += [f"p99 x {o}" for o in eothers]
        efloored = any(index.get((NULL_ENSEMBLE, w, "latency")) for w in WORKLOAD_ORDER)
        if efloored:
            cols += FLOOR_COLUMNS
        body = []
        for w in WORKLOAD_ORDER:
            for mode in ("throughput", "latency"):
                if all(index.get((e, w, mode)) is None for e in ensembles):
                    continue
                best_ops, best_p99, floor_cells = floor_of(ebase, NULL_ENSEMBLE, w, mode)
                row = [w, "32 x 1,000" if mode == "throughput" else "1 x 1"]
                row += [fmt_rate(get(e, w, mode, "ops_per_sec")) for e in ensembles]
                row += [fmt_ratio(ratio(get(ebase, w, mode, "ops_per_sec"), get(o, w, mode, "ops_per_sec"), True),
                                  TARGETS["ops"], best_ops) for o in eothers]
                for e in ensembles:
                    row += [fmt_us(get(e, w, mode, "p50_us")), fmt_us(get(e, w, mode, "p99_us"))]
                row += [fmt_ratio(ratio(get(ebase, w, mode, "p99_us"), get(o, w, mode, "p99_us"), False),
                                  TARGETS["p99"], best_p99) for o in eothers]
                if efloored:
                    row += floor_cells if index.get((NULL_ENSEMBLE, w, mode)) else [""] * len(FLOOR_COLUMNS)
                body.append(row)
        fail = lambda e: get(e, "failover", "firstWrite", "failover_ms")
        row = ["failover: leader SIGKILLed -> first write on a survivor", ""]
        row += ["-" if fail(e) is None else f"{fail(e) / 1000:.2f}s" for e in ensembles]
        row += [fmt_ratio(ratio(fail(ebase), fail(o), False)) for o in eothers]
        row += ["", ""] * len(ensembles) + [""] * len(eothers)
        if efloored:
            row += [""] * len(FLOOR_COLUMNS)
        body.append(row)
        table("Ensembles of 3 on one machine (every member's fsync on the same disk; load through a follower)",
              cols, body)
        if efloored:
            lines.insert(len(lines) - 1, "floor columns: the 1 x 1 rows against a null ensemble (ferrokeeper-bench "
                         "null-member: three processes that reply as the null server does and replicate each write "
                         "as a Zab quorum must: forwarded, proposed, one record synced on every member, committed on "
                         "a majority's acks); best x = what it gets against the baseline ensemble")
    other_cols = ["server", "server cpu cores", "client cpu cores", "other load (cores)"]
    other_body = []
    for s in servers:
        rs = [r for r in rows if r["server"] == s and "other_cpu_cores" in r and r.get("other_cpu_cores") is not None]
        if rs:
            avg = lambda k: sum(r.get(k) or 0 for r in rs) / len(rs)
            other_body.append([s, f"{avg('server_cpu_cores'):.2f}", f"{avg('client_cpu_cores'):.2f}",
                               f"{avg('other_cpu_cores'):.2f}"])
    if other_body:
        table("CPU during the measured windows (mean over rows; 'other' = machine busy - server - generator)",
              other_cols, other_body)

    text = "\n".join(lines)
    print(text)
    with open(os.path.join(out_dir, "table.txt"), "w") as f:
        f.write(text + "\n")
    durability = ", ".join(f"{s}: {'fsync' if any(r.get('durable') for r in rows if r['server'] == s) else 'in-memory, no fsync'}"
                           for s in servers)
    plot(rows, servers, out_dir, durability)


def plot(rows, servers, out_dir, durability):
    if not servers:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = {(r["server"], r["workload"], r["mode"]): r for r in rows}
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5))
    width = 0.8 / len(servers)
    xs = range(len(WORKLOAD_ORDER))
    panels = [("throughput", "ops_per_sec", "Throughput, 32 sessions x 1,000 in flight (ops/s)"),
              ("throughput", "p99_us", "p99 latency, 32 sessions x 1,000 in flight (us)"),
              ("latency", "p99_us", "p99 latency, 1 session x 1 in flight (us)")]
    colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"]
    for ax, (mode, key, title) in zip(axes, panels):
        for i, s in enumerate(servers):
            values = [(index.get((s, w, mode)) or {}).get(key) or 0 for w in WORKLOAD_ORDER]
            bars = ax.bar([x + i * width for x in xs], values, width, label=s, color=colors[i % len(colors)])
            for bar, v in zip(bars, values):
                if v:
                    label = f"{v / 1000:.0f}k" if key == "ops_per_sec" else (f"{v / 1000:.1f}ms" if v >= 1000 else f"{v:.0f}us")
                    ax.annotate(label, (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=7)
        ax.set_yscale("log")
        ax.set_xticks([x + width * (len(servers) - 1) / 2 for x in xs])
        ax.set_xticklabels(WORKLOAD_ORDER, rotation=20)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"ferrokeeper vs Apache ZooKeeper 3.8.0 (log scale; lower latency is better) - {durability}",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "bench.png"), dpi=110)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench-results")
