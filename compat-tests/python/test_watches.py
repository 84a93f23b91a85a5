"""Watches (PROTOCOL.md 2.10): trigger rules, one-shot vs persistent vs recursive, ordering,
multi, session close, setWatches after reconnect."""
import re
import socket
import threading

import pytest
from kazoo.protocol.states import EventType

import zkraw
from zkraw import EV_CREATED, EV_DELETED, EV_CHANGED, EV_CHILD, Event, ERR
from helpers import wait_until

SC = zkraw.STATE_SYNC_CONNECTED


def ev(t, p):
    return Event(t, SC, p)


# ------------------------------------------------------------------ kazoo one-shot watches

class Collector:
    def __init__(self):
        self.events = []
        self.cond = threading.Condition()

    def __call__(self, event):
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait(self, n=1, timeout=5.0):
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.events) >= n, timeout), self.events
            return list(self.events)


def test_kazoo_data_watch_one_shot(zk, kazoo_factory, base):
    zk.create(base + "/n", b"0")
    other = kazoo_factory()
    w = Collector()
    zk.get(base + "/n", watch=w)
    other.set(base + "/n", b"1")
    evs = w.wait(1)
    assert [(e.type, e.path) for e in evs] == [(EventType.CHANGED, base + "/n")]
    other.set(base + "/n", b"2")   # one-shot: no second event
    zk.sync(base)
    import time
    time.sleep(0.3)
    assert len(w.events) == 1


def test_kazoo_exists_and_child_watches(zk, kazoo_factory, base):
    other = kazoo_factory()
    we, wc, wd = Collector(), Collector(), Collector()
    assert zk.exists(base + "/n", watch=we) is None
    zk.get_children(base, watch=wc)
    other.create(base + "/n", b"")
    assert [(e.type, e.path) for e in we.wait(1)] == [(EventType.CREATED, base + "/n")]
    assert [(e.type, e.path) for e in wc.wait(1)] == [(EventType.CHILD, base)]
    zk.get(base + "/n", watch=wd)
    other.delete(base + "/n")
    assert [(e.type, e.path) for e in wd.wait(1)] == [(EventType.DELETED, base + "/n")]


# ------------------------------------------------------------------ raw trigger rules

def test_exists_watch_on_missing_node(raw_factory, base):
    a, b = raw_factory(), raw_factory()
    rep, st = a.exists(base + "/n", watch=True)
    assert rep.err == ERR["NoNode"]
    b.create(base + "/n")
    assert a.wait_event() == ev(EV_CREATED, base + "/n")
    a.no_event()


def test_get_data_watch_not_set_on_missing_node(raw_factory, base):
    a, b = raw_factory(), raw_factory()
    assert a.get_data(base + "/n", watch=True, check=False)[0].err == ERR["NoNode"]
    assert a.get_children(base + "/n", watch=True, check=False)[0].err == ERR["NoNode"]
    b.create(base + "/n")
    a.no_event()


def test_data_watch_events(raw_factory, base):
    a, b = raw_factory(), raw_factory()
    b.create(base + "/n")
    a.get_data(base + "/n", watch=True)
    b.set_acl(base + "/n", zkraw.OPEN_ACL)       # setACL fires nothing
    b.create(base + "/n/kid")                    # child create fires no data watch
    a.no_event()
    b.set_data(base + "/n", b"x")
    assert a.wait_event() == ev(EV_CHANGED, base + "/n")
    a.exists(base + "/n", watch=True)
    b.delete(base + "/n/kid")
    b.delete(base + "/n")
    assert a.wait_event() == ev(EV_DELETED, base + "/n")
    a.no_event()


