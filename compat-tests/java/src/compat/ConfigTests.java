package compat;

import static compat.Harness.*;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.recipes.cache.CuratorCache;
import org.apache.curator.framework.recipes.cache.CuratorCacheListener;
import org.apache.curator.framework.recipes.watch.PersistentWatcher;
import org.apache.zookeeper.AddWatchMode;
import org.apache.zookeeper.AsyncCallback;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.WatchedEvent;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.Watcher.Event.EventType;
import org.apache.zookeeper.ZooDefs.Ids;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.data.Stat;

/** Section C: configuration management with watches. */
final class ConfigTests {
    static void register() {
        test("C.config_watchers_converge_on_last_value", 60, ConfigTests::converge);
        test("C.persistent_watch_sees_every_update", 40, ConfigTests::everyUpdate);
        test("C.optimistic_concurrent_config_edits", 60, ConfigTests::optimisticEdits);
    }

    /** Classic one-shot watch loop: re-read with a new watch on every change, remember (version, value). */
    static final class ConfigFollower implements Watcher, AsyncCallback.DataCallback {
        final ZooKeeper zk; final String path;
        final List<Integer> versions = new CopyOnWriteArrayList<>();
        volatile String value;
        final AtomicInteger events = new AtomicInteger();
        volatile String error;
        ConfigFollower(ZooKeeper zk, String path) { this.zk = zk; this.path = path; }
        void start() { zk.getData(path, this, this, null); }
        @Override public void process(WatchedEvent e) {
            if (e.getType() == EventType.NodeDataChanged) { events.incrementAndGet(); zk.getData(path, this, this, null); }
            else if (e.getType() != EventType.None) error = "unexpected event " + e;
        }
        @Override public void processResult(int rc, String p, Object ctx, byte[] data, Stat stat) {
            if (rc != 0) { error = "getData rc " + rc; return; }
            versions.add(stat.getVersion());
            value = s(data);
        }
        int lastVersion() { return versions.isEmpty() ? -1 : versions.get(versions.size() - 1); }
    }

    static void converge(Ctx c) throws Exception {
        String path = c.p("config");
        ZooKeeper writer = c.zk();
        writer.create(path, b("v0"), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        List<ConfigFollower> followers = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            ConfigFollower f = new ConfigFollower(c.zk(), path);
            f.start();
            followers.add(f);
        }
        // one Curator client following the same node through CuratorCache
        CuratorFramework cf = c.curator();
        CuratorCache cache = CuratorCache.build(cf, path, CuratorCache.Options.SINGLE_NODE_CACHE);
        c.track(cache);
        List<Integer> cacheVersions = new CopyOnWriteArrayList<>();
        cache.listenable().addListener(CuratorCacheListener.builder()
                .forCreatesAndChanges((o, n) -> cacheVersions.add(n.getStat().getVersion())).build());
        cache.start();
        for (ConfigFollower f : followers) waitFor(5000, "follower initial read", () -> f.value != null);
        int updates = 200;
        for (int i = 1; i <= updates; i++) {
            writer.setData(path, b("v" + i), i - 1);
            if (i % 50 == 0) Thread.sleep(5);
        }
        for (int i = 0; i < followers.size(); i++) {
            ConfigFollower f = followers.get(i);
            waitFor(10000, "follower " + i + " converges on v" + updates + " (at " + f.value + ")", () -> ("v" + updates).equals(f.value));
            check(f.error == null, "follower " + i + ": " + f.error);
            eq(updates, f.lastVersion(), "follower " + i + " last version");
            for (int k = 1; k < f.versions.size(); k++)
                check(f.versions.get(k) > f.versions.get(k - 1), "follower " + i + " saw versions go backwards or repeat: " + f.versions);
            check(f.events.get() <= updates, "at most one event per update");
            check(f.events.get() >= 1, "got events");
        }
        waitFor(10000, "CuratorCache converges", () -> !cacheVersions.isEmpty() && cacheVersions.get(cacheVersions.size() - 1) == updates);
        for (int k = 1; k < cacheVersions.size(); k++) check(cacheVersions.get(k) >= cacheVersions.get(k - 1), "cache versions monotonic: " + cacheVersions);
        eq("v" + updates, s(cache.get(path).get().getData()), "cached value");
    }

