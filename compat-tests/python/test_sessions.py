"""Sessions (PROTOCOL.md 2.1, 2.13, 2.14)."""
import time

import pytest

import zkraw
from zkraw import ERR, EV_DELETED, EV_CHILD, Event
from helpers import tolerate_background_writes, wait_until

SC = zkraw.STATE_SYNC_CONNECTED
EXPIRED_BODY = bytes(4 + 4 + 8) + bytes.fromhex("00000010") + bytes(16)


def check_new_session(resp, timeout):
    assert resp.protocolVersion == 0
    assert resp.timeOut == timeout
    assert resp.sessionId != 0
    assert resp.sessionId >> 56 == 1          # standalone server id 1 in the top byte
    assert resp.passwd == zkraw.session_passwd(resp.sessionId)
    assert resp.readOnly is False
    assert len(resp.raw) == 37


@pytest.mark.parametrize("asked,granted", [
    (100, 1000), (0, 1000), (-5, 1000), (999, 1000), (1000, 1000), (1001, 1001),
    (5000, 5000), (60000, 60000), (60001, 60000), (999999, 60000),
])
def test_timeout_negotiation(raw_factory, asked, granted):
    c = raw_factory(timeout=asked)
    check_new_session(c.connect_response, granted)
    c.close_session()


def test_kazoo_session_password_relation(zk):
    sid, pw = zk.client_id
    assert pw == zkraw.session_passwd(sid)
    assert sid >> 56 == 1


def test_session_ids_unique_and_increasing(raw_factory):
    ids = []
    for _ in range(5):
        c = raw_factory()
        check_new_session(c.connect_response, 10000)
        ids.append(c.session_id)
        c.close_session()
    assert ids == sorted(ids) and len(set(ids)) == 5


def test_connect_response_golden_layout(raw_factory):
    c = raw_factory(handshake=False)
    c.send_frame(zkraw.connect_request(timeout=7000))
    raw = c.recv_exact(4 + 37)
    assert raw[:4] == bytes.fromhex("00000025")
    body = raw[4:]
    sid = int.from_bytes(body[8:16], "big")
    c.session_id, c.passwd = sid, body[20:36]      # lets the fixture close the session
    assert body == (bytes.fromhex("00000000" "00001b58") + body[8:16] + bytes.fromhex("00000010")
                    + zkraw.session_passwd(sid) + b"\x00")


def test_old_client_gets_36_byte_response(raw_factory):
    c = raw_factory(handshake=False)
    c.send_frame(zkraw.connect_request(timeout=4000, old_client=True))
    body = c.recv_frame()
    assert len(body) == 36
    resp = zkraw.parse_connect_response(body)
    assert resp.timeOut == 4000 and resp.readOnly is None
    assert resp.passwd == zkraw.session_passwd(resp.sessionId)
    c.session_id, c.passwd = resp.sessionId, resp.passwd
    assert c.exists("/")[0].err == 0        # normal requests work afterwards


def test_reconnect_with_session_keeps_session(raw_factory, base):
    a = raw_factory(timeout=6000)
    sid, pw = a.session_id, a.passwd
    a.create(base + "/e", flags=zkraw.EPHEMERAL)
    a.close()                               # no closeSession
    b = raw_factory(session_id=sid, passwd=pw, timeout=9000)
    resp = b.connect_response
    assert resp.sessionId == sid and resp.passwd == pw
    assert resp.timeOut == 9000             # re-negotiated
    assert b.exists(base + "/e")[1].ephemeralOwner == sid
    assert sorted(b.get_ephemerals(base)[1]) == [base + "/e"]


def test_reconnect_closes_previous_connection(raw_factory, serving):
    a = raw_factory()
    b = raw_factory(session_id=a.session_id, passwd=a.passwd)
    assert b.session_id == a.session_id
    assert a.wait_closed(5)
    assert b.ping().err == 0
    serving()


@pytest.mark.parametrize("old_client", [False, True])
def test_wrong_password_gets_expired_response(raw_factory, old_client, serving):
    a = raw_factory()
    bad = bytes(16) if a.passwd != bytes(16) else b"x" * 16
    c = raw_factory(handshake=False)
    c.send_frame(zkraw.connect_request(session_id=a.session_id, passwd=bad,
                                       old_client=old_client))
    body = c.recv_frame()
    assert body == (EXPIRED_BODY if old_client else EXPIRED_BODY + b"\x00")
    assert c.wait_closed(5)
    # the server closes the session's existing connection *before* checking the password...
    assert a.wait_closed(5)
    # ...but the session itself survives and can be resumed with the right password
    b = raw_factory(session_id=a.session_id, passwd=a.passwd)
    assert b.session_id == a.session_id and b.ping().err == 0
    serving()


def test_unknown_session_gets_expired_response(raw_factory):
    a = raw_factory()
    sid = a.session_id + 100000
    c = raw_factory(handshake=False)
    c.send_frame(zkraw.connect_request(session_id=sid, passwd=zkraw.session_passwd(sid)))
    assert c.recv_frame() == EXPIRED_BODY + b"\x00"
    assert c.wait_closed(5)


