package compat;

import static compat.Harness.*;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.zookeeper.AddWatchMode;
import org.apache.zookeeper.AsyncCallback;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.KeeperException.Code;
import org.apache.zookeeper.Op;
import org.apache.zookeeper.OpResult;
import org.apache.zookeeper.WatchedEvent;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.Watcher.Event.EventType;
import org.apache.zookeeper.Watcher.Event.KeeperState;
import org.apache.zookeeper.Watcher.WatcherType;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooDefs.Ids;
import org.apache.zookeeper.ZooDefs.Perms;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.admin.ZooKeeperAdmin;
import org.apache.zookeeper.data.ACL;
import org.apache.zookeeper.data.ClientInfo;
import org.apache.zookeeper.data.Id;
import org.apache.zookeeper.data.Stat;

/** Section A: the official Java client (ZooKeeper 3.8.0). */
final class ZkClientTests {
    static final List<ACL> OPEN = Ids.OPEN_ACL_UNSAFE;

    static void register() {
        test("A.create_modes_and_stats", 20, ZkClientTests::createModes);
        test("A.create_errors", 20, ZkClientTests::createErrors);
        test("A.sequential_suffix_and_cversion", 20, ZkClientTests::sequentialSuffix);
        test("A.container_and_ttl_expiry", 30, ZkClientTests::containerAndTtlExpiry);
        test("A.data_versions_and_stats", 20, ZkClientTests::dataVersions);
        test("A.data_null_empty_binary_large", 20, ZkClientTests::dataEdgeCases);
        test("A.children_with_stat_and_counts", 20, ZkClientTests::childrenAndCounts);
        test("A.get_ephemerals", 20, ZkClientTests::getEphemerals);
        test("A.multi_success", 20, ZkClientTests::multiSuccess);
        test("A.multi_failure_error_results", 20, ZkClientTests::multiFailure);
        test("A.multi_read", 20, ZkClientTests::multiRead);
        test("A.failed_write_consumes_zxid", 20, ZkClientTests::failedWriteZxid);
        test("A.sync", 20, ZkClientTests::sync);
        test("A.standard_watches_one_shot", 20, ZkClientTests::standardWatches);
        test("A.watch_event_before_reply", 20, ZkClientTests::watchBeforeReply);
        test("A.persistent_watch", 20, ZkClientTests::persistentWatch);
        test("A.persistent_recursive_watch", 20, ZkClientTests::recursiveWatch);
        test("A.remove_watches", 20, ZkClientTests::removeWatches);
        test("A.watch_mode_overwrite_quirk", 20, ZkClientTests::watchModeQuirk);
        test("A.acl_digest_enforcement", 20, ZkClientTests::aclDigest);
        test("A.acl_world_ip_and_perms", 20, ZkClientTests::aclWorldIpPerms);
        test("A.acl_set_get_versions", 20, ZkClientTests::aclSetGet);
        test("A.who_am_i", 20, ZkClientTests::whoAmI);
        test("A.auth_failed_unknown_scheme", 20, ZkClientTests::authFailed);
        test("A.get_config_and_reconfig_standalone", 20, ZkClientTests::configReconfig);
        test("A.async_callbacks_in_order", 30, ZkClientTests::asyncOrder);
        test("A.chroot", 20, ZkClientTests::chroot);
        test("A.session_timeout_negotiation", 20, ZkClientTests::sessionTimeouts);
        test("A.close_deletes_ephemerals", 20, ZkClientTests::closeDeletesEphemerals);
        test("A.session_expiry_after_drop", 30, ZkClientTests::sessionExpiry);
        test("A.reattach_closed_session_expired", 20, ZkClientTests::reattachClosed);
        test("A.reconnect_keeps_watches_via_proxy", 40, ZkClientTests::reconnectViaProxy);
        test("A.session_takeover_same_id", 40, ZkClientTests::sessionTakeover);
    }

    // ------------------------------------------------------------------ create

    static void assertFreshStat(Stat st, long owner, int dataLen, String what) {
        check(st.getCzxid() > 0, what + ": czxid > 0");
        eq(st.getCzxid(), st.getMzxid(), what + ": mzxid == czxid");
        eq(st.getCzxid(), st.getPzxid(), what + ": pzxid == czxid");
        eq(st.getCtime(), st.getMtime(), what + ": mtime == ctime");
        long now = System.currentTimeMillis();
        check(Math.abs(now - st.getCtime()) < 60_000, what + ": ctime is wall-clock ms (" + st.getCtime() + " vs now " + now + ")");
        eq(0, st.getVersion(), what + ": version");
        eq(0, st.getCversion(), what + ": cversion");
        eq(0, st.getAversion(), what + ": aversion");
        eq(owner, st.getEphemeralOwner(), what + ": ephemeralOwner");
        eq(dataLen, st.getDataLength(), what + ": dataLength");
        eq(0, st.getNumChildren(), what + ": numChildren");
    }

    static void createModes(Ctx c) throws Exception {
        ZooKeeper zk = c.zk();
        long sid = zk.getSessionId();
        String p = c.base;
        Stat parentBefore = zk.exists(p, false);

        Stat st = new Stat();
        eq(p + "/pers", zk.create(p + "/pers", b("d1"), OPEN, CreateMode.PERSISTENT, st), "PERSISTENT path");
        assertFreshStat(st, 0, 2, "PERSISTENT");
        check(st.getCzxid() > parentBefore.getCzxid(), "zxid grows");
        Stat g = new Stat();
        eq("d1", s(zk.getData(p + "/pers", false, g)), "PERSISTENT data");
        eq(st, g, "create2 stat equals getData stat");

        st = new Stat();
        eq(p + "/eph", zk.create(p + "/eph", b("e"), OPEN, CreateMode.EPHEMERAL, st), "EPHEMERAL path");
        assertFreshStat(st, sid, 1, "EPHEMERAL");

        st = new Stat();
        eq(p + "/seq-0000000002", zk.create(p + "/seq-", b(""), OPEN, CreateMode.PERSISTENT_SEQUENTIAL, st), "PERSISTENT_SEQUENTIAL path");
        assertFreshStat(st, 0, 0, "PERSISTENT_SEQUENTIAL");

        st = new Stat();
        eq(p + "/eseq-0000000003", zk.create(p + "/eseq-", b("x"), OPEN, CreateMode.EPHEMERAL_SEQUENTIAL, st), "EPHEMERAL_SEQUENTIAL path");
        assertFreshStat(st, sid, 1, "EPHEMERAL_SEQUENTIAL");

        st = new Stat();
        eq(p + "/cont", zk.create(p + "/cont", b("cc"), OPEN, CreateMode.CONTAINER, st), "CONTAINER path");
        assertFreshStat(st, 0, 2, "CONTAINER (client-visible ephemeralOwner is 0)");

        st = new Stat();
        eq(p + "/ttl", zk.create(p + "/ttl", b("t"), OPEN, CreateMode.PERSISTENT_WITH_TTL, st, 60_000), "PERSISTENT_WITH_TTL path");
        assertFreshStat(st, 0, 1, "PERSISTENT_WITH_TTL (client-visible ephemeralOwner is 0)");

        st = new Stat();
        eq(p + "/tseq-0000000006", zk.create(p + "/tseq-", b("ts"), OPEN, CreateMode.PERSISTENT_SEQUENTIAL_WITH_TTL, st, 60_000),
                "PERSISTENT_SEQUENTIAL_WITH_TTL path");
        assertFreshStat(st, 0, 2, "PERSISTENT_SEQUENTIAL_WITH_TTL");
        long lastCzxid = st.getCzxid();

        // create without Stat out-param (opcode create) in sequential mode
        eq(p + "/plain-0000000007", zk.create(p + "/plain-", null, OPEN, CreateMode.EPHEMERAL_SEQUENTIAL), "plain create path");

        Stat ps = new Stat();
        List<String> kids = zk.getChildren(p, false, ps);
        eq(Arrays.asList("cont", "eph", "eseq-0000000003", "pers", "plain-0000000007", "seq-0000000002", "tseq-0000000006", "ttl"),
                sorted(kids), "children");
        eq(8, ps.getNumChildren(), "parent numChildren");
        eq(8, ps.getCversion(), "parent cversion");
        check(ps.getPzxid() > lastCzxid, "parent pzxid advanced to last child create");
        eq(parentBefore.getMzxid(), ps.getMzxid(), "parent mzxid unchanged by child creates");
        eq(0, ps.getVersion(), "parent version unchanged");

        // exists on every kind reports the same owner rules
        eq(sid, zk.exists(p + "/eseq-0000000003", false).getEphemeralOwner(), "exists ephemeralOwner of ephemeral");
        eq(0L, zk.exists(p + "/cont", false).getEphemeralOwner(), "exists ephemeralOwner of container");
        eq(0L, zk.exists(p + "/ttl", false).getEphemeralOwner(), "exists ephemeralOwner of ttl");

        // containers and TTL nodes may have children (ephemeral and persistent)
        zk.create(p + "/cont/child", null, OPEN, CreateMode.EPHEMERAL);
        zk.create(p + "/ttl/child", null, OPEN, CreateMode.PERSISTENT);
        eq(1, zk.exists(p + "/cont", false).getNumChildren(), "container numChildren");
    }

    static void createErrors(Ctx c) throws Exception {
        ZooKeeper zk = c.zk();
        String p = c.base;
        zk.create(p + "/a", null, OPEN, CreateMode.PERSISTENT);
        expectKeeper(Code.NODEEXISTS, () -> zk.create(p + "/a", null, OPEN, CreateMode.PERSISTENT));
        expectKeeper(Code.NODEEXISTS, () -> zk.create(p + "/a", null, OPEN, CreateMode.CONTAINER, new Stat()));
        expectKeeper(Code.NODEEXISTS, () -> zk.create(p + "/a", null, OPEN, CreateMode.PERSISTENT_WITH_TTL, new Stat(), 1000));
        expectKeeper(Code.NONODE, () -> zk.create(p + "/missing/x", null, OPEN, CreateMode.PERSISTENT));
        expectKeeper(Code.NONODE, () -> zk.create(p + "/missing/x", null, OPEN, CreateMode.PERSISTENT_SEQUENTIAL, new Stat()));
        expectKeeper(Code.NONODE, () -> zk.create(p + "/missing/x", null, OPEN, CreateMode.CONTAINER, new Stat()));
        expectKeeper(Code.NONODE, () -> zk.create(p + "/missing/x", null, OPEN, CreateMode.PERSISTENT_WITH_TTL, new Stat(), 5000));
        zk.create(p + "/e", null, OPEN, CreateMode.EPHEMERAL);
        expectKeeper(Code.NOCHILDRENFOREPHEMERALS, () -> zk.create(p + "/e/child", null, OPEN, CreateMode.PERSISTENT));
        expectKeeper(Code.NOCHILDRENFOREPHEMERALS, () -> zk.create(p + "/e/child", null, OPEN, CreateMode.EPHEMERAL_SEQUENTIAL));
        // special nodes cannot be deleted
        expectKeeper(Code.BADARGUMENTS, () -> zk.delete("/zookeeper", -1));
        expectKeeper(Code.BADARGUMENTS, () -> zk.delete("/zookeeper/config", -1));
        expectKeeper(Code.BADARGUMENTS, () -> zk.delete("/zookeeper/quota", -1));
        // /zookeeper/config is world-readable only
        expectKeeper(Code.NOAUTH, () -> zk.setData("/zookeeper/config", b("x"), -1));
        expectKeeper(Code.NOAUTH, () -> zk.create("/zookeeper/config/x", null, OPEN, CreateMode.PERSISTENT));
        // delete of a non-empty node
        zk.create(p + "/a/b", null, OPEN, CreateMode.PERSISTENT);
        expectKeeper(Code.NOTEMPTY, () -> zk.delete(p + "/a", -1));
        expectKeeper(Code.NONODE, () -> zk.delete(p + "/nothere", -1));
        // a failed create leaves no trace
        eq(Collections.singletonList("b"), zk.getChildren(p + "/a", false), "children after failures");
        // invalid ACL lists
        expectKeeper(Code.INVALIDACL, () -> zk.create(p + "/badacl", null,
                Collections.singletonList(new ACL(Perms.ALL, new Id("digest", "nocolon"))), CreateMode.PERSISTENT));
        expectKeeper(Code.INVALIDACL, () -> zk.create(p + "/badacl", null, Ids.CREATOR_ALL_ACL, CreateMode.PERSISTENT));
        expectKeeper(Code.INVALIDACL, () -> zk.create(p + "/badacl", null,
                Collections.singletonList(new ACL(Perms.ALL, new Id("ip", "not-an-ip"))), CreateMode.PERSISTENT));
        expectKeeper(Code.INVALIDACL, () -> zk.create(p + "/badacl", null,
                Collections.singletonList(new ACL(Perms.ALL, new Id("nosuchscheme", "x"))), CreateMode.PERSISTENT));
        check(zk.exists(p + "/badacl", false) == null, "no node created by failed ACL creates");
    }

