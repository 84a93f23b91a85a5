"""Recipe-level compatibility tests: kazoo 2.11 recipes against the server under test.

Every test runs several KazooClient sessions concurrently (threads) and asserts the
guarantee the recipe is built to provide (mutual exclusion, fairness, no herd effect,
exactly-once consumption, convergence, ...), not merely that no exception was raised.

The server address comes only from the environment variable ZK_CONNECT
("host:port[,host:port...]"). Four-letter words are sent over a raw TCP socket to the
first host in it. Each test works below its own unique root path (uuid) and removes it
at the end. Every wait is bounded.

All module-level helpers are prefixed ``_rcp_`` (fixtures ``rcp_``) so they cannot
collide with helpers from conftest.py.
"""

import os
import random
import socket
import threading
import time
import traceback
import uuid

import pytest

from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadVersionError,
    KazooException,
    LockTimeout,
    NodeExistsError,
    NoNodeError,
)
from kazoo.recipe.barrier import Barrier, DoubleBarrier
from kazoo.recipe.cache import TreeCache, TreeEvent
from kazoo.recipe.party import Party, ShallowParty
from kazoo.recipe.queue import LockingQueue, Queue
from kazoo.retry import KazooRetry

_RCP_CONNECT = os.environ.get("ZK_CONNECT", "")
if not _RCP_CONNECT:
    pytest.skip("ZK_CONNECT is not set", allow_module_level=True)

_RCP_WAIT = 10.0  # upper bound for any single expected event
_RCP_QUIET = 0.4  # how long we watch for something that must NOT happen


# --------------------------------------------------------------------------- helpers


def _rcp_host_port():
    first = _RCP_CONNECT.split(",")[0].strip()
    first = first.split("/")[0]  # drop a chroot suffix, if any
    if first.startswith("["):  # [ipv6]:port
        host, _, port = first[1:].partition("]:")
        return host, int(port)
    host, _, port = first.rpartition(":")
    return host, int(port)


def _rcp_4lw(cmd, timeout=5.0):
    """Send a four-letter word over a raw socket and return the full reply."""
    host, port = _rcp_host_port()
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(cmd)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


def _rcp_wchp(prefix=None):
    """Parse `wchp`: blocks of "<path>\\n" followed by "\\t0x<session>\\n" lines.

    Returns {path: sorted list of session ids (ints)}, optionally restricted to
    paths starting with `prefix`.
    """
    out = _rcp_4lw(b"wchp")
    watches = {}
    cur = None
    for line in out.split("\n"):
        if not line.strip():
            continue
        if line.startswith("\t"):
            assert cur is not None, "wchp: session line before any path: %r" % out
            sid = line.strip()
            assert sid.startswith("0x"), "wchp: bad session id %r in %r" % (sid, out)
            watches[cur].append(int(sid, 16))
        else:
            cur = line.rstrip("\r")
            assert cur.startswith("/"), "wchp: bad path line %r in %r" % (line, out)
            watches.setdefault(cur, [])
    if prefix is not None:
        watches = {p: s for p, s in watches.items() if p.startswith(prefix)}
    return {p: sorted(s) for p, s in watches.items()}


def _rcp_wait_until(pred, timeout=_RCP_WAIT, interval=0.02, msg="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = pred()
        except NoNodeError:
            last = None
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, msg))
        time.sleep(interval)


def _rcp_sid(client):
    return client.client_id[0]


class _RcpThread(threading.Thread):
    """A daemon thread that remembers its result or exception."""

    def __init__(self, fn, *args, **kwargs):
        super().__init__(daemon=True, name="rcp-%s" % getattr(fn, "__name__", "fn"))
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self.result = None
        self.exc = None
        self.tb = None

    def run(self):
        try:
            self.result = self._fn(*self._args, **self._kwargs)
        except BaseException as e:  # noqa: B902 - reported by finish()
            self.exc = e
            self.tb = traceback.format_exc()

    def finish(self, timeout=_RCP_WAIT):
        self.join(timeout)
        assert not self.is_alive(), "thread %s still running after %.1fs" % (self.name, timeout)
        if self.exc is not None:
            raise AssertionError("thread %s failed:\n%s" % (self.name, self.tb))
        return self.result


def _rcp_spawn(fn, *args, **kwargs):
    t = _RcpThread(fn, *args, **kwargs)
    t.start()
    return t


def _rcp_finish_all(threads, timeout=_RCP_WAIT * 2):
    deadline = time.monotonic() + timeout
    return [t.finish(max(0.1, deadline - time.monotonic())) for t in threads]


class _RcpEnv:
    """Per-test state: a unique root path and the clients to close afterwards."""

    def __init__(self, root=None):
        self.root = root or "/rcp-" + uuid.uuid4().hex
        self.clients = []

    def path(self, *parts):
        return "/".join([self.root] + list(parts))

    def client(self, **kwargs):
        kwargs.setdefault("timeout", 10.0)
        kwargs.setdefault(
            "command_retry",
            KazooRetry(max_tries=-1, delay=0.01, backoff=1.5, max_delay=0.25, max_jitter=0.5),
        )
        kwargs.setdefault(
            "connection_retry",
            KazooRetry(max_tries=-1, delay=0.05, backoff=1.5, max_delay=1.0),
        )
        c = KazooClient(hosts=_RCP_CONNECT, **kwargs)
        c.start(timeout=15)
        self.clients.append(c)
        return c

    def close(self):
        for c in self.clients:
            try:
                c.stop()
                c.close()
            except Exception:
                pass
        admin = KazooClient(hosts=_RCP_CONNECT, timeout=10.0)
        try:
            admin.start(timeout=15)
            for _ in range(5):
                try:
                    admin.delete(self.root, recursive=True)
                    break
                except NoNodeError:
                    break
                except KazooException:
                    time.sleep(0.1)
        finally:
            admin.stop()
            admin.close()


