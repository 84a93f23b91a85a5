"""Tiny raw-socket ZooKeeper client with its own jute encoder/decoder.

Used by the compat tests for everything kazoo does not expose (TTL/container creates,
addWatch, removeWatches, getEphemerals, whoAmI, setWatches, golden bytes, bad input).
Everything is big-endian (PROTOCOL.md section 1).
"""
import collections
import hashlib
import base64
import os
import select
import socket
import struct
import time

# ---------------------------------------------------------------- constants

OP = dict(
    notification=0, create=1, delete=2, exists=3, getData=4, setData=5, getACL=6,
    setACL=7, getChildren=8, sync=9, ping=11, getChildren2=12, check=13, multi=14,
    create2=15, reconfig=16, checkWatches=17, removeWatches=18, createContainer=19,
    deleteContainer=20, createTTL=21, multiRead=22, auth=100, setWatches=101,
    sasl=102, getEphemerals=103, getAllChildrenNumber=104, setWatches2=105,
    addWatch=106, whoAmI=107, closeSession=-11,
)

ERR = dict(
    OK=0, RuntimeInconsistency=-2, MarshallingError=-5, Unimplemented=-6,
    BadArguments=-8, NoNode=-101, NoAuth=-102, BadVersion=-103,
    NoChildrenForEphemerals=-108, NodeExists=-110, NotEmpty=-111,
    SessionExpired=-112, InvalidACL=-114, AuthFailed=-115, NoWatcher=-121,
    ReconfigDisabled=-123,
)

# event types / states
EV_CREATED, EV_DELETED, EV_CHANGED, EV_CHILD = 1, 2, 3, 4
STATE_SYNC_CONNECTED = 3

# create flags
PERSISTENT, EPHEMERAL, PERSISTENT_SEQ, EPHEMERAL_SEQ, CONTAINER, TTL, TTL_SEQ = range(7)

PERM_READ, PERM_WRITE, PERM_CREATE, PERM_DELETE, PERM_ADMIN, PERM_ALL = 1, 2, 4, 8, 16, 31
OPEN_ACL = [(PERM_ALL, "world", "anyone")]

CONTAINER_MARKER = -0x8000000000000000


def digest_id(user, password):
    """digest ACL id for user:password (SHA1, base64)."""
    d = hashlib.sha1(("%s:%s" % (user, password)).encode()).digest()
    return "%s:%s" % (user, base64.b64encode(d).decode())


# ---------------------------------------------------------------- Java Random password

def java_random_bytes(seed, n):
    mask = (1 << 48) - 1
    s = (seed ^ 0x5DEECE66D) & mask
    out = bytearray()
    while len(out) < n:
        s = (s * 0x5DEECE66D + 0xB) & mask
        r = s >> 16
        if r & 0x80000000:
            r -= 1 << 32
        for _ in range(min(4, n - len(out))):
            out.append(r & 0xFF)
            r >>= 8
    return bytes(out)


def session_passwd(session_id):
    """ZooKeeperServer.generatePasswd: Random(sessionId ^ 0xB3415C00).nextBytes(16)."""
    return java_random_bytes((session_id ^ 0xB3415C00) & 0xFFFFFFFFFFFFFFFF, 16)


# ---------------------------------------------------------------- jute writer / reader

class W:
    def __init__(self):
        self.b = bytearray()

    def int(self, v):
        self.b += struct.pack(">i", v)
        return self

    def long(self, v):
        self.b += struct.pack(">q", v)
        return self

    def bool(self, v):
        self.b += b"\x01" if v else b"\x00"
        return self

    def buffer(self, v):
        if v is None:
            return self.int(-1)
        self.int(len(v))
        self.b += v
        return self

    def ustring(self, v):
        if v is None:
            return self.int(-1)
        if isinstance(v, str):
            v = v.encode("utf-8")
        return self.buffer(v)

    def strings(self, v):
        if v is None:
            return self.int(-1)
        self.int(len(v))
        for s in v:
            self.ustring(s)
        return self

    def acls(self, acls):
        if acls is None:
            return self.int(-1)
        self.int(len(acls))
        for perms, scheme, ident in acls:
            self.int(perms).ustring(scheme).ustring(ident)
        return self

    def raw(self, data):
        self.b += data
        return self

    def bytes(self):
        return bytes(self.b)


