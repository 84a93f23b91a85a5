"""Crash safety: every write that got a reply survives SIGKILL; restarts bring back the tree,
sessions, ephemerals and sequence numbers. Runs against either server (ZK_TARGET)."""
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NodeExistsError
from kazoo.handlers.threading import KazooTimeoutError

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.path.join(HERE, "..", "lib", "servers.sh")
TARGET = os.environ["ZK_TARGET"]
# Clear of the suite server's own ports (client, admin +100, metrics +200).
PORT = int(os.environ["ZK_PORT"]) + 300
WORK = os.path.join(os.environ["ZK_WORKDIR"], "durability")
ROUNDS = int(os.environ.get("CRASH_ROUNDS", "12"))
RNG = random.Random(int(os.environ.get("CRASH_SEED", str(int(time.time())))))
results = {"passed": 0, "failed": 0}
logging.basicConfig(level=logging.CRITICAL)


def check(name, ok, detail=""):
    results["passed" if ok else "failed"] += 1
    print(("ok   - " if ok else "FAIL - ") + name + ("" if ok else ": " + str(detail)), flush=True)
    return ok


def bash(cmd):
    return subprocess.run(["bash", "-c", f"source {LIB}; {cmd}"], capture_output=True, text=True)


def start(fresh=False):
    """Starts the server on WORK, keeping the data dir unless fresh. Returns the pid."""
    if fresh:
        r = bash(f"start_server {TARGET} {PORT} {WORK}")
    else:
        # start_server wipes its work dir; restart_server keeps the data.
        r = bash(f"restart_server {TARGET} {PORT} {WORK}")
    if r.returncode != 0:
        print(r.stdout, r.stderr, flush=True)
        raise SystemExit(f"could not start {TARGET}")
    return int(r.stdout.strip().splitlines()[-1])