@pytest.fixture
def rcp_env():
    env = _RcpEnv()
    try:
        yield env
    finally:
        env.close()


def _rcp_seq(name):
    """The 10-digit sequence suffix of a sequential node name."""
    return int(name[-10:])


# --------------------------------------------------------------------------- Lock


def test_lock_mutual_exclusion_many_acquisitions(rcp_env):
    lock_path = rcp_env.path("mutex")
    n_clients, rounds = 5, 12
    clients = [rcp_env.client() for _ in range(n_clients)]
    guard = threading.Lock()
    state = {"inside": 0, "max_inside": 0, "counter": 0, "acq": 0}
    problems = []

    def worker(i, c):
        lock = c.Lock(lock_path, "worker-%d" % i)
        for r in range(rounds):
            assert lock.acquire(timeout=20), "worker %d round %d: acquire failed" % (i, r)
            try:
                with guard:
                    state["inside"] += 1
                    state["max_inside"] = max(state["max_inside"], state["inside"])
                    state["acq"] += 1
                # Server-side view: our node must be the lowest lock node.
                kids = [k for k in c.get_children(lock_path) if "__lock__" in k]
                lowest = min(kids, key=_rcp_seq)
                if lowest != lock.node:
                    problems.append("worker %d holds lock but lowest node is %s (ours %s)"
                                    % (i, lowest, lock.node))
                # Non-atomic read-modify-write: loses updates without exclusion.
                v = state["counter"]
                time.sleep(0.002)
                state["counter"] = v + 1
                with guard:
                    state["inside"] -= 1
            finally:
                lock.release()

    threads = [_rcp_spawn(worker, i, c) for i, c in enumerate(clients)]
    _rcp_finish_all(threads, timeout=60)
    assert problems == []
    assert state["max_inside"] == 1, "two clients were inside the critical section at once"
    assert state["acq"] == n_clients * rounds
    assert state["counter"] == n_clients * rounds, "lost update => exclusion violated"
    # every lock node has been removed again
    assert clients[0].get_children(lock_path) == []


def test_lock_fairness_and_no_herd_effect(rcp_env):
    lock_path = rcp_env.path("fair")
    prefix = lock_path + "/"
    holder_client = rcp_env.client()
    holder = holder_client.Lock(lock_path, "holder")
    assert holder.acquire(timeout=10)

    n = 5
    clients = [rcp_env.client() for _ in range(n)]
    sids = [_rcp_sid(c) for c in clients]
    locks = [c.Lock(lock_path, "waiter-%d" % i) for i, c in enumerate(clients)]

    # Instrument: how often each waiter's predecessor watch fired, and how often each
    # waiter listed the lock's children (a herd would make every waiter re-list).
    counts_lock = threading.Lock()
    wakeups = [0] * n
    listings = [0] * n
    for i, (c, lk) in enumerate(zip(clients, locks)):
        orig_gc = c.get_children

        def counting_get_children(*a, _i=i, _orig=orig_gc, **kw):
            with counts_lock:
                listings[_i] += 1
            return _orig(*a, **kw)

        c.get_children = counting_get_children
        orig_watch = lk._watch_predecessor

        def counting_watch(event, _i=i, _orig=orig_watch):
            with counts_lock:
                wakeups[_i] += 1
            _orig(event)

        lk._watch_predecessor = counting_watch

    order = []
    acquired = [threading.Event() for _ in range(n)]
    may_release = [threading.Event() for _ in range(n)]

    def waiter(i):
        assert locks[i].acquire(timeout=30), "waiter %d did not get the lock" % i
        order.append(i)
        acquired[i].set()
        assert may_release[i].wait(30)
        locks[i].release()

    def node_names():
        return [holder.node] + [lk.node for lk in locks]

    def expected_watches(first_waiting):
        names = node_names()
        # waiter j (names index j+1) watches exactly its predecessor names[j]
        return {prefix + names[j]: [sids[j]] for j in range(first_waiting, n)}

    threads = []
    for i in range(n):
        threads.append(_rcp_spawn(waiter, i))
        # join strictly one after the other so sequence order == start order
        _rcp_wait_until(
            lambda: locks[i].node is not None
            and _rcp_wchp(prefix).get(prefix + node_names()[i]) == [sids[i]],
            msg="waiter %d to watch its predecessor" % i,
        )

    # Sequence nodes: ephemeral, owned by the right session, increasing in join order.
    names = node_names()
    seqs = [_rcp_seq(x) for x in names]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), names
    for name, c in zip(names, [holder_client] + clients):
        stat = holder_client.exists(prefix + name)
        assert stat is not None and stat.ephemeralOwner == _rcp_sid(c)
    assert sorted(holder_client.get_children(lock_path)) == sorted(names)

    # No herd: each lock node has at most one watcher, and it is exactly its successor.
    watches = _rcp_wchp(prefix)
    assert all(len(s) <= 1 for s in watches.values()), watches
    assert watches == expected_watches(0)
    assert lock_path not in _rcp_wchp(lock_path)  # nobody data-watches the lock dir
    assert not any(acquired[i].is_set() for i in range(n))

    time.sleep(0.1)
    with counts_lock:
        base_w, base_l = list(wakeups), list(listings)
    holder.release()
    for k in range(n):
        assert acquired[k].wait(_RCP_WAIT), "waiter %d never acquired (order so far %r)" % (k, order)
        time.sleep(_RCP_QUIET)  # give a herd the chance to show itself
        with counts_lock:
            w, lst = list(wakeups), list(listings)
        woken = [j for j in range(n) if w[j] != base_w[j]]
        assert woken == [k], "release #%d woke waiters %r, expected only [%d]" % (k, woken, k)
        assert w[k] - base_w[k] == 1
        relisted = [j for j in range(n) if j != k and lst[j] != base_l[j]]
        assert relisted == [], "waiters %r re-read the children (herd effect)" % relisted
        assert order == list(range(k + 1)), "acquisition order %r is not sequence order" % order
        assert not any(acquired[j].is_set() for j in range(k + 1, n))
        watches = _rcp_wchp(prefix)
        assert all(len(s) <= 1 for s in watches.values()), watches
        assert watches == expected_watches(k + 1)
        base_w, base_l = w, lst
        may_release[k].set()

    _rcp_finish_all(threads)
    assert order == list(range(n))
    assert holder_client.get_children(lock_path) == []
    assert _rcp_wchp(prefix) == {}


