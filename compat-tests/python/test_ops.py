"""Every client opcode, through kazoo where kazoo exposes it, else through the raw client."""
import pytest
from kazoo.exceptions import (BadVersionError, NoNodeError, NodeExistsError, NotEmptyError,
                              RolledBackError, RuntimeInconsistency, ReconfigDisabledError)
from kazoo.security import make_digest_acl, OPEN_ACL_UNSAFE, READ_ACL_UNSAFE

import zkraw
from zkraw import OP, ERR
from helpers import tolerate_background_writes, assert_recent, wait_until


def assert_fresh_stat(stat, zxid, data_len=0, owner=0):
    assert stat.czxid == stat.mzxid == stat.pzxid == zxid
    assert stat.ctime == stat.mtime
    assert_recent(stat.ctime)
    assert (stat.version, stat.cversion, stat.aversion) == (0, 0, 0)
    assert stat.ephemeralOwner == owner
    assert stat.dataLength == data_len
    assert stat.numChildren == 0


# ------------------------------------------------------------------ create

def test_create_persistent_include_data(zk, base):
    path, stat = zk.create(base + "/a", b"data", include_data=True)
    assert path == base + "/a"
    assert_fresh_stat(stat, zk.last_zxid, data_len=4)
    data, stat2 = zk.get(base + "/a")
    assert data == b"data"
    assert stat2 == stat


def test_create_plain_returns_path_only(zk, base):
    assert zk.create(base + "/p", b"") == base + "/p"
    stat = zk.exists(base + "/p")
    assert stat.czxid == zk.last_zxid
    assert stat.dataLength == 0


def test_create_ephemeral_owner_is_session(zk, base):
    path, stat = zk.create(base + "/e", b"x", ephemeral=True, include_data=True)
    assert_fresh_stat(stat, stat.czxid, data_len=1, owner=zk.client_id[0])
    assert stat.czxid == zk.last_zxid


def test_create_sequential_numbering(zk, base):
    names = [zk.create(base + "/s-", sequence=True) for _ in range(3)]
    assert names == [base + "/s-%010d" % i for i in range(3)]
    # a sequential suffix may follow any name, including an empty last segment
    p = zk.create(base + "/", sequence=True)
    assert p == base + "/0000000003"


def test_create_ephemeral_sequential(zk, base):
    path, stat = zk.create(base + "/es-", b"", ephemeral=True, sequence=True, include_data=True)
    assert path == base + "/es-0000000000"
    assert stat.ephemeralOwner == zk.client_id[0]


def test_create_raw_opcode_reply_bodies(raw, base):
    # create (1) → CreateResponse{path}; create2 (15) → path + Stat
    rep = raw.create(base + "/one", b"1", opcode=OP["create"])
    assert rep.body.ustring() == base + "/one"
    assert rep.body.at_end()
    rep, path, stat = raw.create2(base + "/two", b"22", opcode=OP["create2"])
    assert path == base + "/two" and rep.body.at_end()
    assert_fresh_stat(stat, rep.zxid, data_len=2)


def test_create_container(raw, base):
    rep, path, stat = raw.create2(base + "/c", b"cd", flags=zkraw.CONTAINER)
    assert path == base + "/c"
    assert_fresh_stat(stat, rep.zxid, data_len=2, owner=0)  # client-visible owner is 0
    # createContainer with flags 0 still makes a container (opcode decides)
    rep, path, stat = raw.create2(base + "/c0", flags=0, opcode=OP["createContainer"])
    assert stat.ephemeralOwner == 0
    # containers may have children; deleting the last child makes the container go away
    raw.create(base + "/c/kid")
    raw.create(base + "/c0/kid")
    raw.delete(base + "/c/kid")
    raw.delete(base + "/c0/kid")
    wait_until(lambda: raw.exists(base + "/c")[0].err == ERR["NoNode"], timeout=8,
               msg="container removal")
    wait_until(lambda: raw.exists(base + "/c0")[0].err == ERR["NoNode"], timeout=8,
               msg="container removal (flags 0)")


