"""AdminServer, /metrics and mntr checks, run against the real ZooKeeper 3.8.0 and ferrokeeper.

Expected shapes are written down here from the real server; a pass against ZooKeeper proves them
right, a pass against ferrokeeper proves ferrokeeper matches. /metrics exists only on ferrokeeper
in this setup (Debian's ZooKeeper lacks the Prometheus provider jar); its names are checked against
the real server's mntr keys (mntr_keys_zookeeper_3.8.0.txt, itself re-checked against ZooKeeper on
each ZooKeeper run) and against the names the community Grafana dashboard queries.

Env: ZK_CONNECT, ZK_PORT, ZK_TARGET, ZK_ADMIN_PORT, ZK_METRICS_PORT (0 = no /metrics expected).
Prints one line per check and "N passed, N failed".
"""
import json
import os
import re
import socket
import sys
import time
import traceback
import urllib.error
import urllib.request

from kazoo.client import KazooClient

HERE = os.path.dirname(os.path.abspath(__file__))
CONNECT = os.environ["ZK_CONNECT"]
HOST, PORT = CONNECT.rsplit(":", 1)
TARGET = os.environ.get("ZK_TARGET", "?")
ADMIN = "http://127.0.0.1:%s" % os.environ["ZK_ADMIN_PORT"]
METRICS_PORT = int(os.environ.get("ZK_METRICS_PORT", "0"))
METRICS = "http://127.0.0.1:%d/metrics" % METRICS_PORT

# Primary names and aliases (Commands.java in 3.8.0), as the real server lists them.
COMMANDS = {
    "configuration": ["conf", "config"], "connection_stat_reset": ["crst"], "connections": ["cons"],
    "dirs": [], "dump": [], "environment": ["env", "envi"], "get_trace_mask": ["gtmk"], "hash": [],
    "initial_configuration": ["icfg"], "is_read_only": ["isro"], "last_snapshot": ["lsnp"],
    "leader": ["lead"], "monitor": ["mntr"], "observer_connection_stat_reset": ["orst"],
    "observers": ["obsr"], "ruok": [], "server_stats": ["srvr"], "set_trace_mask": ["stmk"],
    "stat_reset": ["srst"], "stats": ["stat"], "system_properties": ["sysp"], "voting_view": [],
    "watch_summary": ["wchs"], "watches": ["wchc"], "watches_by_path": ["wchp"], "zabstate": [],
}
SERVER_STATS_KEYS = ["packets_sent", "packets_received", "fsync_threshold_exceed_count",
                     "client_response_stats", "data_dir_size", "log_dir_size", "provider_null",
                     "server_state", "last_processed_zxid", "outstanding_requests", "avg_latency",
                     "max_latency", "min_latency", "num_alive_client_connections", "uptime",
                     "auth_failed_count", "non_mtlsremote_conn_count", "non_mtlslocal_conn_count"]
SRVR_KEYS = ["version", "read_only", "server_stats", "client_response", "node_count"]
# Keys in order, before "command" and "error" (standalone, observed on the real server).
SHAPES = {
    "configuration": ["client_port", "data_dir", "data_log_dir", "tick_time", "max_client_cnxns",
                      "min_session_timeout", "max_session_timeout", "server_id",
                      "client_port_listen_backlog"],
    "connection_stat_reset": [], "connections": ["connections", "secure_connections"],
    "dirs": ["datadir_size", "logdir_size"],
    "dump": ["expiry_time_to_session_ids", "session_id_to_ephemeral_paths"],
    "environment": ["zookeeper.version", "host.name", "java.version", "java.vendor", "java.home",
                    "java.class.path", "java.library.path", "java.io.tmpdir", "java.compiler",
                    "os.name", "os.arch", "os.version", "user.name", "user.home", "user.dir",
                    "os.memory.free", "os.memory.max", "os.memory.total"],
    "get_trace_mask": ["tracemask"], "hash": ["digests"],
    "initial_configuration": ["initial_configuration"], "is_read_only": ["read_only"],
    "last_snapshot": ["zxid", "timestamp"], "observer_connection_stat_reset": [],
    "observers": ["synced_observers", "observers"], "ruok": [], "server_stats": SRVR_KEYS,
    "stat_reset": [], "stats": SRVR_KEYS + ["connections", "secure_connections"],
    "voting_view": ["current_config"],
    "watch_summary": ["num_connections", "num_paths", "num_total_watches"],
    "watches": ["session_id_to_watched_paths"], "watches_by_path": ["path_to_session_ids"],
    "zabstate": ["voting", "zabstate"],
}
CONN_FULL_KEYS = ["remote_socket_address", "interest_ops", "outstanding_requests", "packets_received",
                  "packets_sent", "session_id", "last_operation", "established", "session_timeout",
                  "last_cxid", "last_zxid", "last_response_time", "last_latency", "min_latency",
                  "avg_latency", "max_latency"]
