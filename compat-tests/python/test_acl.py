"""ACLs and authentication (PROTOCOL.md 2.6)."""
import pytest
from kazoo.exceptions import AuthFailedError, InvalidACLError, NoAuthError, BadVersionError, \
    RolledBackError, RuntimeInconsistency
from kazoo.security import make_acl, make_digest_acl, make_digest_acl_credential, \
    READ_ACL_UNSAFE, OPEN_ACL_UNSAFE

import zkraw
from helpers import tolerate_background_writes
from zkraw import ERR, PERM_ALL, PERM_READ, PERM_WRITE, PERM_CREATE, PERM_DELETE, PERM_ADMIN

BOB_ID = "bob:fyVmFCwVbTJYrznoSu1koqYEYF0="


def test_digest_format():
    assert zkraw.digest_id("bob", "secret") == BOB_ID
    assert make_digest_acl_credential("bob", "secret") == BOB_ID


def test_world_read_only(zk, kazoo_factory, base):
    zk.create(base + "/r", b"data", acl=READ_ACL_UNSAFE)
    other = kazoo_factory()
    assert other.get(base + "/r")[0] == b"data"
    with pytest.raises(NoAuthError):
        other.set(base + "/r", b"x")
    with pytest.raises(NoAuthError):
        other.create(base + "/r/c")
    with pytest.raises(NoAuthError):
        other.set_acls(base + "/r", OPEN_ACL_UNSAFE)
    # delete needs DELETE on the parent, not on the node itself
    other.delete(base + "/r")


def test_digest_acl(kazoo_factory, base):
    owner = kazoo_factory(auth_data=[("digest", "bob:secret")])
    owner.create(base + "/d", b"secret", acl=[make_digest_acl("bob", "secret", all=True)])
    anon = kazoo_factory()
    with pytest.raises(NoAuthError):
        anon.get(base + "/d")
    with pytest.raises(NoAuthError):
        anon.get_children(base + "/d")
    with pytest.raises(NoAuthError):
        anon.get_acls(base + "/d")
    assert anon.exists(base + "/d") is not None    # exists needs no permission
    wrong = kazoo_factory(auth_data=[("digest", "bob:wrong")])
    with pytest.raises(NoAuthError):
        wrong.get(base + "/d")
    anon.add_auth("digest", "bob:secret")
    assert anon.get(base + "/d")[0] == b"secret"
    acls, st = owner.get_acls(base + "/d")
    assert [(a.perms, a.id.scheme, a.id.id) for a in acls] == [(31, "digest", BOB_ID)]


def test_auth_scheme_expands_to_credentials(kazoo_factory, raw_factory, base):
    c = kazoo_factory(auth_data=[("digest", "bob:secret"), ("digest", "alice:pw")])
    c.create(base + "/a", acl=[make_acl("auth", "", read=True, write=True)])
    acls, _ = c.get_acls(base + "/a")
    got = sorted((a.perms, a.id.scheme, a.id.id) for a in acls)
    # the ACL has no ADMIN bit, so the caller's own digest ids come back masked
    assert got == [(3, "digest", "alice:x"), (3, "digest", "bob:x")]
    su = kazoo_factory(auth_data=[("digest", "super:test")])
    got = sorted((a.perms, a.id.scheme, a.id.id) for a in su.get_acls(base + "/a")[0])
    assert got == sorted([(3, "digest", BOB_ID), (3, "digest", zkraw.digest_id("alice", "pw"))])
    # the id part of an auth ACL is ignored
    r = raw_factory()
    r.auth("digest", "bob:secret")
    r.create(base + "/b", acl=[(PERM_ALL, "auth", "whatever")])
    assert r.get_acl(base + "/b")[1] == [(31, "digest", BOB_ID)]
    # ip is not an "authenticated" provider: an auth ACL without credentials is invalid
    anon = kazoo_factory()
    with pytest.raises(InvalidACLError):
        anon.create(base + "/c", acl=[make_acl("auth", "", all=True)])
    r2 = raw_factory()
    r2.auth("ip", "127.0.0.1")
    assert r2.create(base + "/c", acl=[(PERM_ALL, "auth", "")], check=False).err == ERR["InvalidACL"]