def test_lock_nonblocking_and_timeout(rcp_env):
    lock_path = rcp_env.path("nb")
    a, b = rcp_env.client(), rcp_env.client()
    la, lb = a.Lock(lock_path, "a"), b.Lock(lock_path, "b")
    assert la.acquire(timeout=5)
    assert lb.acquire(blocking=False) is False
    t0 = time.monotonic()
    with pytest.raises(LockTimeout):
        lb.acquire(timeout=0.5)
    assert time.monotonic() - t0 < 5
    # the failed attempts must not leave contender nodes behind
    assert len(a.get_children(lock_path)) == 1
    assert la.contenders() == ["a"]
    # the holder's session closing releases the lock (ephemeral node)
    a.stop()
    assert lb.acquire(timeout=5)
    assert lb.contenders() == ["b"]
    lb.release()


# --------------------------------------------------------------------------- RW lock


def test_read_write_lock(rcp_env):
    path = rcp_env.path("rw")
    readers_c = [rcp_env.client() for _ in range(3)]
    writer_c = rcp_env.client()
    late_reader_c = rcp_env.client()

    # 1. readers share the lock: all three hold it at the same time
    rlocks = [c.ReadLock(path, "r%d" % i) for i, c in enumerate(readers_c)]
    for rl in rlocks:
        assert rl.acquire(timeout=5), "a reader was blocked by other readers"
    assert all(rl.is_acquired for rl in rlocks)

    # 2. a writer waits for every reader
    wlock = writer_c.WriteLock(path, "w")
    w_acquired = threading.Event()
    w_release = threading.Event()

    def writer():
        assert wlock.acquire(timeout=30)
        w_acquired.set()
        assert w_release.wait(30)
        wlock.release()

    wt = _rcp_spawn(writer)
    _rcp_wait_until(lambda: len(writer_c.get_children(path)) == 4, msg="writer node")

    # 3. a reader that arrives after the waiting writer queues behind it
    late = late_reader_c.ReadLock(path, "late")
    late_acquired = threading.Event()

    def late_reader():
        assert late.acquire(timeout=30)
        late_acquired.set()
        late.release()

    lt = _rcp_spawn(late_reader)
    _rcp_wait_until(lambda: len(writer_c.get_children(path)) == 5, msg="late reader node")
    for rl in rlocks[:-1]:
        rl.release()
        time.sleep(_RCP_QUIET / 2)
        assert not w_acquired.is_set(), "writer acquired while a reader still held the lock"
    assert not late_acquired.is_set()
    rlocks[-1].release()
    assert w_acquired.wait(_RCP_WAIT), "writer never acquired after all readers left"
    time.sleep(_RCP_QUIET)
    assert not late_acquired.is_set(), "reader got in while the writer held the lock"
    w_release.set()
    assert late_acquired.wait(_RCP_WAIT)
    _rcp_finish_all([wt, lt])

    # 4. random mix of readers and writers: invariants hold throughout
    guard = threading.Lock()
    st = {"r": 0, "w": 0, "max_r": 0}
    problems = []
    mix_clients = [rcp_env.client() for _ in range(4)]

    def mixed(i, c):
        rnd = random.Random(i)
        for _ in range(8):
            is_writer = rnd.random() < 0.35
            lk = c.WriteLock(path, "mw%d" % i) if is_writer else c.ReadLock(path, "mr%d" % i)
            assert lk.acquire(timeout=30)
            with guard:
                if is_writer:
                    if st["r"] or st["w"]:
                        problems.append("writer entered with %r" % st)
                    st["w"] += 1
                else:
                    if st["w"]:
                        problems.append("reader entered with %r" % st)
                    st["r"] += 1
                    st["max_r"] = max(st["max_r"], st["r"])
            time.sleep(0.01)
            with guard:
                st["w" if is_writer else "r"] -= 1
            lk.release()

    _rcp_finish_all([_rcp_spawn(mixed, i, c) for i, c in enumerate(mix_clients)], timeout=60)
    assert problems == []
    assert writer_c.get_children(path) == []