def test_child_watch_events(raw_factory, base):
    a, b = raw_factory(), raw_factory()
    b.create(base + "/n")
    a.get_children(base + "/n", watch=True)
    b.set_data(base + "/n", b"x")                # data change: no child event
    a.no_event()
    b.create(base + "/n/k")
    assert a.wait_event() == ev(EV_CHILD, base + "/n")
    a.get_children(base + "/n", watch=True)
    b.set_data(base + "/n/k", b"y")              # grandchild data: nothing
    b.create(base + "/n/k/g")                    # grandchild create: nothing
    a.no_event()
    b.delete(base + "/n/k/g")
    b.delete(base + "/n/k")
    assert a.wait_event() == ev(EV_CHILD, base + "/n")
    a.get_children(base + "/n", watch=True)
    b.delete(base + "/n")                        # deleting the watched node → NodeDeleted
    assert a.wait_event() == ev(EV_DELETED, base + "/n")
    a.no_event()


def test_one_event_per_connection(raw_factory, base):
    a, b = raw_factory(), raw_factory()
    b.create(base + "/n")
    a.get_data(base + "/n", watch=True)
    a.exists(base + "/n", watch=True)
    a.get_children(base + "/n", watch=True)
    b.delete(base + "/n")
    assert a.wait_event() == ev(EV_DELETED, base + "/n")
    a.no_event()


def test_watch_fires_for_all_connections(raw_factory, base):
    watchers = [raw_factory() for _ in range(5)]
    w = raw_factory()
    w.create(base + "/n")
    for c in watchers:
        c.get_data(base + "/n", watch=True)
    w.set_data(base + "/n", b"v")
    for c in watchers:
        assert c.wait_event() == ev(EV_CHANGED, base + "/n")


def test_event_before_reply_for_own_write(raw, base):
    raw.create(base + "/n")
    raw.get_data(base + "/n", watch=True)
    xid = raw.send_request(zkraw.OP["setData"], zkraw.W().ustring(base + "/n").buffer(b"1")
                           .int(-1).bytes())
    f = raw.recv_frame()   # the very first frame is the notification, then the reply
    p = (base + "/n").encode()
    assert f == (bytes.fromhex("ffffffff" "ffffffffffffffff" "00000000" "00000003" "00000003")
                 + zkraw.W().ustring(p).bytes())
    rep = raw.read_reply(xid)
    assert rep.err == 0 and raw.events == []


def test_event_seen_before_changed_data(raw_factory, base):
    """A client that reads the new data must have received the notification first."""
    a, b = raw_factory(), raw_factory()
    b.create(base + "/n", b"old")
    for i in range(20):
        a.get_data(base + "/n", watch=True)
        b.set_data(base + "/n", b"new%d" % i)
        while True:
            rep, data, st = a.get_data(base + "/n")
            if data == b"new%d" % i:
                break
        assert a.events == [ev(EV_CHANGED, base + "/n")], i
        a.events.clear()


def test_multi_triggers_watches(raw_factory, base):
    a, b = raw_factory(), raw_factory()
    b.create(base + "/x", b"0")
    b.create(base + "/y")
    a.exists(base + "/new", watch=True)
    a.get_data(base + "/x", watch=True)
    a.get_data(base + "/y", watch=True)
    a.get_children(base, watch=True)
    rep, res = b.multi([zkraw.op_create(base + "/new"), zkraw.op_set(base + "/x", b"1"),
                        zkraw.op_delete(base + "/y")])
    assert [r.err for r in res] == [0, 0, 0]
    got = set()
    for _ in range(4):
        got.add(a.wait_event())
    assert got == {ev(EV_CREATED, base + "/new"), ev(EV_CHANGED, base + "/x"),
                   ev(EV_DELETED, base + "/y"), ev(EV_CHILD, base)}
    a.no_event()


def test_failed_multi_triggers_nothing(raw_factory, base):
    a, b = raw_factory(), raw_factory()
    b.create(base + "/x", b"0")
    a.exists(base + "/new", watch=True)
    a.get_data(base + "/x", watch=True)
    a.get_children(base, watch=True)
    rep, res = b.multi([zkraw.op_create(base + "/new"), zkraw.op_set(base + "/x", b"1"),
                        zkraw.op_check(base + "/x", 7)])
    assert res[2].err == ERR["BadVersion"]
    a.no_event(0.5)