CONN_BRIEF_KEYS = CONN_FULL_KEYS[:5]
SUMMARY_STATS = ("avg", "min", "max", "cnt", "sum", "p50", "p95", "p99", "p999")

passed = 0
failed = 0


def check(name):
    def deco(fn):
        global passed, failed
        try:
            result = fn()
            passed += 1
            print("ok %s%s" % (name, "" if result is None else " - " + result))
        except Exception:  # noqa: BLE001 - report every failure and go on
            failed += 1
            print("FAIL %s\n%s" % (name, traceback.format_exc()))
        sys.stdout.flush()
        return fn
    return deco


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read().decode()


def command(name):
    status, ctype, body = get("%s/commands/%s" % (ADMIN, name))
    assert status == 200, status
    assert ctype.startswith("application/json"), ctype
    return body, json.loads(body, object_pairs_hook=lambda pairs: pairs)


def cmd(name):
    return json.loads(command(name)[0])


def four(word):
    with socket.create_connection((HOST, int(PORT)), timeout=10) as s:
        s.sendall(word.encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks).decode()


def mntr():
    return dict(l.split("\t", 1) for l in four("mntr").splitlines())


def reference_mntr_keys():
    with open(os.path.join(HERE, "mntr_keys_zookeeper_3.8.0.txt")) as f:
        return {l.strip() for l in f if l.strip() and not l.startswith("#")}


def base_names(mntr_keys):
    """Names the Prometheus provider exports for these mntr keys (PROTOCOL.md §7.2)."""
    names = set()
    for key in mntr_keys:
        k = key[len("zk_"):]
        if k in ("version", "server_state"):
            continue
        m = re.fullmatch(r"(avg|min|max|cnt|sum|p50|p95|p99|p999)_(.+)", k)
        if m and ("zk_avg_" + m.group(2)) in mntr_keys and ("zk_cnt_" + m.group(2)) in mntr_keys:
            names.add(m.group(2))
        else:
            names.add(k)
    return names


def scrape():
    status, ctype, body = get(METRICS)
    assert status == 200
    assert ctype.startswith("text/plain; version=0.0.4"), ctype
    types, samples = {}, {}
    for line in body.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
        elif line.startswith("# HELP "):
            continue
        else:
            m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_]+="[^"]*",)+\})? (\S+)', line)
            assert m, "not simpleclient text format: %r" % line
            float(m.group(3))  # Prometheus parses Java doubles (6.7E7, NaN)
            samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return types, samples, body


print("# admin suite against %s (admin %s, metrics %s)" % (TARGET, ADMIN, METRICS if METRICS_PORT else "none"))


@check("/commands lists every primary name, sorted, as links")
def _():
    status, ctype, body = get(ADMIN + "/commands")
    assert status == 200
    names = re.findall(r'<a href="/commands/([a-z_]+)">\1</a>\n<br/>\n', body)
    assert names == sorted(COMMANDS), names
    assert "".join('<a href="/commands/%s">%s</a>\n<br/>\n' % (n, n) for n in names) == body


