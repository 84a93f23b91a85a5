"""Byte-level tests with the raw jute client: golden reply bytes and bad input.
After every bad-input test another client must still be served."""
import socket
import struct
import time

import pytest

import zkraw
from zkraw import OP, ERR, W, frame


def hx(s):
    return bytes.fromhex(s.replace(" ", ""))


# ------------------------------------------------------------------ golden replies

def test_ping_reply_bytes(raw):
    zxid = raw.exists("/")[0].zxid
    raw.send(hx("00000008 fffffffe 0000000b"))
    f = raw.recv_exact(20)
    assert f[:8] == hx("00000010 fffffffe")
    assert struct.unpack(">q", f[8:16])[0] >= zxid
    assert f[16:] == hx("00000000")


def test_notification_frame_bytes(raw, base):
    p = base + "/missing"
    raw.exists(p, watch=True)
    other = zkraw.RawClient(raw.host, raw.port)
    try:
        other.connect()
        other.create(p)
        other.close_session()
    finally:
        other.close()
    pb = p.encode()
    f = raw.recv_exact(4 + 16 + 12 + len(pb))
    assert f == (struct.pack(">i", 16 + 12 + len(pb)) + hx("ffffffff ffffffffffffffff 00000000")
                 + hx("00000001 00000003") + struct.pack(">i", len(pb)) + pb)


def test_add_watch_reply_bytes(raw, base):
    xid = raw.send_request(OP["addWatch"], W().ustring(base).int(1).bytes())
    f = raw.recv_exact(24)
    zxid = struct.unpack(">q", f[8:16])[0]
    assert f == struct.pack(">iiqi", 20, xid, zxid, 0) + hx("00000000")


def test_error_reply_has_header_only(raw, base):
    xid = raw.send_request(OP["getData"], W().ustring(base + "/nope").bool(False).bytes())
    f = raw.recv_exact(20)
    assert f[:8] == struct.pack(">ii", 16, xid)
    assert f[16:] == struct.pack(">i", ERR["NoNode"])
    raw.sock.settimeout(0.2)
    with pytest.raises(socket.timeout):
        raw.sock.recv(1)                     # nothing else follows


def test_exists_reply_bytes(raw, base):
    _, _, st = raw.create2(base + "/g", b"abc")
    xid = raw.send_request(OP["exists"], W().ustring(base + "/g").bool(False).bytes())
    f = raw.recv_frame()
    assert len(f) == 16 + 68
    assert f[16:] == struct.pack(">qqqqiiiqiiq", *st)


def test_get_data_reply_bytes(raw, base):
    _, _, st = raw.create2(base + "/g", b"abc")
    raw.send_request(OP["getData"], W().ustring(base + "/g").bool(False).bytes())
    f = raw.recv_frame()
    assert f[16:] == hx("00000003") + b"abc" + struct.pack(">qqqqiiiqiiq", *st)


def test_create_reply_bytes(raw, base):
    p = (base + "/c").encode()
    raw.send_request(OP["create"], zkraw.create_body(base + "/c", b"x"))
    f = raw.recv_frame()
    assert f[12:] == hx("00000000") + struct.pack(">i", len(p)) + p


def test_auth_reply_bytes(raw):
    raw.send_request(OP["auth"], W().int(0).ustring("digest").buffer(b"u:p").bytes(), xid=-4)
    assert raw.recv_exact(20) == hx("00000010 fffffffc 0000000000000000 00000000")


def test_set_watches_reply_bytes(raw, base):
    zxid = raw.exists(base)[0].zxid
    raw.send_request(OP["setWatches"], W().long(zxid).strings([base]).strings([]).strings([])
                     .bytes(), xid=-8)
    f = raw.recv_exact(20)
    assert f[:8] == hx("00000010 fffffff8") and f[16:] == hx("00000000")
    assert struct.unpack(">q", f[8:16])[0] >= zxid


