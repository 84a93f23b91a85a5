"""Four-letter words (PROTOCOL.md section 3): exact formats and values that move."""
import os
import re
import struct

import pytest

import zkraw
from helpers import tolerate_background_writes, wait_until

VERSION_LINE = r"Zookeeper version: 3\.8\.0-[^\n]*, built on [^\n]+\n"
JDOUBLE = r"-?\d+\.\d+(?:E-?\d+)?"
SRVR_TAIL = (r"Latency min/avg/max: \d+/" + JDOUBLE + r"/\d+\n"
             r"Received: \d+\nSent: \d+\nConnections: \d+\nOutstanding: \d+\n"
             r"Zxid: 0x[0-9a-f]+\nMode: standalone\nNode count: \d+\n")
BRIEF_CONN = r" /127\.\d+\.\d+\.\d+:\d+\[[0-9a-f]+\]\(queued=\d+,recved=\d+,sent=\d+\)\n"
FULL_CONN = (r" /127\.\d+\.\d+\.\d+:\d+\[[0-9a-f]+\]\(queued=\d+,recved=\d+,sent=\d+"
             r"(?:,sid=0x[0-9a-f]+,lop=[A-Z0-9]+,est=\d+,to=\d+(?:,lcxid=0x[0-9a-f]+)?,"
             r"lzxid=0x[0-9a-f]+,lresp=\d+,llat=\d+,minlat=\d+,avglat=\d+,maxlat=\d+)?\)\n")


def field(text, name):
    m = re.search(r"^" + re.escape(name) + r": (\S+)$", text, re.M)
    assert m, (name, text)
    return m.group(1)


def settled(fn, timeout=5.0):
    """Poll fn() until it returns the same value twice in a row 0.1 s apart (lets the
    server finish closing connections left over from the previous test)."""
    import time
    deadline = time.monotonic() + timeout
    last = fn()
    while True:
        time.sleep(0.1)
        cur = fn()
        if cur == last or time.monotonic() > deadline:
            return cur
        last = cur


def conn_settled(flw, raw_client):
    """Wait until the server's counters for raw_client's connection are up to date."""
    def ok():
        lines = [l for l in flw("cons").splitlines() if "sid=0x%x," % raw_client.session_id in l]
        m = re.search(r"\(queued=0,recved=(\d+),sent=(\d+),", lines[0]) if lines else None
        return m and m.group(1) == m.group(2)
    wait_until(ok, timeout=5, msg="connection counters settled")


def mntr(flw):
    out = flw("mntr")
    d = {}
    for line in out.splitlines():
        k, v = line.split("\t", 1)
        d[k] = v
    return d


def test_ruok(flw):
    assert flw("ruok") == "imok"


def test_isro(flw):
    assert flw("isro") == "rw"


def test_srvr_format(flw):
    out = flw("srvr")
    assert re.fullmatch(VERSION_LINE + SRVR_TAIL, out), out


def test_stat_format(flw, raw):
    out = flw("stat")
    assert re.fullmatch(VERSION_LINE + r"Clients:\n(?:" + BRIEF_CONN + r")+\n" + SRVR_TAIL, out), out
    # the raw client and the 4lw connection itself are both listed
    assert len(re.findall(BRIEF_CONN, out)) >= 2


@tolerate_background_writes
def test_srvr_values_move(flw, raw, raw_factory, base):
    a = raw_factory()
    settled(lambda: field(flw("srvr"), "Connections"))
    conn_settled(flw, a)
    s1 = flw("srvr")
    for _ in range(10):
        a.ping()
    zxid = a.create(base + "/x").zxid
    a.create(base + "/y")
    a.create(base + "/z")
    zxid = a.exists(base)[0].zxid
    conn_settled(flw, a)
    s2 = flw("srvr")
    assert int(field(s2, "Received")) >= int(field(s1, "Received")) + 14
    assert int(field(s2, "Sent")) >= int(field(s1, "Sent")) + 14
    assert int(field(s2, "Node count")) == int(field(s1, "Node count")) + 3
    assert field(s2, "Zxid") == "0x%x" % zxid
    assert int(field(s2, "Outstanding")) == 0
    conns1 = int(settled(lambda: field(flw("srvr"), "Connections")))
    b, c = raw_factory(), raw_factory()
    assert int(field(flw("srvr"), "Connections")) == conns1 + 2