@check("every command and alias answers with ZooKeeper's keys in ZooKeeper's order")
def _():
    for primary, aliases in COMMANDS.items():
        for name in [primary] + aliases:
            body, pairs = command(name)
            keys = [k for k, _ in pairs]
            d = dict(pairs)
            assert d["command"] == primary, (name, d["command"])
            if primary == "leader":
                assert keys == ["error", "command"] and d["error"] == "server is not initialized", pairs
                continue
            if primary == "set_trace_mask":
                assert keys == ["error", "command"], pairs
                assert d["error"] == "setTraceMask requires long traceMask argument", d
                continue
            assert keys[-2:] == ["command", "error"] and d["error"] is None, (name, keys[-2:])
            if primary in ("monitor", "system_properties"):
                continue
            assert keys[:-2] == SHAPES[primary], (name, keys[:-2])


@check("JSON is laid out as Jackson's default pretty printer writes it")
def _():
    body, _ = command("srvr")
    assert body.startswith('{\n  "version" : "3.8.0-'), body[:40]
    assert '\n  "server_stats" : {\n    "packets_sent" : ' in body
    assert '    "client_response_stats" : {\n      "last_buffer_size" : ' in body
    assert body.endswith('\n  "command" : "server_stats",\n  "error" : null\n}'), body[-60:]
    body, _ = command("hash")
    assert '"digests" : [ ],' in body, body


@check("server_stats nests ZooKeeper's keys with JSON types")
def _():
    d = cmd("srvr")
    assert [k for k in d["server_stats"]] == SERVER_STATS_KEYS, list(d["server_stats"])
    ss = d["server_stats"]
    assert ss["server_state"] == "standalone" and ss["provider_null"] is False
    assert isinstance(ss["avg_latency"], float) and isinstance(ss["max_latency"], int)
    assert list(ss["client_response_stats"]) == ["last_buffer_size", "min_buffer_size", "max_buffer_size"]
    assert d["read_only"] is False and isinstance(d["node_count"], int)


@check("unknown commands, bad arguments and trace masks")
def _():
    _, pairs = command("nosuch")
    assert pairs == [("command", "nosuch"), ("error", "Unknown command: nosuch")], pairs
    _, pairs = command("stmk?traceMask=abc")
    assert dict(pairs)["error"] == "setTraceMask requires long traceMask argument, got abc", pairs
    assert cmd("stmk?traceMask=400")["tracemask"] == 400
    assert cmd("gtmk")["tracemask"] == 400
    assert four("gtmk") == "400"
    assert cmd("stmk?traceMask=306")["tracemask"] == 306
    try:
        get(ADMIN + "/nosuchpath")
        raise AssertionError("expected 404")
    except urllib.error.HTTPError as e:
        assert e.code == 404, e.code


@check("standalone quorum views: zabstate, voting_view, observers, is_read_only")
def _():
    assert cmd("zabstate") == {"voting": False, "zabstate": "", "command": "zabstate", "error": None}
    assert cmd("voting_view")["current_config"] == {}
    assert cmd("observers")["synced_observers"] == 0
    assert cmd("isro")["read_only"] is False
    assert cmd("configuration")["server_id"] == 0
    assert cmd("configuration")["client_port"] == int(PORT)
    assert "clientPort=%s" % PORT in cmd("icfg")["initial_configuration"]