def test_multi_failure_reply_bytes(raw, base):
    raw.create(base + "/t1")
    rep, _ = raw.multi([zkraw.op_create(base + "/m3"), zkraw.op_check(base + "/t1", 99),
                        zkraw.op_delete(base + "/t1")])
    assert rep.body.rest() == hx(
        "ffffffff 00 00000000 00000000"
        "ffffffff 00 ffffff99 ffffff99"
        "ffffffff 00 fffffffe fffffffe"
        "ffffffff 01 ffffffff")


def test_pipelined_requests_answered_in_order(raw, base):
    data = b""
    for i in range(50):
        data += frame(struct.pack(">ii", 100 + i, OP["create"]) +
                      zkraw.create_body(base + "/p%d" % i))
        data += frame(struct.pack(">ii", 1000 + i, OP["exists"]) +
                      W().ustring(base + "/p%d" % i).bool(False).bytes())
    raw.send(data)
    last = 0
    for i in range(50):
        r = raw.read_reply(100 + i)
        assert r.err == 0 and r.zxid > last
        last = r.zxid
        r = raw.read_reply(1000 + i)
        assert r.err == 0 and r.body.stat().czxid == last


def test_create_ttl_frame_keeps_stream_in_sync(raw, base):
    """createTTL carries a trailing long ttl; the next request on the connection must be
    parsed from the right offset."""
    req1 = frame(struct.pack(">ii", 7, OP["createTTL"]) +
                 zkraw.create_body(base + "/ttl", b"t", flags=zkraw.TTL, ttl=100000))
    req2 = frame(struct.pack(">ii", 8, OP["getData"]) +
                 W().ustring(base + "/ttl").bool(False).bytes())
    raw.send(req1 + req2)
    r1 = raw.read_reply(7)
    assert r1.err == 0 and r1.body.ustring() == base + "/ttl"
    r2 = raw.read_reply(8)
    assert r2.err == 0 and r2.body.buffer() == b"t"


def test_trailing_bytes_in_frame_ignored(raw, base, serving):
    raw.send_frame(struct.pack(">ii", 5, OP["create"]) + zkraw.create_body(base + "/j") + b"JUNK")
    r = raw.read_reply(5)
    assert r.err == 0 and r.body.ustring() == base + "/j"
    assert raw.exists(base + "/j")[0].err == 0
    serving()


def test_frame_split_across_many_writes(raw, base):
    req = frame(struct.pack(">ii", 42, OP["create"]) + zkraw.create_body(base + "/slow", b"s"))
    for b in req:
        raw.send(bytes([b]))
        time.sleep(0.002)
    r = raw.read_reply(42)
    assert r.err == 0 and r.body.ustring() == base + "/slow"


def test_handshake_split_and_pipelined_with_requests(raw_factory, base):
    """A Java client pipelines ConnectRequest, auth and requests without waiting."""
    c = raw_factory(handshake=False)
    data = (frame(zkraw.connect_request(timeout=5000)) +
            frame(struct.pack(">ii", -4, OP["auth"]) + W().int(0).ustring("digest")
                  .buffer(b"bob:secret").bytes()) +
            frame(struct.pack(">ii", 1, OP["create"]) +
                  zkraw.create_body(base + "/pipe", acl=[(31, "auth", "")])))
    c.send(data[:3])
    time.sleep(0.05)
    c.send(data[3:])
    resp = zkraw.parse_connect_response(c.recv_frame())
    assert resp.timeOut == 5000 and resp.passwd == zkraw.session_passwd(resp.sessionId)
    c.session_id, c.passwd = resp.sessionId, resp.passwd
    assert c.read_reply(-4).err == 0
    r = c.read_reply(1)
    assert r.err == 0
    assert c.get_acl(base + "/pipe")[1] == [(31, "digest", "bob:fyVmFCwVbTJYrznoSu1koqYEYF0=")]


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("opcode", [999, 10, 0, -3, 108, 50])
def test_unknown_opcode(raw, serving, opcode):
    raw.send_request(opcode, xid=77)
    f = raw.recv_frame()
    assert f == struct.pack(">iqi", 77, -1, ERR["Unimplemented"])
    assert raw.wait_closed(5)
    serving()