# --------------------------------------------------------------------------- Semaphore


def test_semaphore_at_most_n_holders(rcp_env):
    path = rcp_env.path("sem")
    max_leases = 2
    a, b, c = rcp_env.client(), rcp_env.client(), rcp_env.client()
    sa = a.Semaphore(path, "a", max_leases=max_leases)
    sb = b.Semaphore(path, "b", max_leases=max_leases)
    sc = c.Semaphore(path, "c", max_leases=max_leases)
    assert sa.acquire(timeout=5)
    assert sb.acquire(timeout=5)
    assert sorted(sc.lease_holders()) == ["a", "b"]
    assert sc.acquire(blocking=False) is False
    with pytest.raises(LockTimeout):
        sc.acquire(timeout=0.5)
    c_got = threading.Event()

    def take_c():
        assert sc.acquire(timeout=20)
        c_got.set()

    t = _rcp_spawn(take_c)
    time.sleep(_RCP_QUIET)
    assert not c_got.is_set()
    sa.release()
    assert c_got.wait(_RCP_WAIT)
    t.finish()
    assert sorted(sa.lease_holders()) == ["b", "c"]
    # a holder whose session closes gives its lease back
    b.stop()
    _rcp_wait_until(lambda: sorted(sc.lease_holders()) == ["c"], msg="lease of closed session gone")
    sc.release()

    # stress: 6 clients, never more than max_leases holders at once
    guard = threading.Lock()
    st = {"in": 0, "max": 0}
    problems = []
    clients = [rcp_env.client() for _ in range(6)]

    def worker(i, cl):
        sem = cl.Semaphore(path, "s%d" % i, max_leases=max_leases)
        for _ in range(4):
            assert sem.acquire(timeout=30)
            with guard:
                st["in"] += 1
                st["max"] = max(st["max"], st["in"])
                if st["in"] > max_leases:
                    problems.append("%d holders" % st["in"])
            holders = len(cl.get_children(path))
            if holders > max_leases:
                problems.append("server shows %d leases" % holders)
            time.sleep(0.03)
            with guard:
                st["in"] -= 1
            sem.release()

    _rcp_finish_all([_rcp_spawn(worker, i, cl) for i, cl in enumerate(clients)], timeout=60)
    assert problems == []
    assert st["max"] == max_leases, "semaphore never reached %d concurrent holders" % max_leases
    assert clients[0].get_children(path) == []


# --------------------------------------------------------------------------- Election


def test_election_one_leader_and_failover_on_session_close(rcp_env):
    path = rcp_env.path("election")
    n = 4
    observer = rcp_env.client()
    clients = [rcp_env.client() for _ in range(n)]
    elections = [c.Election(path, "cand-%d" % i) for i, c in enumerate(clients)]
    st_lock = threading.Lock()
    st = {"leader": None}
    leaders = []
    problems = []
    elected = [threading.Event() for _ in range(n)]
    may_return = [threading.Event() for _ in range(n)]

    def lead(i):
        with st_lock:
            if st["leader"] is not None:
                problems.append("cand-%d elected while cand-%s leads" % (i, st["leader"]))
            st["leader"] = i
            leaders.append(i)
        elected[i].set()
        may_return[i].wait(40)

    def run(i):
        try:
            elections[i].run(lead, i)
        except KazooException:
            # releasing the lock after our own session was closed fails; expected
            if clients[i].connected:
                raise

    threads = []
    for i in range(n):
        threads.append(_rcp_spawn(run, i))
        _rcp_wait_until(lambda: len(elections[0].contenders()) == i + 1,
                        msg="contender %d registered" % i)
    assert elected[0].wait(_RCP_WAIT)
    obs_election = observer.Election(path)
    for k in range(n):
        assert elected[k].wait(_RCP_WAIT), "cand-%d never became leader" % k
        time.sleep(_RCP_QUIET / 2)
        with st_lock:
            assert leaders == list(range(k + 1)), leaders
            assert st["leader"] == k
        assert obs_election.contenders() == ["cand-%d" % j for j in range(k, n)]
        assert sum(e.is_set() for e in elected) == k + 1  # nobody else jumped ahead
        # the leader "dies": its session is closed while its leader function still runs
        with st_lock:
            st["leader"] = None
        clients[k].stop()
        if k + 1 < n:
            assert elected[k + 1].wait(_RCP_WAIT), "leadership did not pass on after session close"
        may_return[k].set()
    _rcp_finish_all(threads)
    assert problems == []
    assert leaders == list(range(n))
    assert obs_election.contenders() == []


# --------------------------------------------------------------------------- Barriers