def test_closed_session_cannot_be_resumed(raw_factory):
    a = raw_factory()
    sid, pw = a.session_id, a.passwd
    rep = a.close_session()
    assert rep.err == 0 and rep.body.at_end()
    assert a.wait_closed(5)
    c = raw_factory(handshake=False)
    c.send_frame(zkraw.connect_request(session_id=sid, passwd=pw))
    assert c.recv_frame() == EXPIRED_BODY + b"\x00"
    assert c.wait_closed(5)


@tolerate_background_writes
def test_close_session_reply_zxid(raw, raw_factory, base):
    a = raw_factory()
    r1 = a.create(base + "/x")
    rep = a.close_session()
    assert (rep.err, rep.zxid) == (0, r1.zxid + 1)   # closeSession is a txn
    assert a.wait_closed(5)


def test_last_zxid_ahead_of_server_is_refused(raw_factory, serving):
    c = raw_factory(handshake=False)
    c.send_frame(zkraw.connect_request(last_zxid=1 << 50))
    assert c.wait_closed(5)
    assert c.leftover == b""
    serving()


def test_ephemerals_removed_on_close(raw_factory, base):
    a, w = raw_factory(), raw_factory()
    a.create(base + "/e1", flags=zkraw.EPHEMERAL)
    a.create(base + "/e2-", flags=zkraw.EPHEMERAL_SEQ)
    a.create(base + "/p")
    w.exists(base + "/e1", watch=True)
    w.get_children(base, watch=True)
    rep_close = a.close_session()
    assert rep_close.err == 0
    got = {w.wait_event(), w.wait_event()}
    assert got == {Event(EV_DELETED, SC, base + "/e1"), Event(EV_CHILD, SC, base)}
    rep, kids, st = w.get_children(base)
    assert kids == ["p"]
    assert st.pzxid == rep_close.zxid        # the closeSession txn deleted the ephemerals


def test_ephemerals_survive_connection_drop(raw_factory, base):
    a = raw_factory(timeout=10000)
    a.create(base + "/e", flags=zkraw.EPHEMERAL)
    a.close()
    w = raw_factory()
    time.sleep(0.5)
    assert w.exists(base + "/e")[0].err == 0


def test_session_expiry_removes_ephemerals(raw_factory, base, flw):
    a = raw_factory(timeout=1000)
    assert a.connect_response.timeOut == 1000
    sid, pw = a.session_id, a.passwd
    a.create(base + "/e", flags=zkraw.EPHEMERAL)
    w = raw_factory()
    w.exists(base + "/e", watch=True)
    assert ("0x%x" % sid) in flw("dump")
    t0 = time.monotonic()
    # stop pinging; the connection stays open but idle
    e = w.wait_event(timeout=8)
    assert e == Event(EV_DELETED, SC, base + "/e")
    assert time.monotonic() - t0 < 6
    assert w.exists(base + "/e")[0].err == ERR["NoNode"]
    assert a.wait_closed(5)                   # server closes the expired session's socket
    c = raw_factory(handshake=False)
    c.send_frame(zkraw.connect_request(session_id=sid, passwd=pw))
    assert c.recv_frame() == EXPIRED_BODY + b"\x00"
    wait_until(lambda: ("0x%x" % sid) not in flw("dump"), timeout=5, msg="session gone from dump")


def test_pings_keep_session_alive(raw_factory, base):
    a = raw_factory(timeout=1000)
    a.create(base + "/e", flags=zkraw.EPHEMERAL)
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        before = a.exists(base)[0].zxid
        rep = a.ping()
        after = a.exists(base)[0].zxid
        assert (rep.xid, rep.err) == (-2, 0) and rep.body.at_end()
        assert before <= rep.zxid <= after      # ping reports the last processed zxid
        time.sleep(0.25)
    assert a.exists(base + "/e")[1].ephemeralOwner == a.session_id


def test_reads_keep_session_alive(raw_factory, base):
    a = raw_factory(timeout=1000)
    a.create(base + "/e", flags=zkraw.EPHEMERAL)
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        assert a.exists(base + "/e")[0].err == 0
        time.sleep(0.25)


def test_kazoo_session_expiry_via_raw_takeover(kazoo_factory, raw_factory, base):
    """Closing a kazoo session from another connection (same id/password) expires kazoo."""
    from kazoo.protocol.states import KazooState
    zk = kazoo_factory(timeout=4.0)
    zk.create(base + "/e", ephemeral=True)
    states = []
    zk.add_listener(lambda s: states.append(s))
    sid, pw = zk.client_id
    r = raw_factory(session_id=sid, passwd=pw)
    assert r.session_id == sid
    r.close_session()
    wait_until(lambda: KazooState.LOST in states, timeout=15, msg="kazoo session LOST")
    w = raw_factory()
    assert w.exists(base + "/e")[0].err == ERR["NoNode"]
