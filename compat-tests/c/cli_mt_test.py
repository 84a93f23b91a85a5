#!/usr/bin/env python3
"""ferrokeeper compat suite: drive the C CLI (cli_mt) through stdin and check its output.

cli_mt executes every command asynchronously and prints results (mostly on stderr) from its
completion thread, so commands are sent one at a time and the driver waits (bounded) for the
expected output before sending the next one.

Usage: cli_mt_test.py HOST:PORT   — prints one line per check, then "N passed, N failed".
"""
import os
import re
import subprocess
import sys
import threading
import time

CLI = os.environ.get("CLI_MT", "/usr/lib/zookeeper/bin/cli_mt")
HOST = sys.argv[1]
P = "/clitest-%d-%d" % (os.getpid(), int(time.time() * 1000) % 100000000)

passed = failed = 0


def check(ok, name, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok   - " + name, flush=True)
    else:
        failed += 1
        print("FAIL - " + name + (": " + detail if detail else ""), flush=True)


class Cli:
    def __init__(self, *extra):
        self.p = subprocess.Popen(["stdbuf", "-oL", "-eL", CLI, HOST] + list(extra),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
        self.buf = ""
        self.pos = 0
        self.lock = threading.Condition()
        self.t = threading.Thread(target=self._reader, daemon=True)
        self.t.start()

    def _reader(self):
        while True:
            b = self.p.stdout.read1(65536) if hasattr(self.p.stdout, "read1") else os.read(self.p.stdout.fileno(), 65536)
            with self.lock:
                if not b:
                    self.lock.notify_all()
                    return
                self.buf += b.decode("utf-8", "replace")
                self.lock.notify_all()

    def wait(self, regex, timeout=10.0):
        """Wait for regex (DOTALL|MULTILINE) in output not consumed yet; consume up to the match."""
        rx = re.compile(regex, re.S | re.M)
        deadline = time.time() + timeout
        with self.lock:
            while True:
                m = rx.search(self.buf, self.pos)
                if m:
                    self.pos = m.end()
                    return m
                left = deadline - time.time()
                if left <= 0:
                    return None
                self.lock.wait(min(left, 0.2))

    def seen_since(self, start, regex, timeout=5.0):
        """Wait for regex anywhere in the output after offset start (does not consume)."""
        rx = re.compile(regex, re.S | re.M)
        deadline = time.time() + timeout
        with self.lock:
            while True:
                if rx.search(self.buf, start):
                    return True
                left = deadline - time.time()
                if left <= 0:
                    return False
                self.lock.wait(min(left, 0.2))

    def mark(self):
        with self.lock:
            return self.pos

    def quiet(self, regex, secs):
        """True if regex does NOT show up in unconsumed output within secs."""
        rx = re.compile(regex, re.S | re.M)
        time.sleep(secs)
        with self.lock:
            return rx.search(self.buf, self.pos) is None

    def send(self, line):
        self.p.stdin.write((line + "\n").encode())
        self.p.stdin.flush()

    timeouts = 0

    def cmd(self, line, regex, timeout=10.0):
        self.send(line)
        m = self.wait(regex, timeout)
        if m is None:
            Cli.timeouts += 1
            if Cli.timeouts >= 3:
                raise RuntimeError("3 cli_mt commands timed out; giving up (last: %r)" % line)
        else:
            Cli.timeouts = 0
        return m

    def tail(self):
        with self.lock:
            return self.buf[self.pos:][-400:]

    def close(self):
        try:
            self.p.stdin.close()
        except Exception:
            pass
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


E = re.escape
STAT = (r"\tctime = (?P<ctime>[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4})\n"
        r"\tczxid=(?P<czxid>[0-9a-f]+)\n"
        r"\tmtime=(?P<mtime>[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4})\n"
        r"\tmzxid=(?P<mzxid>[0-9a-f]+)\n"
        r"\tversion=(?P<version>[0-9a-f]+)\taversion=(?P<aversion>[0-9a-f]+)\n"
        r"\tephemeralOwner = (?P<owner>[0-9a-f]+)\n")


def get_rx(path):
    return (r"time = \d+ msec\n" + E(path) + r": rc = (?P<rc>-?\d+)\n"
            r"(?: value_len = (?P<len>-?\d+)\n(?P<data>.*?))?\nStat:\n(?:null\n|" + STAT + ")")


def create_rx(path):
    # the name line is printed by a separate write: require it when rc is 0
    return E("[" + path + "]") + r": rc = (?P<rc>0\n\tname = (?P<name>\S+)|-\d+)\n"


def create2_rx(path):
    return create_rx(path) + r"(?:null\n|" + STAT + ")"


def ls_rx(path):
    return (r"time = \d+ msec\n" + E(path) + r": rc = (?P<rc>-?\d+)\n(?P<kids>(?:\t[^\n]*\n)*)time = \d+ msec\n")


def kids(m):
    return sorted(k[1:] for k in m.group("kids").splitlines()) if m else None


def rc(m):
    return int(re.match(r"-?\d+", m.group("rc")).group(0)) if m else None


def main():
    c = Cli()
    m = c.wait(r"Watcher SESSION_EVENT state = CONNECTED_STATE\nGot a new session id: 0x([0-9a-f]+)\n", 15)
    check(m is not None, "cli_mt connects and reports a session id", c.tail())
    if not m:
        c.p.kill()
        return
    sid = m.group(1)
    m = c.cmd("myid", r"session Id = ([0-9a-f]+)\n")
    check(m is not None and m.group(1) == sid, "myid prints the session id", m.group(1) if m else c.tail())

    m = c.cmd("create " + P, create_rx(P))
    check(rc(m) == 0 and m.group("name") == P, "create prints rc 0 and the name", c.tail())
    m = c.cmd("create " + P, create_rx(P))
    check(rc(m) == -110 and m.group("name") is None, "create existing -> rc -110", c.tail())
    m = c.cmd("get " + P, get_rx(P))
    check(rc(m) == 0 and m.group("len") == "3" and m.group("data") == "new",
          "get returns the default data 'new' (value_len 3)", c.tail())
    check(m is not None and m.group("czxid") == m.group("mzxid") and m.group("version") == "0"
          and m.group("aversion") == "0" and m.group("owner") == "0" and m.group("ctime") == m.group("mtime"),
          "get stat after create: czxid==mzxid, version 0, aversion 0, owner 0, ctime==mtime")
    czxid = int(m.group("czxid"), 16) if m else 0
    # get set a watch (cli uses watch=1): the set must fire CHANGED
    mk = c.mark()
    m = c.cmd("set %s hello world" % P, E(P) + r": rc = (?P<rc>-?\d+) Stat:\n" + STAT)
    check(rc(m) == 0 and m.group("version") == "1" and int(m.group("mzxid"), 16) > czxid
          and int(m.group("czxid"), 16) == czxid, "set: rc 0, version 1, mzxid advanced", c.tail())
    check(c.seen_since(mk, r"Watcher CHANGED_EVENT state = CONNECTED_STATE for path " + E(P) + "\n"),
          "get's watch fires CHANGED_EVENT on set")
    m = c.cmd("get " + P, get_rx(P))
    check(rc(m) == 0 and m.group("len") == "11" and m.group("data") == "hello world" and m.group("version") == "1",
          "get after set returns new data and version 1", c.tail())
    m = c.cmd("aget " + P, get_rx(P))
    check(rc(m) == 0 and m.group("data") == "hello world", "aget (async prefix) works", c.tail())

    a = P + "/a"
    m = c.cmd("create2 " + a, create2_rx(a))
    check(rc(m) == 0 and m.group("name") == a and m.group("czxid") == m.group("mzxid")
          and m.group("version") == "0" and m.group("owner") == "0", "create2 prints name and stat", c.tail())
    e = P + "/e"
    m = c.cmd("create +e " + e, create_rx(e))
    check(rc(m) == 0, "create +e (ephemeral)", c.tail())
    e2 = P + "/e2"
    m = c.cmd("create2 +e " + e2, create2_rx(e2))
    check(rc(m) == 0 and m.group("owner") == sid, "create2 +e: ephemeralOwner is the session id",
          m.group("owner") if m else c.tail())
    s = P + "/s"
    m = c.cmd("create +s " + s, create_rx(s))
    check(rc(m) == 0 and m.group("name") == s + "0000000003", "create +s appends the parent's counter (0000000003)",
          m.group("name") if m else c.tail())
    es = P + "/es"
    m = c.cmd("create +es " + es, create_rx(es))
    check(rc(m) == 0 and m.group("name") == es + "0000000004", "create +es (ephemeral sequential) 0000000004",
          m.group("name") if m else c.tail())
    m = c.cmd("create " + e + "/x", create_rx(e + "/x"))
    check(rc(m) == -108, "child of ephemeral -> rc -108", c.tail())
    m = c.cmd("create %s/no/such" % P, create_rx(P + "/no/such"))
    check(rc(m) == -101, "create with missing parent -> rc -101", c.tail())

    m = c.cmd("ls " + P, ls_rx(P))
    want = sorted(["a", "e", "e2", "s0000000003", "es0000000004"])
    check(rc(m) == 0 and kids(m) == want, "ls lists all children", str(kids(m)))
    m = c.cmd("ls2 " + P, ls_rx(P) + STAT)
    check(rc(m) == 0 and kids(m) == want and m.group("version") == "1", "ls2 lists children and the parent stat",
          c.tail())
    # ls set a child watch on P
    mk = c.mark()
    m = c.cmd("create " + P + "/w", create_rx(P + "/w"))
    check(rc(m) == 0 and c.seen_since(mk, r"Watcher CHILD_EVENT state = CONNECTED_STATE for path " + E(P) + "\n"),
          "ls's child watch fires CHILD_EVENT on create", c.tail())
    m = c.cmd("ls %s/none" % P, ls_rx(P + "/none"))
    check(rc(m) == -101 and kids(m) == [], "ls missing -> rc -101", c.tail())

    zz = P + "/zz"
    m = c.cmd("wexists " + zz, r"Error -101 for " + E(zz) + "\n")
    check(m is not None, "wexists on missing node reports -101", c.tail())
    c.send("create " + zz)
    check(c.wait(r"Watcher CREATED_EVENT state = CONNECTED_STATE for path " + E(zz) + "\n", 5) is not None,
          "wexists watch fires CREATED_EVENT", c.tail())
    check(c.wait(create_rx(zz)) is not None, "create after wexists completes", c.tail())

    m = c.cmd("sync " + P, create_rx(P))
    check(rc(m) == 0 and m.group("name") == P, "sync echoes the path", c.tail())

    m = c.cmd("delete " + P, E(P) + r": rc = (?P<rc>-?\d+)\n")
    check(rc(m) == -111, "delete non-empty -> rc -111", c.tail())
    m = c.cmd("delete " + a, E(a) + r": rc = (?P<rc>-?\d+)\n")
    check(rc(m) == 0, "delete leaf -> rc 0", c.tail())
    m = c.cmd("delete " + a, E(a) + r": rc = (?P<rc>-?\d+)\n")
    check(rc(m) == -101, "delete again -> rc -101", c.tail())
    m = c.cmd("get " + a, get_rx(a))
    check(rc(m) == -101 and m.group("owner") is None, "get deleted -> rc -101, Stat null", c.tail())
    m = c.cmd("delete /zookeeper", r"/zookeeper: rc = (?P<rc>-?\d+)\n")
    check(rc(m) == -8, "delete /zookeeper -> rc -8", c.tail())

    m = c.cmd("config", get_rx("/zookeeper/config"))
    check(rc(m) == 0 and m.group("aversion") == "ffffffff" and m.group("czxid") == "0",
          "config reads /zookeeper/config (aversion -1, czxid 0)", c.tail())

    # container and TTL (server-side reaping)
    cont = P + "-cont"
    m = c.cmd("create +c " + cont, create_rx(cont))
    check(rc(m) == 0, "create +c (container)", c.tail())
    m = c.cmd("create %s/k" % cont, create_rx(cont + "/k"))
    m = c.cmd("delete %s/k" % cont, E(cont + "/k") + r": rc = (?P<rc>-?\d+)\n")
    ttl = P + "/t"
    m = c.cmd("create +t=1000 " + ttl, create_rx(ttl))
    check(rc(m) == 0, "create +t=1000 (TTL)", c.tail())
    gone = {cont: False, ttl: False}
    deadline = time.time() + 15
    while time.time() < deadline and not all(gone.values()):
        for pth in gone:
            if not gone[pth]:
                m = c.cmd("get " + pth, get_rx(pth))
                gone[pth] = rc(m) == -101
        time.sleep(0.5)
    check(gone[cont], "emptied container is reaped by the server")
    check(gone[ttl], "TTL node is reaped after its TTL")

    # quit closes the session: ephemerals disappear
    c.send("quit")
    check(c.wait(r"Quitting\.\.\.\n", 5) is not None, "quit is acknowledged")
    c.close()
    check(c.p.returncode == 0, "cli_mt exits 0 after quit", str(c.p.returncode))

    # batch mode, new session
    out = subprocess.run(["timeout", "20", CLI, HOST, "cmd:ls " + P], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT).stdout.decode("utf-8", "replace")
    m = re.search(ls_rx(P), out, re.S | re.M)
    check(rc(m) == 0 and kids(m) == sorted(["s0000000003", "w", "zz"]),
          "batch mode (cmd:ls) in a new session: ephemerals of the closed session are gone", out[-300:])

    # unknown auth scheme -> AUTH_FAILED
    c2 = Cli()
    c2.wait(r"Got a new session id", 15)
    c2.send("addauth nosuchscheme whatever")
    check(c2.wait(r"Watcher SESSION_EVENT state = AUTH_FAILED_STATE\nAuthentication failure", 10) is not None,
          "addauth with unknown scheme -> AUTH_FAILED_STATE", c2.tail())
    c2.close()

    # digest addauth is accepted and the session keeps working
    c3 = Cli()
    c3.wait(r"Got a new session id", 15)
    c3.send("addauth digest bob:secret")
    m = c3.cmd("get " + P, get_rx(P))
    check(rc(m) == 0 and m.group("data") == "hello world", "addauth digest accepted; session keeps working", c3.tail())
    # cleanup
    for pth in (P + "/s0000000003", P + "/w", zz, P):
        c3.cmd("delete " + pth, E(pth) + r": rc = -?\d+\n")
    c3.send("quit")
    c3.close()


try:
    main()
except Exception as ex:  # report, never hang
    check(False, "driver exception", repr(ex))
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