def test_barrier_blocks_until_removed(rcp_env):
    path = rcp_env.path("barrier")
    coord = rcp_env.client()
    n = 4
    clients = [rcp_env.client() for _ in range(n)]
    barrier = Barrier(coord, path)
    # no barrier yet -> wait returns immediately
    assert Barrier(clients[0], path).wait(timeout=1) is True
    barrier.create()
    assert Barrier(clients[0], path).wait(timeout=0.3) is False
    passed = [threading.Event() for _ in range(n)]

    def waiter(i):
        ok = Barrier(clients[i], path).wait(timeout=20)
        passed[i].set()
        return ok

    threads = [_rcp_spawn(waiter, i) for i in range(n)]
    sids = sorted(_rcp_sid(c) for c in clients)
    # every waiter has an exists-watch on the barrier node (clients[0]'s earlier
    # timed-out wait left one too, same session -> still one entry)
    _rcp_wait_until(lambda: _rcp_wchp(path).get(path) == sids, msg="all waiters watching")
    time.sleep(_RCP_QUIET)
    assert not any(p.is_set() for p in passed), "a waiter passed a standing barrier"
    assert barrier.remove() is True
    assert all(r is True for r in _rcp_finish_all(threads))
    assert barrier.remove() is False


def test_double_barrier_enter_and_leave_together(rcp_env):
    path = rcp_env.path("dbarrier")
    n = 4
    clients = [rcp_env.client() for _ in range(n)]
    barriers = [DoubleBarrier(c, path, n, "p%d" % i) for i, c in enumerate(clients)]
    entered = [threading.Event() for _ in range(n)]
    left = [threading.Event() for _ in range(n)]
    all_in = threading.Barrier(n, timeout=20)
    last_leave_called = threading.Event()
    stamps = {}

    def party(i, delay_enter, delay_leave):
        time.sleep(delay_enter)
        stamps[("enter-call", i)] = time.monotonic()
        barriers[i].enter()
        assert barriers[i].participating
        stamps[("entered", i)] = time.monotonic()
        entered[i].set()
        # work inside the barrier; all parties are in before anybody leaves
        all_in.wait()
        time.sleep(delay_leave)
        if delay_leave:
            last_leave_called.set()
        stamps[("leave-call", i)] = time.monotonic()
        barriers[i].leave()
        stamps[("left", i)] = time.monotonic()
        left[i].set()

    threads = [_rcp_spawn(party, i, 0.0, 0.0) for i in range(n - 1)]
    _rcp_wait_until(lambda: len(clients[0].get_children(path)) == n - 1, msg="n-1 parties")
    time.sleep(_RCP_QUIET)
    assert not any(e.is_set() for e in entered), "entered before all parties arrived"
    threads.append(_rcp_spawn(party, n - 1, 0.0, 2 * _RCP_QUIET))
    for i in range(n):
        assert entered[i].wait(_RCP_WAIT), "party %d never entered" % i
    last_call = stamps[("enter-call", n - 1)]
    assert all(stamps[("entered", i)] >= last_call for i in range(n))

    # the first n-1 call leave() right away; the last one only later
    assert last_leave_called.wait(_RCP_WAIT)
    _rcp_finish_all(threads)
    last_leave = stamps[("leave-call", n - 1)]
    early = [i for i in range(n) if stamps[("left", i)] < last_leave]
    assert early == [], "parties %r left before the last party called leave()" % early
    assert clients[0].get_children(path) == []


# --------------------------------------------------------------------------- Party


@pytest.mark.parametrize("party_cls", [Party, ShallowParty], ids=["Party", "ShallowParty"])
def test_party_membership(rcp_env, party_cls):
    path = rcp_env.path("party")
    observer = rcp_env.client()
    n = 4
    clients = [rcp_env.client() for _ in range(n)]
    parties = [party_cls(c, path, "member%d" % i) for i, c in enumerate(clients)]
    watch_party = party_cls(observer, path)
    assert list(watch_party) == [] and len(watch_party) == 0

    _rcp_finish_all([_rcp_spawn(p.join) for p in parties])
    everyone = ["member%d" % i for i in range(n)]
    assert sorted(watch_party) == everyone
    assert len(watch_party) == n
    # member nodes are ephemeral and owned by the member's session
    for p, c in zip(parties, clients):
        stat = observer.exists(p.create_path)
        assert stat is not None and stat.ephemeralOwner == _rcp_sid(c)

    # joining twice is idempotent
    parties[2].join()
    assert len(watch_party) == n

    parties[0].leave()
    assert sorted(watch_party) == everyone[1:]
    # a member whose client stops disappears without leaving explicitly
    clients[1].stop()
    _rcp_wait_until(lambda: sorted(watch_party) == everyone[2:], msg="stopped member gone")
    assert len(watch_party) == n - 2


# --------------------------------------------------------------------------- Queues


def test_queue_priority_and_fifo_order(rcp_env):
    path = rcp_env.path("queue-order")
    producer, consumer = rcp_env.client(), rcp_env.client()
    pq, cq = Queue(producer, path), Queue(consumer, path)
    expected = []
    plan = [(100, "a"), (5, "b"), (100, "c"), (999, "d"), (5, "e"), (0, "f"), (100, "g")]
    for idx, (prio, tag) in enumerate(plan):
        for k in range(3):
            pq.put(("%s%d-%d" % (tag, idx, k)).encode(), priority=prio)
    for prio in sorted({p for p, _ in plan}):
        for idx, (p, tag) in enumerate(plan):
            if p == prio:
                expected += [("%s%d-%d" % (tag, idx, k)).encode() for k in range(3)]
    assert len(cq) == len(expected)
    got = []
    while True:
        item = cq.get()
        if item is None:
            break
        got.append(item)
        assert len(got) <= len(expected)
    assert got == expected
    assert len(cq) == 0
    with pytest.raises(ValueError):
        pq.put(b"x", priority=1000)