@check("last_snapshot names the newest snapshot file: zxid in hex, file mtime in seconds")
def _():
    # Both servers snapshot at start-up (ZooKeeperServer.loadData); ferrokeeper does it in the
    # background, so wait for the file to be there.
    data = os.path.join(os.environ["ZK_WORKDIR"], "data")
    snaps_dir = os.path.join(data, "version-2") if TARGET == "zookeeper" else os.path.join(data, "ferrokeeper", "snapshots")
    deadline = time.time() + 20
    while True:
        names = [n for n in os.listdir(snaps_dir) if n.startswith("snapshot.") and not n.endswith(".tmp")] \
            if os.path.isdir(snaps_dir) else []
        d = cmd("lsnp")
        assert list(d) == ["zxid", "timestamp", "command", "error"], list(d)
        assert isinstance(d["zxid"], str) and isinstance(d["timestamp"], int), d
        if names:
            newest = max(names, key=lambda n: int(n.split(".", 1)[1], 16))
            mtime = int(os.path.getmtime(os.path.join(snaps_dir, newest)))
            if d["zxid"] == newest.split(".", 1)[1] and abs(d["timestamp"] - mtime) <= 1:
                return "%s, %d" % (newest, d["timestamp"])
        assert time.time() < deadline, (d, names)
        time.sleep(0.2)


zk = KazooClient(hosts=CONNECT)
zk.start()
session = zk.client_id[0]
root = "/admin-suite-%d" % os.getpid()


@check("values move under load: connections, dump, watches, node counts, packets")
def _():
    before = cmd("srvr")
    zk.ensure_path(root + "/x")
    eph = zk.create(root + "/eph", b"x" * 10, ephemeral=True, sequence=True)
    zk.get(root, watch=lambda e: None)
    zk.exists(root + "/x", watch=lambda e: None)
    for _ in range(5):
        zk.get(root + "/x")
    after = cmd("srvr")
    assert after["node_count"] == before["node_count"] + 3, (before["node_count"], after["node_count"])
    assert after["server_stats"]["packets_received"] > before["server_stats"]["packets_received"]
    assert after["server_stats"]["last_processed_zxid"] > before["server_stats"]["last_processed_zxid"]
    conns = [c for c in cmd("cons")["connections"] if c.get("session_id") == session]
    assert len(conns) == 1, cmd("cons")
    assert list(conns[0]) == CONN_FULL_KEYS, list(conns[0])
    assert not conns[0]["remote_socket_address"].startswith("/")
    assert conns[0]["last_operation"] in ("GETD", "EXIS", "PING")
    stat_conns = cmd("stat")["connections"]
    assert stat_conns and all(list(c) == CONN_BRIEF_KEYS for c in stat_conns), stat_conns
    dump = cmd("dump")
    assert any(session in ids for ids in dump["expiry_time_to_session_ids"].values()), dump
    assert dump["session_id_to_ephemeral_paths"][str(session)] == [eph]
    watches = cmd("wchc")["session_id_to_watched_paths"][str(session)]
    assert sorted(watches) == [root, root + "/x"], watches
    by_path = cmd("wchp")["path_to_session_ids"]
    assert by_path[root] == [session] and by_path[root + "/x"] == [session]
    summary = cmd("wchs")
    assert summary["num_paths"] >= 2 and summary["num_total_watches"] >= 2 and summary["num_connections"] >= 1


@check("fsynctime counts the log syncs: it moves with writes")
def _():
    # Default provider: zk_cnt_fsynctime etc.; the Prometheus provider: zk_fsynctime_count etc.
    prometheus = "zk_cnt_fsynctime" not in mntr()
    cnt = lambda m: int(float(m["zk_fsynctime_count" if prometheus else "zk_cnt_fsynctime"]))
    total = lambda m: float(m["zk_fsynctime_sum" if prometheus else "zk_sum_fsynctime"])
    before = mntr()
    for i in range(5):
        zk.create(root + "/fsync%d" % i, b"z")
    after = mntr()
    assert cnt(after) >= cnt(before) + 1, (cnt(before), cnt(after))
    assert total(after) >= total(before)
    if not prometheus:
        assert int(after["zk_max_fsynctime"]) >= int(after["zk_min_fsynctime"]) >= 0
    return "%d -> %d syncs" % (cnt(before), cnt(after))


