"""Error codes for every failure path reachable from a client (PROTOCOL.md 2.7, 2.8, 2.11)."""
import pytest
from kazoo.exceptions import (BadArgumentsError, BadVersionError, InvalidACLError,
                              NoChildrenForEphemeralsError, NoNodeError, NodeExistsError,
                              NotEmptyError)
from kazoo.security import make_acl

import zkraw
from helpers import wait_until
from zkraw import ERR


def test_no_node_kazoo(zk, base):
    m = base + "/missing"
    for call in (lambda: zk.get(m), lambda: zk.set(m, b""), lambda: zk.delete(m),
                 lambda: zk.get_children(m), lambda: zk.get_acls(m),
                 lambda: zk.set_acls(m, [make_acl("world", "anyone", all=True)]),
                 lambda: zk.create(m + "/child")):
        with pytest.raises(NoNodeError):
            call()
    assert zk.exists(m) is None


def test_no_node_raw_has_no_body(raw, base):
    m = base + "/missing"
    for rep in (raw.get_data(m, check=False)[0], raw.exists(m)[0],
                raw.get_children(m, check=False)[0], raw.get_acl(m, check=False)[0],
                raw.set_data(m, b"", check=False)[0], raw.delete(m, check=False),
                raw.get_all_children_number(m, check=False)[0],
                raw.create(m + "/x", check=False),
                raw.create(m + "/x", flags=zkraw.CONTAINER, check=False),
                raw.create(m + "/x", flags=zkraw.TTL, ttl=1000, check=False)):
        assert rep.err == ERR["NoNode"]
        assert rep.body.at_end()


def test_node_exists(zk, base):
    zk.create(base + "/a")
    with pytest.raises(NodeExistsError):
        zk.create(base + "/a")
    with pytest.raises(NodeExistsError):
        zk.create(base + "/a", ephemeral=True)
    with pytest.raises(NodeExistsError):
        zk.create(base, include_data=True)


def test_node_exists_raw_kinds(raw, base):
    raw.create(base + "/a")
    for flags, ttl in ((zkraw.CONTAINER, None), (zkraw.TTL, 1000), (zkraw.EPHEMERAL, None)):
        assert raw.create(base + "/a", flags=flags, ttl=ttl, check=False).err == ERR["NodeExists"]


def test_not_empty(zk, base):
    zk.create(base + "/p/c", makepath=True)
    with pytest.raises(NotEmptyError):
        zk.delete(base + "/p")
    with pytest.raises(NotEmptyError):
        zk.delete(base + "/p", version=0)


def test_bad_version(zk, base):
    zk.create(base + "/v")
    with pytest.raises(BadVersionError):
        zk.set(base + "/v", b"", version=1)
    with pytest.raises(BadVersionError):
        zk.delete(base + "/v", version=3)
    with pytest.raises(BadVersionError):
        zk.set_acls(base + "/v", [make_acl("world", "anyone", all=True)], version=2)


def test_delete_version_checked_before_not_empty(raw, base):
    raw.create(base + "/p")
    raw.create(base + "/p/c")
    assert raw.delete(base + "/p", 5, check=False).err == ERR["BadVersion"]
    assert raw.delete(base + "/p", 0, check=False).err == ERR["NotEmpty"]


def test_no_children_for_ephemerals(zk, raw, base):
    zk.create(base + "/e", ephemeral=True)
    with pytest.raises(NoChildrenForEphemeralsError):
        zk.create(base + "/e/c")
    with pytest.raises(NoChildrenForEphemeralsError):
        zk.create(base + "/e/s", sequence=True)
    # from another session too
    assert raw.create(base + "/e/c", check=False).err == ERR["NoChildrenForEphemerals"]
    # containers and TTL nodes may have children
    raw.create(base + "/c", flags=zkraw.CONTAINER)
    raw.create(base + "/c/kid")
    raw.create(base + "/t", flags=zkraw.TTL, ttl=100000)
    raw.create(base + "/t/kid")
    # let the container manager remove the emptied container inside this test (a removal
    # racing the fixture's cleanup would write an error txn during a later test)
    raw.delete(base + "/c/kid")
    wait_until(lambda: raw.exists(base + "/c")[0].err == ERR["NoNode"], timeout=8,
               msg="container removal")


def test_node_exists_checked_before_ephemeral_parent(raw, base):
    raw.create(base + "/e", flags=zkraw.EPHEMERAL)
    assert raw.create(base + "/e", flags=zkraw.EPHEMERAL, check=False).err == ERR["NodeExists"]