def test_queue_concurrent_consumers_exactly_once(rcp_env):
    path = rcp_env.path("queue")
    total = 80
    producer = rcp_env.client()
    consumers = [rcp_env.client() for _ in range(4)]
    done_producing = threading.Event()

    def produce():
        q = Queue(producer, path)
        for i in range(total):
            q.put(b"item-%04d" % i)
        done_producing.set()

    consumed_lock = threading.Lock()
    consumed = []

    def consume(c):
        q = Queue(c, path)
        mine = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            item = q.get()
            if item is None:
                with consumed_lock:
                    if done_producing.is_set() and len(consumed) >= total:
                        break
                if done_producing.is_set() and len(q) == 0:
                    break
                time.sleep(0.01)
                continue
            mine.append(item)
            with consumed_lock:
                consumed.append(item)
        return mine

    threads = [_rcp_spawn(consume, c) for c in consumers]
    pt = _rcp_spawn(produce)
    pt.finish(30)
    per_consumer = _rcp_finish_all(threads, timeout=40)
    expected = [b"item-%04d" % i for i in range(total)]
    assert sorted(consumed) == expected, "items lost or consumed twice"
    assert len(consumed) == len(set(consumed)) == total
    for mine in per_consumer:
        assert mine == sorted(mine), "a consumer saw items out of FIFO order"
    assert producer.get_children(path) == []


def test_locking_queue(rcp_env):
    path = rcp_env.path("lqueue")
    producer = rcp_env.client()
    pq = LockingQueue(producer, path)

    # priorities + FIFO, single consumer
    pq.put(b"low-1", priority=200)
    pq.put_all([b"mid-1", b"mid-2", b"mid-3"], priority=100)
    pq.put(b"high-1", priority=1)
    pq.put(b"low-2", priority=200)
    pq.put(b"mid-4", priority=100)
    c1 = rcp_env.client()
    q1 = LockingQueue(c1, path)
    got = []
    for _ in range(7):
        item = q1.get(timeout=5)
        assert item is not None
        assert q1.holds_lock()
        got.append(item)
        assert q1.consume() is True
    assert got == [b"high-1", b"mid-1", b"mid-2", b"mid-3", b"mid-4", b"low-1", b"low-2"]
    assert q1.get(timeout=0.3) is None
    assert len(pq) == 0

    # a locked entry is invisible to others; release() and a crashed consumer return it
    c2, c3, c4 = rcp_env.client(), rcp_env.client(), rcp_env.client()
    q2, q3, q4 = LockingQueue(c2, path), LockingQueue(c3, path), LockingQueue(c4, path)
    pq.put(b"only")
    assert q2.get(timeout=5) == b"only"
    assert q3.get(timeout=0.5) is None, "a locked entry was handed out twice"
    assert q2.release() is True
    assert q3.get(timeout=5) == b"only"
    c3.stop()  # consumer dies while holding the entry
    assert q4.get(timeout=_RCP_WAIT) == b"only", "entry of a dead consumer never came back"
    assert q4.consume() is True
    assert len(pq) == 0

    # concurrent consumers: every item consumed exactly once
    total = 60
    consumers = [rcp_env.client() for _ in range(4)]
    consumed_lock = threading.Lock()
    consumed = []
    problems = []

    def consume(c):
        q = LockingQueue(c, path)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            item = q.get(timeout=0.3)
            if item is None:
                with consumed_lock:
                    if len(consumed) >= total:
                        return
                continue
            if not q.consume():
                problems.append("consume() failed for %r" % item)
            with consumed_lock:
                consumed.append(item)

    threads = [_rcp_spawn(consume, c) for c in consumers]
    items = [b"job-%03d" % i for i in range(total)]
    pq.put_all(items[:20])
    for it in items[20:]:
        pq.put(it)
    _rcp_finish_all(threads, timeout=40)
    assert problems == []
    assert sorted(consumed) == items
    assert len(consumed) == total
    assert len(pq) == 0
    assert producer.get_children(path + "/taken") == []


# --------------------------------------------------------------------------- Counter


def test_counter_concurrent_increments(rcp_env):
    path = rcp_env.path("counter")
    n_clients, per_client = 5, 20
    clients = [rcp_env.client() for _ in range(n_clients)]
    observed_lock = threading.Lock()
    observed = []

    def inc(c):
        counter = c.Counter(path)
        for _ in range(per_client):
            counter += 1
            with observed_lock:
                observed.append((counter.pre_value, counter.post_value))

    _rcp_finish_all([_rcp_spawn(inc, c) for c in clients], timeout=60)
    total = n_clients * per_client
    fresh = rcp_env.client().Counter(path)
    assert fresh.value == total
    # each increment was applied to a distinct value (compare-and-set on the version)
    assert sorted(post for _, post in observed) == list(range(1, total + 1))
    assert all(post == pre + 1 for pre, post in observed)
    data, stat = clients[0].get(path)
    assert data == str(total).encode() and stat.version == total

    fresh -= 7
    assert fresh.value == total - 7
    fc = rcp_env.client().Counter(rcp_env.path("fcounter"), default=0.0)
    fc += 1.5
    fc += 0.25
    assert fc.value == 1.75