def test_node_count_matches_tree(flw, kazoo_factory):
    zk = kazoo_factory(auth_data=[("digest", "super:test")])   # super: reads every node
    # node count = every znode incl. "/", /zookeeper, quota, config, plus the "" alias
    def count(path):
        kids = zk.get_children(path)
        return 1 + sum(count(path.rstrip("/") + "/" + k) for k in kids)

    total = count("/")
    assert int(field(flw("srvr"), "Node count")) == total + 1
    assert int(mntr(flw)["zk_znode_count"]) == total + 1


def test_conf(flw, zk_hostport, zk_workdir):
    out = flw("conf")
    m = re.fullmatch(
        r"clientPort=(\d+)\nsecureClientPort=-1\n"
        r"dataDir=(.+)\ndataDirSize=(\d+)\ndataLogDir=(.+)\ndataLogSize=(\d+)\n"
        r"tickTime=500\nmaxClientCnxns=60\nminSessionTimeout=1000\nmaxSessionTimeout=60000\n"
        r"clientPortListenBacklog=-1\nserverId=0\n", out)
    assert m, out
    assert int(m.group(1)) == zk_hostport[1]
    assert m.group(2) == m.group(4) and m.group(2).endswith("/version-2")
    if zk_workdir:
        assert m.group(2) == os.path.join(zk_workdir, "data", "version-2")
    assert m.group(3) == m.group(5)


def test_cons_format(flw, raw_factory):
    a = raw_factory(timeout=7000)
    a.exists("/")
    out = flw("cons")
    assert out.endswith("\n\n")
    lines = out[:-1].splitlines(keepends=True)
    for line in lines:
        assert re.fullmatch(FULL_CONN, line), line
    mine = [l for l in lines if "sid=0x%x," % a.session_id in l]
    assert len(mine) == 1, out
    assert ",lop=EXIS," in mine[0] and ",to=7000," in mine[0] and ",lcxid=0x1," in mine[0]
    # ConnectRequest + exists; the sent counter may lag the reply by a moment
    def counted():
        lines = [l for l in flw("cons").splitlines() if "sid=0x%x," % a.session_id in l]
        return "(queued=0,recved=2,sent=2," in lines[0]
    wait_until(counted, timeout=5, msg="cons counters")


def test_cons_lop_codes(flw, raw_factory, base):
    a = raw_factory()

    def lop():
        line = [l for l in flw("cons").splitlines() if "sid=0x%x," % a.session_id in l][0]
        return re.search(r",lop=([A-Z0-9]+),", line).group(1)

    a.create(base + "/n")
    assert lop() == "CREA"
    a.set_data(base + "/n", b"")
    assert lop() == "SETD"
    a.get_data(base + "/n")
    assert lop() == "GETD"
    a.get_children(base)
    assert lop() == "GETC"
    a.get_acl(base)
    assert lop() == "GETA"
    a.sync(base)
    assert lop() == "SYNC"
    a.ping()
    assert lop() == "PING"
    a.multi([zkraw.op_check(base + "/n", 1)])
    assert lop() == "MULT"
    a.delete(base + "/n")
    assert lop() == "DELE"
    a.whoami()
    assert lop() == "HOMI"
    a.add_watch(base, 0)
    assert lop() == "ADDW"


def test_crst(flw, raw_factory):
    a = raw_factory()
    a.exists("/")
    conn_settled(flw, a)
    assert flw("crst") == "Connection stats reset.\n"
    line = [l for l in flw("cons").splitlines() if "sid=0x%x," % a.session_id in l][0]
    assert "recved=0,sent=0," in line
    assert ",lop=NA," in line and ",lcxid=" not in line
    assert ",lzxid=0xffffffffffffffff,lresp=0,llat=0,minlat=0,avglat=0,maxlat=0)" in line


def test_srst(flw, raw):
    for _ in range(5):
        raw.ping()
    assert flw("srst") == "Server stats reset.\n"
    out = flw("srvr")
    assert "Latency min/avg/max: 0/0.0/0\n" in out
    assert int(field(out, "Received")) <= 3