Stat = collections.namedtuple(
    "Stat", "czxid mzxid ctime mtime version cversion aversion ephemeralOwner "
            "dataLength numChildren pzxid")


class ShortRead(Exception):
    pass


class R:
    def __init__(self, data, off=0):
        self.d = data
        self.o = off

    def _take(self, n):
        if self.o + n > len(self.d):
            raise ShortRead("need %d bytes at %d of %d" % (n, self.o, len(self.d)))
        v = self.d[self.o:self.o + n]
        self.o += n
        return v

    def int(self):
        return struct.unpack(">i", self._take(4))[0]

    def long(self):
        return struct.unpack(">q", self._take(8))[0]

    def bool(self):
        return self._take(1) != b"\x00"

    def buffer(self):
        n = self.int()
        if n < 0:
            return None
        return self._take(n)

    def ustring(self):
        b = self.buffer()
        return None if b is None else b.decode("utf-8", "replace")

    def strings(self):
        n = self.int()
        if n < 0:
            return None
        return [self.ustring() for _ in range(n)]

    def acls(self):
        n = self.int()
        return [(self.int(), self.ustring(), self.ustring()) for _ in range(n)]

    def stat(self):
        return Stat(self.long(), self.long(), self.long(), self.long(), self.int(),
                    self.int(), self.int(), self.long(), self.int(), self.int(),
                    self.long())

    def rest(self):
        return self.d[self.o:]

    def at_end(self):
        return self.o == len(self.d)


# ---------------------------------------------------------------- records

def connect_request(timeout=10000, session_id=0, passwd=b"\x00" * 16, last_zxid=0,
                    read_only=False, old_client=False, protocol_version=0):
    w = W().int(protocol_version).long(last_zxid).int(timeout).long(session_id).buffer(passwd)
    if not old_client:
        w.bool(read_only)
    return w.bytes()


ConnectResponse = collections.namedtuple(
    "ConnectResponse", "protocolVersion timeOut sessionId passwd readOnly raw")


def parse_connect_response(body):
    r = R(body)
    pv, to, sid, pw = r.int(), r.int(), r.long(), r.buffer()
    ro = r.bool() if not r.at_end() else None
    return ConnectResponse(pv, to, sid, pw, ro, body)


def frame(payload):
    return struct.pack(">i", len(payload)) + payload


Event = collections.namedtuple("Event", "type state path")
Reply = collections.namedtuple("Reply", "xid zxid err body")


def create_body(path, data=b"", acl=OPEN_ACL, flags=0, ttl=None):
    w = W().ustring(path).buffer(data).acls(acl).int(flags)
    if ttl is not None:
        w.long(ttl)
    return w.bytes()


class MultiResult(collections.namedtuple("MultiResult", "type err path stat data children")):
    pass


def multi_body(ops):
    """ops: list of (type, body_bytes). Returns MultiOperationRecord bytes."""
    w = W()
    for t, body in ops:
        w.int(t).bool(False).int(-1).raw(body)
    w.int(-1).bool(True).int(-1)
    return w.bytes()


def parse_multi_response(body):
    r = R(body)
    out = []
    while True:
        t, done, err = r.int(), r.bool(), r.int()
        if done:
            assert t == -1 and err == -1, (t, err)
            break
        path = stat = data = children = None
        if t == -1:
            e2 = r.int()
            assert e2 == err
        elif t == OP["create"]:
            path = r.ustring()
        elif t == OP["create2"]:
            path = r.ustring()
            stat = r.stat()
        elif t == OP["setData"]:
            stat = r.stat()
        elif t == OP["getData"]:
            data = r.buffer()
            stat = r.stat()
        elif t == OP["getChildren"]:
            children = r.strings()
        out.append(MultiResult(t, err, path, stat, data, children))
    assert r.at_end()
    return out