def test_malformed_read_body(raw, serving):
    # ustring length runs past the end of the frame
    raw.send_frame(struct.pack(">ii", 3, OP["getData"]) + struct.pack(">i", 100) + b"/ab")
    r = raw.read_reply(3)
    assert r.err == ERR["MarshallingError"] and r.body.at_end()
    assert raw.exists("/")[0].err == 0      # the connection stays usable
    serving()


def test_malformed_write_body(raw, serving):
    raw.send_frame(struct.pack(">ii", 3, OP["create"]) + struct.pack(">i", 100) + b"/ab")
    r = raw.read_reply(3)
    assert r.err == ERR["MarshallingError"] and r.body.at_end()
    assert raw.exists("/")[0].err == 0
    serving()


def test_empty_request_body(raw, serving):
    raw.send_frame(struct.pack(">ii", 4, OP["getData"]))
    r = raw.read_reply(4)
    assert r.err == ERR["MarshallingError"]
    assert raw.ping().err == 0
    serving()


@pytest.mark.parametrize("subop", [3, 11, 99, -5])
def test_multi_with_unsupported_subop(raw, base, serving, subop):
    body = zkraw.multi_body([zkraw.op_create(base + "/never"),
                             (subop, W().ustring(base).bool(False).bytes())])
    rep = raw.call(OP["multi"], body, check=False)
    assert rep.err == ERR["MarshallingError"] and rep.body.at_end()
    assert raw.exists(base + "/never")[0].err == ERR["NoNode"]
    assert raw.ping().err == 0
    serving()


def test_multi_mixing_reads_and_writes(raw, base, serving):
    rep, _ = raw.multi([zkraw.op_get_data("/"), zkraw.op_create(base + "/mm")], check=False)
    assert rep.err == ERR["MarshallingError"]
    rep, _ = raw.multi_read([zkraw.op_get_data("/"), zkraw.op_create(base + "/mm")], check=False)
    assert rep.err == ERR["MarshallingError"]
    assert raw.exists(base + "/mm")[0].err == ERR["NoNode"]
    serving()


@pytest.mark.parametrize("length", [-1, -5, 0x7fffffff, 1048576, 5 * 1024 * 1024])
def test_bad_frame_length_after_handshake(raw, serving, length):
    raw.send(struct.pack(">i", length))
    assert raw.wait_closed(5)
    assert raw.leftover == b""
    serving()


def test_max_frame_length_is_accepted(raw, base, serving):
    # 1048575 (jute.maxbuffer) is accepted as a length; the connection waits for the data
    raw.send(struct.pack(">i", 1048575))
    assert not raw.wait_closed(0.5)
    serving()


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x00\x00\x00\x05hello",
    b"\xff\xff\xff\xf0abcd",
    b"\x00\x00\x00\x00",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",   # TLS ClientHello
    b"ruokruok",
    b"xxxx",
])
def test_garbage_before_handshake(raw_factory, serving, garbage):
    c = raw_factory(handshake=False)
    c.send(garbage)
    assert c.wait_closed(5)
    if garbage.startswith(b"ruok"):
        assert c.leftover == b"imok"
    else:
        assert c.leftover == b""
    serving()


def test_request_before_connect_request(raw_factory, serving):
    c = raw_factory(handshake=False)
    c.send_frame(struct.pack(">ii", 1, OP["getData"]) + W().ustring("/").bool(False).bytes())
    assert c.wait_closed(5)
    assert c.leftover == b""
    serving()


def test_truncated_connect_request(raw_factory, serving):
    c = raw_factory(handshake=False)
    c.send_frame(zkraw.connect_request()[:20])
    assert c.wait_closed(5)
    serving()


def test_four_letter_word_after_handshake_closes(raw, serving):
    raw.send(b"ruok")
    assert raw.wait_closed(5)
    assert raw.leftover == b""
    serving()