def test_auth_mixed_with_world(raw_factory, base):
    r = raw_factory()
    r.auth("digest", "bob:secret")
    r.create(base + "/m", acl=[(PERM_READ, "world", "anyone"), (PERM_ALL, "auth", "")])
    assert sorted(r.get_acl(base + "/m")[1]) == [(1, "world", "anyone"), (31, "digest", BOB_ID)]


def test_duplicate_acl_entries_removed(raw, base):
    raw.create(base + "/d", acl=[(31, "world", "anyone"), (31, "world", "anyone")])
    assert raw.get_acl(base + "/d")[1] == [(31, "world", "anyone")]


def test_get_acl_digest_masking(raw_factory, base):
    owner = raw_factory()
    owner.auth("digest", "bob:secret")
    owner.create(base + "/n", acl=[(PERM_ALL, "digest", BOB_ID), (PERM_READ, "world", "anyone")])
    anon = raw_factory()
    rep, acl, st = anon.get_acl(base + "/n")
    assert sorted(acl) == [(1, "world", "anyone"), (31, "digest", "bob:x")]
    rep, acl, st = owner.get_acl(base + "/n")
    assert sorted(acl) == [(1, "world", "anyone"), (31, "digest", BOB_ID)]
    # ADMIN without READ is enough for getACL, and then nothing is masked
    owner.create(base + "/adm", acl=[(PERM_ADMIN, "world", "anyone"),
                                     (PERM_READ, "digest", BOB_ID)])
    assert sorted(anon.get_acl(base + "/adm")[1]) == [(1, "digest", BOB_ID),
                                                      (16, "world", "anyone")]
    assert anon.get_data(base + "/adm", check=False)[0].err == ERR["NoAuth"]


@pytest.mark.parametrize("perm,allowed", [
    (PERM_READ, {"get", "children"}),
    (PERM_WRITE, {"set"}),
    (PERM_CREATE, {"create"}),
    (PERM_DELETE, {"delete"}),
    (PERM_ADMIN, {"setacl", "getacl"}),
])
def test_each_permission_bit(raw_factory, base, perm, allowed):
    owner = raw_factory()
    owner.auth("digest", "bob:secret")
    n = base + "/n"
    owner.create(n, b"d", acl=[(perm, "world", "anyone"), (PERM_ALL, "digest", BOB_ID)])
    owner.create(n + "/victim")
    c = raw_factory()
    results = {
        "get": c.get_data(n, check=False)[0].err,
        "children": c.get_children(n, check=False)[0].err,
        "set": c.set_data(n, b"x", check=False)[0].err,
        "create": c.create(n + "/new", check=False).err,
        "delete": c.delete(n + "/victim", check=False).err,
        "setacl": c.set_acl(n, [(perm, "world", "anyone"), (PERM_ALL, "digest", BOB_ID)],
                            check=False)[0].err,
        "getacl": c.get_acl(n, check=False)[0].err,
    }
    for op, err in results.items():
        if op in allowed or (op == "getacl" and perm == PERM_READ):
            assert err == 0, (op, err)
        else:
            assert err == ERR["NoAuth"], (op, err)


def test_ip_acl(raw_factory, base):
    owner = raw_factory()
    owner.create(base + "/ip2", b"x", acl=[(PERM_ALL, "ip", "127.0.0.2")])
    owner.create(base + "/cidr", b"x", acl=[(PERM_ALL, "ip", "127.0.0.0/8")])
    owner.create(base + "/cidr24", b"x", acl=[(PERM_ALL, "ip", "127.0.1.0/24")])
    owner.create(base + "/ten", b"x", acl=[(PERM_ALL, "ip", "10.0.0.0/8")])
    c1 = owner
    c2 = raw_factory(source="127.0.0.2")
    c3 = raw_factory(source="127.0.1.7")
    assert c2.whoami()[1] == [("ip", "127.0.0.2")]

    def err(c, p):
        return c.get_data(base + p, check=False)[0].err

    assert err(c1, "/ip2") == ERR["NoAuth"]
    assert err(c2, "/ip2") == 0
    assert err(c3, "/ip2") == ERR["NoAuth"]
    for c in (c1, c2, c3):
        assert err(c, "/cidr") == 0
        assert err(c, "/ten") == ERR["NoAuth"]
    assert err(c1, "/cidr24") == ERR["NoAuth"]
    assert err(c3, "/cidr24") == 0
    # "addauth ip" does not grant another address
    c1.auth("ip", "127.0.0.2")
    assert err(c1, "/ip2") == ERR["NoAuth"]