def test_container_never_used_is_kept(raw, base):
    raw.create(base + "/c", flags=zkraw.CONTAINER)
    import time
    time.sleep(2.5)  # > 2 container check intervals (1 s)
    assert raw.exists(base + "/c")[0].err == 0


def test_create_ttl(raw, base):
    rep, path, stat = raw.create2(base + "/t", b"ttl", flags=zkraw.TTL, ttl=600000)
    assert path == base + "/t"
    assert_fresh_stat(stat, rep.zxid, data_len=3, owner=0)
    rep, path, stat = raw.create2(base + "/ts-", flags=zkraw.TTL_SEQ, ttl=600000)
    assert path == base + "/ts-0000000001"
    assert stat.ephemeralOwner == 0
    # maximum TTL accepted
    rep, path, stat = raw.create2(base + "/tmax", flags=zkraw.TTL, ttl=0xFFFFFFFFFF)
    assert rep.err == 0


def test_ttl_node_expires(raw, base):
    raw.create(base + "/t", flags=zkraw.TTL, ttl=500)
    wait_until(lambda: raw.exists(base + "/t")[0].err == ERR["NoNode"], timeout=8,
               msg="TTL node removal")


def test_ttl_node_with_child_not_expired(raw, base):
    raw.create(base + "/t", flags=zkraw.TTL, ttl=200)
    raw.create(base + "/t/kid")
    import time
    time.sleep(2.0)
    assert raw.exists(base + "/t")[0].err == 0
    raw.delete(base + "/t/kid")
    wait_until(lambda: raw.exists(base + "/t")[0].err == ERR["NoNode"], timeout=8,
               msg="TTL node removal after last child deleted")


@pytest.mark.parametrize("flags,ttl", [
    (zkraw.TTL, 0),                 # ttl must be > 0
    (zkraw.TTL, -5),
    (zkraw.TTL, 0x10000000000),     # ttl > 0xFF_FFFF_FFFF
    (zkraw.PERSISTENT, 1000),       # non-TTL mode through createTTL
    (zkraw.EPHEMERAL, 1000),
    (zkraw.CONTAINER, 1000),
    (7, 1000),                      # unknown flags
])
def test_create_ttl_errors(raw, base, flags, ttl):
    rep = raw.create(base + "/bad", flags=flags, ttl=ttl, check=False)
    assert rep.err == ERR["BadArguments"]
    assert rep.body.at_end()
    assert raw.exists(base + "/bad")[0].err == ERR["NoNode"]


@pytest.mark.parametrize("flags", [zkraw.TTL, zkraw.TTL_SEQ, 7, -1, 100])
def test_create_plain_opcode_bad_flags(raw, base, flags):
    rep = raw.create(base + "/bad", flags=flags, opcode=OP["create"], check=False)
    assert rep.err == ERR["BadArguments"]


def test_create_plain_opcode_container_flag_makes_persistent(raw, base):
    raw.create(base + "/c", flags=zkraw.CONTAINER, opcode=OP["create"])
    raw.create(base + "/c/kid")
    raw.delete(base + "/c/kid")
    import time
    time.sleep(2.2)  # a container would have been removed by now
    assert raw.exists(base + "/c")[1].ephemeralOwner == 0


# ------------------------------------------------------------------ delete / exists / get / set

def test_delete_versions(zk, base):
    zk.create(base + "/d", b"v0")
    zk.set(base + "/d", b"v1")
    with pytest.raises(BadVersionError):
        zk.delete(base + "/d", version=0)
    with pytest.raises(BadVersionError):
        zk.delete(base + "/d", version=2)
    zk.delete(base + "/d", version=1)
    assert zk.exists(base + "/d") is None
    with pytest.raises(NoNodeError):
        zk.delete(base + "/d")
    zk.create(base + "/d2")
    zk.delete(base + "/d2", version=-1)
    assert zk.exists(base + "/d2") is None