# --------------------------------------------------------------------------- Watches


def test_data_watch_configuration_converges(rcp_env):
    path = rcp_env.path("config")
    writer = rcp_env.client()
    n = 4
    watchers = [rcp_env.client() for _ in range(n)]
    seen = [[] for _ in range(n)]
    seen_lock = threading.Lock()

    def make_cb(i):
        def cb(data, stat):
            with seen_lock:
                seen[i].append((data, stat.version if stat else None))
        return cb

    for i, c in enumerate(watchers):
        c.DataWatch(path, make_cb(i))
    _rcp_wait_until(lambda: all(s == [(None, None)] for s in seen), msg="initial callbacks")

    writer.create(path, b"v0", makepath=True)
    updates = 30
    for v in range(1, updates + 1):
        writer.set(path, b"v%d" % v)

    def converged(value, version):
        with seen_lock:
            return all(s and s[-1] == (value, version) for s in seen)

    _rcp_wait_until(lambda: converged(b"v%d" % updates, updates), msg="watchers converge")
    with seen_lock:
        for s in seen:
            versions = [v for _, v in s[1:]]
            assert versions == sorted(versions) and len(set(versions)) == len(versions), s
            for data, v in s[1:]:
                assert data == b"v%d" % v, "data/version mismatch in %r" % s

    # concurrent writers: last write wins everywhere
    wclients = [rcp_env.client() for _ in range(3)]

    def write_many(i, c):
        for k in range(10):
            c.set(path, b"w%d-%d" % (i, k))

    _rcp_finish_all([_rcp_spawn(write_many, i, c) for i, c in enumerate(wclients)])
    final_data, final_stat = writer.get(path)
    assert final_stat.version == updates + 30
    _rcp_wait_until(lambda: converged(final_data, final_stat.version),
                    msg="watchers converge after concurrent writes")

    # deletion and re-creation are seen too
    writer.delete(path)
    _rcp_wait_until(lambda: converged(None, None), msg="watchers see deletion")
    writer.create(path, b"reborn")
    _rcp_wait_until(lambda: converged(b"reborn", 0), msg="watchers see re-creation")


def test_children_watch_group_membership(rcp_env):
    path = rcp_env.path("members")
    observers = [rcp_env.client() for _ in range(2)]
    observers[0].ensure_path(path)
    views = [[] for _ in observers]
    vlock = threading.Lock()

    def make_cb(i):
        def cb(children):
            with vlock:
                views[i].append(sorted(children))
        return cb

    for i, o in enumerate(observers):
        o.ChildrenWatch(path, make_cb(i))

    def all_see(members):
        with vlock:
            return all(v and v[-1] == sorted(members) for v in views)

    _rcp_wait_until(lambda: all_see([]), msg="initial empty view")
    n = 4
    members = [rcp_env.client() for _ in range(n)]
    names = []
    for i, m in enumerate(members):
        names.append("member-%d" % i)
        m.create(path + "/" + names[-1], b"host-%d" % i, ephemeral=True)
        _rcp_wait_until(lambda: all_see(names), msg="join of %s seen" % names[-1])
    # explicit leave
    members[0].delete(path + "/member-0")
    _rcp_wait_until(lambda: all_see(names[1:]), msg="leave seen")
    # crash-leave: client stops, its ephemeral node vanishes
    members[1].stop()
    _rcp_wait_until(lambda: all_see(names[2:]), msg="session close seen")
    # a member joining again with a new session is seen as well
    newcomer = rcp_env.client()
    newcomer.create(path + "/member-1", b"again", ephemeral=True)
    _rcp_wait_until(lambda: all_see(["member-1"] + names[2:]), msg="re-join seen")
    with vlock:
        for v in views:
            # every snapshot the watch delivered is a plausible membership list
            assert all(set(s) <= set(names) for s in v), v


# --------------------------------------------------------------------------- TreeCache