def test_invalid_acl(zk, raw, base):
    with pytest.raises(InvalidACLError):
        zk.create(base + "/a", acl=[make_acl("digest", "nocolon", all=True)])
    with pytest.raises(InvalidACLError):
        zk.create(base + "/a", acl=[make_acl("auth", "", all=True)])
    cases = [
        [],                                     # empty list
        None,                                   # null list
        [(31, "digest", "nocolon")],
        [(31, "ip", "300.1.1.1")],
        [(31, "ip", "127.0.0.1/33")],
        [(31, "ip", "not-an-ip")],
        [(31, "foo", "bar")],                   # unknown scheme
        [(31, "auth", "")],                     # no authenticated ids
        [(31, "world", "bob")],                 # world only knows anyone
        [(31, "world", "anyone"), (31, "digest", "x")],
    ]
    for acl in cases:
        rep = raw.create(base + "/a", acl=acl, check=False)
        assert rep.err == ERR["InvalidACL"], acl
    raw.create(base + "/ok")
    for acl in cases:
        assert raw.set_acl(base + "/ok", acl, check=False)[0].err == ERR["InvalidACL"], acl
    assert raw.exists(base + "/a")[0].err == ERR["NoNode"]


def test_acl_perms_zero_is_accepted(raw, base):
    raw.create(base + "/z", acl=[(0, "world", "anyone")])
    assert raw.get_data(base + "/z", check=False)[0].err == ERR["NoAuth"]
    assert raw.get_acl(base + "/z", check=False)[0].err == ERR["NoAuth"]
    assert raw.exists(base + "/z")[0].err == 0


@pytest.mark.parametrize("suffix", ["//x", "/x/", "/x//y", "/.", "/..", "/x\x01",
                                    "/x\x1f", "/x\x7f", "/x\u0085", "/x\ufff5", "/x\ue000"])
def test_create_bad_path_bad_arguments(raw, base, suffix):
    # where the parent exists, an invalid final path is BadArguments
    raw.create(base + "/x")
    path = base + suffix
    # parent lookup happens before path validation: "/x/" has parent "/x" (exists) →
    # BadArguments, but "//x" has parent "base/" (missing) → NoNode
    rep = raw.create(path, check=False)
    expected = {"/x//y": ERR["NoNode"], "//x": ERR["NoNode"]}.get(suffix, ERR["BadArguments"])
    assert rep.err == expected


@pytest.mark.parametrize("path,err", [
    ("", -8), ("noslash", -8), ("/a\x00b", -8),
    ("/nosuchparent/", -101), ("/./a", -101), ("/nosuch/..", -101),
])
def test_create_path_errors(raw, path, err):
    assert raw.create(path, check=False).err == err


def test_sequential_bad_path_is_validated_after_suffix(raw, base):
    # "base/" + suffix is valid once the suffix is appended
    rep, path, _ = raw.create2(base + "/", flags=zkraw.PERSISTENT_SEQ)
    assert path == base + "/0000000000"


@pytest.mark.parametrize("path", ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"])
def test_delete_special_paths(zk, raw, path):
    assert raw.delete(path, check=False).err == ERR["BadArguments"]
    with pytest.raises(BadArgumentsError):
        zk.delete(path)
    assert raw.exists(path)[0].err == 0


@pytest.mark.parametrize("path,err", [("noslash", -8), ("/a\x00", -8), ("/nosuch/", -101)])
def test_delete_path_errors(raw, path, err):
    assert raw.delete(path, check=False).err == err


def test_set_data_bad_path(raw):
    for p in ("/a/", "bad", "//"):
        assert raw.set_data(p, b"", check=False)[0].err == ERR["BadArguments"]


def test_read_bad_path_is_no_node(raw):
    assert raw.get_data("bad", check=False)[0].err == ERR["NoNode"]
    assert raw.get_data("/zookeeper/", check=False)[0].err == ERR["NoNode"]
    assert raw.get_children("bad", check=False)[0].err == ERR["NoNode"]
    assert raw.exists("/a\x00b")[0].err == ERR["BadArguments"]


def test_write_to_zookeeper_config_no_auth(raw):
    assert raw.set_data("/zookeeper/config", b"x", check=False)[0].err == ERR["NoAuth"]


def test_set_data_too_large(raw, base):
    raw.create(base + "/big")
    # 1 MiB + header exceeds jute.maxbuffer: the server closes the connection
    try:
        raw.set_data(base + "/big", b"x" * (1024 * 1024 + 10), check=False)
        closed = False
    except (ConnectionError, OSError):
        closed = True
    assert closed or raw.wait_closed(5)