def test_delete_not_empty(zk, base):
    zk.create(base + "/p/c", makepath=True)
    with pytest.raises(NotEmptyError):
        zk.delete(base + "/p")
    zk.delete(base + "/p/c")
    zk.delete(base + "/p")


def test_raw_delete_reply_has_no_body(raw, base):
    raw.create(base + "/d")
    rep = raw.delete(base + "/d")
    assert rep.err == 0 and rep.body.at_end()


def test_exists(zk, base):
    assert zk.exists(base + "/nope") is None
    zk.create(base + "/x", b"abc")
    stat = zk.exists(base + "/x")
    assert stat.dataLength == 3
    assert zk.get(base + "/x")[1] == stat


def test_get_set_versions(zk, base):
    _, st0 = zk.create(base + "/n", b"a", include_data=True)
    st1 = zk.set(base + "/n", b"bb")
    assert st1.version == 1
    assert st1.mzxid == zk.last_zxid > st0.mzxid
    assert st1.czxid == st0.czxid and st1.ctime == st0.ctime
    assert st1.mtime >= st0.mtime
    assert st1.dataLength == 2
    assert st1.pzxid == st0.pzxid
    st2 = zk.set(base + "/n", b"ccc", version=1)
    assert st2.version == 2
    with pytest.raises(BadVersionError):
        zk.set(base + "/n", b"zz", version=1)
    data, st = zk.get(base + "/n")
    assert data == b"ccc" and st == st2
    # empty and None data
    st3 = zk.set(base + "/n", b"")
    assert st3.dataLength == 0 and st3.version == 3
    assert zk.get(base + "/n")[0] == b""


def test_set_data_reply_stat_raw(raw, base):
    rep, _, st0 = raw.create2(base + "/n", b"x")
    rep, st = raw.set_data(base + "/n", b"hello", 0)
    assert st.mzxid == rep.zxid > st0.mzxid
    assert st.version == 1 and st.dataLength == 5
    rep, st = raw.set_data(base + "/n", None)
    assert st.dataLength == 0 and st.version == 2
    rep, data, _ = raw.get_data(base + "/n")
    assert data is None  # null data is stored and read back as null (length -1)
    raw.set_data(base + "/n", b"")
    rep, data, _ = raw.get_data(base + "/n")
    assert data == b""   # empty (length 0) stays distinct from null


def test_large_data_roundtrip(zk, base):
    blob = bytes(range(256)) * 2000  # 512000 bytes
    zk.create(base + "/big", blob)
    data, st = zk.get(base + "/big")
    assert data == blob and st.dataLength == len(blob)


# ------------------------------------------------------------------ ACL ops

def test_get_set_acls(zk, base):
    acl = [make_digest_acl("bob", "secret", all=True)]
    _, st0 = zk.create(base + "/a", b"", include_data=True)
    acls, st = zk.get_acls(base + "/a")
    assert [(a.perms, a.id.scheme, a.id.id) for a in acls] == [(31, "world", "anyone")]
    assert st == st0
    with pytest.raises(BadVersionError):
        zk.set_acls(base + "/a", OPEN_ACL_UNSAFE, version=1)
    st1 = zk.set_acls(base + "/a", acl + list(READ_ACL_UNSAFE), version=0)
    assert st1.aversion == 1
    assert (st1.version, st1.mzxid, st1.cversion, st1.pzxid) == (0, st0.mzxid, 0, st0.pzxid)
    acls, st = zk.get_acls(base + "/a")
    # no ADMIN right → digest id masked
    assert sorted((a.perms, a.id.scheme, a.id.id) for a in acls) == [
        (1, "world", "anyone"), (31, "digest", "bob:x")]
    assert st.aversion == 1


# ------------------------------------------------------------------ children