    static void sequentialSuffix(Ctx c) throws Exception {
        ZooKeeper zk = c.zk();
        String q = c.p("q");
        zk.create(q, null, OPEN, CreateMode.PERSISTENT);
        zk.create(q + "/a", null, OPEN, CreateMode.PERSISTENT);
        zk.delete(q + "/a", -1);
        Stat st = new Stat();
        zk.getChildren(q, false, st);
        eq(2, st.getCversion(), "cversion after create+delete (client view = creations + deletions)");
        eq(0, st.getNumChildren(), "numChildren");
        zk.create(q + "/b", null, OPEN, CreateMode.PERSISTENT);
        zk.getChildren(q, false, st);
        eq(3, st.getCversion(), "cversion after create a, delete a, create b");
        // the sequential counter is the number of child creations so far
        String s1 = zk.create(q + "/s-", null, OPEN, CreateMode.PERSISTENT_SEQUENTIAL);
        eq(q + "/s-0000000002", s1, "sequential suffix after create a, delete a, create b");
        zk.delete(q + "/b", -1);
        zk.delete(s1, -1);
        zk.getChildren(q, false, st);
        eq(6, st.getCversion(), "cversion after three creates and three deletes");
        // sequential with an empty prefix (name is only the counter) and inside a sequential-named parent
        eq(q + "/0000000003", zk.create(q + "/", null, OPEN, CreateMode.PERSISTENT_SEQUENTIAL), "empty-prefix sequential name");
        String e1 = zk.create(q + "/e-", null, OPEN, CreateMode.EPHEMERAL_SEQUENTIAL);
        String e2 = zk.create(q + "/e-", null, OPEN, CreateMode.EPHEMERAL_SEQUENTIAL);
        eq(q + "/e-0000000004", e1, "ephemeral sequential 1");
        eq(q + "/e-0000000005", e2, "ephemeral sequential 2");
        // a different session shares the parent counter
        ZooKeeper zk2 = c.zk();
        eq(q + "/e-0000000006", zk2.create(q + "/e-", null, OPEN, CreateMode.EPHEMERAL_SEQUENTIAL), "counter is per parent, not per session");
        // failed creates do not advance the counter
        zk.create(q + "/b2x", null, OPEN, CreateMode.PERSISTENT);
        expectKeeper(Code.NODEEXISTS, () -> zk.create(q + "/b2x", null, OPEN, CreateMode.PERSISTENT));
        eq(q + "/z-0000000008", zk.create(q + "/z-", null, OPEN, CreateMode.PERSISTENT_SEQUENTIAL), "failed create does not bump counter");
    }