def test_dump(flw, raw_factory, base):
    a = raw_factory()
    a.create(base + "/eph", flags=zkraw.EPHEMERAL)
    out = flw("dump")
    date = r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ \d{4}"
    assert re.fullmatch(
        r"SessionTracker dump:\nSession Sets \((\d+)\)/\((\d+)\):\n"
        r"(?:\d+ expire at " + date + r":\n(?:\t0x[0-9a-f]+\n)*)*"
        r"ephemeral nodes dump:\nSessions with Ephemerals \(\d+\):\n"
        r"(?:0x[0-9a-f]+:\n(?:\t/.*\n)+)*"
        r"Connections dump:\nConnections Sets \(\d+\)/\(\d+\):\n"
        r"(?:\d+ expire at " + date + r":\n(?:\tip: /127\.\d+\.\d+\.\d+:\d+ sessionId: 0x[0-9a-f]+\n)*)*",
        out), out
    sid = "0x%x" % a.session_id
    assert "\t%s\n" % sid in out
    assert "%s:\n\t%s/eph\n" % (sid, base) in out
    assert " sessionId: %s\n" % sid in out


def test_envi(flw):
    out = flw("envi")
    keys = ["zookeeper.version", "host.name", "java.version", "java.vendor", "java.home",
            "java.class.path", "java.library.path", "java.io.tmpdir", "java.compiler",
            "os.name", "os.arch", "os.version", "user.name", "user.home", "user.dir",
            "os.memory.free", "os.memory.max", "os.memory.total"]
    assert out.startswith("Environment:\n") and out.endswith("\n")
    lines = out.splitlines()[1:]
    assert [l.split("=", 1)[0] for l in lines] == keys
    env = dict(l.split("=", 1) for l in lines)
    assert re.fullmatch(r"3\.8\.0-.*, built on .*", env["zookeeper.version"])
    for k in ("os.memory.free", "os.memory.max", "os.memory.total"):
        assert re.fullmatch(r"\d+MB", env[k]), env[k]


MNTR_REQUIRED = """version server_state ephemerals_count num_alive_connections outstanding_requests
znode_count global_sessions local_sessions non_mtls_remote_conn_count non_mtls_local_conn_count
last_client_response_size min_client_response_size max_client_response_size packets_sent
packets_received connection_drop_probability watch_count auth_failed_count approximate_data_size
open_file_descriptor_count max_file_descriptor_count uptime outstanding_tls_handshake avg_latency
min_latency max_latency proposal_count watch_bytes throttled_ops stale_requests_dropped
large_requests_rejected insecure_admin_count connection_rejected sessionless_connections_expired
dead_watchers_queued stale_requests connection_drop_count digest_mismatches_count
dead_watchers_cleared bytes_received_count unsuccessful_handshake commit_count snap_count""".split()


def test_mntr_format(flw):
    out = flw("mntr")
    assert out.endswith("\n")
    lines = out.splitlines()
    for l in lines:
        # keys may embed a top-level znode name (…_<name>_write_per_namespace)
        assert re.fullmatch(r"zk_[^\t\n]+\t[^\t\n]+", l), l
    assert lines[0].startswith("zk_version\t3.8.0-")
    assert lines[1] == "zk_server_state\tstandalone"
    d = dict(l.split("\t", 1) for l in lines)
    assert len(d) == len(lines)             # no duplicate keys
    for k in MNTR_REQUIRED:
        assert "zk_" + k in d, k
    for k in ("znode_count", "ephemerals_count", "watch_count", "num_alive_connections",
              "global_sessions", "packets_received", "outstanding_requests"):
        assert re.fullmatch(r"\d+", d["zk_" + k]), (k, d["zk_" + k])
    assert re.fullmatch(JDOUBLE, d["zk_avg_latency"])
    for name in ("readlatency", "updatelatency"):
        for stat in ("avg", "min", "max", "cnt", "sum", "p50", "p95", "p99", "p999"):
            assert "zk_%s_%s" % (stat, name) in d


def test_mntr_values_move(flw, raw_factory, base):
    settled(lambda: (mntr(flw)["zk_num_alive_connections"], mntr(flw)["zk_global_sessions"]))
    before = mntr(flw)
    a = raw_factory()
    a.create(base + "/e1", flags=zkraw.EPHEMERAL)
    a.create(base + "/e2", flags=zkraw.EPHEMERAL)
    a.create(base + "/p")
    a.get_data(base + "/p", watch=True)     # data table
    a.get_children(base, watch=True)        # child table
    a.add_watch(base + "/q", 0)             # both tables
    after = mntr(flw)
    assert int(after["zk_znode_count"]) == int(before["zk_znode_count"]) + 3
    assert int(after["zk_ephemerals_count"]) == int(before["zk_ephemerals_count"]) + 2
    assert int(after["zk_watch_count"]) == int(before["zk_watch_count"]) + 4
    assert int(after["zk_global_sessions"]) == int(before["zk_global_sessions"]) + 1
    assert int(after["zk_num_alive_connections"]) == int(before["zk_num_alive_connections"]) + 1
    assert int(after["zk_packets_received"]) > int(before["zk_packets_received"])
    a.close_session()
    wait_until(lambda: int(mntr(flw)["zk_ephemerals_count"]) == int(before["zk_ephemerals_count"]),
               timeout=5, msg="ephemerals_count back")
    wait_until(lambda: int(mntr(flw)["zk_watch_count"]) == int(before["zk_watch_count"]),
               timeout=5, msg="watch_count back")