def test_get_children(zk, base):
    for n in ["b", "a", "c"]:
        zk.create(base + "/" + n)
    assert sorted(zk.get_children(base)) == ["a", "b", "c"]
    kids, st = zk.get_children(base, include_data=True)
    assert sorted(kids) == ["a", "b", "c"]
    assert st.numChildren == 3 and st.cversion == 3
    assert st.pzxid == zk.exists(base + "/c").czxid
    assert st == zk.exists(base)
    assert zk.get_children(base + "/a") == []
    with pytest.raises(NoNodeError):
        zk.get_children(base + "/zz")


def test_get_children_raw_opcodes(raw, base):
    raw.create(base + "/k1")
    rep, kids = raw.get_children1(base)
    assert kids == ["k1"] and rep.body.at_end()
    rep, kids, st = raw.get_children(base)
    assert kids == ["k1"] and st.numChildren == 1 and rep.body.at_end()


def test_root_and_zookeeper_children(zk):
    assert "zookeeper" in zk.get_children("/")
    assert sorted(zk.get_children("/zookeeper")) == ["config", "quota"]


# ------------------------------------------------------------------ sync

def test_sync(zk, raw, base):
    assert zk.sync(base) == base
    rep, path = raw.sync(base)
    assert path == base and rep.body.at_end()
    # sync does not validate or require the path
    rep, path = raw.sync("/does/not/exist")
    assert path == "/does/not/exist"


# ------------------------------------------------------------------ multi via kazoo

def test_transaction_success(zk, base):
    zk.create(base + "/x", b"0")
    t = zk.transaction()
    t.create(base + "/new", b"n")
    t.set_data(base + "/x", b"1")
    t.check(base + "/x", 1)
    t.create(base + "/seq-", b"", sequence=True)
    t.delete(base + "/new")
    res = t.commit()
    assert res[0] == base + "/new"
    assert res[1].version == 1 and res[1].mzxid == zk.last_zxid
    assert res[2] is True
    assert res[3] == base + "/seq-0000000002"
    assert res[4] is True
    assert zk.get(base + "/x")[0] == b"1"
    assert zk.exists(base + "/new") is None
    # every sub-op shares one zxid
    assert zk.exists(base + "/seq-0000000002").czxid == res[1].mzxid


def test_transaction_failure_rolls_back(zk, base):
    zk.create(base + "/x", b"0")
    before = zk.exists(base)
    t = zk.transaction()
    t.create(base + "/new", b"n")
    t.set_data(base + "/x", b"1")
    t.check(base + "/x", 99)
    t.delete(base + "/x")
    t.create(base + "/new2")
    res = t.commit()
    assert isinstance(res[0], RolledBackError)
    assert isinstance(res[1], RolledBackError)
    assert isinstance(res[2], BadVersionError)
    assert isinstance(res[3], RuntimeInconsistency)
    assert isinstance(res[4], RuntimeInconsistency)
    assert zk.exists(base + "/new") is None
    data, st = zk.get(base + "/x")
    assert data == b"0" and st.version == 0
    after = zk.exists(base)
    assert after == before


@pytest.mark.parametrize("bad,err", [
    ("create_exists", NodeExistsError),
    ("delete_missing", NoNodeError),
    ("set_badversion", BadVersionError),
    ("delete_notempty", NotEmptyError),
])
def test_transaction_first_op_failures(zk, base, bad, err):
    zk.create(base + "/x/y", makepath=True)
    t = zk.transaction()
    if bad == "create_exists":
        t.create(base + "/x")
    elif bad == "delete_missing":
        t.delete(base + "/missing")
    elif bad == "set_badversion":
        t.set_data(base + "/x", b"", version=5)
    else:
        t.delete(base + "/x")
    t.create(base + "/after")
    res = t.commit()
    assert isinstance(res[0], err)
    assert isinstance(res[1], RuntimeInconsistency)
    assert zk.exists(base + "/after") is None