@check("monitor has the mntr keys without zk_ and the same values")
def _():
    d = cmd("mntr")
    del d["command"], d["error"]
    m = mntr()
    assert set("zk_" + k for k in d) == set(m), sorted(set(m) ^ set("zk_" + k for k in d))[:10]
    assert d["server_state"] == "standalone" and d["version"].startswith("3.8.0-")
    assert float(d["znode_count"]) == float(m["zk_znode_count"])


@check("mntr keys match the real ZooKeeper's (reference file re-checked on ZooKeeper)")
def _():
    ref = reference_mntr_keys()
    keys = {k for k in mntr() if "per_namespace" not in k}
    if METRICS_PORT:
        # Prometheus provider: mntr prints the provider's sample names (PrometheusMetricsProvider.dump).
        names = {re.sub(r"\{.*\}$", "", k[3:]) for k in keys if not k.startswith("zk_process_")}
        names = {re.sub(r"_(count|sum)$", "", n) if re.sub(r"_(count|sum)$", "", n) in names else n for n in names}
        expected = base_names(ref)
        assert names - {"version", "server_state"} == expected, sorted(names ^ (expected | {"version", "server_state"}))[:20]
        assert 'zk_readlatency{quantile="0.99"}' in keys and "zk_readlatency_count" in keys
        return "Prometheus spelling, %d names" % len(names)
    assert keys == ref, ("missing", sorted(ref - keys)[:10], "extra", sorted(keys - ref)[:10])
    return "%d keys" % len(keys)


if METRICS_PORT:
    @check("/metrics exports every mntr metric under the provider's names and types")
    def _():
        types, samples, body = scrape()
        expected = base_names(reference_mntr_keys())
        zk_names = {n for n in types if not n.startswith("process_")}
        assert zk_names >= expected, sorted(expected - zk_names)
        extra = zk_names - expected
        assert extra <= {"ack_latency", "learner_handler_qp_size", "learner_handler_qp_time_ms",
                         "read_per_namespace", "write_per_namespace"}, extra
        assert types["znode_count"] == "gauge" and types["packets_received"] == "gauge"
        assert types["commit_count"] == "counter" and types["readlatency"] == "summary"
        assert 'readlatency{quantile="0.5",}' in samples and 'readlatency{quantile="0.99",}' in samples
        assert 'fsynctime{quantile="0.5",}' in samples and 'fsynctime{quantile="0.9",}' not in samples
        assert "commit_count_total" not in samples and not any(n.startswith("jvm_") for n in types if n != "jvm_pause_time_ms")
        for n in ("process_cpu_seconds_total", "process_open_fds", "process_resident_memory_bytes"):
            assert n in types, n
        assert "# HELP znode_count znode_count\n# TYPE znode_count gauge\nznode_count " in body
        return "%d families" % len(types)

    @check("/metrics covers the community Grafana dashboard (10465) queries")
    def _():
        types, samples, _ = scrape()
        missing, quorum_only, jvm = [], [], []
        for line in open(os.path.join(HERE, "dashboard_10465_metrics.txt")):
            if not line.strip() or line.startswith("#"):
                continue
            name, role = line.split()
            family = re.sub(r"_(sum|count)$", "", name)
            present = name in types or name in samples or (family in types and types[family] == "summary")
            if role == "quorum":
                quorum_only.append(name)
                continue
            if role == "jvm":
                jvm.append(name)
                assert not present
                continue
            if not present:
                missing.append(name)
        assert not missing, missing
        return "quorum-only (absent on standalone ZooKeeper too): %s; JVM panels: %s" % (
            ",".join(quorum_only), ",".join(jvm))

    @check("the repo's Grafana dashboard and alert rules query only exported names")
    def _():
        types, samples, _ = scrape()
        repo = os.path.join(HERE, "..", "..", "docker")
        exprs = [t["expr"] for p in json.load(open(os.path.join(repo, "grafana", "ferrokeeper-zookeeper.json")))["panels"]
                 for t in p.get("targets", [])]
        exprs += re.findall(r"expr: (.+)", open(os.path.join(repo, "prometheus", "ferrokeeper-alerts.yml")).read())
        quorum_only = {"quorum_size", "synced_followers", "learners", "synced_observers"}
        names = set()
        for e in exprs:
            e = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\$\w+|\"[^\"]*\"", " ", e)
            names |= {n for n in re.findall(r"\b([a-z_][a-z0-9_]*)\b(?!\s*\()", e)
                      if n not in ("or", "and", "by", "up")}
        missing = {n for n in names - quorum_only
                   if n not in types and n not in samples and re.sub(r"_(sum|count)$", "", n) not in types}
        assert not missing, missing
        return "%d names" % len(names)

    @check("/metrics values move under load")
    def _():
        _, before, _ = scrape()
        for i in range(4):
            zk.create(root + "/m%d" % i, b"y" * 100)
        for _ in range(10):
            zk.get(root)
        _, after, _ = scrape()
        assert after["znode_count"] == before["znode_count"] + 4
        assert after["readlatency_count"] >= before["readlatency_count"] + 10
        assert after["updatelatency_count"] >= before["updatelatency_count"] + 4
        assert after["fsynctime_count"] > before["fsynctime_count"]
        assert after['fsynctime{quantile="0.5",}'] == after['fsynctime{quantile="0.5",}']  # a number, not NaN
        assert after["packets_received"] > before["packets_received"]
        assert after["bytes_received_count"] > before["bytes_received_count"]
        assert after["approximate_data_size"] >= before["approximate_data_size"] + 400
        assert after["global_sessions"] >= 1 and after["watch_count"] >= 1
        assert after["process_resident_memory_bytes"] > 0