def test_tree_cache(rcp_env):
    root = rcp_env.path("tree")
    writer = rcp_env.client()
    writer.create(root + "/pre/x", b"px", makepath=True)
    cache_client = rcp_env.client()
    cache = TreeCache(cache_client, root)
    events = []
    elock = threading.Lock()

    def listener(ev):
        with elock:
            data = ev.event_data
            events.append((ev.event_type, data.path if data else None, data.data if data else None))

    cache.listen(listener)
    cache.start()
    try:
        def has(etype, p, data=Ellipsis):
            with elock:
                return any(e[0] == etype and e[1] == p and (data is Ellipsis or e[2] == data)
                           for e in events)

        _rcp_wait_until(lambda: has(TreeEvent.INITIALIZED, None), msg="INITIALIZED")
        with elock:
            init_idx = [e[0] for e in events].index(TreeEvent.INITIALIZED)
            before = {(e[0], e[1]) for e in events[:init_idx]}
        for p in (root, root + "/pre", root + "/pre/x"):
            assert (TreeEvent.NODE_ADDED, p) in before, "pre-existing %s not loaded before INITIALIZED" % p
        assert cache.get_data(root + "/pre/x").data == b"px"

        writer.create(root + "/a", b"A0")
        writer.create(root + "/a/b", b"B0")
        _rcp_wait_until(lambda: has(TreeEvent.NODE_ADDED, root + "/a/b", b"B0"), msg="add a/b")
        assert has(TreeEvent.NODE_ADDED, root + "/a")
        assert sorted(cache.get_children(root)) == ["a", "pre"]
        assert sorted(cache.get_children(root + "/a")) == ["b"]

        writer.set(root + "/a/b", b"B1")
        _rcp_wait_until(lambda: has(TreeEvent.NODE_UPDATED, root + "/a/b", b"B1"), msg="update a/b")
        node = cache.get_data(root + "/a/b")
        assert node.data == b"B1" and node.stat.version == 1

        writer.create(root + "/a/b/c/d", b"D", makepath=True)
        _rcp_wait_until(lambda: has(TreeEvent.NODE_ADDED, root + "/a/b/c/d", b"D"), msg="deep add")

        writer.delete(root + "/a", recursive=True)
        for p in (root + "/a/b/c/d", root + "/a/b/c", root + "/a/b", root + "/a"):
            _rcp_wait_until(lambda: has(TreeEvent.NODE_REMOVED, p), msg="remove %s" % p)
        _rcp_wait_until(lambda: cache.get_data(root + "/a") is None, msg="cache forgets /a")
        assert sorted(cache.get_children(root)) == ["pre"]
        with elock:
            assert not any(e[0] == TreeEvent.NODE_ADDED and e[1] == root for e in events[init_idx:])
    finally:
        cache.close()


# --------------------------------------------------------------------------- 2PC


def _rcp_two_phase_round(env, coordinator, participants, votes):
    """Run one 2PC transaction; returns (decision, outcomes seen by participants)."""
    txn_root = "/2pc-" + uuid.uuid4().hex
    env_extra = _RcpEnv(root=txn_root)  # only used for cleanup
    txn = txn_root + "/txn"
    n = len(participants)
    outcome_seen = [[] for _ in range(n)]
    saw_txn = [threading.Event() for _ in range(n)]
    decided = [threading.Event() for _ in range(n)]
    lock = threading.Lock()

    # Participants watch the transaction node before it exists.
    for i, p in enumerate(participants):
        def cb(data, stat, _i=i):
            with lock:
                outcome_seen[_i].append(data)
            if data is not None:
                saw_txn[_i].set()
            if data in (b"commit", b"abort"):
                decided[_i].set()
        p.DataWatch(txn, cb)

    # Coordinator: create the transaction, watch the votes.
    decision = {}
    decision_made = threading.Event()
    coordinator.create(txn, b"prepare", makepath=True)

    def on_votes(children):
        if decision_made.is_set():
            return False  # stop watching
        votes_now = {}
        for ch in children:
            try:
                votes_now[ch], _ = coordinator.get(txn + "/" + ch)
            except NoNodeError:
                pass
        if any(v == b"no" for v in votes_now.values()):
            outcome = b"abort"
        elif len(votes_now) == n and all(v == b"yes" for v in votes_now.values()):
            outcome = b"commit"
        else:
            return True
        try:
            # version=0: the decision can be written exactly once
            coordinator.set(txn, outcome, version=0)
            decision["outcome"] = outcome
            decision["votes"] = dict(votes_now)
        except BadVersionError:
            pass
        decision_made.set()
        return False

    coordinator.ChildrenWatch(txn, on_votes)

    def participant(i):
        assert saw_txn[i].wait(_RCP_WAIT), "participant %d never saw the transaction" % i
        data, _ = participants[i].get(txn)
        if data == b"prepare":
            try:
                participants[i].create(txn + "/p%d" % i, votes[i])
            except NodeExistsError:
                pass
        assert decided[i].wait(_RCP_WAIT), "participant %d never learnt the outcome" % i

    threads = [_rcp_spawn(participant, i) for i in range(n)]
    try:
        _rcp_finish_all(threads)
        assert decision_made.wait(_RCP_WAIT)
        final, stat = coordinator.get(txn)
        assert stat.version == 1, "the decision must be written exactly once"
        with lock:
            seen = [list(s) for s in outcome_seen]
        return decision, final, seen
    finally:
        env_extra.close()


def test_two_phase_commit(rcp_env):
    coordinator = rcp_env.client()
    participants = [rcp_env.client() for _ in range(4)]

    decision, final, seen = _rcp_two_phase_round(rcp_env, coordinator, participants,
                                                 [b"yes"] * 4)
    assert final == b"commit" and decision["outcome"] == b"commit"
    assert decision["votes"] == {"p%d" % i: b"yes" for i in range(4)}
    for s in seen:
        assert s[0] is None  # watch was set before the txn existed
        assert s[-1] == b"commit"
        assert b"abort" not in s
        assert set(s[1:]) <= {b"prepare", b"commit"}

    decision, final, seen = _rcp_two_phase_round(rcp_env, coordinator, participants,
                                                 [b"yes", b"no", b"yes", b"yes"])
    assert final == b"abort" and decision["outcome"] == b"abort"
    assert decision["votes"].get("p1") == b"no"
    for s in seen:
        assert s[-1] == b"abort"
        assert b"commit" not in s