def test_transaction_sees_earlier_ops(zk, base):
    t = zk.transaction()
    t.create(base + "/a")
    t.create(base + "/a/b")
    t.set_data(base + "/a/b", b"x")
    t.check(base + "/a/b", 1)
    t.delete(base + "/a/b")
    t.delete(base + "/a")
    res = t.commit()
    assert res[0] == base + "/a" and res[1] == base + "/a/b"
    assert res[2].version == 1 and res[3] is True
    assert zk.get_children(base) == []


# ------------------------------------------------------------------ multi via raw client

def test_multi_raw_result_types(raw, base):
    raw.create(base + "/x", b"0")
    rep, res = raw.multi([
        zkraw.op_create(base + "/c1", t=OP["create"]),
        zkraw.op_create(base + "/c2", t=OP["create2"]),           # answered as create (1)
        zkraw.op_create(base + "/c3", flags=zkraw.CONTAINER, t=OP["createContainer"]),
        zkraw.op_create(base + "/c4", flags=zkraw.TTL, ttl=60000),
        zkraw.op_set(base + "/x", b"1", 0),
        zkraw.op_check(base + "/x", 1),
        zkraw.op_delete(base + "/c1"),
    ])
    assert rep.err == 0
    types = [r.type for r in res]
    assert types == [OP["create"], OP["create"], OP["create2"], OP["create2"],
                     OP["setData"], OP["check"], OP["delete"]]
    assert [r.err for r in res] == [0] * 7
    assert [r.path for r in res[:4]] == [base + "/c1", base + "/c2", base + "/c3", base + "/c4"]
    assert res[1].stat is None
    for r in res[2:4]:
        assert r.stat.czxid == rep.zxid and r.stat.ephemeralOwner == 0
    assert res[4].stat.mzxid == rep.zxid and res[4].stat.version == 1


def test_multi_raw_failure_encoding(raw, base):
    raw.create(base + "/t1")
    rep, res = raw.multi([
        zkraw.op_create(base + "/m3"),
        zkraw.op_check(base + "/t1", 99),
        zkraw.op_delete(base + "/t1"),
    ])
    assert rep.err == 0   # outer error is 0 even though the multi failed
    body = rep.body.rest()
    expected = (zkraw.W().int(-1).bool(False).int(0).int(0)
                .int(-1).bool(False).int(-103).int(-103)
                .int(-1).bool(False).int(-2).int(-2)
                .int(-1).bool(True).int(-1).bytes())
    assert body == expected
    assert raw.exists(base + "/m3")[0].err == ERR["NoNode"]
    assert raw.exists(base + "/t1")[0].err == 0


def test_multi_empty(raw):
    rep, res = raw.multi([])
    assert rep.err == 0 and res == []
    assert rep.body.rest() == bytes.fromhex("ffffffff01ffffffff")


def test_multi_read(raw, base):
    raw.create(base + "/r", b"rd")
    raw.create(base + "/r/k")
    rep, res = raw.multi_read([
        zkraw.op_get_data(base + "/r"),
        zkraw.op_get_children(base + "/r"),
        zkraw.op_get_data(base + "/missing"),
        zkraw.op_get_children(base + "/missing"),
    ])
    assert rep.err == 0
    assert res[0].type == OP["getData"] and res[0].data == b"rd"
    assert res[0].stat.numChildren == 1
    assert res[1].type == OP["getChildren"] and res[1].children == ["k"]
    assert (res[2].type, res[2].err) == (-1, ERR["NoNode"])
    assert (res[3].type, res[3].err) == (-1, ERR["NoNode"])


@tolerate_background_writes
def test_multi_read_does_not_consume_zxid(raw, base):
    rep0 = raw.create(base + "/r")
    rep1, _ = raw.multi_read([zkraw.op_get_data(base + "/r")])
    assert rep1.zxid == rep0.zxid
    rep2 = raw.create(base + "/r2")
    assert rep2.zxid == rep0.zxid + 1


# ------------------------------------------------------------------ watches ops (basic replies)