    static void everyUpdate(Ctx c) throws Exception {
        String path = c.p("config");
        ZooKeeper writer = c.zk(), watcher = c.zk();
        writer.create(path, b("0"), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        AtomicInteger persistent = new AtomicInteger(), recursive = new AtomicInteger(), other = new AtomicInteger();
        watcher.addWatch(path, e -> { if (e.getType() == EventType.NodeDataChanged) persistent.incrementAndGet(); else other.incrementAndGet(); }, AddWatchMode.PERSISTENT);
        watcher.addWatch(c.base, e -> { if (e.getType() == EventType.NodeDataChanged && path.equals(e.getPath())) recursive.incrementAndGet(); else other.incrementAndGet(); },
                AddWatchMode.PERSISTENT_RECURSIVE);
        // Curator's PersistentWatcher recipe on a second session
        CuratorFramework cf = c.curator();
        PersistentWatcher pw = new PersistentWatcher(cf, path, false);
        c.track(pw);
        AtomicInteger recipe = new AtomicInteger();
        pw.getListenable().addListener(e -> { if (e.getType() == EventType.NodeDataChanged) recipe.incrementAndGet(); });
        pw.start();
        waitFor(5000, "PersistentWatcher registered", sup(() -> wchpUnder(path).getOrDefault(path, Set.of()).contains(cf.getZookeeperClient().getZooKeeper().getSessionId())));
        int updates = 150;
        for (int i = 1; i <= updates; i++) writer.setData(path, b("" + i), -1);
        flush(watcher);
        eq(updates, persistent.get(), "a persistent watch reports every single update");
        eq(updates, recursive.get(), "a recursive watch on the parent reports every single update");
        eq(0, other.get(), "no other events");
        waitFor(5000, "Curator PersistentWatcher saw every update (" + recipe.get() + ")", () -> recipe.get() == updates);
    }

    static void optimisticEdits(Ctx c) throws Exception {
        String path = c.p("config");
        ZooKeeper init = c.zk();
        init.create(path, b(""), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        int writers = 4, each = 15;
        AtomicInteger conflicts = new AtomicInteger();
        ExecutorService ex = c.pool(writers);
        List<Future<?>> fs = new ArrayList<>();
        for (int w = 0; w < writers; w++) {
            final ZooKeeper zk = c.zk();
            final int wi = w;
            fs.add(ex.submit(() -> {
                for (int k = 0; k < each; k++) {
                    while (true) {
                        Stat st = new Stat();
                        String cur = s(zk.getData(path, false, st));
                        String next = cur.isEmpty() ? "w" + wi + "." + k : cur + ",w" + wi + "." + k;
                        try {
                            zk.setData(path, b(next), st.getVersion());
                            break;
                        } catch (KeeperException.BadVersionException e) {
                            conflicts.incrementAndGet();
                        }
                    }
                }
                return null;
            }));
        }
        long deadline = System.currentTimeMillis() + 45000;
        for (Future<?> f : fs) f.get(Math.max(1, deadline - System.currentTimeMillis()), TimeUnit.MILLISECONDS);
        Stat st = new Stat();
        List<String> entries = Arrays.asList(s(init.getData(path, false, st)).split(","));
        eq(writers * each, entries.size(), "no lost updates");
        eq(writers * each, new HashSet<>(entries).size(), "no duplicated updates");
        eq(writers * each, st.getVersion(), "version == number of successful conditional writes");
        // each writer's own entries appear in its program order
        for (int w = 0; w < writers; w++) {
            List<String> mine = new ArrayList<>();
            for (String e : entries) if (e.startsWith("w" + w + ".")) mine.add(e);
            List<String> want = new ArrayList<>();
            for (int k = 0; k < each; k++) want.add("w" + w + "." + k);
            eq(want, mine, "order of writer " + w);
        }
        System.out.println("#   (optimistic edits: " + conflicts.get() + " BadVersion conflicts retried)");
    }
}