# ---------------------------------------------------------------- socket client

def parse_hostport(connect):
    first = connect.split(",")[0]
    host, port = first.rsplit(":", 1)
    return host, int(port)


class ZKError(Exception):
    def __init__(self, err, reply=None):
        Exception.__init__(self, "zk error %d" % err)
        self.err = err
        self.reply = reply


class RawClient:
    """A single TCP connection. `connect()` performs the handshake."""

    def __init__(self, host, port, source=None, timeout=10.0):
        self.host, self.port = host, port
        self.io_timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if source:
            self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = b""
        self.xid = 0
        self.events = []
        self.session_id = None
        self.passwd = None
        self.connect_response = None
        self.closed = False
        self.session_closed = False

    # -- low level
    def send(self, data):
        self.sock.sendall(data)

    def send_frame(self, payload):
        self.send(frame(payload))

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("timed out waiting for %d bytes" % n)
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by server")
            self.buf += chunk

    def recv_exact(self, n, timeout=None):
        deadline = time.monotonic() + (timeout or self.io_timeout)
        self._fill(n, deadline)
        v, self.buf = self.buf[:n], self.buf[n:]
        return v

    def recv_frame(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.io_timeout)
        self._fill(4, deadline)
        n = struct.unpack(">i", self.buf[:4])[0]
        assert 0 <= n < 64 * 1024 * 1024, n
        self._fill(4 + n, deadline)
        v, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        return v

    def wait_closed(self, timeout=5.0):
        """True if the server closes the connection (EOF/RST) within timeout; any
        pending bytes are discarded and returned in self.leftover."""
        deadline = time.monotonic() + timeout
        self.leftover = self.buf
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True
            self.leftover += chunk

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True

    # -- handshake
    def connect(self, timeout=10000, session_id=0, passwd=b"\x00" * 16, last_zxid=0,
                old_client=False, read_only=False):
        self.send_frame(connect_request(timeout, session_id, passwd, last_zxid,
                                        read_only, old_client))
        body = self.recv_frame()
        resp = parse_connect_response(body)
        if resp.sessionId == 0:
            self.session_closed = True      # expired/invalid: nothing to clean up
        self.connect_response = resp
        self.session_id = resp.sessionId
        self.passwd = resp.passwd
        return resp

    # -- requests
    def next_xid(self):
        self.xid += 1
        return self.xid

    def send_request(self, opcode, body=b"", xid=None):
        if xid is None:
            xid = self.next_xid()
        self.send_frame(struct.pack(">ii", xid, opcode) + body)
        return xid

    def read_reply(self, xid=None, timeout=None):
        """Read frames until a non-notification reply (optionally with xid). Notifications
        are appended to self.events."""
        deadline = time.monotonic() + (timeout or self.io_timeout)
        while True:
            f = self.recv_frame(max(0.001, deadline - time.monotonic()))
            r = R(f)
            rxid, zxid, err = r.int(), r.long(), r.int()
            if rxid == -1:
                self.events.append(Event(r.int(), r.int(), r.ustring()))
                continue
            if xid is not None and rxid != xid:
                raise AssertionError("reply xid %d, expected %d" % (rxid, xid))
            return Reply(rxid, zxid, err, R(f, r.o))

    def call(self, opcode, body=b"", check=True, timeout=None):
        xid = self.send_request(opcode, body)
        rep = self.read_reply(xid, timeout)
        if check and rep.err != 0:
            raise ZKError(rep.err, rep)
        return rep

    def wait_event(self, timeout=5.0, pred=None):
        """Return the first queued/arriving notification (matching pred)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if pred is None or pred(e):
                    return self.events.pop(i)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("no event within %.1fs (have %r)" % (timeout, self.events))
            f = self.recv_frame(remaining)
            r = R(f)
            rxid, zxid, err = r.int(), r.long(), r.int()
            assert rxid == -1, "unexpected non-event frame xid=%d" % rxid
            assert (zxid, err) == (-1, 0)
            self.events.append(Event(r.int(), r.int(), r.ustring()))

    def no_event(self, wait=0.3):
        """Assert no notification arrives within `wait` seconds."""
        try:
            e = self.wait_event(wait)
        except socket.timeout:
            return True
        raise AssertionError("unexpected event %r" % (e,))

    # -- operations (return Reply or decoded values)
    def ping(self):
        self.send_request(OP["ping"], xid=-2)
        return self.read_reply(-2)

    def auth(self, scheme, cred):
        if isinstance(cred, str):
            cred = cred.encode()
        self.send_request(OP["auth"], W().int(0).ustring(scheme).buffer(cred).bytes(), xid=-4)
        return self.read_reply(-4)

    def create(self, path, data=b"", acl=OPEN_ACL, flags=0, ttl=None, opcode=None, check=True):
        if opcode is None:
            if ttl is not None:
                opcode = OP["createTTL"]
            elif flags == CONTAINER:
                opcode = OP["createContainer"]
            else:
                opcode = OP["create2"]
        return self.call(opcode, create_body(path, data, acl, flags, ttl), check)

    def create2(self, *a, **kw):
        rep = self.create(*a, **kw)
        if rep.err:
            return rep, None, None
        return rep, rep.body.ustring(), rep.body.stat()

    def delete(self, path, version=-1, check=True):
        return self.call(OP["delete"], W().ustring(path).int(version).bytes(), check)

    def exists(self, path, watch=False, check=False):
        rep = self.call(OP["exists"], W().ustring(path).bool(watch).bytes(), check)
        return rep, (rep.body.stat() if rep.err == 0 else None)

    def get_data(self, path, watch=False, check=True):
        rep = self.call(OP["getData"], W().ustring(path).bool(watch).bytes(), check)
        if rep.err:
            return rep, None, None
        return rep, rep.body.buffer(), rep.body.stat()

    def set_data(self, path, data, version=-1, check=True):
        rep = self.call(OP["setData"], W().ustring(path).buffer(data).int(version).bytes(), check)
        return rep, (rep.body.stat() if rep.err == 0 else None)

    def get_children(self, path, watch=False, check=True):
        rep = self.call(OP["getChildren2"], W().ustring(path).bool(watch).bytes(), check)
        if rep.err:
            return rep, None, None
        return rep, rep.body.strings(), rep.body.stat()

    def get_children1(self, path, watch=False, check=True):
        rep = self.call(OP["getChildren"], W().ustring(path).bool(watch).bytes(), check)
        return rep, (rep.body.strings() if rep.err == 0 else None)

    def get_acl(self, path, check=True):
        rep = self.call(OP["getACL"], W().ustring(path).bytes(), check)
        if rep.err:
            return rep, None, None
        return rep, rep.body.acls(), rep.body.stat()

    def set_acl(self, path, acl, version=-1, check=True):
        rep = self.call(OP["setACL"], W().ustring(path).acls(acl).int(version).bytes(), check)
        return rep, (rep.body.stat() if rep.err == 0 else None)

    def sync(self, path):
        rep = self.call(OP["sync"], W().ustring(path).bytes())
        return rep, rep.body.ustring()

    def add_watch(self, path, mode, check=True):
        return self.call(OP["addWatch"], W().ustring(path).int(mode).bytes(), check)

    def remove_watches(self, path, wtype, check=False):
        return self.call(OP["removeWatches"], W().ustring(path).int(wtype).bytes(), check)

    def check_watches(self, path, wtype, check=False):
        return self.call(OP["checkWatches"], W().ustring(path).int(wtype).bytes(), check)

    def get_ephemerals(self, prefix, check=True):
        rep = self.call(OP["getEphemerals"], W().ustring(prefix).bytes(), check)
        return rep, (rep.body.strings() if rep.err == 0 else None)

    def get_all_children_number(self, path, check=True):
        rep = self.call(OP["getAllChildrenNumber"], W().ustring(path).bytes(), check)
        return rep, (rep.body.int() if rep.err == 0 else None)

    def whoami(self):
        rep = self.call(OP["whoAmI"])
        n = rep.body.int()
        return rep, [(rep.body.ustring(), rep.body.ustring()) for _ in range(n)]

    def set_watches(self, rel_zxid, data=(), exist=(), child=(), persistent=None,
                    recursive=None):
        w = W().long(rel_zxid).strings(list(data)).strings(list(exist)).strings(list(child))
        op = OP["setWatches"]
        if persistent is not None or recursive is not None:
            w.strings(list(persistent or ())).strings(list(recursive or ()))
            op = OP["setWatches2"]
        self.send_request(op, w.bytes(), xid=-8)
        return self.read_reply(-8)

    def multi(self, ops, check=True):
        rep = self.call(OP["multi"], multi_body(ops), check)
        return rep, (parse_multi_response(rep.body.rest()) if rep.err == 0 else None)

    def multi_read(self, ops, check=True):
        rep = self.call(OP["multiRead"], multi_body(ops), check)
        return rep, (parse_multi_response(rep.body.rest()) if rep.err == 0 else None)

    def close_session(self):
        rep = self.call(OP["closeSession"], check=False)
        if rep.err == 0:
            self.session_closed = True
        return rep


# multi sub-op body helpers
def op_create(path, data=b"", acl=OPEN_ACL, flags=0, ttl=None, t=None):
    if t is None:
        t = OP["createTTL"] if ttl is not None else OP["create"]
    return (t, create_body(path, data, acl, flags, ttl))


def op_delete(path, version=-1):
    return (OP["delete"], W().ustring(path).int(version).bytes())


def op_set(path, data, version=-1):
    return (OP["setData"], W().ustring(path).buffer(data).int(version).bytes())


def op_check(path, version):
    return (OP["check"], W().ustring(path).int(version).bytes())


def op_get_data(path):
    return (OP["getData"], W().ustring(path).bool(False).bytes())


def op_get_children(path):
    return (OP["getChildren"], W().ustring(path).bool(False).bytes())


# ---------------------------------------------------------------- four-letter words

def four_letter(host, port, cmd, extra=b"", timeout=10.0, source=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if source:
        s.bind((source, 0))
    s.settimeout(timeout)
    s.connect((host, port))
    try:
        s.sendall(cmd.encode() + extra)
        out = b""
        deadline = time.monotonic() + timeout
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out.decode("utf-8", "replace")
    finally:
        s.close()


def assert_serving(host, port, source=None):
    """A fresh client can complete a handshake and run a read and a write."""
    c = RawClient(host, port, source=source, timeout=10.0)
    try:
        resp = c.connect(timeout=5000)
        assert resp.timeOut == 5000 and resp.sessionId != 0
        assert resp.passwd == session_passwd(resp.sessionId)
        rep, stat = c.exists("/")
        assert rep.err == 0 and stat is not None
        assert c.ping().err == 0
        rep, children = c.get_children1("/")
        assert rep.err == 0 and "zookeeper" in children
        c.close_session()
    finally:
        c.close()


def end_session(host, port, session_id, passwd, timeout=5.0):
    """Best-effort: resume a session by id/password and close it, so that it does not
    expire later (which would write a closeSession txn in the middle of another test)."""
    try:
        c = RawClient(host, port, timeout=timeout)
    except OSError:
        return
    try:
        resp = c.connect(timeout=10000, session_id=session_id, passwd=passwd)
        if resp.sessionId == session_id:
            c.close_session()
    except (OSError, ConnectionError, ShortRead, AssertionError):
        pass
    finally:
        c.close()