def test_wchs_wchc_wchp_formats(flw, raw_factory, base):
    a, b = raw_factory(), raw_factory()
    a.exists(base + "/w1", watch=True)
    a.exists(base + "/w2", watch=True)
    b.exists(base + "/w2", watch=True)
    b.get_children(base, watch=True)        # child table only: not shown
    wchs = flw("wchs")
    assert re.fullmatch(r"\d+ connections watching \d+ paths\nTotal watches:\d+\n", wchs), wchs
    wchc = flw("wchc")
    assert re.fullmatch(r"(?:0x[0-9a-f]+\n(?:\t/.*\n)+)*\n", wchc), wchc
    sa, sb = "0x%x" % a.session_id, "0x%x" % b.session_id
    blocks = dict(re.findall(r"(0x[0-9a-f]+)\n((?:\t.*\n)+)", wchc))
    assert sorted(blocks[sa].split()) == [base + "/w1", base + "/w2"]
    assert blocks[sb].split() == [base + "/w2"]
    wchp = flw("wchp")
    assert re.fullmatch(r"(?:/.*\n(?:\t0x[0-9a-f]+\n)+)*\n", wchp), wchp
    pblocks = dict(re.findall(r"(/.*)\n((?:\t0x.*\n)+)", wchp))
    assert pblocks[base + "/w1"].split() == [sa]
    assert sorted(pblocks[base + "/w2"].split()) == sorted([sa, sb])
    assert base not in pblocks


def test_wchs_counts(flw, raw_factory, base):
    def totals():
        m = re.fullmatch(r"(\d+) connections watching (\d+) paths\nTotal watches:(\d+)\n",
                         flw("wchs"))
        return tuple(map(int, m.groups()))

    c0, p0, t0 = totals()
    a, b = raw_factory(), raw_factory()
    a.exists(base + "/x", watch=True)
    a.get_data(base, watch=True)
    b.get_data(base, watch=True)
    assert totals() == (c0 + 2, p0 + 2, t0 + 3)
    a.create(base + "/x")                    # fires and removes a's /x watch
    wait_until(lambda: totals() == (c0 + 2, p0 + 1, t0 + 2), timeout=5, msg="wchs after trigger")


def _bytes_under(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def test_dirs(flw):
    out = flw("dirs")
    m = re.fullmatch(r"datadir_size: (\d+)\nlogdir_size: (\d+)\n", out)
    assert m, out
    # Both servers here keep data and logs in ZK_WORKDIR/data: the sizes are what is on disk there.
    data_dir = os.path.join(os.environ["ZK_WORKDIR"], "data")
    assert int(m.group(1)) == _bytes_under(data_dir)
    assert int(m.group(2)) == _bytes_under(data_dir)


def test_gtmk_stmk(flw):
    orig = flw("gtmk")
    assert re.fullmatch(r"\d+", orig)
    try:
        assert flw("stmk", struct.pack(">q", 1234)) == "1234"
        assert flw("gtmk") == "1234"
    finally:
        assert flw("stmk", struct.pack(">q", int(orig))) == orig
    assert flw("gtmk") == orig


def test_gtmk_default(flw):
    assert flw("gtmk") == "306"


def test_hash(flw):
    out = flw("hash")
    assert re.fullmatch(r"(?:[0-9a-f]+: \d+\n)*", out), out
    for line in out.splitlines():
        zxid = int(line.split(":")[0], 16)
        assert zxid % 128 == 0


def test_four_letter_words_leave_server_serving(flw, serving):
    for cmd in ("ruok", "srvr", "stat", "conf", "cons", "dump", "envi", "mntr", "wchs",
                "wchc", "wchp", "dirs", "isro", "gtmk", "hash"):
        assert flw(cmd) != "" or cmd == "hash"
    serving()
