"""Stat evolution (PROTOCOL.md 2.5, 2.7, 2.12)."""
import pytest

import zkraw
from zkraw import ERR
from helpers import tolerate_background_writes, assert_recent


def test_cversion_reported_as_creations_plus_deletions(raw, base):
    raw.create(base + "/a")
    _, st = raw.exists(base)
    assert (st.cversion, st.numChildren) == (1, 1)
    raw.delete(base + "/a")
    _, st = raw.exists(base)
    assert (st.cversion, st.numChildren) == (2, 0)   # 2*1 - 0
    raw.create(base + "/b")
    _, st = raw.exists(base)
    assert (st.cversion, st.numChildren) == (3, 1)   # 2*2 - 1
    rep, path, _ = raw.create2(base + "/s-", flags=zkraw.PERSISTENT_SEQ)
    assert path == base + "/s-0000000002"            # persisted cversion = creations
    raw.delete(base + "/b")
    raw.delete(path)
    _, st = raw.exists(base)
    assert (st.cversion, st.numChildren) == (6, 0)
    rep, path, _ = raw.create2(base + "/s-", flags=zkraw.PERSISTENT_SEQ)
    assert path == base + "/s-0000000003"


def test_sequential_counter_shared_across_names(raw, base):
    assert raw.create2(base + "/x-", flags=zkraw.PERSISTENT_SEQ)[1] == base + "/x-0000000000"
    raw.create(base + "/plain")
    assert raw.create2(base + "/y-", flags=zkraw.EPHEMERAL_SEQ)[1] == base + "/y-0000000002"
    raw.delete(base + "/plain")
    assert raw.create2(base + "/x-", flags=zkraw.PERSISTENT_SEQ)[1] == base + "/x-0000000003"


def test_failed_create_does_not_advance_sequence(raw, base):
    raw.create(base + "/a")
    assert raw.create(base + "/a", check=False).err == ERR["NodeExists"]
    assert raw.create2(base + "/s-", flags=zkraw.PERSISTENT_SEQ)[1] == base + "/s-0000000001"


def test_pzxid_rules(raw, base):
    _, st0 = raw.exists(base)
    rep_c = raw.create(base + "/c")
    _, st = raw.exists(base)
    assert st.pzxid == rep_c.zxid and st.mzxid == st0.mzxid
    # data change on child and grandchild create leave parent pzxid alone
    raw.set_data(base + "/c", b"zz")
    rep_g = raw.create(base + "/c/g")
    _, st = raw.exists(base)
    assert st.pzxid == rep_c.zxid
    _, stc = raw.exists(base + "/c")
    assert stc.pzxid == rep_g.zxid and stc.cversion == 1
    # child delete sets pzxid to the delete's zxid
    rep_d = raw.delete(base + "/c/g")
    _, stc = raw.exists(base + "/c")
    assert stc.pzxid == rep_d.zxid > rep_g.zxid
    assert stc.cversion == 2 and stc.numChildren == 0
    # a failed child create does not touch pzxid
    raw.create(base + "/c/x/y", check=False)
    assert raw.exists(base + "/c")[1].pzxid == rep_d.zxid
    # setData / setACL on the parent do not change pzxid
    raw.set_data(base + "/c", b"q")
    raw.set_acl(base + "/c", zkraw.OPEN_ACL)
    assert raw.exists(base + "/c")[1].pzxid == rep_d.zxid


@tolerate_background_writes
def test_failed_writes_consume_zxid(raw, base):
    r1 = raw.create(base + "/a")
    r_fail = raw.create(base + "/a", check=False)
    assert r_fail.err == ERR["NodeExists"]
    assert r_fail.zxid == r1.zxid + 1
    r2, _, st = raw.create2(base + "/b")
    assert st.czxid == r1.zxid + 2 == r2.zxid
    # each kind of failed write consumes one zxid
    fails = [
        lambda: raw.delete(base + "/missing", check=False),
        lambda: raw.set_data(base + "/a", b"", 7, check=False)[0],
        lambda: raw.set_acl(base + "/missing", zkraw.OPEN_ACL, check=False)[0],
        lambda: raw.create(base + "/a", acl=[], check=False),
        lambda: raw.create(base + "/q", flags=9, check=False),
        lambda: raw.create(base + "/nope/x", check=False),
    ]
    last = r2.zxid
    for f in fails:
        rep = f()
        assert rep.err != 0
        assert rep.zxid == last + 1
        assert rep.body.at_end()
        last = rep.zxid
    r3, _, st = raw.create2(base + "/c")
    assert st.czxid == last + 1