def test_add_watch_reply(raw, base):
    for mode in (0, 1):
        rep = raw.add_watch(base, mode)
        assert rep.err == 0 and rep.body.rest() == b"\x00\x00\x00\x00"
    # no existence check
    assert raw.add_watch(base + "/missing", 0).err == 0


def test_remove_and_check_watches(raw, base):
    assert raw.remove_watches(base, 3).err == ERR["NoWatcher"]
    assert raw.check_watches(base, 2).err == ERR["NoWatcher"]
    raw.get_data(base, watch=True)
    assert raw.check_watches(base, 2).err == 0
    assert raw.check_watches(base, 1).err == ERR["NoWatcher"]
    assert raw.remove_watches(base, 1).err == ERR["NoWatcher"]
    rep = raw.remove_watches(base, 2)
    assert rep.err == 0 and rep.body.at_end()
    assert raw.remove_watches(base, 2).err == ERR["NoWatcher"]
    raw.get_children(base, watch=True)
    raw.exists(base, watch=True)
    assert raw.remove_watches(base, 3).err == 0
    assert raw.check_watches(base, 3).err == ERR["NoWatcher"]
    # persistent watches live in both tables and are removed by type Any
    raw.add_watch(base, 0)
    assert raw.check_watches(base, 1).err == 0
    assert raw.check_watches(base, 2).err == 0
    assert raw.remove_watches(base, 3).err == 0
    assert raw.remove_watches(base, 3).err == ERR["NoWatcher"]


# ------------------------------------------------------------------ misc reads

def test_get_all_children_number(raw, base):
    rep, n = raw.get_all_children_number(base)
    assert n == 0
    raw.create(base + "/a")
    raw.create(base + "/a/b")
    raw.create(base + "/a/b/c")
    raw.create(base + "/d")
    assert raw.get_all_children_number(base)[1] == 4
    assert raw.get_all_children_number(base + "/a")[1] == 2
    assert raw.get_all_children_number("/zookeeper")[1] == 2
    assert raw.get_all_children_number(base + "/missing", check=False)[0].err == ERR["NoNode"]


def test_get_ephemerals(raw_factory, base):
    a = raw_factory()
    b = raw_factory()
    assert a.get_ephemerals(base)[1] == []
    a.create(base + "/e1", flags=zkraw.EPHEMERAL)
    a.create(base + "/e2", flags=zkraw.EPHEMERAL)
    a.create(base + "/p")
    b.create(base + "/e3", flags=zkraw.EPHEMERAL)
    assert sorted(a.get_ephemerals(base)[1]) == [base + "/e1", base + "/e2"]
    assert a.get_ephemerals(base + "/e1")[1] == [base + "/e1"]
    assert sorted(a.get_ephemerals(base + "/e")[1]) == [base + "/e1", base + "/e2"]  # string prefix
    assert b.get_ephemerals(base)[1] == [base + "/e3"]
    mine = a.get_ephemerals("/")[1]
    assert sorted(mine) == [base + "/e1", base + "/e2"]


def test_who_am_i(raw_factory):
    c = raw_factory()
    rep, ids = c.whoami()
    assert ids == [("ip", "127.0.0.1")]
    c.auth("digest", "bob:secret")
    assert sorted(c.whoami()[1]) == [("digest", "bob"), ("ip", "127.0.0.1")]


def test_server_version(zk):
    assert zk.server_version() == (3, 8, 0)


def test_reconfig_standalone(zk, raw):
    with pytest.raises(ReconfigDisabledError):
        zk.reconfig(joining=None, leaving="2", new_members=None)
    before = raw.exists("/")[0].zxid
    rep = raw.call(OP["reconfig"], zkraw.W().ustring(None).ustring("2").ustring(None)
                   .long(-1).bytes(), check=False)
    assert rep.err == ERR["ReconfigDisabled"] and rep.body.at_end()
    assert rep.zxid > before   # the failed write consumed a zxid