def test_truncated_frame_then_disconnect(raw_factory, serving):
    c = raw_factory()
    req = frame(struct.pack(">ii", 1, OP["create"]) + zkraw.create_body("/trunc_never"))
    c.send(req[:len(req) // 2])
    c.close()
    serving()
    r = raw_factory()
    assert r.exists("/trunc_never")[0].err == ERR["NoNode"]


def test_half_frame_does_not_block_others(raw_factory, base, serving):
    slow = raw_factory()
    req = frame(struct.pack(">ii", 9, OP["create"]) + zkraw.create_body(base + "/half"))
    slow.send(req[:7])
    stalled_hs = raw_factory(handshake=False)
    stalled_hs.send(frame(zkraw.connect_request())[:10])
    t0 = time.monotonic()
    for _ in range(5):
        serving()
    fast = raw_factory()
    fast.create(base + "/other")
    assert time.monotonic() - t0 < 5
    slow.send(req[7:])                      # completing the frame later works
    r = slow.read_reply(9)
    assert r.err == 0 and r.body.ustring() == base + "/half"


def test_sessionless_connection_is_not_served_forever(raw_factory, serving):
    # half a ConnectRequest: the server must not answer it; other clients are served
    c = raw_factory(handshake=False)
    c.send(frame(zkraw.connect_request())[:12])
    assert not c.wait_closed(1.0)
    assert c.leftover == b""
    serving()


def test_close_session_then_more_requests(raw, serving):
    raw.send(frame(struct.pack(">ii", 1, OP["closeSession"])) +
             frame(struct.pack(">ii", 2, OP["exists"]) + W().ustring("/").bool(False).bytes()))
    r = raw.read_reply(1)
    assert r.err == 0
    assert raw.wait_closed(5)
    raw.session_closed = True
    serving()


# ------------------------------------------------------------------ connection limits

def _open(host, port, source, n, timeout=10000):
    cs = []
    for _ in range(n):
        cs.append(zkraw.RawClient(host, port, source=source, timeout=15.0))
    for c in cs:
        c.send_frame(zkraw.connect_request(timeout=timeout))
    for c in cs:
        resp = zkraw.parse_connect_response(c.recv_frame())
        assert resp.passwd == zkraw.session_passwd(resp.sessionId)
        c.session_id, c.passwd = resp.sessionId, resp.passwd
    return cs


def _close_all(cs):
    for c in cs:
        try:
            c.send_request(OP["closeSession"], xid=999)
        except OSError:
            pass
    for c in cs:
        try:
            c.read_reply(999, timeout=10)
        except (OSError, ConnectionError):
            pass
        c.close()


def test_max_client_cnxns_per_address(zk_hostport, serving):
    host, port = zk_hostport
    src = "127.0.0.77"
    cs = _open(host, port, src, 60)
    try:
        for c in cs:
            c.send_request(OP["exists"], W().ustring("/").bool(False).bytes(), xid=5)
        for c in cs:
            assert c.read_reply(5).err == 0
        # the 61st connection from the same address is closed at accept, without data
        # (depending on timing the client sees EOF, a reset or a broken pipe)
        for _ in range(3):
            extra = None
            try:
                extra = zkraw.RawClient(host, port, source=src, timeout=5.0)
                extra.send_frame(zkraw.connect_request())
                assert extra.wait_closed(5)
                assert extra.leftover == b""
            except OSError:
                pass
            finally:
                if extra:
                    extra.close()
        serving()                                   # other addresses are unaffected
        serving(source="127.0.0.78")
    finally:
        _close_all(cs)
    # once connections are gone the address is accepted again
    deadline = time.monotonic() + 10
    while True:
        try:
            serving(source=src)
            break
        except (AssertionError, OSError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_many_connections_from_several_addresses(zk_hostport, serving):
    host, port = zk_hostport
    cs = []
    try:
        # Thousands at once: 2,000 sessions from 40 addresses (maxClientCnxns is 60 per address).
        for i in range(40):
            cs += _open(host, port, "127.0.1.%d" % (i + 1), 50)
        assert len({c.session_id for c in cs}) == 2000
        for c in cs:
            c.send_request(OP["exists"], W().ustring("/zookeeper").bool(False).bytes(), xid=3)
        for c in cs:
            r = c.read_reply(3)
            assert r.err == 0 and r.body.stat().numChildren == 2
        serving()
    finally:
        _close_all(cs)
    serving()
