#!/usr/bin/env python3
"""ferrokeeper compat suite: drive zkCli.sh (the Java ZooKeeperMain shell) as a user would.

Each zkCli.sh process is one ZooKeeper session fed through stdin. Without JLine the shell prints
no prompt, so after every command the driver sends a marker command (`ls /__zkmark_<n>`, a read
of a missing node) and takes everything printed before the marker's "Node does not exist" line
as the command's output. Watch notifications ("WATCHER::" / "WatchedEvent ...") are printed
asynchronously by the event thread; they are removed from command output and collected as
events. Every wait is bounded.

Usage: zkcli_test.py HOST:PORT   — one line per check, then "N passed, N failed".
"""
import os
import re
import subprocess
import sys
import threading
import time

ZKCLI = os.environ.get("ZKCLI", "/usr/share/zookeeper/bin/zkCli.sh")
HOST = sys.argv[1]
P = "/zkcli-%d-%d" % (os.getpid(), int(time.time() * 1000) % 100000000)

passed = failed = 0


def check(ok, name, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok   - " + name, flush=True)
    else:
        failed += 1
        detail = str(detail)
        print("FAIL - " + name + (": " + detail.replace("\n", "\\n")[:600] if detail else ""), flush=True)


EVENT_RX = re.compile(r"^WatchedEvent state:(\S+) type:(\S+) path:(.*)$")
NOISE_RX = re.compile(r"^(SLF4J:.*|WATCHER::|WatchedEvent .*|)$")


class ZkCli:
    count = 0
    timeouts = 0

    def __init__(self, name):
        ZkCli.count += 1
        self.name = name
        self.id = ZkCli.count
        env = dict(os.environ)
        env.setdefault("ZOO_LOG_DIR", os.environ.get("ZKCLI_LOGDIR", "/tmp"))
        self.p = subprocess.Popen([ZKCLI, "-server", HOST], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, env=env)
        self.buf = ""
        self.pos = 0
        self.nmark = 0
        self.events = []        # (state, type, path) not consumed yet
        self.ev_scan = 0        # offset up to which events were parsed
        self.cv = threading.Condition()
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        fd = self.p.stdout.fileno()
        while True:
            b = os.read(fd, 65536)
            with self.cv:
                if not b:
                    self.eof = True
                    self.cv.notify_all()
                    return
                self.buf += b.decode("utf-8", "replace")
                # parse complete lines for events
                end = self.buf.rfind("\n") + 1
                for line in self.buf[self.ev_scan:end].splitlines():
                    m = EVENT_RX.match(line)
                    if m:
                        self.events.append(m.groups())
                self.ev_scan = max(self.ev_scan, end)
                self.cv.notify_all()

    def _wait_text(self, rx, timeout):
        deadline = time.time() + timeout
        with self.cv:
            while True:
                m = rx.search(self.buf, self.pos)
                if m:
                    return m
                left = deadline - time.time()
                if left <= 0 or getattr(self, "eof", False):
                    return None
                self.cv.wait(min(left, 0.2))

    def connected(self, timeout=30):
        m = self._wait_text(re.compile(r"WatchedEvent state:SyncConnected type:None path:null\n"), timeout)
        if m:
            with self.cv:
                self.pos = m.end()
                self.events = [e for e in self.events if e != ("SyncConnected", "None", "null")]
        return m is not None

    def run(self, cmd, timeout=20):
        """Send one command; return its output lines (noise and watch events removed), or None."""
        self.nmark += 1
        mark = "/__zkmark_%d_%d" % (self.id, self.nmark)
        self.p.stdin.write(("%s\nls %s\n" % (cmd, mark)).encode())
        self.p.stdin.flush()
        m = self._wait_text(re.compile(r"^Node does not exist: " + re.escape(mark) + r"\n", re.M), timeout)
        if not m:
            ZkCli.timeouts += 1
            if ZkCli.timeouts >= 3:
                raise RuntimeError("3 zkCli commands timed out; giving up (last: %r in session %s)" % (cmd, self.name))
            return None
        ZkCli.timeouts = 0
        with self.cv:
            text = self.buf[self.pos:m.start()]
            self.pos = m.end()
        return [l for l in text.splitlines() if not NOISE_RX.match(l)]

    def wait_event(self, etype, path, timeout=10):
        deadline = time.time() + timeout
        with self.cv:
            while True:
                for i, (st, ty, pa) in enumerate(self.events):
                    if ty == etype and pa == path:
                        del self.events[i]
                        return st
                left = deadline - time.time()
                if left <= 0:
                    return None
                self.cv.wait(min(left, 0.2))

    def pending_events(self, settle=0.7):
        time.sleep(settle)
        with self.cv:
            return list(self.events)

    def clear_events(self):
        with self.cv:
            self.events = []

    def close(self, how="quit"):
        try:
            if how == "quit":
                self.p.stdin.write(b"quit\n")
                self.p.stdin.flush()
            self.p.stdin.close()
        except Exception:
            pass
        try:
            self.p.wait(15)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


STAT_KEYS = ["cZxid", "ctime", "mZxid", "mtime", "pZxid", "cversion", "dataVersion", "aclVersion",
             "ephemeralOwner", "dataLength", "numChildren"]
DATE = r"[A-Z][a-z]{2} [A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d [A-Za-z+\-:0-9]+ \d{4}"
STAT_FMT = {"cZxid": r"0x[0-9a-f]+", "mZxid": r"0x[0-9a-f]+", "pZxid": r"0x[0-9a-f]+", "ctime": DATE,
            "mtime": DATE, "cversion": r"-?\d+", "dataVersion": r"-?\d+", "aclVersion": r"-?\d+",
            "ephemeralOwner": r"0x[0-9a-f]+", "dataLength": r"\d+", "numChildren": r"\d+"}


def parse_stat(lines):
    """Find the 11-line Stat block at the end of lines. Returns (dict, lines before it) or (None, lines)."""
    if lines is None or len(lines) < 11:
        return None, lines
    block = lines[-11:]
    st = {}
    for key, line in zip(STAT_KEYS, block):
        m = re.fullmatch(re.escape(key) + r" = (" + STAT_FMT[key] + ")", line)
        if not m:
            return None, lines
        v = m.group(1)
        st[key] = int(v, 16) if v.startswith("0x") else (int(v) if re.fullmatch(r"-?\d+", v) else v)
    return st, lines[:-11]


def parse_list(lines):
    if not lines:
        return None
    m = re.fullmatch(r"\[(.*)\]", lines[0])
    if not m:
        return None
    return sorted(x for x in m.group(1).split(", ") if x)


def main():
    a = ZkCli("A")
    b = ZkCli("B")
    ok = a.connected() and b.connected()
    check(ok, "zkCli.sh connects non-interactively (SyncConnected)")
    if not ok:
        for c in (a, b):
            c.p.kill()
        return

    # ---------------------------------------------------------------- create / get / set / stat
    out = a.run("create " + P)
    check(out == ["Created " + P], "create prints 'Created <path>'", out)
    out = a.run("get " + P)
    check(out == ["null"], "get of a node created without data prints null", out)
    out = a.run("create %s/a adata" % P)
    check(out == ["Created %s/a" % P], "create with data", out)
    out = a.run("create %s/a" % P)
    check(out == ["Node already exists: %s/a" % P], "create existing -> 'Node already exists'", out)
    out = a.run("create %s/nope/x" % P)
    check(out == ["Node does not exist: %s/nope/x" % P], "create under missing parent -> 'Node does not exist'", out)
    out = a.run("get %s/a" % P)
    check(out == ["adata"], "get prints the data", out)
    out = a.run("get -s %s/a" % P)
    st, rest = parse_stat(out)
    check(st is not None and rest == ["adata"], "get -s prints data then an 11-line Stat block", out)
    if st:
        check(st["cZxid"] == st["mZxid"] == st["pZxid"] and st["cZxid"] > 0, "new node: cZxid == mZxid == pZxid", st)
        check(st["ctime"] == st["mtime"], "new node: ctime == mtime", st)
        check((st["cversion"], st["dataVersion"], st["aclVersion"], st["ephemeralOwner"], st["dataLength"],
               st["numChildren"]) == (0, 0, 0, 0, 5, 0),
              "new node: versions 0, ephemeralOwner 0x0, dataLength 5, numChildren 0", st)
    czxid_a = st["cZxid"] if st else 0
    out = a.run("get %s/missing" % P)
    check(out == ["Node does not exist: %s/missing" % P], "get missing -> 'Node does not exist'", out)
    out = a.run("set %s/a newdata" % P)
    check(out == [], "set prints nothing", out)
    out = a.run("set -s -v 1 %s/a v1" % P)
    st, rest = parse_stat(out)
    check(st is not None and rest == [] and st["dataVersion"] == 2 and st["dataLength"] == 2
          and st["mZxid"] > st["cZxid"] == czxid_a and st["pZxid"] == czxid_a,
          "set -s -v 1: Stat with dataVersion 2, mZxid advanced, cZxid/pZxid kept", out)
    out = a.run("set -v 0 %s/a stale" % P)
    check(out == ["version No is not valid : %s/a" % P], "set with stale version -> 'version No is not valid'", out)
    out = a.run("stat %s/a" % P)
    st, rest = parse_stat(out)
    check(st is not None and rest == [] and st["dataVersion"] == 2 and st["dataLength"] == 2, "stat prints the Stat", out)
    out = a.run("get %s/a" % P)
    check(out == ["v1"], "get after set shows the new data", out)
    out = a.run("stat %s/missing" % P)
    check(out == ["Node does not exist: %s/missing" % P], "stat missing -> 'Node does not exist'", out)

    # ---------------------------------------------------------------- create modes
    out = a.run("create -e %s/e edata" % P)
    check(out == ["Created %s/e" % P], "create -e", out)
    st, _ = parse_stat(a.run("stat %s/e" % P))
    check(st is not None and st["ephemeralOwner"] != 0, "ephemeral node has a non-zero ephemeralOwner", st)
    owner_a = st["ephemeralOwner"] if st else None
    out = a.run("create -s %s/s sdata" % P)
    check(out == ["Created %s/s0000000002" % P], "create -s appends 10-digit parent counter (0000000002)", out)
    out = a.run("create -s -e %s/es" % P)
    check(out == ["Created %s/es0000000003" % P], "create -s -e (ephemeral sequential)", out)
    st, _ = parse_stat(a.run("stat %s/es0000000003" % P))
    check(st is not None and st["ephemeralOwner"] == owner_a, "both ephemerals owned by the same session", st)
    out = a.run("create -c %s/c" % P)
    check(out == ["Created %s/c" % P], "create -c (container)", out)
    st, _ = parse_stat(a.run("stat %s/c" % P))
    check(st is not None and st["ephemeralOwner"] == 0, "container shows ephemeralOwner 0x0", st)
    out = a.run("create -t 60000 %s/t tdata" % P)
    check(out == ["Created %s/t" % P], "create -t 60000 (TTL)", out)
    st, _ = parse_stat(a.run("stat %s/t" % P))
    check(st is not None and st["ephemeralOwner"] == 0 and st["dataLength"] == 5, "TTL node shows ephemeralOwner 0x0", st)
    out = a.run("create -s -t 60000 %s/ts" % P)
    check(out == ["Created %s/ts0000000006" % P], "create -s -t (sequential TTL)", out)
    out = a.run("create %s/e/child" % P)
    check(out is not None and len(out) == 1 and "%s/e/child" % P in out[0] and "phemeral" in out[0],
          "child of an ephemeral is refused (NoChildrenForEphemerals)", out)
    out = a.run("create %s/" % P + "e2/")
    check(out == ["Path must not end with / character"], "path with trailing slash is rejected", out)

    # ---------------------------------------------------------------- ls variants
    kids = sorted(["a", "c", "e", "es0000000003", "s0000000002", "t", "ts0000000006"])
    out = a.run("ls " + P)
    check(parse_list(out) == kids and len(out) == 1, "ls lists the children", out)
    out = a.run("ls -s " + P)
    st, rest = parse_stat(out)
    check(st is not None and parse_list(rest) == kids, "ls -s prints children and the Stat", out)
    if st:
        check(st["numChildren"] == 7 and st["cversion"] == 7 and st["pZxid"] > st["cZxid"] and st["dataVersion"] == 0,
              "parent Stat: numChildren 7, cversion 7, pZxid > cZxid", st)
    out = a.run("create %s/a/deep x" % P)
    out = a.run("ls -R " + P)
    want = [P] + sorted(P + "/" + k for k in kids) + [P + "/a/deep"]
    check(out is not None and sorted(out) == sorted(want) and out[0] == P, "ls -R lists the whole subtree", out)
    out = a.run("ls %s/missing" % P)
    check(out == ["Node does not exist: %s/missing" % P], "ls missing -> 'Node does not exist'", out)
    out = a.run("ls /zookeeper")
    check(out == ["[config, quota]"], "ls /zookeeper -> [config, quota]", out)
    out = a.run("getAllChildrenNumber " + P)
    check(out == ["8"], "getAllChildrenNumber counts all descendants", out)
    out = a.run("getAllChildrenNumber %s/a" % P)
    check(out == ["1"], "getAllChildrenNumber of a one-child node", out)
    out = a.run("getEphemerals " + P)
    check(parse_list(out) == sorted([P + "/e", P + "/es0000000003"]), "getEphemerals <prefix> lists own ephemerals", out)
    out = a.run("getEphemerals")
    check(parse_list(out) == sorted([P + "/e", P + "/es0000000003"]), "getEphemerals (all) lists own ephemerals", out)
    out = b.run("getEphemerals")
    check(out == ["[]"], "another session has no ephemerals", out)

    # ---------------------------------------------------------------- delete
    out = a.run("delete " + P)
    check(out == ["Node not empty: " + P], "delete non-empty -> 'Node not empty'", out)
    out = a.run("delete -v 5 %s/s0000000002" % P)
    check(out == ["version No is not valid : %s/s0000000002" % P], "delete with wrong version", out)
    out = a.run("delete -v 0 %s/s0000000002" % P)
    check(out == [], "delete with right version prints nothing", out)
    out = a.run("delete %s/s0000000002" % P)
    check(out == ["Node does not exist: %s/s0000000002" % P], "delete again -> 'Node does not exist'", out)
    st, _ = parse_stat(a.run("stat " + P))
    check(st is not None and st["numChildren"] == 6 and st["cversion"] == 8,
          "after a child delete: numChildren 6, cversion 8 (creations + deletions)", st)
    out = a.run("delete /zookeeper")
    check(out == ["Arguments are not valid : /zookeeper"], "delete /zookeeper -> BadArguments", out)
    out = a.run("deleteall %s/a" % P)
    check(out == [], "deleteall removes a subtree silently", out)
    out = a.run("stat %s/a/deep" % P)
    check(out == ["Node does not exist: %s/a/deep" % P], "deleteall removed the descendants", out)

    # ---------------------------------------------------------------- ACLs and auth
    out = a.run("getAcl " + P)
    check(out == ["'world,'anyone", ": cdrwa"], "getAcl default world:anyone cdrwa", out)
    out = a.run("setAcl %s world:anyone:cdr" % P)
    check(out == [], "setAcl prints nothing", out)
    out = a.run("getAcl -s " + P)
    st, rest = parse_stat(out)
    check(st is not None and rest == ["'world,'anyone", ": cdr"] and st["aclVersion"] == 1,
          "getAcl -s shows new ACL and aclVersion 1", out)
    out = a.run("setAcl -v 0 %s world:anyone:cdrwa" % P)
    check(out == ["Insufficient permission : " + P], "setAcl without ADMIN -> NoAuth (checked before the version)", out)
    out = a.run("setAcl -v 5 %s/t world:anyone:cdrwa" % P)
    check(out == ["version No is not valid : %s/t" % P], "setAcl with stale aclVersion -> 'version No is not valid'",
          out)
    out = a.run("set %s x" % P)
    check(out == ["Insufficient permission : " + P], "set without WRITE -> 'Insufficient permission'", out)
    out = a.run("setAcl %s digest:bad:cdrwa" % P)
    check(out == ["Acl is not valid : " + P], "setAcl malformed digest -> 'Acl is not valid'", out)
    out = a.run("create %s/ip x ip:127.0.0.1:cdrwa" % P)
    out2 = a.run("getAcl %s/ip" % P)
    check(out == ["Created %s/ip" % P] and out2 == ["'ip,'127.0.0.1", ": cdrwa"], "ip ACL round trip", (out, out2))
    out = a.run("get %s/ip" % P)
    check(out == ["x"], "ip ACL matches 127.0.0.1 client", out)
    out = a.run("create %s/d x digest:bob:fyVmFCwVbTJYrznoSu1koqYEYF0=:cdrwa" % P)
    check(out == ["Created %s/d" % P], "create with explicit digest ACL", out)
    out = a.run("get %s/d" % P)
    check(out == ["Insufficient permission : %s/d" % P], "get without auth -> 'Insufficient permission'", out)
    out = a.run("whoami")
    check(out == ["Auth scheme: User", "ip: 127.0.0.1"], "whoami before addauth: ip only", out)
    out = a.run("addauth digest bob:secret")
    check(out == [], "addauth digest prints nothing", out)
    out = a.run("whoami")
    check(out is not None and out[0] == "Auth scheme: User" and sorted(out[1:]) == ["digest: bob", "ip: 127.0.0.1"],
          "whoami after addauth lists digest: bob and ip", out)
    out = a.run("get %s/d" % P)
    check(out == ["x"], "get after addauth succeeds", out)
    out = a.run("create %s/au y auth::cdrwa" % P)
    out2 = a.run("getAcl %s/au" % P)
    check(out == ["Created %s/au" % P] and out2 == ["'digest,'bob:fyVmFCwVbTJYrznoSu1koqYEYF0=", ": cdrwa"],
          "auth:: ACL expands to the digest id", (out, out2))
    out = b.run("getAcl %s/au" % P)
    check(out == ["Insufficient permission : %s/au" % P], "getAcl without READ/ADMIN -> 'Insufficient permission'",
          out)
    out = b.run("addauth digest super:test")
    out = b.run("get %s/au" % P)
    check(out == ["y"], "super user (super:test) bypasses ACLs", out)
    out = a.run("set /zookeeper/config x")
    check(out == ["Insufficient permission : /zookeeper/config"], "set /zookeeper/config -> NoAuth", out)

    # ---------------------------------------------------------------- misc
    out = a.run("sync " + P)
    check(out == ["Sync is OK"], "sync prints 'Sync is OK'", out)
    out = a.run("config")
    check(out == [], "config in standalone prints the (empty) config", out)
    out = a.run("config -s")
    st, rest = parse_stat(out)
    check(st is not None and st["aclVersion"] == -1 and st["cZxid"] == 0 and st["dataVersion"] == 0,
          "config -s Stat: aclVersion -1, cZxid 0x0", out)
    out = a.run("version")
    check(out is not None and len(out) == 1 and re.match(r"ZooKeeper CLI version: 3\.8\.\d", out[0]),
          "version prints the CLI version", out)

    # ---------------------------------------------------------------- watches
    w = P + "/w"
    a.clear_events()
    out = a.run("addWatch -m PERSISTENT " + w)
    check(out == [], "addWatch -m PERSISTENT on a missing node", out)
    b.run("create %s wdata" % w)
    check(a.wait_event("NodeCreated", w) == "SyncConnected", "persistent watch: NodeCreated")
    b.run("set %s d1" % w)
    check(a.wait_event("NodeDataChanged", w) is not None, "persistent watch: NodeDataChanged")
    b.run("set %s d2" % w)
    check(a.wait_event("NodeDataChanged", w) is not None, "persistent watch fires again (not one-shot)")
    b.run("create %s/k" % w)
    check(a.wait_event("NodeChildrenChanged", w) is not None, "persistent watch: NodeChildrenChanged")
    b.run("delete %s/k" % w)
    check(a.wait_event("NodeChildrenChanged", w) is not None, "persistent watch: NodeChildrenChanged on child delete")
    b.run("delete " + w)
    check(a.wait_event("NodeDeleted", w) is not None, "persistent watch: NodeDeleted")
    ev = a.pending_events()
    check(not any(p.startswith(w + "/") for _, _, p in ev), "persistent (non-recursive) watch ignores child paths", ev)
    out = a.run("removewatches " + w)
    check(out == [] and a.wait_event("PersistentWatchRemoved", w) is not None,
          "removewatches on a persistent watch -> PersistentWatchRemoved", out)
    b.run("create " + w)
    check(a.pending_events() == [], "removed persistent watch no longer fires", a.events)

    r = P + "/r"
    a.clear_events()
    # explicit mode: zkCli's addWatch remembers the last -m value across invocations (client quirk)
    out = a.run("addWatch -m PERSISTENT_RECURSIVE " + r)
    check(out == [], "addWatch -m PERSISTENT_RECURSIVE", out)
    b.run("create " + r)
    b.run("create %s/x" % r)
    b.run("create %s/x/y" % r)
    b.run("set %s/x/y v" % r)
    b.run("delete %s/x/y" % r)
    check(a.wait_event("NodeCreated", r) is not None, "recursive watch: NodeCreated on the watched path")
    check(a.wait_event("NodeCreated", r + "/x") is not None, "recursive watch: NodeCreated of a child")
    check(a.wait_event("NodeCreated", r + "/x/y") is not None, "recursive watch: NodeCreated of a grandchild")
    check(a.wait_event("NodeDataChanged", r + "/x/y") is not None, "recursive watch: NodeDataChanged of a grandchild")
    check(a.wait_event("NodeDeleted", r + "/x/y") is not None, "recursive watch: NodeDeleted of a grandchild")
    ev = a.pending_events()
    check(not any(t == "NodeChildrenChanged" for _, t, _ in ev), "recursive watch never reports NodeChildrenChanged",
          ev)
    a.run("removewatches " + r)
    a.clear_events()

    g = P + "/g"
    b.run("create %s g0" % g)
    out = a.run("get -w " + g)
    check(out == ["g0"], "get -w prints the data", out)
    b.run("set %s g1" % g)
    b.run("set %s g2" % g)
    check(a.wait_event("NodeDataChanged", g) is not None, "get -w watch fires NodeDataChanged")
    check(not any(p == g for _, _, p in a.pending_events()), "get -w watch is one-shot", a.events)
    out = a.run("ls -w " + g)
    check(out == ["[]"], "ls -w on a leaf prints []", out)
    b.run("create %s/c1" % g)
    check(a.wait_event("NodeChildrenChanged", g) is not None, "ls -w watch fires NodeChildrenChanged")
    nx = P + "/nx"
    out = a.run("stat -w " + nx)
    check(out == ["Node does not exist: " + nx], "stat -w on a missing node", out)
    b.run("create " + nx)
    check(a.wait_event("NodeCreated", nx) is not None, "stat -w (exists) watch fires NodeCreated")
    a.run("get -w " + g)
    out = a.run("removewatches %s -d" % g)
    check(out == [] and a.wait_event("DataWatchRemoved", g) is not None, "removewatches -d -> DataWatchRemoved", out)
    b.run("set %s g3" % g)
    check(not any(p == g for _, _, p in a.pending_events()), "removed data watch does not fire", a.events)
    out = a.run("removewatches %s -d" % g)
    check(out == ["KeeperErrorCode = No such watcher for " + g], "removewatches without a watch -> No such watcher",
          out)
    a.run("ls -w " + g)
    out = a.run("removewatches %s -c" % g)
    check(out == [] and a.wait_event("ChildWatchRemoved", g) is not None, "removewatches -c -> ChildWatchRemoved", out)

    # ---------------------------------------------------------------- server-side reaping (TTL, container)
    b.run("create -t 500 %s/ttlshort x" % P)
    b.run("create -c %s/cont" % P)
    b.run("create %s/cont/k" % P)
    b.run("delete %s/cont/k" % P)
    gone = {P + "/ttlshort": False, P + "/cont": False}
    deadline = time.time() + 15
    while time.time() < deadline and not all(gone.values()):
        for pth in gone:
            if not gone[pth]:
                gone[pth] = b.run("stat " + pth) == ["Node does not exist: " + pth]
        time.sleep(0.5)
    check(gone[P + "/ttlshort"], "TTL node (500 ms) is reaped by the server")
    check(gone[P + "/cont"], "emptied container is reaped by the server")
    out = b.run("stat %s/c" % P)
    check(parse_stat(out)[0] is not None, "never-used container is kept", out)

    # ---------------------------------------------------------------- session end removes ephemerals
    b.clear_events()
    b.run("stat -w %s/e" % P)
    a.close("quit")
    check(a.p.returncode is not None, "zkCli.sh exits on quit", a.p.returncode)
    check(b.wait_event("NodeDeleted", P + "/e") is not None, "closing session A deletes its ephemeral (event seen by B)")
    out = b.run("ls " + P)
    lst = parse_list(out)
    check(lst is not None and "e" not in lst and "es0000000003" not in lst and "t" in lst,
          "ephemerals gone after session close, persistent nodes kept", out)

    # ---------------------------------------------------------------- cleanup (B is super)
    out = b.run("deleteall " + P)
    check(out == [], "deleteall of the test tree", out)
    out = b.run("stat " + P)
    check(out == ["Node does not exist: " + P], "test tree removed", out)
    b.close("quit")


try:
    main()
except Exception as ex:
    import traceback
    traceback.print_exc()
    check(False, "driver exception", repr(ex))
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
