"""Shared fixtures for the ferrokeeper/ZooKeeper compat suite.

Environment (see run.sh): ZK_CONNECT (host:port), ZK_PORT, ZK_TARGET (zookeeper|ferrokeeper),
ZK_WORKDIR (server work dir holding zoo.cfg).
"""
import os
import sys
import time
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import zkraw  # noqa: E402
from kazoo.client import KazooClient  # noqa: E402

SUPER_USER = "super:test"


def _connect_string():
    c = os.environ.get("ZK_CONNECT")
    if not c:
        c = "127.0.0.1:%s" % os.environ.get("ZK_PORT", "21810")
    return c


@pytest.fixture(scope="session")
def zk_connect():
    """The server's connect string, e.g. 127.0.0.1:21810."""
    return _connect_string()


@pytest.fixture(scope="session")
def zk_hostport(zk_connect):
    return zkraw.parse_hostport(zk_connect)


@pytest.fixture(scope="session")
def zk_target():
    return os.environ.get("ZK_TARGET", "zookeeper")


@pytest.fixture(scope="session")
def zk_workdir():
    return os.environ.get("ZK_WORKDIR", "")


@pytest.fixture
def kazoo_factory(zk_connect):
    """Factory for started KazooClients; every client is stopped and closed at teardown.
    Keyword arguments go to KazooClient (e.g. auth_data, timeout)."""
    clients = []

    def make(start=True, **kw):
        kw.setdefault("timeout", 10.0)
        c = KazooClient(hosts=kw.pop("hosts", zk_connect), **kw)
        clients.append(c)
        if start:
            c.start(timeout=15)
        return c

    yield make
    for c in clients:
        try:
            c.stop()
        except Exception:
            pass
        try:
            c.close()
        except Exception:
            pass


@pytest.fixture
def zk(kazoo_factory):
    """One connected kazoo client."""
    return kazoo_factory()


@pytest.fixture
def raw_factory(zk_hostport):
    """Factory for raw clients. raw_factory() -> connected (handshake done) RawClient;
    raw_factory(handshake=False) -> bare TCP connection. Closed at teardown."""
    clients = []
    host, port = zk_hostport

    def make(handshake=True, source=None, timeout=10000, io_timeout=10.0, **kw):
        c = zkraw.RawClient(host, port, source=source, timeout=io_timeout)
        clients.append(c)
        if handshake:
            c.connect(timeout=timeout, **kw)
        return c

    yield make
    # close every session these clients opened (unless already closed/expired), so no
    # session expires later in the middle of another test
    closed = {c.session_id for c in clients if c.session_closed}
    todo = {}
    for c in clients:
        if c.session_id and c.session_id not in closed and c.passwd:
            todo.setdefault(c.session_id, c.passwd)
    for c in clients:
        c.close()
    for sid, pw in todo.items():
        zkraw.end_session(host, port, sid, pw)


@pytest.fixture
def raw(raw_factory):
    return raw_factory()


@pytest.fixture
def flw(zk_hostport):
    """flw('srvr') -> text output of a four-letter word."""
    host, port = zk_hostport

    def run(cmd, extra=b""):
        return zkraw.four_letter(host, port, cmd, extra)

    return run


@pytest.fixture
def serving(zk_hostport):
    """serving() asserts that a fresh client is still served (call after bad input)."""
    host, port = zk_hostport

    def check(source=None):
        zkraw.assert_serving(host, port, source=source)

    return check


@pytest.fixture
def base(request, zk_connect):
    """A fresh, empty persistent node unique to this test; removed (as super user) after."""
    name = "".join(ch if ch.isalnum() else "_" for ch in request.node.name)[:60]
    path = "/py_%s_%s" % (name, uuid.uuid4().hex[:8])
    admin = KazooClient(hosts=zk_connect, timeout=10.0,
                        auth_data=[("digest", SUPER_USER)])
    admin.start(timeout=15)
    admin.create(path)
    yield path
    try:
        admin.delete(path, recursive=True)
    except Exception:
        pass
    admin.stop()
    admin.close()