else:
    @check("/metrics")
    def _():
        return "skipped: Debian's ZooKeeper ships without the Prometheus provider jar"


@check("per-namespace read and write summaries count ZooKeeper's bytes")
def _():
    # A top-level namespace nothing else in this run touches (DataTree.updateRead/WriteStat).
    ns = "nsprobe%d" % os.getpid()
    top, child = "/" + ns, "/" + ns + "/child"
    zk.create(top, b"x" * 10)
    zk.create(child, b"")
    zk.set(child, b"abcd")
    zk.get(top)
    zk.get_children(top)
    zk.exists(child)
    zk.exists(top + "/missing")  # a failed read counts nothing
    zk.delete(child)
    writes = [len(top) + 10, len(child), len(child) + 4, len(child)]
    reads = [len(top) + 10 + 68, len(top) + len("child") + 68, len(child) + 68]
    m = mntr()

    def summary(name):
        if METRICS_PORT:  # Prometheus provider spelling (PrometheusMetricsProvider.dump)
            return (int(float(m['zk_%s_count{key="%s"}' % (name, ns)])),
                    int(float(m['zk_%s_sum{key="%s"}' % (name, ns)])))
        return int(m["zk_cnt_%s_%s" % (ns, name)]), int(m["zk_sum_%s_%s" % (ns, name)])

    assert summary("write_per_namespace") == (len(writes), sum(writes)), summary("write_per_namespace")
    assert summary("read_per_namespace") == (len(reads), sum(reads)), summary("read_per_namespace")
    if METRICS_PORT:
        _, samples, _ = scrape()
        assert samples['write_per_namespace_count{key="%s",}' % ns] == len(writes)
        assert samples['read_per_namespace_sum{key="%s",}' % ns] == sum(reads)
    zk.delete(top)
    return "writes %s, reads %s" % (writes, reads)


@check("srst and crst reset what they reset")
def _():
    zk.get(root)
    assert cmd("srst")["error"] is None
    assert cmd("srvr")["server_stats"]["packets_received"] <= 2
    assert cmd("crst")["error"] is None
    conns = [c for c in cmd("cons")["connections"] if c.get("session_id") == session]
    assert conns and conns[0]["packets_received"] <= 1, conns


zk.delete(root, recursive=True)
zk.stop()
zk.close()
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