def test_super_user_bypasses_acls(kazoo_factory, raw_factory, base):
    owner = kazoo_factory(auth_data=[("digest", "bob:secret")])
    owner.create(base + "/s", b"top", acl=[make_digest_acl("bob", "secret", all=True)])
    owner.create(base + "/none", b"", acl=[make_acl("world", "anyone")])  # perms 0
    su = kazoo_factory(auth_data=[("digest", "super:test")])
    assert su.get(base + "/s")[0] == b"top"
    su.set(base + "/s", b"changed")
    su.create(base + "/s/c")
    su.delete(base + "/s/c")
    assert su.get(base + "/none")[0] == b""
    acls, _ = su.get_acls(base + "/s")
    assert [(a.perms, a.id.id) for a in acls] == [(31, BOB_ID)]   # super has ADMIN: unmasked
    r = raw_factory()
    r.auth("digest", "super:test")
    assert sorted(r.whoami()[1]) == [("digest", "super"), ("ip", "127.0.0.1"), ("super", "")]
    wrong = raw_factory()
    wrong.auth("digest", "super:wrong")
    assert wrong.get_data(base + "/s", check=False)[0].err == ERR["NoAuth"]
    assert sorted(wrong.whoami()[1]) == [("digest", "super"), ("ip", "127.0.0.1")]


def test_auth_reply_and_multiple_credentials(raw):
    rep = raw.auth("digest", "bob:secret")
    assert (rep.xid, rep.zxid, rep.err) == (-4, 0, 0)
    assert rep.body.at_end()
    raw.auth("digest", "alice:pw")
    raw.auth("digest", "bob:secret")   # duplicate
    assert sorted(raw.whoami()[1]) == [("digest", "alice"), ("digest", "bob"), ("ip", "127.0.0.1")]


def test_unknown_auth_scheme_fails_and_closes(raw_factory, serving):
    c = raw_factory()
    rep = c.auth("foo", "bar")
    assert (rep.xid, rep.zxid, rep.err) == (-4, 0, ERR["AuthFailed"])
    assert rep.body.at_end()
    assert c.wait_closed(5)
    serving()


def test_unknown_auth_scheme_kazoo(kazoo_factory):
    c = kazoo_factory()
    with pytest.raises(AuthFailedError):
        c.add_auth("foo", "bar")


def test_no_auth_inside_multi(kazoo_factory, base):
    owner = kazoo_factory(auth_data=[("digest", "bob:secret")])
    owner.create(base + "/p", b"p", acl=[make_digest_acl("bob", "secret", all=True)])
    owner.create(base + "/open", b"o")
    anon = kazoo_factory()
    t = anon.transaction()
    t.set_data(base + "/open", b"changed")
    t.set_data(base + "/p", b"hacked")
    t.create(base + "/p/child")
    res = t.commit()
    assert isinstance(res[0], RolledBackError)
    assert isinstance(res[1], NoAuthError)
    assert isinstance(res[2], RuntimeInconsistency)
    assert owner.get(base + "/open")[0] == b"o"
    assert owner.get(base + "/p")[0] == b"p"
    # check inside multi requires READ
    t = anon.transaction()
    t.check(base + "/p", 0)
    res = t.commit()
    assert isinstance(res[0], NoAuthError)
    t = owner.transaction()
    t.check(base + "/p", 0)
    t.set_data(base + "/p", b"ok")
    assert t.commit()[0] is True


@tolerate_background_writes
def test_no_auth_consumes_zxid(raw, raw_factory, base):
    owner = raw_factory()
    owner.create(base + "/ro", acl=[(PERM_READ, "world", "anyone")])
    c = raw_factory()
    rep = c.set_data(base + "/ro", b"x", check=False)[0]
    assert rep.err == ERR["NoAuth"]
    nxt = c.create(base + "/next")
    assert nxt.zxid == rep.zxid + 1


def test_version_checked_after_acl(raw_factory, base):
    owner = raw_factory()
    owner.create(base + "/ro", acl=[(PERM_READ, "world", "anyone")])
    c = raw_factory()
    assert c.set_data(base + "/ro", b"x", 42, check=False)[0].err == ERR["NoAuth"]