@tolerate_background_writes
def test_failed_multi_consumes_one_zxid(raw, base):
    r1 = raw.create(base + "/a")
    rep, res = raw.multi([zkraw.op_create(base + "/x"), zkraw.op_create(base + "/a")])
    assert [r.err for r in res] == [0, ERR["NodeExists"]]
    assert rep.zxid == r1.zxid + 1
    r2 = raw.create(base + "/b")
    assert r2.zxid == r1.zxid + 2


@tolerate_background_writes
def test_reads_do_not_consume_zxid(raw, base):
    r1 = raw.create(base + "/a", b"x")
    assert raw.exists(base + "/a")[0].zxid == r1.zxid
    assert raw.get_data(base + "/a")[0].zxid == r1.zxid
    assert raw.get_children(base)[0].zxid == r1.zxid
    assert raw.exists(base + "/nope")[0].zxid == r1.zxid
    assert raw.get_data(base + "/nope", check=False)[0].zxid == r1.zxid
    assert raw.ping().zxid == r1.zxid
    assert raw.sync(base)[0].zxid == r1.zxid
    assert raw.create(base + "/b").zxid == r1.zxid + 1


def test_data_length_and_num_children(raw, base):
    _, _, st = raw.create2(base + "/n", b"12345")
    assert st.dataLength == 5
    for i in range(4):
        raw.create(base + "/n/%d" % i)
    _, data, st = raw.get_data(base + "/n")
    assert st.numChildren == 4 and st.dataLength == 5
    _, st = raw.set_data(base + "/n", b"")
    assert st.dataLength == 0 and st.numChildren == 4


def test_stat_times(raw, base):
    _, _, st0 = raw.create2(base + "/t")
    assert_recent(st0.ctime)
    import time
    time.sleep(0.05)
    _, st1 = raw.set_data(base + "/t", b"1")
    assert st1.ctime == st0.ctime
    assert st1.mtime > st0.mtime
    assert_recent(st1.mtime)


def test_ephemeral_owner_kinds(raw, base):
    assert raw.create2(base + "/p")[2].ephemeralOwner == 0
    assert raw.create2(base + "/e", flags=zkraw.EPHEMERAL)[2].ephemeralOwner == raw.session_id
    assert raw.create2(base + "/c", flags=zkraw.CONTAINER)[2].ephemeralOwner == 0
    assert raw.create2(base + "/t", flags=zkraw.TTL, ttl=99999)[2].ephemeralOwner == 0
    assert raw.exists(base + "/c")[1].ephemeralOwner == 0
    assert raw.exists(base + "/t")[1].ephemeralOwner == 0
    assert raw.exists(base + "/e")[1].ephemeralOwner == raw.session_id


def test_special_nodes_stat(raw):
    _, acl, st = raw.get_acl("/zookeeper/config")
    assert acl == [(1, "world", "anyone")]
    assert st.aversion == -1 and st.czxid == 0 and st.version == 0
    _, data, st = raw.get_data("/zookeeper/config")
    assert data in (b"", None) and st.dataLength == 0
    _, acl, st = raw.get_acl("/zookeeper")
    assert acl == [(31, "world", "anyone")]
    assert (st.czxid, st.mzxid, st.ctime, st.numChildren, st.cversion) == (0, 0, 0, 2, -2)
    _, st = raw.exists("/zookeeper/quota")
    assert (st.czxid, st.numChildren, st.aversion) == (0, 0, 0)
    _, st = raw.exists("/")
    assert st.czxid == 0 and st.ctime == 0
    assert (st.cversion + st.numChildren) % 2 == 0   # reported = 2*creations - numChildren


def test_set_acl_changes_only_aversion(raw, base):
    _, _, st0 = raw.create2(base + "/a", b"d")
    rep, st1 = raw.set_acl(base + "/a", zkraw.OPEN_ACL, 0)
    assert st1.aversion == 1
    assert st1._replace(aversion=0) == st0
    rep, st2 = raw.set_acl(base + "/a", zkraw.OPEN_ACL, -1)
    assert st2.aversion == 2
    assert raw.set_acl(base + "/a", zkraw.OPEN_ACL, 1, check=False)[0].err == ERR["BadVersion"]