# ------------------------------------------------------------------ persistent / recursive

def test_persistent_watch(raw_factory, base):
    a, b = raw_factory(), raw_factory()
    p = base + "/p"
    a.add_watch(p, 0)
    b.create(p)
    assert a.wait_event() == ev(EV_CREATED, p)
    for i in range(3):
        b.set_data(p, b"%d" % i)
        assert a.wait_event() == ev(EV_CHANGED, p)
    b.create(p + "/k")
    assert a.wait_event() == ev(EV_CHILD, p)
    b.set_data(p + "/k", b"x")           # children's data: not reported
    b.create(p + "/k/g")                  # grandchildren: not reported
    a.no_event()
    b.delete(p + "/k/g")
    b.delete(p + "/k")
    assert a.wait_event() == ev(EV_CHILD, p)
    b.delete(p)
    assert a.wait_event() == ev(EV_DELETED, p)
    b.create(p)                           # still registered after deletion
    assert a.wait_event() == ev(EV_CREATED, p)
    a.no_event()


def test_persistent_recursive_watch(raw_factory, base):
    a, b = raw_factory(), raw_factory()
    p = base + "/r"
    a.add_watch(p, 1)
    b.create(p)
    assert a.wait_event() == ev(EV_CREATED, p)
    b.create(p + "/k")
    assert a.wait_event() == ev(EV_CREATED, p + "/k")   # no NodeChildrenChanged
    b.create(p + "/k/g")
    assert a.wait_event() == ev(EV_CREATED, p + "/k/g")
    b.set_data(p + "/k/g", b"1")
    assert a.wait_event() == ev(EV_CHANGED, p + "/k/g")
    b.set_data(p, b"1")
    assert a.wait_event() == ev(EV_CHANGED, p)
    b.create(base + "/rother")            # sibling with common prefix: not reported
    b.set_data(base, b"x")                # ancestor: not reported
    a.no_event()
    b.delete(p + "/k/g")
    assert a.wait_event() == ev(EV_DELETED, p + "/k/g")
    b.delete(p + "/k")
    assert a.wait_event() == ev(EV_DELETED, p + "/k")
    a.no_event()
    b.multi([zkraw.op_create(p + "/m1"), zkraw.op_create(p + "/m1/m2")])
    assert a.wait_event() == ev(EV_CREATED, p + "/m1")
    assert a.wait_event() == ev(EV_CREATED, p + "/m1/m2")


def test_recursive_watch_on_root_sees_everything(raw_factory, base):
    a, b = raw_factory(), raw_factory()
    a.add_watch("/", 1)
    b.create(base + "/deep")
    assert a.wait_event() == ev(EV_CREATED, base + "/deep")
    b.delete(base + "/deep")
    assert a.wait_event() == ev(EV_DELETED, base + "/deep")


def test_standard_and_persistent_on_different_connections(raw_factory, base):
    a, b, c = raw_factory(), raw_factory(), raw_factory()
    p = base + "/n"
    c.create(p)
    a.add_watch(p, 0)
    b.get_data(p, watch=True)
    c.set_data(p, b"1")
    assert a.wait_event() == ev(EV_CHANGED, p)
    assert b.wait_event() == ev(EV_CHANGED, p)
    c.set_data(p, b"2")
    assert a.wait_event() == ev(EV_CHANGED, p)
    b.no_event()