def kill9(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # Reap if it is our grandchild's zombie: nothing to do, just wait.
        time.sleep(0.05)


def client(timeout=10.0):
    zk = KazooClient(hosts=f"127.0.0.1:{PORT}", timeout=timeout, connection_retry={"max_tries": -1, "delay": 0.05, "max_delay": 0.2})
    zk.start(timeout=30)
    return zk


def writer(zk, k, rnd, stop, acked, lock):
    """Creates nodes, bumps a counter with setData, and runs two-node multis; records what was
    acknowledged. The main thread stops `zk` after the kill, which fails any call in flight."""
    # Counter values only grow, across rounds too, so "survived" means "not below the last ack".
    try:
        while not stop.is_set():
            with lock:
                acked["next"][k] = acked["next"].get(k, 0) + 1
                i = acked["next"][k]
            try:
                op = i % 3
                if op == 0:
                    path = zk.create(f"/crash/w{k}-", b"v%d" % i, sequence=True)
                    with lock:
                        acked["create"].append((path, b"v%d" % i))
                elif op == 1:
                    # One writer per counter: a thread that outlives its round writes only its own.
                    zk.set(f"/crash/counter{k}-r{rnd}", b"%d" % i)
                    with lock:
                        acked["set"][(k, rnd)] = max(acked["set"].get((k, rnd), 0), i)
                else:
                    t = zk.transaction()
                    t.create(f"/crash/m{k}-{i}-a", b"a")
                    t.create(f"/crash/m{k}-{i}-b", b"b")
                    res = t.commit()
                    if all(isinstance(r, str) for r in res):
                        with lock:
                            acked["multi"].append(f"/crash/m{k}-{i}-")
                    with lock:
                        acked["multi_tried"].append(f"/crash/m{k}-{i}-")
            except (KazooException, KazooTimeoutError, OSError):
                # Not acknowledged: may or may not be there.
                if op == 2:
                    with lock:
                        acked["multi_tried"].append(f"/crash/m{k}-{i}-")
                time.sleep(0.02)
    except Exception:
        # The client was stopped under us: the round is over.
        pass


def crash_rounds():
    pid = start(fresh=True)
    zk = client()
    zk.ensure_path("/crash")
    writers = 4
    for k in range(writers):
        zk.create(f"/crash/counter{k}-r0", b"0")
    zk.stop()
    zk.close()
    acked = {"create": [], "set": {}, "multi": [], "multi_tried": [], "next": {}}
    lock = threading.Lock()
    for rnd in range(ROUNDS):
        stop = threading.Event()
        clients = [client() for _ in range(writers)]
        threads = [threading.Thread(target=writer, args=(clients[k], k, rnd, stop, acked, lock), daemon=True) for k in range(writers)]
        for t in threads:
            t.start()
        time.sleep(RNG.uniform(0.3, 1.5))
        kill9(pid)
        stop.set()
        for c in clients:
            threading.Thread(target=lambda c=c: (c.stop(), c.close()), daemon=True).start()
        for t in threads:
            t.join(30)
        stuck = [t for t in threads if t.is_alive()]
        check(f"round {rnd}: writers stopped", not stuck, f"{len(stuck)} writer threads still running")
        pid = start()
        zk = client()
        with lock:
            creates = list(acked["create"])
            sets = dict(acked["set"])
            multis = list(acked["multi"])
            tried = list(acked["multi_tried"])
        missing = [p for p, d in creates if zk.exists(p) is None]
        wrong = [p for p, d in creates if zk.exists(p) is not None and zk.get(p)[0] != d]
        check(f"round {rnd}: all {len(creates)} acknowledged creates survived", not missing and not wrong, (missing[:5], wrong[:5]))
        value = lambda k, r: int(zk.get(f"/crash/counter{k}-r{r}")[0])
        lost = {kr: (v, value(*kr)) for kr, v in sets.items() if kr[1] == rnd and value(*kr) < v}
        check(f"round {rnd}: acknowledged setData values survived", not lost, lost)
        half = [m for m in tried if (zk.exists(m + "a") is None) != (zk.exists(m + "b") is None)]
        check(f"round {rnd}: no multi half-applied ({len(tried)} tried)", not half, half[:5])
        gone = [m for m in multis if zk.exists(m + "a") is None]
        check(f"round {rnd}: all {len(multis)} acknowledged multis survived", not gone, gone[:5])
        for k in range(writers):
            zk.create(f"/crash/counter{k}-r{rnd + 1}", b"0")
        zk.stop()
        zk.close()
    return pid


def restart_semantics(pid):
    """Sessions, ephemerals, sequence numbers and Stats across a restart (SIGKILL)."""
    zk = client(timeout=30.0)
    session_id, _ = zk.client_id
    zk.ensure_path("/rs")
    eph = zk.create("/rs/eph", b"e", ephemeral=True)
    seq1 = zk.create("/rs/seq-", b"", sequence=True)
    short = KazooClient(hosts=f"127.0.0.1:{PORT}", timeout=2.0)
    short.start(timeout=30)
    short.create("/rs/short-eph", b"", ephemeral=True)
    zk.set("/rs", b"parent")
    stat_before = zk.exists("/rs")
    kill9(pid)
    short.stop()  # its session can only end by expiring
    time.sleep(1)
    pid = start()
    # The long session reconnects by itself (same id and password) and keeps its ephemeral.
    deadline = time.time() + 30
    while time.time() < deadline and not zk.connected:
        time.sleep(0.1)
    check("long session reconnected after restart", zk.connected)
    check("session id unchanged", zk.client_id[0] == session_id)
    check("its ephemeral survived the restart", zk.exists(eph) is not None)
    stat_after = zk.exists("/rs")
    same = stat_before is not None and stat_after is not None and all(
        getattr(stat_before, f) == getattr(stat_after, f) for f in ("czxid", "mzxid", "version", "aversion", "ctime", "mtime", "dataLength"))
    # (Child fields move: the short session's ephemeral below /rs goes when that session expires.)
    check("Stat of /rs identical after restart", same, (stat_before, stat_after))
    seq2 = zk.create("/rs/seq-", b"", sequence=True)
    check("sequence numbers continue after restart", int(seq2[-10:]) > int(seq1[-10:]), (seq1, seq2))
    # The short session (2 s timeout) is gone within its timeout (+ ticks) after the restart.
    deadline = time.time() + 15
    while time.time() < deadline and zk.exists("/rs/short-eph") is not None:
        time.sleep(0.2)
    check("ephemeral of a session that expired is removed after restart", zk.exists("/rs/short-eph") is None)
    zk.stop()
    zk.close()
    return pid


def main():
    pid = crash_rounds()
    pid = restart_semantics(pid)
    kill9(pid)
    print(f"{results['passed']} passed, {results['failed']} failed", flush=True)
    return 0 if results["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