    static void containerAndTtlExpiry(Ctx c) throws Exception {
        ZooKeeper zk = c.zk();
        Events ev = new Events();
        String p = c.base;
        zk.create(p + "/c1", null, OPEN, CreateMode.CONTAINER);
        zk.create(p + "/c1/kid", null, OPEN, CreateMode.PERSISTENT);
        zk.create(p + "/c2", null, OPEN, CreateMode.CONTAINER);           // never had a child: must survive
        zk.create(p + "/c3", null, OPEN, CreateMode.CONTAINER);
        zk.create(p + "/c3/kid", null, OPEN, CreateMode.PERSISTENT);       // still has a child: must survive
        zk.create(p + "/t1", b("t"), OPEN, CreateMode.PERSISTENT_WITH_TTL, new Stat(), 300);
        zk.create(p + "/t2", null, OPEN, CreateMode.PERSISTENT_WITH_TTL, new Stat(), 300);
        zk.create(p + "/t2/kid", null, OPEN, CreateMode.PERSISTENT);       // has a child: must survive
        zk.create(p + "/t3", null, OPEN, CreateMode.PERSISTENT_WITH_TTL, new Stat(), 600_000);
        String ts = zk.create(p + "/ts-", null, OPEN, CreateMode.PERSISTENT_SEQUENTIAL_WITH_TTL, new Stat(), 300);
        check(zk.exists(p + "/c1", ev) != null, "c1 exists");
        zk.getChildren(p, ev);
        zk.delete(p + "/c1/kid", -1);
        // c1's child watch is not set; the exists watch on c1 must see the server-side delete
        waitFor(8000, "container c1 deleted after its last child was removed", sup(() -> zk.exists(p + "/c1", false) == null));
        waitFor(8000, "TTL node t1 deleted after ttl", sup(() -> zk.exists(p + "/t1", false) == null));
        waitFor(8000, "sequential TTL node deleted after ttl", sup(() -> zk.exists(ts, false) == null));
        // events: NodeChildrenChanged on parent (one-shot) and NodeDeleted for c1 (order between them not fixed)
        List<String> got = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            WatchedEvent e = ev.next(5000);
            check(e != null, "missing watch event for container deletion, got " + got);
            got.add(e.getType() + " " + e.getPath());
        }
        Collections.sort(got);
        eq(Arrays.asList("NodeChildrenChanged " + p, "NodeDeleted " + p + "/c1"), got, "events from container reaping");
        Thread.sleep(1500); // at least one more container-check cycle
        check(zk.exists(p + "/c2", false) != null, "never-used container must not be deleted");
        check(zk.exists(p + "/c3", false) != null, "container with a child must not be deleted");
        check(zk.exists(p + "/t2", false) != null, "TTL node with a child must not be deleted");
        check(zk.exists(p + "/t3", false) != null, "TTL node with long ttl must not be deleted");
        // removing the child of the TTL node lets it expire
        zk.delete(p + "/t2/kid", -1);
        waitFor(8000, "TTL node t2 deleted once childless", sup(() -> zk.exists(p + "/t2", false) == null));
    }

    // ------------------------------------------------------------------ data

    static void dataVersions(Ctx c) throws Exception {
        ZooKeeper zk = c.zk();
        String n = c.p("n");
        Stat created = new Stat();
        zk.create(n, b("v0"), OPEN, CreateMode.PERSISTENT, created);
        Thread.sleep(5);
        Stat s1 = zk.setData(n, b("v1-longer"), 0);
        eq(1, s1.getVersion(), "version after setData");
        check(s1.getMzxid() > created.getMzxid(), "mzxid advanced");
        eq(created.getCzxid(), s1.getCzxid(), "czxid unchanged");
        eq(created.getCtime(), s1.getCtime(), "ctime unchanged");
        check(s1.getMtime() >= s1.getCtime(), "mtime >= ctime");
        eq(9, s1.getDataLength(), "dataLength");
        eq(created.getPzxid(), s1.getPzxid(), "pzxid unchanged by setData");
        eq(0, s1.getCversion(), "cversion unchanged");
        expectKeeper(Code.BADVERSION, () -> zk.setData(n, b("x"), 0));
        expectKeeper(Code.BADVERSION, () -> zk.setData(n, b("x"), 5));
        Stat s2 = zk.setData(n, b("v2"), -1);
        eq(2, s2.getVersion(), "version after unconditional setData");
        Stat g = new Stat();
        eq("v2", s(zk.getData(n, false, g)), "data");
        eq(s2, g, "getData stat == setData stat");
        eq(s2, zk.exists(n, false), "exists stat == setData stat");
        // setData with the same bytes still bumps version and mzxid
        Stat s3 = zk.setData(n, b("v2"), 2);
        eq(3, s3.getVersion(), "version after identical setData");
        check(s3.getMzxid() > s2.getMzxid(), "mzxid advanced by identical setData");
        expectKeeper(Code.BADVERSION, () -> zk.delete(n, 2));
        zk.delete(n, 3);
        check(zk.exists(n, false) == null, "gone after delete");
        expectKeeper(Code.NONODE, () -> zk.getData(n, false, null));
        expectKeeper(Code.NONODE, () -> zk.setData(n, b("x"), -1));
        expectKeeper(Code.NONODE, () -> zk.delete(n, -1));
        expectKeeper(Code.NONODE, () -> zk.getChildren(n, false));
        // re-created node starts over at version 0 with a new czxid
        Stat again = new Stat();
        zk.create(n, null, OPEN, CreateMode.PERSISTENT, again);
        eq(0, again.getVersion(), "version of re-created node");
        check(again.getCzxid() > s3.getMzxid(), "new czxid");
        // version wraps like a Java int? (not tested: needs 2^31 writes)
    }

    static void dataEdgeCases(Ctx c) throws Exception {
        ZooKeeper zk = c.zk();
        String p = c.base;
        zk.create(p + "/null", null, OPEN, CreateMode.PERSISTENT);
        Stat st = new Stat();
        check(zk.getData(p + "/null", false, st) == null, "null data reads back as null");
        eq(0, st.getDataLength(), "dataLength of null data");
        zk.create(p + "/empty", new byte[0], OPEN, CreateMode.PERSISTENT);
        byte[] e = zk.getData(p + "/empty", false, st);
        check(e != null && e.length == 0, "empty data reads back as empty array, not null (got " + (e == null ? "null" : e.length) + ")");
        zk.setData(p + "/empty", null, -1);
        check(zk.getData(p + "/empty", false, null) == null, "setData(null) reads back as null");
        byte[] bin = new byte[256];
        for (int i = 0; i < 256; i++) bin[i] = (byte) i;
        zk.create(p + "/bin", bin, OPEN, CreateMode.PERSISTENT);
        eq(bin, zk.getData(p + "/bin", false, null), "binary data round trip");
        byte[] big = new byte[1000 * 1000];
        new java.util.Random(42).nextBytes(big);
        zk.create(p + "/big", big, OPEN, CreateMode.PERSISTENT);
        Stat bs = new Stat();
        eq(big, zk.getData(p + "/big", false, bs), "1 MB data round trip");
        eq(big.length, bs.getDataLength(), "dataLength of big node");
        // unicode names (multi-byte UTF-8) are stored and listed verbatim
        String uni = "\u00fcnicode-\u2124-\u65e5\u672c-\u00e9\u00df";
        zk.create(p + "/" + uni, b(uni), OPEN, CreateMode.PERSISTENT);
        check(zk.getChildren(p, false).contains(uni), "unicode child name listed");
        eq(uni, s(zk.getData(p + "/" + uni, false, null)), "unicode data");
        // names that only look special
        zk.create(p + "/.hidden", null, OPEN, CreateMode.PERSISTENT);
        zk.create(p + "/a b", null, OPEN, CreateMode.PERSISTENT);
        zk.create(p + "/zookeeper", null, OPEN, CreateMode.PERSISTENT);
        zk.delete(p + "/zookeeper", -1);
        eq(Arrays.asList(".hidden", "a b", "big", "bin", "empty", "null", uni), sorted(zk.getChildren(p, false)), "children");
    }

    static void childrenAndCounts(Ctx c) throws Exception {
        ZooKeeper zk = c.zk();
        String p = c.base;
        Stat last = new Stat();
        for (String k : new String[] {"c3", "c1", "c2"}) zk.create(p + "/" + k, null, OPEN, CreateMode.PERSISTENT, last);
        zk.create(p + "/c1/g1", null, OPEN, CreateMode.PERSISTENT);
        zk.create(p + "/c1/g2", null, OPEN, CreateMode.PERSISTENT);
        zk.create(p + "/c1/g2/gg", null, OPEN, CreateMode.EPHEMERAL);
        Stat st = new Stat();
        eq(Arrays.asList("c1", "c2", "c3"), sorted(zk.getChildren(p, false, st)), "children");
        eq(3, st.getNumChildren(), "numChildren");
        eq(3, st.getCversion(), "cversion");
        eq(last.getCzxid(), st.getPzxid(), "pzxid == czxid of last child create (grandchildren don't count)");
        Stat leaf = new Stat();
        eq(Collections.emptyList(), zk.getChildren(p + "/c3", false, leaf), "leaf children");
        eq(0, leaf.getNumChildren(), "leaf numChildren");
        eq(6, zk.getAllChildrenNumber(p), "getAllChildrenNumber counts all descendants");
        eq(3, zk.getAllChildrenNumber(p + "/c1"), "getAllChildrenNumber of subtree");
        eq(0, zk.getAllChildrenNumber(p + "/c3"), "getAllChildrenNumber of leaf");
        check(zk.getAllChildrenNumber("/") >= 6 + 3, "getAllChildrenNumber(/) covers whole tree");
        // async variant returns the same
        CountDownLatch l = new CountDownLatch(1);
        AtomicReference<String> res = new AtomicReference<>();
        zk.getAllChildrenNumber(p, (rc, path, ctx, number) -> { res.set(rc + ":" + path + ":" + number); l.countDown(); }, null);
        check(l.await(5, TimeUnit.SECONDS), "async getAllChildrenNumber callback");
        eq("0:" + p + ":6", res.get(), "async getAllChildrenNumber");
        // deleting a child moves pzxid but not the reported mzxid
        Stat before = zk.exists(p, false);
        zk.delete(p + "/c2", -1);
        Stat after = new Stat();
        eq(Arrays.asList("c1", "c3"), sorted(zk.getChildren(p, false, after)), "children after delete");
        check(after.getPzxid() > before.getPzxid(), "pzxid advanced by child delete");
        eq(before.getMzxid(), after.getMzxid(), "mzxid unchanged by child delete");
        eq(4, after.getCversion(), "cversion after 3 creates + 1 delete");
        eq(5, zk.getAllChildrenNumber(p), "count after delete");
        // getChildren2 async returns stat as well
        CountDownLatch l2 = new CountDownLatch(1);
        AtomicReference<Object[]> r2 = new AtomicReference<>();
        zk.getChildren(p, false, (AsyncCallback.Children2Callback) (rc, path, ctx, children, stat) -> { r2.set(new Object[] {rc, sorted(children), stat}); l2.countDown(); }, null);
        check(l2.await(5, TimeUnit.SECONDS), "async getChildren2");
        eq(0, r2.get()[0], "rc");
        eq(Arrays.asList("c1", "c3"), r2.get()[1], "async children");
        eq(after, r2.get()[2], "async stat");
    }

    static void getEphemerals(Ctx c) throws Exception {
        ZooKeeper s1 = c.zk(), s2 = c.zk();
        String p = c.base;
        s1.create(p + "/sub", null, OPEN, CreateMode.PERSISTENT);
        s1.create(p + "/e1", null, OPEN, CreateMode.EPHEMERAL);
        s1.create(p + "/e2", null, OPEN, CreateMode.EPHEMERAL);
        s1.create(p + "/sub/e3", null, OPEN, CreateMode.EPHEMERAL);
        s1.create(p + "/x-", null, OPEN, CreateMode.EPHEMERAL_SEQUENTIAL);
        s1.create(p + "/pers", null, OPEN, CreateMode.PERSISTENT);
        s2.create(p + "/f1", null, OPEN, CreateMode.EPHEMERAL);
        eq(Arrays.asList(p + "/e1", p + "/e2", p + "/sub/e3", p + "/x-0000000003"), sorted(s1.getEphemerals(p)), "s1 ephemerals under base");
        eq(Arrays.asList(p + "/e1", p + "/e2"), sorted(s1.getEphemerals(p + "/e")), "prefix is a plain string prefix");
        eq(Collections.singletonList(p + "/f1"), s2.getEphemerals(p), "s2 ephemerals");
        eq(Collections.emptyList(), s2.getEphemerals(p + "/e"), "other session's ephemerals are not listed");
        eq(sorted(s1.getEphemerals(p)), sorted(s1.getEphemerals()), "no-arg variant lists all of the session's ephemerals");
        eq(sorted(s1.getEphemerals(p)), sorted(s1.getEphemerals("/")), "\"/\" prefix lists all");
        s1.delete(p + "/e1", -1);
        eq(Arrays.asList(p + "/e2"), sorted(s1.getEphemerals(p + "/e")), "deleted ephemeral not listed");
        CountDownLatch l = new CountDownLatch(1);
        AtomicReference<List<String>> got = new AtomicReference<>();
        s2.getEphemerals(p, (rc, ctx, paths) -> { got.set(paths); l.countDown(); }, null);
        check(l.await(5, TimeUnit.SECONDS), "async getEphemerals");
        eq(Collections.singletonList(p + "/f1"), got.get(), "async getEphemerals");
    }

    // ------------------------------------------------------------------ multi

    static void multiSuccess(Ctx c) throws Exception {
        ZooKeeper zk = c.zk();
        String p = c.base;
        zk.create(p + "/existing", b("old"), OPEN, CreateMode.PERSISTENT);
        List<OpResult> r = zk.multi(Arrays.asList(
                Op.create(p + "/a", b("A"), OPEN, CreateMode.PERSISTENT),
                Op.create(p + "/a/s-", b("S"), OPEN, CreateMode.PERSISTENT_SEQUENTIAL),
                Op.create(p + "/eph", null, OPEN, CreateMode.EPHEMERAL),
                Op.setData(p + "/a", b("A2"), 0),
                Op.check(p + "/existing", 0),
                Op.setData(p + "/existing", b("new"), 0),
                Op.delete(p + "/existing", 1),
                Op.create(p + "/cont", null, OPEN, CreateMode.CONTAINER),
                Op.create(p + "/ttl", null, OPEN, CreateMode.PERSISTENT_WITH_TTL, 60_000)));
        eq(9, r.size(), "result count");
        eq(p + "/a", ((OpResult.CreateResult) r.get(0)).getPath(), "create result path");
        check(((OpResult.CreateResult) r.get(0)).getStat() == null, "plain create in multi returns no stat");
        eq(p + "/a/s-0000000000", ((OpResult.CreateResult) r.get(1)).getPath(), "sequential create in multi");
        eq(p + "/eph", ((OpResult.CreateResult) r.get(2)).getPath(), "ephemeral create in multi");
        Stat sd = ((OpResult.SetDataResult) r.get(3)).getStat();
        eq(1, sd.getVersion(), "setData result version");
        check(r.get(4) instanceof OpResult.CheckResult, "check result type: " + r.get(4).getClass().getSimpleName());
        eq(1, ((OpResult.SetDataResult) r.get(5)).getStat().getVersion(), "second setData version");
        check(r.get(6) instanceof OpResult.DeleteResult, "delete result type");
        Stat cs = ((OpResult.CreateResult) r.get(7)).getStat();
        check(cs != null, "container create in multi returns a stat (create2-style result)");
        Stat ts = ((OpResult.CreateResult) r.get(8)).getStat();
        check(ts != null, "ttl create in multi returns a stat");
        // all ops share one zxid
        long z = sd.getMzxid();
        eq(z, sd.getCzxid(), "a created and modified in the same txn");
        eq(z, zk.exists(p + "/a/s-0000000000", false).getCzxid(), "sequential child czxid");
        eq(z, zk.exists(p + "/eph", false).getCzxid(), "ephemeral czxid");
        eq(zk.getSessionId(), zk.exists(p + "/eph", false).getEphemeralOwner(), "ephemeral owner");
        eq(z, cs.getCzxid(), "container czxid");
        eq(z, ts.getCzxid(), "ttl czxid");
        eq(0L, cs.getEphemeralOwner(), "container stat owner");
        eq("A2", s(zk.getData(p + "/a", false, null)), "data set in multi");
        check(zk.exists(p + "/existing", false) == null, "deleted in multi");
        // transaction builder and async multi
        List<OpResult> tr = zk.transaction().create(p + "/t1", null, OPEN, CreateMode.PERSISTENT).check(p + "/a", 1)
                .setData(p + "/t1", b("x"), 0).commit();
        eq(3, tr.size(), "transaction results");
        CountDownLatch l = new CountDownLatch(1);
        AtomicReference<Object[]> ar = new AtomicReference<>();
        zk.multi(Arrays.asList(Op.delete(p + "/t1", 1), Op.check(p + "/a", 1)),
                (rc, path, ctx, opResults) -> { ar.set(new Object[] {rc, opResults}); l.countDown(); }, null);
        check(l.await(5, TimeUnit.SECONDS), "async multi callback");
        eq(0, ar.get()[0], "async multi rc");
        eq(2, ((List<?>) ar.get()[1]).size(), "async multi results");
        check(zk.exists(p + "/t1", false) == null, "async multi applied");
        // empty multi is fine
        eq(0, zk.multi(Collections.emptyList()).size(), "empty multi");
    }

    static void multiFailure(Ctx c) throws Exception {
        ZooKeeper zk = c.zk();
        String p = c.base;
        zk.create(p + "/t1", b("x"), OPEN, CreateMode.PERSISTENT);
        Stat before = zk.exists(p, false);
        KeeperException ke = expectKeeper(Code.BADVERSION, () -> zk.multi(Arrays.asList(
                Op.create(p + "/m3", null, OPEN, CreateMode.PERSISTENT),
                Op.check(p + "/t1", 99),
                Op.delete(p + "/t1", -1))));
        List<OpResult> r = ke.getResults();
        check(r != null && r.size() == 3, "failed multi carries per-op results: " + r);
        int[] want = {0, Code.BADVERSION.intValue(), Code.RUNTIMEINCONSISTENCY.intValue()};
        for (int i = 0; i < 3; i++) {
            check(r.get(i) instanceof OpResult.ErrorResult, "result " + i + " is an ErrorResult but was " + r.get(i).getClass().getSimpleName());
            eq(want[i], ((OpResult.ErrorResult) r.get(i)).getErr(), "error code of op " + i);
        }
        check(zk.exists(p + "/m3", false) == null, "nothing applied (create rolled back)");
        check(zk.exists(p + "/t1", false) != null, "nothing applied (delete not done)");
        eq(before.getCversion(), zk.exists(p, false).getCversion(), "parent cversion untouched");

        // first op fails
        ke = expectKeeper(Code.NODEEXISTS, () -> zk.multi(Arrays.asList(
                Op.create(p + "/t1", null, OPEN, CreateMode.PERSISTENT),
                Op.setData(p + "/t1", b("y"), -1))));
        eq(Code.NODEEXISTS.intValue(), ((OpResult.ErrorResult) ke.getResults().get(0)).getErr(), "first op code");
        eq(Code.RUNTIMEINCONSISTENCY.intValue(), ((OpResult.ErrorResult) ke.getResults().get(1)).getErr(), "second op code");
        eq("x", s(zk.getData(p + "/t1", false, null)), "data unchanged");

        // later op depends on earlier op of the same multi (create then create child) but last fails
        ke = expectKeeper(Code.NONODE, () -> zk.multi(Arrays.asList(
                Op.create(p + "/n", null, OPEN, CreateMode.PERSISTENT),
                Op.create(p + "/n/child", null, OPEN, CreateMode.PERSISTENT),
                Op.delete(p + "/nope", -1))));
        eq(Arrays.asList(0, 0, Code.NONODE.intValue()), errCodes(ke.getResults()), "error codes");
        check(zk.exists(p + "/n", false) == null, "nested create rolled back");

        // a multi that deletes then re-creates the same node in one txn succeeds
        List<OpResult> ok = zk.multi(Arrays.asList(Op.delete(p + "/t1", 0), Op.create(p + "/t1", b("z"), OPEN, CreateMode.PERSISTENT)));
        eq(2, ok.size(), "delete+recreate results");
        eq("z", s(zk.getData(p + "/t1", false, null)), "recreated data");

        // async failure: rc is the first error, results per op
        CountDownLatch l = new CountDownLatch(1);
        AtomicReference<Object[]> ar = new AtomicReference<>();
        zk.multi(Arrays.asList(Op.check(p + "/t1", 0), Op.check(p + "/missing", -1)),
                (rc, path, ctx, opResults) -> { ar.set(new Object[] {rc, opResults}); l.countDown(); }, null);
        check(l.await(5, TimeUnit.SECONDS), "async multi callback");
        eq(Code.NONODE.intValue(), ar.get()[0], "async failed multi rc");
        @SuppressWarnings("unchecked") List<OpResult> ares = (List<OpResult>) ar.get()[1];
        eq(Arrays.asList(0, Code.NONODE.intValue()), errCodes(ares), "async error codes");
    }

    static List<Integer> errCodes(List<OpResult> r) {
        List<Integer> out = new ArrayList<>();
        for (OpResult o : r) out.add(o instanceof OpResult.ErrorResult ? ((OpResult.ErrorResult) o).getErr() : 999);
        return out;
    }

    static void multiRead(Ctx c) throws Exception {
        ZooKeeper zk = c.zk();
        String p = c.base;
        Stat as = new Stat();
        zk.create(p + "/a", b("AA"), OPEN, CreateMode.PERSISTENT, as);
        zk.create(p + "/a/x", null, OPEN, CreateMode.PERSISTENT);
        zk.create(p + "/a/y", null, OPEN, CreateMode.PERSISTENT);
        Stat asNow = zk.exists(p + "/a", false);
        List<OpResult> r = zk.multi(Arrays.asList(Op.getData(p + "/a"), Op.getChildren(p + "/a"), Op.getData(p + "/a/x")));
        eq(3, r.size(), "multiRead results");
        OpResult.GetDataResult gd = (OpResult.GetDataResult) r.get(0);
        eq("AA", s(gd.getData()), "multiRead getData data");
        eq(asNow, gd.getStat(), "multiRead getData stat");
        eq(Arrays.asList("x", "y"), sorted(((OpResult.GetChildrenResult) r.get(1)).getChildren()), "multiRead getChildren");
        check(((OpResult.GetDataResult) r.get(2)).getData() == null, "null data in multiRead");
        // a failing read op does not fail the others (and the Java client does not throw for multiRead)
        List<OpResult> fr = zk.multi(Arrays.asList(Op.getData(p + "/a"), Op.getChildren(p + "/missing"), Op.getData(p + "/a/y")));
        eq(3, fr.size(), "results of failed multiRead");
        check(fr.get(0) instanceof OpResult.GetDataResult, "op 0 still returns data: " + fr.get(0).getClass().getSimpleName());
        eq("AA", s(((OpResult.GetDataResult) fr.get(0)).getData()), "op 0 data");
        eq(Code.NONODE.intValue(), ((OpResult.ErrorResult) fr.get(1)).getErr(), "op 1 error");
        check(fr.get(2) instanceof OpResult.GetDataResult, "op 2 still returns data (independent reads): " + fr.get(2).getClass().getSimpleName());
        // mixing reads and writes is rejected by the client
        try {
            zk.multi(Arrays.asList(Op.getData(p + "/a"), Op.setData(p + "/a", b("z"), -1)));
            throw new AssertionError("mixed read/write multi accepted");
        } catch (IllegalArgumentException expected) { }
        eq("AA", s(zk.getData(p + "/a", false, null)), "data unchanged");
    }

    static void failedWriteZxid(Ctx c) throws Exception {
        ZooKeeper zk = c.zk();
        String p = c.base;
        Stat a = new Stat(), b2 = new Stat(), c2 = new Stat();
        zk.create(p + "/a", null, OPEN, CreateMode.PERSISTENT, a);
        expectKeeper(Code.NODEEXISTS, () -> zk.create(p + "/a", null, OPEN, CreateMode.PERSISTENT));
        zk.create(p + "/b", null, OPEN, CreateMode.PERSISTENT, b2);
        check(b2.getCzxid() >= a.getCzxid() + 2, "a failed create consumes a zxid (" + Long.toHexString(a.getCzxid()) + " -> " + Long.toHexString(b2.getCzxid()) + ")");
        // a failed multi also consumes one zxid
        expectKeeper(Code.BADVERSION, () -> zk.multi(Arrays.asList(Op.check(p + "/a", 7))));
        zk.create(p + "/c", null, OPEN, CreateMode.PERSISTENT, c2);
        check(c2.getCzxid() >= b2.getCzxid() + 2, "a failed multi consumes a zxid");
        // reads do not
        long before = zk.exists(p + "/c", false).getCzxid();
        for (int i = 0; i < 5; i++) { zk.getData(p + "/a", false, null); zk.exists(p + "/zz", false); }
        Stat d = new Stat();
        zk.create(p + "/d", null, OPEN, CreateMode.PERSISTENT, d);
        check(d.getCzxid() > before, "zxid monotonic");
    }

    static void sync(Ctx c) throws Exception {
        ZooKeeper zk = c.zk(), other = c.zk();
        String n = c.p("n");
        other.create(n, b("1"), OPEN, CreateMode.PERSISTENT);
        CountDownLatch l = new CountDownLatch(2);
        List<String> got = Collections.synchronizedList(new ArrayList<>());
        zk.sync(n, (rc, path, ctx) -> { got.add(rc + " " + path + " " + ctx); l.countDown(); }, "ctx1");
        zk.sync("/", (rc, path, ctx) -> { got.add(rc + " " + path + " " + ctx); l.countDown(); }, "ctx2");
        check(l.await(5, TimeUnit.SECONDS), "sync callbacks");
        eq(Arrays.asList("0 " + n + " ctx1", "0 / ctx2"), got, "sync callbacks echo path, in order");
        eq("1", s(zk.getData(n, false, null)), "read after sync sees other client's write");
        // sync of a missing path still succeeds (path is only echoed)
        CountDownLatch l2 = new CountDownLatch(1);
        AtomicReference<String> r = new AtomicReference<>();
        zk.sync(c.p("missing"), (rc, path, ctx) -> { r.set(rc + " " + path); l2.countDown(); }, null);
        check(l2.await(5, TimeUnit.SECONDS), "sync callback");
        eq("0 " + c.p("missing"), r.get(), "sync on missing path");
    }

    // ------------------------------------------------------------------ watches

    static void standardWatches(Ctx c) throws Exception {
        Events dflt = new Events();
        ZooKeeper zk = c.zk(dflt), other = c.zk();
        String n = c.p("n");
        long sid = zk.getSessionId();
        Events w = new Events();
        // exists watch on a missing node is registered (and visible server-side); getData watch on a missing node is not
        check(zk.exists(n, w) == null, "missing");
        expectKeeper(Code.NONODE, () -> zk.getData(c.p("nodata"), w, null));
        Map<String, Set<Long>> wp = wchpUnder(c.base);
        check(wp.containsKey(n) && wp.get(n).contains(sid), "exists watch on missing node registered server-side: " + wp);
        check(!wp.containsKey(c.p("nodata")), "getData on missing node registers no watch: " + wp);
        other.create(n, b("1"), OPEN, CreateMode.PERSISTENT);
        other.create(c.p("nodata"), null, OPEN, CreateMode.PERSISTENT);
        w.expect(EventType.NodeCreated, n);
        flush(zk);
        w.expectNone("exists watch fires once");
        // one-shot data watch
        zk.getData(n, w, null);
        other.setData(n, b("2"), -1);
        other.setData(n, b("3"), -1);
        WatchedEvent e = w.expect(EventType.NodeDataChanged, n);
        eq(KeeperState.SyncConnected, e.getState(), "event state");
        flush(zk);
        w.expectNone("data watch is one-shot");
        check(!wchpUnder(c.base).containsKey(n), "fired watch removed server-side");
        // child watch + data watch on same node; delete fires NodeDeleted to both watchers
        Events cw = new Events();
        zk.getChildren(n, cw);
        zk.exists(n, w);
        other.create(n + "/k", null, OPEN, CreateMode.PERSISTENT);
        cw.expect(EventType.NodeChildrenChanged, n);
        other.setData(n + "/k", b("x"), -1);     // no watch on child
        zk.getChildren(n, cw);
        other.delete(n + "/k", -1);
        cw.expect(EventType.NodeChildrenChanged, n);
        zk.getChildren(n, cw);
        other.delete(n, -1);
        w.expect(EventType.NodeDeleted, n);
        cw.expect(EventType.NodeDeleted, n);
        flush(zk);
        w.expectNone("");
        cw.expectNone("");
        // watch=true uses the default watcher; same watcher registered twice gets one event
        zk.exists(n, true);
        zk.exists(n, true);
        other.create(n, null, OPEN, CreateMode.PERSISTENT);
        dflt.expect(EventType.NodeCreated, n);
        flush(zk);
        dflt.expectNone("same watcher registered twice fires once");
        // two different watchers on the same path both get the event (one server notification)
        Events w2 = new Events();
        zk.getData(n, w, null);
        zk.getData(n, w2, null);
        other.setData(n, b("y"), -1);
        w.expect(EventType.NodeDataChanged, n);
        w2.expect(EventType.NodeDataChanged, n);
        // watch on child of parent does not fire for grandchild create; parent child watch does not fire for data change
        zk.getChildren(c.base, cw);
        other.create(n + "/g", null, OPEN, CreateMode.PERSISTENT);
        other.setData(n, b("z"), -1);
        flush(other);
        flush(zk);
        cw.expectNone("grandchild create / data change do not fire parent child watch");
    }

    static void watchBeforeReply(Ctx c) throws Exception {
        ZooKeeper zk = c.zk();
        String n = c.p("n");
        zk.create(n, null, OPEN, CreateMode.PERSISTENT);
        List<String> order = Collections.synchronizedList(new ArrayList<>());
        CountDownLatch done = new CountDownLatch(2);
        zk.getData(n, ev -> { order.add("event " + ev.getType()); done.countDown(); }, null);
        zk.getChildren(n, ev -> order.add("child-event " + ev.getType()));
        zk.setData(n, b("x"), -1, (rc, path, ctx, stat) -> { order.add("reply setData " + rc); done.countDown(); }, null);
        check(done.await(5, TimeUnit.SECONDS), "setData reply and watch event: " + order);
        eq(Arrays.asList("event NodeDataChanged", "reply setData 0"), order, "watch event delivered before the write's reply");
        order.clear();
        CountDownLatch d2 = new CountDownLatch(1);
        zk.create(n + "/k", null, OPEN, CreateMode.PERSISTENT, (rc, path, ctx, name) -> { order.add("reply create " + rc); d2.countDown(); }, null);
        check(d2.await(5, TimeUnit.SECONDS), "create reply");
        eq(Arrays.asList("child-event NodeChildrenChanged", "reply create 0"), order, "child event before create reply");
    }

    static void persistentWatch(Ctx c) throws Exception {
        ZooKeeper zk = c.zk();
        String w = c.p("w");
        Events ev = new Events();
        zk.addWatch(w, ev, AddWatchMode.PERSISTENT);
        check(wchpUnder(c.base).containsKey(w), "persistent watch registered server-side (data table)");
        zk.create(w, b("0"), OPEN, CreateMode.PERSISTENT);
        zk.setData(w, b("1"), -1);
        zk.setData(w, b("2"), -1);
        zk.create(w + "/c", null, OPEN, CreateMode.PERSISTENT);
        zk.setData(w + "/c", b("x"), -1);
        zk.create(w + "/c/d", null, OPEN, CreateMode.PERSISTENT);
        zk.delete(w + "/c/d", -1);
        zk.delete(w + "/c", -1);
        zk.delete(w, -1);
        zk.create(w, null, OPEN, CreateMode.PERSISTENT);
        ZooKeeper other = c.zk();
        other.setData(w, b("o"), -1);   // changes from other sessions are reported too
        flush(zk);
        eq(Arrays.asList(
                "NodeCreated " + w, "NodeDataChanged " + w, "NodeDataChanged " + w, "NodeChildrenChanged " + w,
                "NodeChildrenChanged " + w, "NodeDeleted " + w, "NodeCreated " + w, "NodeDataChanged " + w),
                ev.drain(), "persistent watch events");
        // removing one watcher: the Java client sends checkWatches (17); the server keeps its watch
        zk.removeWatches(w, ev, WatcherType.Any, false);
        ev.expect(EventType.PersistentWatchRemoved, w);
        check(wchpUnder(c.base).containsKey(w), "removeWatches(watcher) = checkWatches: server-side watch stays");
        zk.setData(w, b("after"), -1);
        flush(zk);
        ev.expectNone("no events after removal");
        // persistent watch on an existing node; re-adding the same watcher is idempotent
        zk.addWatch(w, ev, AddWatchMode.PERSISTENT);
        zk.addWatch(w, ev, AddWatchMode.PERSISTENT);
        other.setData(w, b("again"), -1);
        flush(zk);
        eq(Collections.singletonList("NodeDataChanged " + w), ev.drain(), "one event after double add");
        // removeAllWatches sends removeWatches (18): the server drops the persistent watch
        zk.removeAllWatches(w, WatcherType.Any, false);
        ev.expect(EventType.PersistentWatchRemoved, w);
        check(!wchpUnder(c.base).containsKey(w), "removeAllWatches removes the persistent watch server-side");
        other.setData(w, b("gone"), -1);
        flush(zk);
        ev.expectNone("no events after removeAllWatches");
        expectKeeper(Code.NOWATCHER, () -> zk.removeAllWatches(w, WatcherType.Any, false));
    }

    static void recursiveWatch(Ctx c) throws Exception {
        ZooKeeper zk = c.zk(), other = c.zk();
        String r = c.p("r");
        Events ev = new Events();
        zk.addWatch(r, ev, AddWatchMode.PERSISTENT_RECURSIVE);
        other.create(r, null, OPEN, CreateMode.PERSISTENT);
        other.create(r + "/a", null, OPEN, CreateMode.PERSISTENT);
        other.create(r + "/a/b", b("1"), OPEN, CreateMode.PERSISTENT);
        other.setData(r + "/a/b", b("2"), -1);
        other.create(c.p("rr"), null, OPEN, CreateMode.PERSISTENT);          // sibling with common prefix: not watched
        other.create(c.p("rr/x"), null, OPEN, CreateMode.PERSISTENT);
        other.setData(c.base, b("parent"), -1);                              // ancestor: not watched
        other.create(r + "/a/b/c", null, OPEN, CreateMode.EPHEMERAL);
        other.delete(r + "/a/b/c", -1);
        other.setData(r, b("root"), -1);
        other.multi(Arrays.asList(Op.create(r + "/m1", null, OPEN, CreateMode.PERSISTENT), Op.create(r + "/m1/m2", null, OPEN, CreateMode.PERSISTENT)));
        flush(other);
        flush(zk);
        eq(Arrays.asList(
                "NodeCreated " + r, "NodeCreated " + r + "/a", "NodeCreated " + r + "/a/b", "NodeDataChanged " + r + "/a/b",
                "NodeCreated " + r + "/a/b/c", "NodeDeleted " + r + "/a/b/c", "NodeDataChanged " + r,
                "NodeCreated " + r + "/m1", "NodeCreated " + r + "/m1/m2"),
                ev.drain(), "recursive watch events (no NodeChildrenChanged, no events outside the subtree)");
        // a standard watch inside the recursive subtree coexists
        Events std = new Events();
        zk.getData(r + "/a", std, null);
        other.setData(r + "/a", b("z"), -1);
        std.expect(EventType.NodeDataChanged, r + "/a");
        ev.expect(EventType.NodeDataChanged, r + "/a");
        // session close of another client deleting ephemerals in the subtree is reported
        ZooKeeper third = c.zk();
        third.create(r + "/eph", null, OPEN, CreateMode.EPHEMERAL);
        ev.expect(EventType.NodeCreated, r + "/eph");
        third.close();
        ev.expect(EventType.NodeDeleted, r + "/eph");
        // recursive watch on "/" sees our subtree changes too
        Events all = new Events();
        ZooKeeper zk2 = c.zk();
        zk2.addWatch("/", all, AddWatchMode.PERSISTENT_RECURSIVE);
        other.create(r + "/fromroot", null, OPEN, CreateMode.PERSISTENT);
        WatchedEvent e;
        boolean seen = false;
        long deadline = System.currentTimeMillis() + 5000;
        while (!seen && (e = all.next(Math.max(1, deadline - System.currentTimeMillis()))) != null) {
            seen = e.getType() == EventType.NodeCreated && (r + "/fromroot").equals(e.getPath());
        }
        check(seen, "recursive watch on / saw the create");
        zk2.removeAllWatches("/", WatcherType.Any, false);
    }

    static void removeWatches(Ctx c) throws Exception {
        ZooKeeper zk = c.zk(), other = c.zk();
        String n = c.p("n");
        long sid = zk.getSessionId();
        other.create(n, null, OPEN, CreateMode.PERSISTENT);
        Events dw = new Events(), cw = new Events();
        zk.getData(n, dw, null);
        zk.getChildren(n, cw);
        check(wchpUnder(c.base).getOrDefault(n, Set.of()).contains(sid), "data watch present server-side");
        // removeWatches(watcher) is sent as checkWatches (17): the server keeps the watch, the client drops the watcher
        zk.removeWatches(n, dw, WatcherType.Data, false);
        dw.expect(EventType.DataWatchRemoved, n);
        check(wchpUnder(c.base).getOrDefault(n, Set.of()).contains(sid), "checkWatches leaves the server-side data watch");
        other.setData(n, b("x"), -1);
        other.create(n + "/k", null, OPEN, CreateMode.PERSISTENT);
        cw.expect(EventType.NodeChildrenChanged, n);
        flush(zk);
        dw.expectNone("removed data watch must not fire");
        check(!wchpUnder(c.base).getOrDefault(n, Set.of()).contains(sid), "server-side data watch fired and is gone");
        // removeAllWatches is sent as removeWatches (18): the server drops the watch
        zk.getData(n, dw, null);
        check(wchpUnder(c.base).getOrDefault(n, Set.of()).contains(sid), "data watch re-registered");
        zk.removeAllWatches(n, WatcherType.Data, false);
        dw.expect(EventType.DataWatchRemoved, n);
        check(!wchpUnder(c.base).getOrDefault(n, Set.of()).contains(sid), "removeAllWatches removed the data watch server-side");
        expectKeeper(Code.NOWATCHER, () -> zk.removeWatches(n, dw, WatcherType.Data, false));
        expectKeeper(Code.NOWATCHER, () -> zk.removeWatches(n, dw, WatcherType.Any, false));
        expectKeeper(Code.NOWATCHER, () -> zk.removeAllWatches(c.p("never"), WatcherType.Any, false));
        // removeAllWatches of children type
        zk.getChildren(n, cw);
        zk.getChildren(n, dw);
        zk.removeAllWatches(n, WatcherType.Children, false);
        List<String> removed = new ArrayList<>();
        removed.add(cw.expect(EventType.ChildWatchRemoved, n).getType().name());
        removed.add(dw.expect(EventType.ChildWatchRemoved, n).getType().name());
        other.create(n + "/k2", null, OPEN, CreateMode.PERSISTENT);
        flush(other);
        flush(zk);
        cw.expectNone("child watch removed");
        dw.expectNone("child watch removed");
        expectKeeper(Code.NOWATCHER, () -> zk.removeAllWatches(n, WatcherType.Children, false));
        // local removal keeps the server-side watch (it fires, but no client watcher is left to receive it)
        zk.exists(n, dw);
        zk.removeWatches(n, dw, WatcherType.Data, true);
        dw.expect(EventType.DataWatchRemoved, n);
        check(wchpUnder(c.base).getOrDefault(n, Set.of()).contains(sid), "local removal leaves the server-side watch");
        other.setData(n, b("y"), -1);
        flush(zk);
        dw.expectNone("locally removed watch is not delivered");
        check(!wchpUnder(c.base).getOrDefault(n, Set.of()).contains(sid), "server-side watch fired and is gone");
        // async remove reports NoWatcher through rc
        CountDownLatch l = new CountDownLatch(1);
        AtomicReference<Integer> rc = new AtomicReference<>();
        zk.removeAllWatches(n, WatcherType.Any, false, (r, path, ctx) -> { rc.set(r); l.countDown(); }, null);
        check(l.await(5, TimeUnit.SECONDS), "async removeAllWatches callback");
        eq(Code.NOWATCHER.intValue(), rc.get(), "async NoWatcher rc");
    }

    /**
     * ZooKeeper 3.8 keeps one watch mode per (connection, path, table): a standard getData watch on a path with a
     * persistent watch turns the data-table entry into a one-shot entry (fixed only in 3.9, ZOOKEEPER-4466).
     */
    static void watchModeQuirk(Ctx c) throws Exception {
        ZooKeeper zk = c.zk(), other = c.zk();
        String n = c.p("n");
        other.create(n, b("0"), OPEN, CreateMode.PERSISTENT);
        Events pers = new Events(), std = new Events();
        zk.addWatch(n, pers, AddWatchMode.PERSISTENT);
        zk.getData(n, std, null);
        other.setData(n, b("1"), -1);
        std.expect(EventType.NodeDataChanged, n);
        pers.expect(EventType.NodeDataChanged, n);
        other.setData(n, b("2"), -1);                 // data-table entry was one-shot: no event at all
        other.create(n + "/k", null, OPEN, CreateMode.PERSISTENT);   // child table still persistent
        other.delete(n + "/k", -1);
        other.delete(n, -1);                          // NodeDeleted via the persistent child-table entry
        flush(other);
        flush(zk);
        eq(Arrays.asList("NodeChildrenChanged " + n, "NodeChildrenChanged " + n, "NodeDeleted " + n), pers.drain(),
                "persistent watcher after a standard data watch overwrote the data-table mode");
        std.expectNone("");
    }

    // ------------------------------------------------------------------ ACL / auth

    static String digest(String userPw) throws Exception {
        byte[] h = MessageDigest.getInstance("SHA1").digest(userPw.getBytes(StandardCharsets.UTF_8));
        return userPw.substring(0, userPw.indexOf(':')) + ":" + Base64.getEncoder().encodeToString(h);
    }

    static void aclDigest(Ctx c) throws Exception {
        eq("bob:fyVmFCwVbTJYrznoSu1koqYEYF0=", digest("bob:secret"), "digest helper sanity");
        ZooKeeper alice = c.zk(), anon = c.zk(), alice2 = c.zk(), mallory = c.zk(), sup = c.zk();
        alice.addAuthInfo("digest", b("alice:pw"));
        alice2.addAuthInfo("digest", b("alice:pw"));
        mallory.addAuthInfo("digest", b("alice:wrong"));
        sup.addAuthInfo("digest", b("super:test"));
        String n = c.p("secret");
        alice.create(n, b("s3cr3t"), Ids.CREATOR_ALL_ACL, CreateMode.PERSISTENT);
        Stat st = new Stat();
        List<ACL> acl = alice.getACL(n, st);
        eq(Collections.singletonList(new ACL(Perms.ALL, new Id("digest", digest("alice:pw")))), acl, "auth ACL expanded to digest id");
        eq(0, st.getAversion(), "aversion");
        eq("s3cr3t", s(alice2.getData(n, false, null)), "same credentials on another session");
        expectKeeper(Code.NOAUTH, () -> anon.getData(n, false, null));
        expectKeeper(Code.NOAUTH, () -> anon.setData(n, b("x"), -1));
        expectKeeper(Code.NOAUTH, () -> anon.getChildren(n, false));
        expectKeeper(Code.NOAUTH, () -> anon.create(n + "/c", null, OPEN, CreateMode.PERSISTENT));
        expectKeeper(Code.NOAUTH, () -> anon.getACL(n, null));
        expectKeeper(Code.NOAUTH, () -> anon.setACL(n, OPEN, -1));
        expectKeeper(Code.NOAUTH, () -> anon.getAllChildrenNumber(n));
        expectKeeper(Code.NOAUTH, () -> mallory.getData(n, false, null));
        check(anon.exists(n, false) != null, "exists needs no permission");
        eq("s3cr3t", s(sup.getData(n, false, null)), "super user bypasses ACLs");
        sup.setData(n, b("by-super"), -1);
        // multi: a check on a node without READ permission fails NoAuth... check op needs READ
        KeeperException ke = expectKeeper(Code.NOAUTH, () -> anon.multi(Arrays.asList(Op.setData(n, b("m"), -1))));
        eq(Code.NOAUTH.intValue(), ((OpResult.ErrorResult) ke.getResults().get(0)).getErr(), "multi error result");
        // multiRead: error entry for the protected node, data for the readable one (no exception)
        List<OpResult> mr = anon.multi(Arrays.asList(Op.getData(n), Op.getChildren(c.base)));
        eq(Code.NOAUTH.intValue(), ((OpResult.ErrorResult) mr.get(0)).getErr(), "multiRead error result");
        eq(Collections.singletonList("secret"), ((OpResult.GetChildrenResult) mr.get(1)).getChildren(), "multiRead other op");
        // children: alice creates a child (CREATE), anon may delete it only if parent grants DELETE
        alice.create(n + "/kid", null, OPEN, CreateMode.PERSISTENT);
        expectKeeper(Code.NOAUTH, () -> anon.delete(n + "/kid", -1));
        alice.delete(n + "/kid", -1);
        // a protected node below an open parent can be deleted by anyone (DELETE is checked on the parent)
        anon.delete(n, -1);
        check(alice.exists(n, false) == null, "deleted by anonymous client");
        // addAuthInfo with several identities: the ACL of "auth" expands to all of them
        ZooKeeper multiId = c.zk();
        multiId.addAuthInfo("digest", b("u1:p1"));
        multiId.addAuthInfo("digest", b("u2:p2"));
        multiId.create(c.p("two"), null, Ids.CREATOR_ALL_ACL, CreateMode.PERSISTENT);
        List<String> ids = new ArrayList<>();
        for (ACL a : multiId.getACL(c.p("two"), null)) ids.add(a.getPerms() + " " + a.getId().getScheme() + " " + a.getId().getId());
        eq(sorted(Arrays.asList("31 digest " + digest("u1:p1"), "31 digest " + digest("u2:p2"))), sorted(ids), "auth expands to every digest id");
    }

    static void aclWorldIpPerms(Ctx c) throws Exception {
        ZooKeeper zk = c.zk(), anon = c.zk();
        String p = c.base;
        zk.create(p + "/ro", b("r"), Ids.READ_ACL_UNSAFE, CreateMode.PERSISTENT);
        eq("r", s(anon.getData(p + "/ro", false, null)), "READ_ACL_UNSAFE readable");
        expectKeeper(Code.NOAUTH, () -> anon.setData(p + "/ro", b("x"), -1));
        expectKeeper(Code.NOAUTH, () -> anon.create(p + "/ro/c", null, OPEN, CreateMode.PERSISTENT));
        eq(Ids.READ_ACL_UNSAFE, anon.getACL(p + "/ro", null), "getACL with READ permission");
        // ip ACLs: 127.0.0.1 matches our connections, 10.0.0.0/8 does not
        zk.create(p + "/ip", b("i"), Collections.singletonList(new ACL(Perms.ALL, new Id("ip", "127.0.0.1"))), CreateMode.PERSISTENT);
        eq("i", s(anon.getData(p + "/ip", false, null)), "ip:127.0.0.1 allows local client");
        zk.create(p + "/ipnet", b("n"), Collections.singletonList(new ACL(Perms.ALL, new Id("ip", "127.0.0.0/8"))), CreateMode.PERSISTENT);
        eq("n", s(anon.getData(p + "/ipnet", false, null)), "ip:127.0.0.0/8 allows local client");
        zk.create(p + "/ipother", b("o"), Collections.singletonList(new ACL(Perms.ALL, new Id("ip", "10.0.0.0/8"))), CreateMode.PERSISTENT);
        expectKeeper(Code.NOAUTH, () -> anon.getData(p + "/ipother", false, null));
        // per-permission bits
        zk.create(p + "/createonly", null, Collections.singletonList(new ACL(Perms.CREATE, Ids.ANYONE_ID_UNSAFE)), CreateMode.PERSISTENT);
        anon.create(p + "/createonly/k", null, OPEN, CreateMode.PERSISTENT);
        expectKeeper(Code.NOAUTH, () -> anon.getChildren(p + "/createonly", false));
        expectKeeper(Code.NOAUTH, () -> anon.getData(p + "/createonly", false, null));
        expectKeeper(Code.NOAUTH, () -> anon.delete(p + "/createonly/k", -1));
        expectKeeper(Code.NOAUTH, () -> anon.getACL(p + "/createonly", null));
        zk.create(p + "/del", null, Collections.singletonList(new ACL(Perms.DELETE | Perms.CREATE, Ids.ANYONE_ID_UNSAFE)), CreateMode.PERSISTENT);
        anon.create(p + "/del/k", null, OPEN, CreateMode.PERSISTENT);
        anon.delete(p + "/del/k", -1);
        zk.create(p + "/adminonly", b("a"), Collections.singletonList(new ACL(Perms.ADMIN, Ids.ANYONE_ID_UNSAFE)), CreateMode.PERSISTENT);
        expectKeeper(Code.NOAUTH, () -> anon.getData(p + "/adminonly", false, null));
        eq(1, anon.getACL(p + "/adminonly", null).size(), "getACL allowed with ADMIN only");
        anon.setACL(p + "/adminonly", OPEN, -1);
        eq("a", s(anon.getData(p + "/adminonly", false, null)), "readable after setACL by admin");
        zk.create(p + "/writeonly", b("w"), Collections.singletonList(new ACL(Perms.WRITE, Ids.ANYONE_ID_UNSAFE)), CreateMode.PERSISTENT);
        anon.setData(p + "/writeonly", b("w2"), -1);
        expectKeeper(Code.NOAUTH, () -> anon.getData(p + "/writeonly", false, null));
        // a NoAuth on exists is impossible: exists needs no permission, but watches are registered anyway
        Stat st = anon.exists(p + "/ipother", false);
        check(st != null && st.getDataLength() == 1, "exists on protected node returns its stat");
    }

    static void aclSetGet(Ctx c) throws Exception {
        ZooKeeper zk = c.zk(), other = c.zk();
        zk.addAuthInfo("digest", b("carol:pw"));
        String n = c.p("n");
        zk.create(n, null, OPEN, CreateMode.PERSISTENT);
        Stat before = zk.exists(n, false);
        List<ACL> mixed = Arrays.asList(new ACL(Perms.READ, Ids.ANYONE_ID_UNSAFE), new ACL(Perms.ALL, new Id("auth", "")));
        Stat s1 = zk.setACL(n, mixed, 0);
        eq(1, s1.getAversion(), "aversion after setACL");
        eq(before.getVersion(), s1.getVersion(), "data version unchanged");
        eq(before.getMzxid(), s1.getMzxid(), "mzxid unchanged by setACL");
        expectKeeper(Code.BADVERSION, () -> zk.setACL(n, OPEN, 0));
        Stat gs = new Stat();
        List<ACL> got = zk.getACL(n, gs);
        eq(Arrays.asList(new ACL(Perms.READ, Ids.ANYONE_ID_UNSAFE), new ACL(Perms.ALL, new Id("digest", digest("carol:pw")))), got, "stored ACL order and expansion");
        eq(1, gs.getAversion(), "getACL stat aversion");
        // a reader without ADMIN sees the list (READ is enough)
        // a reader without ADMIN sees the list with digest hashes masked as "user:x"
        eq(Arrays.asList(new ACL(Perms.READ, Ids.ANYONE_ID_UNSAFE), new ACL(Perms.ALL, new Id("digest", "carol:x"))),
                other.getACL(n, null), "getACL with READ only masks digest ids");
        expectKeeper(Code.NOAUTH, () -> other.setData(n, b("x"), -1));
        expectKeeper(Code.NOAUTH, () -> other.setACL(n, OPEN, -1));
        // duplicates are removed
        Stat s2 = zk.setACL(n, Arrays.asList(new ACL(Perms.ALL, Ids.ANYONE_ID_UNSAFE), new ACL(Perms.ALL, Ids.ANYONE_ID_UNSAFE)), 1);
        eq(2, s2.getAversion(), "aversion 2");
        eq(OPEN, zk.getACL(n, null), "duplicates removed");
        // invalid ACLs
        expectKeeper(Code.INVALIDACL, () -> other.setACL(n, Ids.CREATOR_ALL_ACL, -1));
        expectKeeper(Code.INVALIDACL, () -> zk.setACL(n, Collections.singletonList(new ACL(Perms.ALL, new Id("digest", "x"))), -1));
        expectKeeper(Code.NONODE, () -> zk.setACL(c.p("missing"), OPEN, -1));
        expectKeeper(Code.NONODE, () -> zk.getACL(c.p("missing"), null));
        // setACL generates no watch events
        Events ev = new Events();
        other.getData(n, ev, null);
        zk.setACL(n, OPEN, -1);
        flush(zk);
        flush(other);
        ev.expectNone("setACL fires no data watch");
        // ACL of the root and /zookeeper/config
        eq(OPEN, zk.getACL("/", null), "root ACL");
        eq(Ids.READ_ACL_UNSAFE, zk.getACL("/zookeeper/config", null), "/zookeeper/config ACL");
    }

    static List<String> infos(List<ClientInfo> l) {
        List<String> out = new ArrayList<>();
        for (ClientInfo i : l) out.add(i.getAuthScheme() + ":" + i.getUser());
        Collections.sort(out);
        return out;
    }

    static void whoAmI(Ctx c) throws Exception {
        ZooKeeper zk = c.zk();
        eq(Collections.singletonList("ip:127.0.0.1"), infos(zk.whoAmI()), "whoAmI without auth");
        zk.addAuthInfo("digest", b("bob:secret"));
        eq(Arrays.asList("digest:bob", "ip:127.0.0.1"), infos(zk.whoAmI()), "whoAmI with digest");
        zk.addAuthInfo("digest", b("bob:secret"));
        eq(Arrays.asList("digest:bob", "ip:127.0.0.1"), infos(zk.whoAmI()), "same identity added twice is listed once");
        ZooKeeper sup = c.zk();
        sup.addAuthInfo("digest", b("super:test"));
        eq(Arrays.asList("digest:super", "ip:127.0.0.1", "super:"), infos(sup.whoAmI()), "whoAmI of super user");
    }

    static void authFailed(Ctx c) throws Exception {
        Events st = new Events(true);
        ZooKeeper zk = c.zk(st);
        zk.addAuthInfo("nosuchscheme", b("whatever"));
        st.expectState(KeeperState.AuthFailed, 5000);
        expectKeeper(Code.AUTHFAILED, () -> zk.exists("/", false));
    }

    static void configReconfig(Ctx c) throws Exception {
        ZooKeeper zk = c.zk();
        Stat st = new Stat();
        byte[] cfg = zk.getConfig(false, st);
        Stat direct = new Stat();
        byte[] raw = zk.getData("/zookeeper/config", false, direct);
        eq(raw, cfg, "getConfig returns /zookeeper/config data");
        eq(direct, st, "getConfig stat");
        eq(0, cfg == null ? 0 : cfg.length, "standalone config is empty");
        eq(-1, st.getAversion(), "aversion of /zookeeper/config");
        eq(0, st.getVersion(), "version of /zookeeper/config");
        // a config watch can be set
        Events ev = new Events();
        zk.getConfig(ev, st);
        ZooKeeperAdmin admin = new ZooKeeperAdmin(CONNECT, 15000, e -> { });
        c.track(() -> admin.close(2000));
        waitFor(10000, "admin connected", () -> admin.getState().isConnected());
        expectKeeper(Code.RECONFIGDISABLED, () -> admin.reconfigure("server.5=127.0.0.1:1234:1235;21899", null, null, -1, new Stat()));
        admin.addAuthInfo("digest", b("super:test"));
        expectKeeper(Code.RECONFIGDISABLED, () -> admin.reconfigure(null, "1", null, -1, new Stat()));
        flush(zk);
        ev.expectNone("no config change");
    }

    // ------------------------------------------------------------------ async

    static void asyncOrder(Ctx c) throws Exception {
        ZooKeeper zk = c.zk();
        String n = c.p("n");
        int ops = 400;
        List<String> seen = Collections.synchronizedList(new ArrayList<>());
        CountDownLatch done = new CountDownLatch(ops);
        int expectVersion = 0;
        List<String> expected = new ArrayList<>();
        for (int i = 0; i < ops; i++) {
            final int idx = i;
            switch (i % 5) {
                case 0:
                    zk.create(n + "-" + i, b("c" + i), OPEN, CreateMode.PERSISTENT,
                            (rc, path, ctx, name) -> { seen.add(idx + " create " + rc + " " + name); done.countDown(); }, null);
                    expected.add(idx + " create 0 " + n + "-" + i);
                    break;
                case 1:
                    zk.setData(n + "-" + (i - 1), b("s" + i), 0,
                            (rc, path, ctx, stat) -> { seen.add(idx + " set " + rc + " " + (stat == null ? -1 : stat.getVersion())); done.countDown(); }, null);
                    expected.add(idx + " set 0 1");
                    break;
                case 2:
                    zk.getData(n + "-" + (i - 2), false,
                            (rc, path, ctx, data, stat) -> { seen.add(idx + " get " + rc + " " + s(data) + " " + stat.getVersion()); done.countDown(); }, null);
                    expected.add(idx + " get 0 s" + (i - 1) + " 1");
                    break;
                case 3:
                    zk.exists(n + "-missing-" + i, false,
                            (rc, path, ctx, stat) -> { seen.add(idx + " exists " + rc); done.countDown(); }, null);
                    expected.add(idx + " exists " + Code.NONODE.intValue());
                    break;
                default:
                    zk.delete(n + "-" + (i - 4), 0,
                            (rc, path, ctx) -> { seen.add(idx + " delete " + rc); done.countDown(); }, null);
                    expected.add(idx + " delete " + Code.BADVERSION.intValue());
            }
        }
        check(done.await(20, TimeUnit.SECONDS), "all async callbacks within 20 s (" + seen.size() + "/" + ops + ")");
        eq(expected, new ArrayList<>(seen), "async callbacks arrive in submission order with expected results");
        // a burst of 200 setData calls: versions come back 1..200 in order
        String v = c.p("v");
        zk.create(v, null, OPEN, CreateMode.PERSISTENT);
        List<Integer> versions = Collections.synchronizedList(new ArrayList<>());
        CountDownLatch d2 = new CountDownLatch(200);
        for (int i = 0; i < 200; i++) zk.setData(v, b("" + i), -1, (rc, path, ctx, stat) -> { versions.add(stat.getVersion()); d2.countDown(); }, null);
        check(d2.await(20, TimeUnit.SECONDS), "setData burst");
        for (int i = 0; i < 200; i++) eq(i + 1, versions.get(i), "version order at " + i);
    }

    // ------------------------------------------------------------------ chroot

    static void chroot(Ctx c) throws Exception {
        ZooKeeper root = c.zk();
        String ch = c.p("ch");
        root.create(ch, null, OPEN, CreateMode.PERSISTENT);
        Events dflt = new Events();
        ZooKeeper zk = c.zk(CONNECT + ch, 15000, dflt);
        eq("/a", zk.create("/a", b("A"), OPEN, CreateMode.PERSISTENT), "create returns chroot-relative path");
        eq("/s-0000000001", zk.create("/s-", null, OPEN, CreateMode.EPHEMERAL_SEQUENTIAL), "sequential path relative");
        check(root.exists(ch + "/a", false) != null, "node really is under the chroot");
        eq(Arrays.asList("a", "s-0000000001"), sorted(zk.getChildren("/", false)), "children of chroot root");
        // getEphemerals: the prefix gets the chroot prepended, the returned paths are NOT stripped (3.8.0 client)
        eq(Collections.singletonList(ch + "/s-0000000001"), zk.getEphemerals("/"), "getEphemerals in chroot returns server paths");
        Events w = new Events();
        zk.getData("/a", w, null);
        zk.getChildren("/", w);
        zk.exists("/b", w);
        root.setData(ch + "/a", b("A2"), -1);
        w.expect(EventType.NodeDataChanged, "/a");
        root.create(ch + "/b", null, OPEN, CreateMode.PERSISTENT);
        List<String> evs = new ArrayList<>();
        for (int i = 0; i < 2; i++) { WatchedEvent e = w.next(5000); check(e != null, "missing chroot event, got " + evs); evs.add(e.getType() + " " + e.getPath()); }
        Collections.sort(evs);
        eq(Arrays.asList("NodeChildrenChanged /", "NodeCreated /b"), evs, "chroot events carry relative paths (chroot itself is /)");
        Events rec = new Events();
        zk.addWatch("/", rec, AddWatchMode.PERSISTENT_RECURSIVE);
        root.create(ch + "/b/c", null, OPEN, CreateMode.PERSISTENT);
        rec.expect(EventType.NodeCreated, "/b/c");
        root.setData(ch, b("x"), -1);
        rec.expect(EventType.NodeDataChanged, "/");
        List<OpResult> r = zk.multi(Arrays.asList(Op.create("/m", null, OPEN, CreateMode.PERSISTENT), Op.create("/m/q-", null, OPEN, CreateMode.PERSISTENT_SEQUENTIAL)));
        // the 3.8.0 Java client does not strip the chroot from multi create results
        eq(ch + "/m", ((OpResult.CreateResult) r.get(0)).getPath(), "multi result path (server path)");
        eq(ch + "/m/q-0000000000", ((OpResult.CreateResult) r.get(1)).getPath(), "multi sequential result path (server path)");
        rec.expect(EventType.NodeCreated, "/m");
        rec.expect(EventType.NodeCreated, "/m/q-0000000000");
        CountDownLatch l = new CountDownLatch(1);
        AtomicReference<String> sp = new AtomicReference<>();
        zk.sync("/a", (rc, path, ctx) -> { sp.set(rc + " " + path); l.countDown(); }, null);
        check(l.await(5, TimeUnit.SECONDS), "sync in chroot");
        eq("0 /a", sp.get(), "sync path relative");
        eq(6, zk.getAllChildrenNumber("/"), "getAllChildrenNumber in chroot");
        // the chroot node itself is visible as "/"
        eq("x", s(zk.getData("/", false, null)), "chroot root data");
        // a chroot that does not exist: operations fail with NoNode
        ZooKeeper bad = c.zk(CONNECT + c.p("nochroot"), 15000, null);
        expectKeeper(Code.NONODE, () -> bad.create("/x", null, OPEN, CreateMode.PERSISTENT));
    }

    // ------------------------------------------------------------------ sessions

    static void sessionTimeouts(Ctx c) throws Exception {
        eq(1000, c.zk(CONNECT, 100, null).getSessionTimeout(), "timeout below min is raised to minSessionTimeout");
        eq(60000, c.zk(CONNECT, 600_000, null).getSessionTimeout(), "timeout above max is lowered to maxSessionTimeout");
        eq(4321, c.zk(CONNECT, 4321, null).getSessionTimeout(), "timeout in range is granted as asked");
        ZooKeeper a = c.zk(), b2 = c.zk();
        check(a.getSessionId() != b2.getSessionId(), "distinct session ids");
        eq(16, a.getSessionPasswd().length, "password length");
    }

    static void closeDeletesEphemerals(Ctx c) throws Exception {
        ZooKeeper owner = c.zk(), obs = c.zk();
        String p = c.base;
        owner.create(p + "/e1", null, OPEN, CreateMode.EPHEMERAL);
        owner.create(p + "/e2-", null, OPEN, CreateMode.EPHEMERAL_SEQUENTIAL);
        owner.create(p + "/keep", null, OPEN, CreateMode.PERSISTENT);
        Events ev = new Events();
        obs.exists(p + "/e1", ev);
        obs.getChildren(p, ev);
        owner.close();
        List<String> got = new ArrayList<>();
        for (int i = 0; i < 2; i++) { WatchedEvent e = ev.next(5000); check(e != null, "events after close: " + got); got.add(e.getType() + " " + e.getPath()); }
        Collections.sort(got);
        eq(Arrays.asList("NodeChildrenChanged " + p, "NodeDeleted " + p + "/e1"), got, "events from ephemeral cleanup");
        eq(Collections.singletonList("keep"), obs.getChildren(p, false), "only persistent node remains");
    }

    static void sessionExpiry(Ctx c) throws Exception {
        ZooKeeper obs = c.zk();
        Events st = new Events(true);
        DropZk victim = new DropZk(CONNECT, 1000, st);
        c.track(() -> victim.close(1000));
        st.expectState(KeeperState.SyncConnected, 10000);
        eq(1000, victim.getSessionTimeout(), "negotiated 1000 ms");
        String e = c.p("eph");
        victim.create(e, null, OPEN, CreateMode.EPHEMERAL);
        Events ev = new Events();
        obs.exists(e, ev);
        long t0 = System.currentTimeMillis();
        victim.dropWithoutClosingSession();
        WatchedEvent del = ev.next(8000);
        long took = System.currentTimeMillis() - t0;
        check(del != null, "ephemeral of a silent session must be deleted after expiry (waited 8 s)");
        eq(EventType.NodeDeleted, del.getType(), "event type");
        check(took >= 500, "session must not expire long before its timeout (took " + took + " ms)");
        check(took < 5000, "session expired within a few seconds (took " + took + " ms)");
        check(obs.exists(e, false) == null, "ephemeral gone");
    }

    static void reattachClosed(Ctx c) throws Exception {
        ZooKeeper first = c.zk();
        long sid = first.getSessionId();
        byte[] pw = first.getSessionPasswd();
        // a second handle on a live session works and sees the session's ephemerals
        first.create(c.p("e"), null, OPEN, CreateMode.EPHEMERAL);
        DropZk second = c.zkWithSession(CONNECT, 15000, sid, pw, null);
        eq(sid, second.getSessionId(), "same session id");
        eq(Collections.singletonList(c.p("e")), second.getEphemerals(c.base), "second handle sees session's ephemerals");
        second.close();   // closes the session for both handles
        Events st = new Events(true);
        DropZk third = c.zkWithSession(CONNECT, 15000, sid, pw, st);
        st.expectState(KeeperState.Expired, 5000);
        check(!third.getState().isAlive(), "handle is dead after Expired");
        ZooKeeper check = c.zk();
        check(check.exists(c.p("e"), false) == null, "ephemeral removed with the closed session");
        // wrong password on a live session is rejected (reported as Expired by the Java client). The server
        // closes the owner's current connection before checking the password; the owner reconnects.
        Events lst = new Events(true);
        ZooKeeper live = c.zk(lst);
        live.create(c.p("liveeph"), null, OPEN, CreateMode.EPHEMERAL);
        byte[] bad = live.getSessionPasswd().clone();
        bad[0] ^= 0x55;
        Events st2 = new Events(true);
        c.zkWithSession(CONNECT, 15000, live.getSessionId(), bad, st2);
        st2.expectState(KeeperState.Expired, 5000);
        lst.expectState(KeeperState.Disconnected, 5000);
        lst.expectState(KeeperState.SyncConnected, 5000);
        eq(live.getSessionId(), live.exists(c.p("liveeph"), false).getEphemeralOwner(), "owner keeps its session after a wrong-password attempt");
        check(!hasExpired(lst), "owner not expired");
    }

    static void reconnectViaProxy(Ctx c) throws Exception {
        ZooKeeper other = c.zk();
        String p = c.base;
        other.create(p + "/data", b("0"), OPEN, CreateMode.PERSISTENT);
        other.create(p + "/gone", null, OPEN, CreateMode.PERSISTENT);
        other.create(p + "/kids", null, OPEN, CreateMode.PERSISTENT);
        other.create(p + "/same", b("s"), OPEN, CreateMode.PERSISTENT);
        TcpProxy proxy = c.proxy();
        Events st = new Events(true);
        ZooKeeper zk = c.zk(proxy.connectString(), 10000, st);
        long sid = zk.getSessionId();
        zk.create(p + "/myeph", null, OPEN, CreateMode.EPHEMERAL);
        Events w = new Events();
        zk.getData(p + "/data", w, null);         // will change while disconnected -> NodeDataChanged
        zk.getData(p + "/gone", w, null);         // deleted while disconnected -> NodeDeleted
        zk.exists(p + "/new", w);                 // created while disconnected -> NodeCreated
        zk.getChildren(p + "/kids", w);           // child added while disconnected -> NodeChildrenChanged
        zk.getData(p + "/same", w, null);         // untouched: must stay armed and fire later
        Events rec = new Events();
        zk.addWatch(p + "/rec", rec, AddWatchMode.PERSISTENT_RECURSIVE);
        proxy.cut();
        st.expectState(KeeperState.Disconnected, 5000);
        other.setData(p + "/data", b("1"), -1);
        other.delete(p + "/gone", -1);
        other.create(p + "/new", null, OPEN, CreateMode.PERSISTENT);
        other.create(p + "/kids/k", null, OPEN, CreateMode.PERSISTENT);
        other.create(p + "/rec", null, OPEN, CreateMode.PERSISTENT);   // missed by the persistent watch
        Thread.sleep(1500);
        w.expectNone("no events while disconnected");
        proxy.restore();
        st.expectState(KeeperState.SyncConnected, 10000);
        eq(sid, zk.getSessionId(), "same session after reconnect");
        List<String> got = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            WatchedEvent e = w.next(5000);
            check(e != null, "missing replayed watch event; got so far " + got);
            got.add(e.getType() + " " + e.getPath());
        }
        Collections.sort(got);
        eq(sorted(Arrays.asList("NodeDataChanged " + p + "/data", "NodeDeleted " + p + "/gone", "NodeCreated " + p + "/new",
                "NodeChildrenChanged " + p + "/kids")), got, "watches re-armed by SetWatches fire for changes made while disconnected");
        eq(zk.getSessionId(), zk.exists(p + "/myeph", false).getEphemeralOwner(), "ephemeral survived the disconnect");
        // the untouched watch is still armed, the persistent recursive watch is re-registered
        other.setData(p + "/same", b("t"), -1);
        w.expect(EventType.NodeDataChanged, p + "/same");
        other.create(p + "/rec/x", null, OPEN, CreateMode.PERSISTENT);
        rec.expect(EventType.NodeCreated, p + "/rec/x");
        flush(zk);
        rec.expectNone("persistent recursive watch gets no replay of changes made while disconnected");
        w.expectNone("");
    }

    static void sessionTakeover(Ctx c) throws Exception {
        ZooKeeper other = c.zk();
        String p = c.base;
        other.create(p + "/x", b("0"), OPEN, CreateMode.PERSISTENT);
        Events st = new Events(true);
        ZooKeeper a = c.zk(CONNECT, 10000, st);
        long sid = a.getSessionId();
        a.create(p + "/eph", null, OPEN, CreateMode.EPHEMERAL);
        Events w = new Events();
        a.getData(p + "/x", w, null);
        a.exists(p + "/y", w);
        // a second client attaches to the same session: the server closes a's connection
        Events bst = new Events(true);
        DropZk b2 = c.zkWithSession(CONNECT, 10000, sid, a.getSessionPasswd(), bst);
        eq(sid, b2.getSessionId(), "second client got the same session");
        st.expectState(KeeperState.Disconnected, 5000);
        eq(sid, b2.exists(p + "/eph", false).getEphemeralOwner(), "session's ephemeral visible, owned by the shared session");
        other.setData(p + "/x", b("1"), -1);
        other.create(p + "/y", null, OPEN, CreateMode.PERSISTENT);
        // stop the second client without closing the session; a reconnects and re-registers its watches
        b2.dropWithoutClosingSession();
        st.expectState(KeeperState.SyncConnected, 10000);
        List<String> got = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            WatchedEvent e = w.next(5000);
            check(e != null, "missing watch event after takeover/reconnect; got " + got);
            got.add(e.getType() + " " + e.getPath());
        }
        Collections.sort(got);
        eq(Arrays.asList("NodeCreated " + p + "/y", "NodeDataChanged " + p + "/x"), got, "watches kept across reconnect");
        eq(sid, a.getSessionId(), "a kept its session");
        eq("1", s(a.getData(p + "/x", false, null)), "a works after reconnect");
        eq(sid, a.exists(p + "/eph", false).getEphemeralOwner(), "ephemeral still there");
        check(!hasExpired(st), "no Expired event");
    }

    static boolean hasExpired(Events st) {
        for (WatchedEvent e : st.q) if (e.getState() == KeeperState.Expired) return true;
        return false;
    }

    static Set<String> set(String... s) { return new TreeSet<>(Arrays.asList(s)); }
}