def test_one_mode_per_connection_and_path(raw_factory, base):
    """3.8 quirk: a standard watch registered after a persistent one on the same
    (connection, path) replaces the data-table entry; the child-table entry stays."""
    a, b = raw_factory(), raw_factory()
    p = base + "/q"
    b.create(p)
    a.add_watch(p, 0)
    a.get_data(p, watch=True)
    b.set_data(p, b"1")
    assert a.wait_event() == ev(EV_CHANGED, p)
    b.set_data(p, b"2")                   # data entry was STANDARD → gone
    a.no_event()
    b.create(p + "/k")                    # child entry still persistent
    assert a.wait_event() == ev(EV_CHILD, p)
    b.delete(p + "/k")
    assert a.wait_event() == ev(EV_CHILD, p)
    b.delete(p)
    assert a.wait_event() == ev(EV_DELETED, p)


def test_remove_watches_stops_events(raw_factory, base):
    a, b = raw_factory(), raw_factory()
    p = base + "/n"
    b.create(p)
    a.get_data(p, watch=True)
    a.get_children(p, watch=True)
    assert a.remove_watches(p, 2).err == 0
    b.set_data(p, b"1")
    a.no_event()
    b.create(p + "/k")
    assert a.wait_event() == ev(EV_CHILD, p)
    a.add_watch(p, 1)
    assert a.remove_watches(p, 3).err == 0
    b.create(p + "/k2")
    b.set_data(p, b"2")
    a.no_event()


def test_check_watches_any_connection(raw_factory, base):
    """3.8 quirk: checkWatches succeeds if any connection watches that path."""
    a, b = raw_factory(), raw_factory()
    a.get_data(base, watch=True)
    assert b.check_watches(base, 2).err == 0
    assert b.remove_watches(base, 2).err == ERR["NoWatcher"]   # remove is per connection


# ------------------------------------------------------------------ session close & wchs

def _watch_totals(flw):
    m = re.fullmatch(r"(\d+) connections watching (\d+) paths\nTotal watches:(\d+)\n", flw("wchs"))
    assert m, flw("wchs")
    return tuple(int(x) for x in m.groups())


def test_watches_cleared_on_close(raw_factory, base, flw):
    before = _watch_totals(flw)
    a = raw_factory()
    sid = "0x%x" % a.session_id
    for i in range(3):
        a.exists(base + "/w%d" % i, watch=True)
    a.get_children(base, watch=True)       # child table: not counted by wchs
    conns, paths, total = _watch_totals(flw)
    assert (conns, paths, total) == (before[0] + 1, before[1] + 3, before[2] + 3)
    wchc = flw("wchc")
    block = re.search(re.escape(sid) + r"\n((?:\t.*\n)*)", wchc)
    assert block, wchc
    assert sorted(block.group(1).split()) == sorted(base + "/w%d" % i for i in range(3))
    wchp = flw("wchp")
    assert (base + "/w1\n\t" + sid + "\n") in wchp
    a.close_session()
    wait_until(lambda: _watch_totals(flw) == before, timeout=5, msg="wchs back to baseline")
    assert sid not in flw("wchc")
    assert (base + "/w1\n") not in flw("wchp")


def test_watches_cleared_on_socket_close(raw_factory, base, flw):
    before = _watch_totals(flw)
    a = raw_factory()
    a.get_data(base, watch=True)
    a.add_watch(base, 0)
    assert _watch_totals(flw)[2] == before[2] + 1
    a.close()   # connection dropped, session still alive: watches are per connection
    wait_until(lambda: _watch_totals(flw) == before, timeout=5, msg="wchs back to baseline")


def test_ephemeral_delete_on_close_fires_watches(raw_factory, base):
    a, b = raw_factory(), raw_factory()
    b.create(base + "/e", flags=zkraw.EPHEMERAL)
    a.exists(base + "/e", watch=True)
    a.get_children(base, watch=True)
    b.close_session()
    got = {a.wait_event(), a.wait_event()}
    assert got == {ev(EV_DELETED, base + "/e"), ev(EV_CHILD, base)}


# ------------------------------------------------------------------ setWatches after reconnect

def test_set_watches_after_reconnect(raw_factory, base):
    a, b = raw_factory(), raw_factory()
    for n in ("changed", "same", "deleted", "kids", "kids_same", "kids_gone"):
        b.create(base + "/" + n)
    rel = b.exists(base)[0].zxid                    # client's last seen zxid
    sid, pw = a.session_id, a.passwd
    a.close()                                       # drop the connection, keep session
    b.set_data(base + "/changed", b"1")
    b.delete(base + "/deleted")
    b.create(base + "/kids/k")
    b.delete(base + "/kids_gone")
    last_write = b.create(base + "/appeared").zxid
    a2 = raw_factory(session_id=sid, passwd=pw, last_zxid=rel)
    assert a2.session_id == sid
    rep = a2.set_watches(rel,
                         data=[base + "/changed", base + "/same", base + "/deleted"],
                         exist=[base + "/appeared", base + "/still_missing", base + "/same2"],
                         child=[base + "/kids", base + "/kids_same", base + "/kids_gone"])
    assert (rep.xid, rep.err) == (-8, 0) and rep.body.at_end()
    assert last_write <= rep.zxid <= b.exists(base)[0].zxid   # last processed zxid
    # events were delivered before the reply
    assert set(a2.events) == {
        ev(EV_CHANGED, base + "/changed"), ev(EV_DELETED, base + "/deleted"),
        ev(EV_CREATED, base + "/appeared"),
        ev(EV_CHILD, base + "/kids"), ev(EV_DELETED, base + "/kids_gone")}
    assert len(a2.events) == 5
    a2.events.clear()
    # the non-fired ones are registered as standard watches
    b.set_data(base + "/same", b"x")
    assert a2.wait_event() == ev(EV_CHANGED, base + "/same")
    b.create(base + "/still_missing")
    assert a2.wait_event() == ev(EV_CREATED, base + "/still_missing")
    b.create(base + "/kids_same/k")
    assert a2.wait_event() == ev(EV_CHILD, base + "/kids_same")
    # the fired ones are not re-registered
    b.set_data(base + "/changed", b"2")
    b.create(base + "/kids/k2")
    a2.no_event()


def test_set_watches_exist_fires_whenever_node_exists(raw, base):
    raw.create(base + "/old")
    rel = raw.create(base + "/newer").zxid
    rep = raw.set_watches(rel, exist=[base + "/old"])
    assert raw.events == [ev(EV_CREATED, base + "/old")]


def test_set_watches2_persistent(raw_factory, base):
    a, b = raw_factory(), raw_factory()
    rep = a.set_watches(0, persistent=[base + "/p"], recursive=[base + "/r"])
    assert rep.err == 0 and a.events == []
    b.create(base + "/p")
    assert a.wait_event() == ev(EV_CREATED, base + "/p")
    b.set_data(base + "/p", b"1")
    assert a.wait_event() == ev(EV_CHANGED, base + "/p")
    b.create(base + "/r")
    assert a.wait_event() == ev(EV_CREATED, base + "/r")
    b.create(base + "/r/x")
    assert a.wait_event() == ev(EV_CREATED, base + "/r/x")


def test_kazoo_reconnect_keeps_session(zk, kazoo_factory, base):
    """Drop kazoo's TCP connection; kazoo reconnects with the same session id and password
    (kazoo 2.11 itself drops its one-shot watchers on connection loss, so SetWatches is
    covered by the raw tests above)."""
    zk.create(base + "/e", b"0", ephemeral=True)
    sid = zk.client_id[0]
    other = kazoo_factory()
    zk._connection._socket.shutdown(socket.SHUT_RDWR)
    other.set(base + "/e", b"1")
    def reconnected():
        try:
            return zk.connected and zk.exists(base + "/e") is not None
        except Exception:
            return False
    wait_until(reconnected, timeout=15, msg="kazoo reconnected")
    assert zk.client_id[0] == sid
    data, st = zk.get(base + "/e")
    assert data == b"1" and st.ephemeralOwner == sid
