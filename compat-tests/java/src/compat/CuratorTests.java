package compat;

import static compat.Harness.*;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.api.transaction.CuratorOp;
import org.apache.curator.framework.api.transaction.CuratorTransactionResult;
import org.apache.curator.framework.recipes.atomic.AtomicValue;
import org.apache.curator.framework.recipes.atomic.DistributedAtomicLong;
import org.apache.curator.framework.recipes.atomic.PromotedToLock;
import org.apache.curator.framework.recipes.barriers.DistributedBarrier;
import org.apache.curator.framework.recipes.barriers.DistributedDoubleBarrier;
import org.apache.curator.framework.recipes.cache.ChildData;
import org.apache.curator.framework.recipes.cache.CuratorCache;
import org.apache.curator.framework.recipes.cache.CuratorCacheListener;
import org.apache.curator.framework.recipes.cache.NodeCache;
import org.apache.curator.framework.recipes.cache.PathChildrenCache;
import org.apache.curator.framework.recipes.cache.PathChildrenCacheEvent;
import org.apache.curator.framework.recipes.cache.TreeCache;
import org.apache.curator.framework.recipes.cache.TreeCacheEvent;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.leader.LeaderSelector;
import org.apache.curator.framework.recipes.leader.LeaderSelectorListenerAdapter;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.framework.recipes.locks.InterProcessReadWriteLock;
import org.apache.curator.framework.recipes.locks.InterProcessSemaphoreMutex;
import org.apache.curator.framework.recipes.locks.InterProcessSemaphoreV2;
import org.apache.curator.framework.recipes.locks.Lease;
import org.apache.curator.framework.recipes.nodes.GroupMember;
import org.apache.curator.framework.recipes.nodes.PersistentNode;
import org.apache.curator.framework.recipes.nodes.PersistentTtlNode;
import org.apache.curator.framework.recipes.queue.DistributedIdQueue;
import org.apache.curator.framework.recipes.queue.DistributedPriorityQueue;
import org.apache.curator.framework.recipes.queue.DistributedQueue;
import org.apache.curator.framework.recipes.queue.QueueBuilder;
import org.apache.curator.framework.recipes.queue.QueueConsumer;
import org.apache.curator.framework.recipes.queue.QueueSerializer;
import org.apache.curator.framework.recipes.queue.SimpleDistributedQueue;
import org.apache.curator.framework.recipes.shared.SharedCount;
import org.apache.curator.framework.recipes.shared.VersionedValue;
import org.apache.curator.framework.state.ConnectionState;
import org.apache.curator.retry.RetryNTimes;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.data.Stat;

/** Section B: Apache Curator 5.4 recipes with several concurrent clients (separate sessions). */
final class CuratorTests {

    static void register() {
        test("B.mutex_exclusive_many_clients", 60, CuratorTests::mutexExclusive);
        test("B.mutex_reentrant", 30, CuratorTests::mutexReentrant);
        test("B.mutex_waiters_watch_only_predecessor", 40, CuratorTests::mutexNoHerd);
        test("B.semaphore_mutex", 40, CuratorTests::semaphoreMutex);
        test("B.read_write_lock", 40, CuratorTests::readWriteLock);
        test("B.semaphore_v2_leases", 60, CuratorTests::semaphoreV2);
        test("B.leader_latch", 60, CuratorTests::leaderLatch);
        test("B.leader_selector", 60, CuratorTests::leaderSelector);
        test("B.barrier", 30, CuratorTests::barrier);
        test("B.double_barrier", 40, CuratorTests::doubleBarrier);
        test("B.distributed_queue_exactly_once", 60, CuratorTests::queueExactlyOnce);
        test("B.distributed_queue_fifo", 40, CuratorTests::queueFifo);
        test("B.distributed_id_queue", 40, CuratorTests::idQueue);
        test("B.distributed_priority_queue", 40, CuratorTests::priorityQueue);
        test("B.simple_distributed_queue", 40, CuratorTests::simpleQueue);
        test("B.distributed_atomic_long", 60, CuratorTests::atomicLong);
        test("B.shared_count", 60, CuratorTests::sharedCount);
        test("B.node_cache", 30, CuratorTests::nodeCache);
        test("B.path_children_cache", 30, CuratorTests::pathChildrenCache);
        test("B.tree_cache", 30, CuratorTests::treeCache);
        test("B.curator_cache_persistent_recursive", 30, CuratorTests::curatorCache);
        test("B.group_member", 30, CuratorTests::groupMember);
        test("B.persistent_node_survives_session_loss", 45, CuratorTests::persistentNode);
        test("B.persistent_ttl_node", 40, CuratorTests::persistentTtlNode);
        test("B.container_parents_reaped", 30, CuratorTests::containerParents);
        test("B.two_phase_commit", 60, CuratorTests::twoPhaseCommit);
    }

    static long sid(CuratorFramework cf) throws Exception { return cf.getZookeeperClient().getZooKeeper().getSessionId(); }

    static List<CuratorFramework> clients(Ctx c, int n) throws Exception {
        List<CuratorFramework> l = new ArrayList<>();
        for (int i = 0; i < n; i++) l.add(c.curator());
        return l;
    }

    static void allDone(List<Future<?>> fs, long seconds) throws Exception {
        long deadline = System.currentTimeMillis() + seconds * 1000;
        for (Future<?> f : fs) {
            long left = deadline - System.currentTimeMillis();
            try {
                f.get(Math.max(1, left), TimeUnit.MILLISECONDS);
            } catch (java.util.concurrent.ExecutionException e) {
                Throwable t = e.getCause();
                if (t instanceof Error) throw (Error) t;
                if (t instanceof Exception) throw (Exception) t;
                throw e;
            } catch (java.util.concurrent.TimeoutException e) {
                throw new AssertionError("workers did not finish within " + seconds + " s");
            }
        }
    }

    // ------------------------------------------------------------------ locks

    static void mutexExclusive(Ctx c) throws Exception {
        String lock = c.p("lock");
        int nClients = 5, threadsPer = 2, iters = 8;
        List<CuratorFramework> cfs = clients(c, nClients);
        AtomicBoolean inCrit = new AtomicBoolean();
        AtomicInteger violations = new AtomicInteger(), counter = new AtomicInteger();
        Set<Long> holders = ConcurrentHashMap.newKeySet();
        ExecutorService ex = c.pool(nClients * threadsPer);
        List<Future<?>> fs = new ArrayList<>();
        for (CuratorFramework cf : cfs) {
            for (int t = 0; t < threadsPer; t++) {
                fs.add(ex.submit(() -> {
                    InterProcessMutex m = new InterProcessMutex(cf, lock);
                    for (int i = 0; i < iters; i++) {
                        check(m.acquire(30, TimeUnit.SECONDS), "mutex acquire timed out");
                        try {
                            if (!inCrit.compareAndSet(false, true)) violations.incrementAndGet();
                            holders.add(sid(cf));
                            int v = counter.get();
                            Thread.sleep(2);
                            counter.set(v + 1);
                            inCrit.set(false);
                        } finally {
                            m.release();
                        }
                    }
                    return null;
                }));
            }
        }
        allDone(fs, 50);
        eq(0, violations.get(), "two holders inside the critical section at once");
        eq(nClients * threadsPer * iters, counter.get(), "lost updates (mutual exclusion broken)");
        eq(nClients, holders.size(), "every session held the lock at some point");
        eq(Collections.emptyList(), cfs.get(0).getChildren().forPath(lock), "lock nodes cleaned up");
    }

    static void mutexReentrant(Ctx c) throws Exception {
        String lock = c.p("lock");
        CuratorFramework a = c.curator(), b2 = c.curator();
        InterProcessMutex m1 = new InterProcessMutex(a, lock);
        InterProcessMutex m2 = new InterProcessMutex(b2, lock);
        check(m1.acquire(5, TimeUnit.SECONDS), "first acquire");
        check(m1.acquire(5, TimeUnit.SECONDS), "re-entrant acquire");
        check(m1.isAcquiredInThisProcess(), "held");
        Collection<String> nodes = m1.getParticipantNodes();
        eq(1, nodes.size(), "re-entrant acquire creates no second node");
        String node = nodes.iterator().next();
        Stat st = a.checkExists().forPath(node);
        check(st != null, "lock node exists: " + node);
        eq(sid(a), st.getEphemeralOwner(), "lock node is an ephemeral of the holder's session");
        check(node.substring(node.lastIndexOf('-') + 1).matches("\\d{10}"), "lock node is sequential: " + node);
        check(!m2.acquire(300, TimeUnit.MILLISECONDS), "other client must not get a held lock");
        m1.release();
        check(m1.isAcquiredInThisProcess(), "still held after one release");
        check(!m2.acquire(300, TimeUnit.MILLISECONDS), "other client must not get the lock after one of two releases");
        m1.release();
        check(!m1.isAcquiredInThisProcess(), "released");
        check(m2.acquire(5, TimeUnit.SECONDS), "other client gets the lock after full release");
        eq(1, m2.getParticipantNodes().size(), "one participant");
        // lock is released when the holder's session closes
        InterProcessMutex m3 = new InterProcessMutex(a, lock);
        AtomicBoolean got = new AtomicBoolean();
        Thread t = new Thread(() -> { try { got.set(m3.acquire(10, TimeUnit.SECONDS)); if (got.get()) m3.release(); } catch (Exception ignored) { } });
        t.start();
        waitFor(5000, "waiter queued", sup(() -> m2.getParticipantNodes().size() == 2));
        b2.close();                                   // holder's session ends without release
        t.join(10000);
        check(got.get(), "waiter acquired the lock after the holder's session closed");
    }

    static void mutexNoHerd(Ctx c) throws Exception {
        String lock = c.p("lock");
        CuratorFramework holderCf = c.curator();
        InterProcessMutex holder = new InterProcessMutex(holderCf, lock);
        check(holder.acquire(5, TimeUnit.SECONDS), "holder acquires");
        int n = 5;
        List<CuratorFramework> cfs = clients(c, n);
        List<Integer> order = new CopyOnWriteArrayList<>();
        ExecutorService ex = c.pool(n);
        List<Future<?>> fs = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            final int idx = i;
            fs.add(ex.submit(() -> {
                InterProcessMutex m = new InterProcessMutex(cfs.get(idx), lock);
                check(m.acquire(30, TimeUnit.SECONDS), "waiter " + idx + " acquire");
                order.add(idx);
                Thread.sleep(20);
                m.release();
                return null;
            }));
            final int expect = i + 2;
            waitFor(5000, "waiter " + i + " queued", sup(() -> holderCf.getChildren().forPath(lock).size() == expect));
        }
        // lock nodes in sequence order: holder, waiter0, waiter1, ...
        List<String> kids = new ArrayList<>(holderCf.getChildren().forPath(lock));
        kids.sort((x, y) -> x.substring(x.lastIndexOf('-')).compareTo(y.substring(y.lastIndexOf('-'))));
        Map<String, Long> owner = new HashMap<>();
        for (String k : kids) owner.put(lock + "/" + k, holderCf.checkExists().forPath(lock + "/" + k).getEphemeralOwner());
        eq(sid(holderCf), owner.get(lock + "/" + kids.get(0)), "first lock node belongs to the holder");
        // server-side data watches: each waiter watches exactly its predecessor (no herd)
        Map<String, Set<Long>> expected = new TreeMap<>();
        for (int i = 1; i < kids.size(); i++) expected.put(lock + "/" + kids.get(i - 1), Collections.singleton(sid(cfs.get(i - 1))));
        AtomicReference<Map<String, Set<Long>>> last = new AtomicReference<>();
        waitFor(5000, "waiters' watches on their predecessors (wchp)", sup(() -> {
            Map<String, Set<Long>> w = new TreeMap<>(wchpUnder(lock));
            last.set(w);
            return w.equals(expected);
        }));
        holder.release();
        allDone(fs, 30);
        eq(Arrays.asList(0, 1, 2, 3, 4), new ArrayList<>(order), "waiters acquire in FIFO (sequence) order");
    }

    static void semaphoreMutex(Ctx c) throws Exception {
        String path = c.p("smutex");
        List<CuratorFramework> cfs = clients(c, 4);
        InterProcessSemaphoreMutex s1 = new InterProcessSemaphoreMutex(cfs.get(0), path);
        InterProcessSemaphoreMutex s2 = new InterProcessSemaphoreMutex(cfs.get(1), path);
        check(s1.acquire(5, TimeUnit.SECONDS), "acquire");
        check(s1.isAcquiredInThisProcess(), "held");
        check(!s1.acquire(300, TimeUnit.MILLISECONDS), "semaphore mutex is not re-entrant");
        check(!s2.acquire(300, TimeUnit.MILLISECONDS), "exclusive across clients");
        s1.release();
        check(s2.acquire(5, TimeUnit.SECONDS), "acquired after release");
        s2.release();
        AtomicBoolean inCrit = new AtomicBoolean();
        AtomicInteger violations = new AtomicInteger(), counter = new AtomicInteger();
        ExecutorService ex = c.pool(4);
        List<Future<?>> fs = new ArrayList<>();
        for (CuratorFramework cf : cfs) {
            fs.add(ex.submit(() -> {
                InterProcessSemaphoreMutex m = new InterProcessSemaphoreMutex(cf, path);
                for (int i = 0; i < 6; i++) {
                    check(m.acquire(30, TimeUnit.SECONDS), "acquire timed out");
                    if (!inCrit.compareAndSet(false, true)) violations.incrementAndGet();
                    int v = counter.get();
                    Thread.sleep(2);
                    counter.set(v + 1);
                    inCrit.set(false);
                    m.release();
                }
                return null;
            }));
        }
        allDone(fs, 35);
        eq(0, violations.get(), "overlapping holders");
        eq(24, counter.get(), "lost updates");
    }

    static void readWriteLock(Ctx c) throws Exception {
        String path = c.p("rw");
        List<CuratorFramework> cfs = clients(c, 5);
        List<InterProcessReadWriteLock> readers = new ArrayList<>();
        for (int i = 0; i < 4; i++) readers.add(new InterProcessReadWriteLock(cfs.get(i), path));
        InterProcessReadWriteLock writer = new InterProcessReadWriteLock(cfs.get(4), path);
        for (int i = 0; i < 4; i++) check(readers.get(i).readLock().acquire(5, TimeUnit.SECONDS), "reader " + i + " shares the read lock");
        check(!writer.writeLock().acquire(300, TimeUnit.MILLISECONDS), "writer excluded while readers hold");
        for (int i = 0; i < 3; i++) readers.get(i).readLock().release();
        check(!writer.writeLock().acquire(300, TimeUnit.MILLISECONDS), "writer excluded while one reader holds");
        readers.get(3).readLock().release();
        check(writer.writeLock().acquire(5, TimeUnit.SECONDS), "writer acquires after readers leave");
        check(!readers.get(0).readLock().acquire(300, TimeUnit.MILLISECONDS), "reader excluded while writer holds");
        InterProcessReadWriteLock writer2 = new InterProcessReadWriteLock(cfs.get(1), path);
        check(!writer2.writeLock().acquire(300, TimeUnit.MILLISECONDS), "second writer excluded");
        // the write-lock holder may take the read lock (downgrade), then drop the write lock
        check(writer.readLock().acquire(5, TimeUnit.SECONDS), "write holder takes read lock");
        writer.writeLock().release();
        check(readers.get(0).readLock().acquire(5, TimeUnit.SECONDS), "reader joins after downgrade");
        check(!writer2.writeLock().acquire(300, TimeUnit.MILLISECONDS), "writer still excluded by two readers");
        readers.get(0).readLock().release();
        writer.readLock().release();
        check(writer2.writeLock().acquire(5, TimeUnit.SECONDS), "writer 2 acquires when all released");
        writer2.writeLock().release();
        // concurrent mix: readers overlap with each other, never with a writer
        AtomicInteger activeReaders = new AtomicInteger(), activeWriters = new AtomicInteger(), maxReaders = new AtomicInteger(), violations = new AtomicInteger();
        ExecutorService ex = c.pool(5);
        List<Future<?>> fs = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            final boolean isWriter = i >= 3;
            final CuratorFramework cf = cfs.get(i);
            fs.add(ex.submit(() -> {
                InterProcessReadWriteLock l = new InterProcessReadWriteLock(cf, path);
                for (int k = 0; k < 4; k++) {
                    if (isWriter) {
                        check(l.writeLock().acquire(30, TimeUnit.SECONDS), "write acquire");
                        if (activeWriters.incrementAndGet() != 1 || activeReaders.get() != 0) violations.incrementAndGet();
                        Thread.sleep(5);
                        activeWriters.decrementAndGet();
                        l.writeLock().release();
                    } else {
                        check(l.readLock().acquire(30, TimeUnit.SECONDS), "read acquire");
                        int r = activeReaders.incrementAndGet();
                        maxReaders.accumulateAndGet(r, Math::max);
                        if (activeWriters.get() != 0) violations.incrementAndGet();
                        Thread.sleep(5);
                        activeReaders.decrementAndGet();
                        l.readLock().release();
                    }
                }
                return null;
            }));
        }
        allDone(fs, 30);
        eq(0, violations.get(), "reader/writer overlap");
    }

    static void semaphoreV2(Ctx c) throws Exception {
        String path = c.p("sem");
        int max = 3;
        List<CuratorFramework> cfs = clients(c, 6);
        List<Lease> leases = new ArrayList<>();
        for (int i = 0; i < max; i++) {
            Lease l = new InterProcessSemaphoreV2(cfs.get(i), path, max).acquire(5, TimeUnit.SECONDS);
            check(l != null, "lease " + i);
            leases.add(l);
        }
        InterProcessSemaphoreV2 fourth = new InterProcessSemaphoreV2(cfs.get(3), path, max);
        check(fourth.acquire(300, TimeUnit.MILLISECONDS) == null, "no 4th lease while 3 are out");
        eq(3, fourth.getParticipantNodes().size(), "3 lease nodes");
        leases.remove(0).close();
        Lease l4 = fourth.acquire(5, TimeUnit.SECONDS);
        check(l4 != null, "lease available after one is returned");
        leases.add(l4);
        for (Lease l : leases) l.close();
        // multi-lease acquire
        InterProcessSemaphoreV2 s = new InterProcessSemaphoreV2(cfs.get(4), path, max);
        Collection<Lease> two = s.acquire(2, 5, TimeUnit.SECONDS);
        check(two != null && two.size() == 2, "two leases at once");
        check(new InterProcessSemaphoreV2(cfs.get(5), path, max).acquire(2, 300, TimeUnit.MILLISECONDS) == null, "only one lease left, two requested");
        s.returnAll(two);
        // concurrency: never more than max holders
        AtomicInteger active = new AtomicInteger(), peak = new AtomicInteger(), total = new AtomicInteger();
        ExecutorService ex = c.pool(6);
        List<Future<?>> fs = new ArrayList<>();
        for (CuratorFramework cf : cfs) {
            fs.add(ex.submit(() -> {
                InterProcessSemaphoreV2 sem = new InterProcessSemaphoreV2(cf, path, max);
                for (int k = 0; k < 4; k++) {
                    Lease l = sem.acquire(30, TimeUnit.SECONDS);
                    check(l != null, "acquire timed out");
                    int a = active.incrementAndGet();
                    peak.accumulateAndGet(a, Math::max);
                    Thread.sleep(20);
                    active.decrementAndGet();
                    total.incrementAndGet();
                    sem.returnLease(l);
                }
                return null;
            }));
        }
        allDone(fs, 45);
        check(peak.get() <= max, "more than " + max + " concurrent lease holders: " + peak.get());
        check(peak.get() >= 2, "leases were held concurrently (peak " + peak.get() + ")");
        eq(24, total.get(), "all rounds done");
    }

    // ------------------------------------------------------------------ leader election

    static void leaderLatch(Ctx c) throws Exception {
        String path = c.p("latch");
        int n = 4;
        List<CuratorFramework> cfs = clients(c, n);
        List<LeaderLatch> latches = new ArrayList<>();
        Set<Integer> closed = ConcurrentHashMap.newKeySet();
        AtomicInteger overlap = new AtomicInteger();
        AtomicBoolean stop = new AtomicBoolean();
        for (int i = 0; i < n; i++) {
            LeaderLatch l = new LeaderLatch(cfs.get(i), path, "L" + i);
            latches.add(l);
            c.track(() -> { if (l.getState() == LeaderLatch.State.STARTED) l.close(); });
            l.start();
        }
        Thread monitor = new Thread(() -> {
            while (!stop.get()) {
                int leaders = 0;
                for (int i = 0; i < n; i++) if (!closed.contains(i) && latches.get(i).hasLeadership()) leaders++;
                if (leaders > 1) overlap.incrementAndGet();
                try { Thread.sleep(2); } catch (InterruptedException e) { return; }
            }
        });
        monitor.setDaemon(true);
        monitor.start();
        try {
            Set<String> formerLeaders = new HashSet<>();
            for (int round = 0; round < n; round++) {
                AtomicReference<Integer> leader = new AtomicReference<>();
                waitFor(10000, "a leader in round " + round, () -> {
                    int count = 0; Integer who = null;
                    for (int i = 0; i < n; i++) if (!closed.contains(i) && latches.get(i).hasLeadership()) { count++; who = i; }
                    leader.set(count == 1 ? who : null);
                    return count == 1;
                });
                int li = leader.get();
                check(formerLeaders.add("L" + li), "a closed leader came back: L" + li);
                // every participant agrees on the leader id (read from the server)
                for (int i = 0; i < n; i++) {
                    if (closed.contains(i)) continue;
                    final int fi = i;
                    waitFor(5000, "participant " + i + " sees leader L" + li,
                            sup(() -> ("L" + li).equals(latches.get(fi).getLeader().getId())));
                    eq(n - round, latches.get(i).getParticipants().size(), "participants in round " + round);
                }
                // leadership moves when the leader leaves: alternately close the latch or the whole session
                closed.add(li);
                if (round % 2 == 0) latches.get(li).close(); else cfs.get(li).close();
            }
        } finally {
            stop.set(true);
            monitor.join(1000);
        }
        eq(0, overlap.get(), "samples with two simultaneous leaders");
    }

    static void leaderSelector(Ctx c) throws Exception {
        String path = c.p("selector");
        int n = 4;
        List<CuratorFramework> cfs = clients(c, n);
        AtomicInteger active = new AtomicInteger(), violations = new AtomicInteger();
        List<String> terms = new CopyOnWriteArrayList<>();
        List<LeaderSelector> sels = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            final String id = "S" + i;
            LeaderSelector s = new LeaderSelector(cfs.get(i), path, new LeaderSelectorListenerAdapter() {
                @Override public void takeLeadership(CuratorFramework client) throws Exception {
                    if (active.incrementAndGet() != 1) violations.incrementAndGet();
                    terms.add(id);
                    try { Thread.sleep(40); } finally { active.decrementAndGet(); }
                }
            });
            s.setId(id);
            s.autoRequeue();
            c.track(s);
            sels.add(s);
        }
        for (LeaderSelector s : sels) s.start();
        waitFor(20000, "12 leadership terms (got " + terms.size() + ")", () -> terms.size() >= 12);
        for (LeaderSelector s : sels) s.close();
        eq(0, violations.get(), "overlapping leadership terms");
        for (int i = 0; i < n; i++) check(terms.contains("S" + i), "S" + i + " got a leadership term: " + terms);
        // leadership moves when the leader closes
        String path2 = c.p("selector2");
        AtomicReference<String> current = new AtomicReference<>();
        List<LeaderSelector> sels2 = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            final String id = "T" + i;
            LeaderSelector s = new LeaderSelector(cfs.get(i), path2, new LeaderSelectorListenerAdapter() {
                @Override public void takeLeadership(CuratorFramework client) throws Exception {
                    if (!current.compareAndSet(null, id)) violations.incrementAndGet();
                    try { Thread.sleep(60_000); } finally { current.compareAndSet(id, null); }
                }
            });
            s.setId(id);
            c.track(s);
            sels2.add(s);
            s.start();
        }
        Set<String> seen = new HashSet<>();
        for (int round = 0; round < 3; round++) {
            waitFor(10000, "a leader (round " + round + ")", () -> current.get() != null);
            String who = current.get();
            check(seen.add(who), "leader " + who + " elected twice");
            int idx = Integer.parseInt(who.substring(1));
            for (LeaderSelector s : sels2) {
                if (seen.contains(s.getId()) && s != sels2.get(idx)) continue;   // already closed
                final LeaderSelector fs = s;
                waitFor(5000, s.getId() + " sees leader " + who, sup(() -> who.equals(fs.getLeader().getId())));
            }
            sels2.get(idx).close();
            waitFor(5000, "old leader stepped down", () -> !who.equals(current.get()));
        }
        eq(0, violations.get(), "two leaders at once");
    }

    // ------------------------------------------------------------------ barriers

    static void barrier(Ctx c) throws Exception {
        String path = c.p("barrier");
        List<CuratorFramework> cfs = clients(c, 4);
        DistributedBarrier owner = new DistributedBarrier(cfs.get(0), path);
        check(new DistributedBarrier(cfs.get(1), path).waitOnBarrier(1, TimeUnit.SECONDS), "no barrier set: returns at once");
        owner.setBarrier();
        ExecutorService ex = c.pool(3);
        AtomicInteger passed = new AtomicInteger();
        List<Future<?>> fs = new ArrayList<>();
        for (int i = 1; i < 4; i++) {
            final CuratorFramework cf = cfs.get(i);
            fs.add(ex.submit(() -> {
                check(new DistributedBarrier(cf, path).waitOnBarrier(20, TimeUnit.SECONDS), "waiter released");
                passed.incrementAndGet();
                return null;
            }));
        }
        Thread.sleep(700);
        eq(0, passed.get(), "nobody passes a set barrier");
        check(!new DistributedBarrier(cfs.get(1), path).waitOnBarrier(200, TimeUnit.MILLISECONDS), "timed wait on set barrier returns false");
        owner.removeBarrier();
        allDone(fs, 10);
        eq(3, passed.get(), "all waiters released by removeBarrier");
    }

    static void doubleBarrier(Ctx c) throws Exception {
        String path = c.p("dbarrier");
        int n = 4;
        List<CuratorFramework> cfs = clients(c, n);
        AtomicInteger entered = new AtomicInteger(), enterCalls = new AtomicInteger(), leaveCalls = new AtomicInteger(), left = new AtomicInteger();
        AtomicInteger earlyEnter = new AtomicInteger(), earlyLeave = new AtomicInteger();
        CountDownLatch lastMayLeave = new CountDownLatch(1);
        ExecutorService ex = c.pool(n);
        List<Future<?>> fs = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            final int idx = i;
            fs.add(ex.submit(() -> {
                DistributedDoubleBarrier b2 = new DistributedDoubleBarrier(cfs.get(idx), path, n);
                enterCalls.incrementAndGet();
                check(b2.enter(20, TimeUnit.SECONDS), "enter " + idx);
                if (enterCalls.get() < n) earlyEnter.incrementAndGet();
                entered.incrementAndGet();
                if (idx == n - 1) lastMayLeave.await(20, TimeUnit.SECONDS);
                leaveCalls.incrementAndGet();
                check(b2.leave(20, TimeUnit.SECONDS), "leave " + idx);
                if (leaveCalls.get() < n) earlyLeave.incrementAndGet();
                left.incrementAndGet();
                return null;
            }));
            if (i == n - 2) {
                Thread.sleep(700);
                eq(0, entered.get(), "nobody enters before all " + n + " members arrived");
            }
        }
        waitFor(10000, "all entered", () -> entered.get() == n);
        Thread.sleep(700);
        eq(0, left.get(), "nobody leaves before the last member leaves");
        lastMayLeave.countDown();
        allDone(fs, 20);
        eq(n, left.get(), "all left");
        eq(0, earlyEnter.get(), "entered before everyone called enter");
        eq(0, earlyLeave.get(), "left before everyone called leave");
    }

    // ------------------------------------------------------------------ queues

    static final QueueSerializer<String> STR = new QueueSerializer<String>() {
        @Override public byte[] serialize(String item) { return b(item); }
        @Override public String deserialize(byte[] bytes) { return s(bytes); }
    };

    static QueueConsumer<String> consumer(java.util.function.Consumer<String> f) {
        return new QueueConsumer<String>() {
            @Override public void consumeMessage(String message) { f.accept(message); }
            @Override public void stateChanged(CuratorFramework client, ConnectionState newState) { }
        };
    }

    static void queueExactlyOnce(Ctx c) throws Exception {
        String path = c.p("queue");
        List<CuratorFramework> cfs = clients(c, 5);
        Map<String, AtomicInteger> seen = new ConcurrentHashMap<>();
        Map<String, Integer> byConsumer = new ConcurrentHashMap<>();
        for (int i = 0; i < 3; i++) {
            final int idx = i;
            DistributedQueue<String> q = QueueBuilder.builder(cfs.get(i), consumer(m -> {
                seen.computeIfAbsent(m, k -> new AtomicInteger()).incrementAndGet();
                byConsumer.merge("C" + idx, 1, Integer::sum);
            }), STR, path).buildQueue();
            c.track(q);
            q.start();
        }
        int perProducer = 40;
        ExecutorService ex = c.pool(2);
        List<Future<?>> fs = new ArrayList<>();
        for (int pIdx = 0; pIdx < 2; pIdx++) {
            final int pi = pIdx;
            fs.add(ex.submit(() -> {
                DistributedQueue<String> q = QueueBuilder.builder(cfs.get(3 + pi), null, STR, path).putInBackground(false).buildQueue();
                q.start();
                try {
                    for (int k = 0; k < perProducer; k++) q.put("p" + pi + "-" + k);
                } finally { q.close(); }
                return null;
            }));
        }
        allDone(fs, 30);
        waitFor(30000, "all items consumed (" + seen.size() + ")", () -> seen.size() == 2 * perProducer);
        Thread.sleep(300);
        for (Map.Entry<String, AtomicInteger> e : seen.entrySet()) eq(1, e.getValue().get(), "consumption count of " + e.getKey());
        eq(2 * perProducer, seen.size(), "distinct items");
        waitFor(5000, "queue empty", sup(() -> cfs.get(0).getChildren().forPath(path).isEmpty()));
    }

    static void queueFifo(Ctx c) throws Exception {
        String path = c.p("fifo");
        CuratorFramework prod = c.curator(), cons = c.curator();
        DistributedQueue<String> pq = QueueBuilder.builder(prod, null, STR, path).putInBackground(false).buildQueue();
        c.track(pq);
        pq.start();
        List<String> put = new ArrayList<>();
        for (int i = 0; i < 15; i++) { pq.put("m" + i); put.add("m" + i); }
        List<String> got = new CopyOnWriteArrayList<>();
        DistributedQueue<String> cq = QueueBuilder.builder(cons, consumer(got::add), STR, path).buildQueue();
        c.track(cq);
        cq.start();
        for (int i = 15; i < 30; i++) { pq.put("m" + i); put.add("m" + i); }
        waitFor(20000, "30 items consumed (" + got.size() + ")", () -> got.size() >= 30);
        eq(put, new ArrayList<>(got), "FIFO order");
    }

    static void idQueue(Ctx c) throws Exception {
        String path = c.p("idq");
        CuratorFramework prod = c.curator(), cons = c.curator();
        DistributedIdQueue<String> pq = QueueBuilder.builder(prod, null, STR, path).putInBackground(false).buildIdQueue();
        c.track(pq);
        pq.start();
        for (int i = 0; i < 10; i++) pq.put("item" + i, "id" + i);
        pq.put("dup-a", "dupid");
        pq.put("dup-b", "dupid");
        eq(1, pq.remove("id3"), "remove by id");
        eq(1, pq.remove("id7"), "remove by id");
        eq(2, pq.remove("dupid"), "remove removes every item with that id");
        eq(0, pq.remove("id3"), "second remove finds nothing");
        List<String> got = new CopyOnWriteArrayList<>();
        DistributedIdQueue<String> cq = QueueBuilder.builder(cons, consumer(got::add), STR, path).buildIdQueue();
        c.track(cq);
        cq.start();
        waitFor(20000, "8 items consumed (" + got.size() + ")", () -> got.size() >= 8);
        Thread.sleep(300);
        eq(Arrays.asList("item0", "item1", "item2", "item4", "item5", "item6", "item8", "item9"), new ArrayList<>(got), "consumed items in order, removed ones skipped");
    }

    static void priorityQueue(Ctx c) throws Exception {
        String path = c.p("prio");
        CuratorFramework prod = c.curator(), cons = c.curator();
        DistributedPriorityQueue<String> pq = QueueBuilder.builder(prod, null, STR, path).putInBackground(false).buildPriorityQueue(0);
        c.track(pq);
        pq.start();
        int[] prios = {5, -3, 17, 0, 2, 99, -40, 8, 1, 3, 1000, -1};
        for (int p : prios) pq.put("prio" + p, p);
        List<String> got = new CopyOnWriteArrayList<>();
        DistributedPriorityQueue<String> cq = QueueBuilder.builder(cons, consumer(got::add), STR, path).buildPriorityQueue(0);
        c.track(cq);
        cq.start();
        waitFor(20000, prios.length + " items consumed (" + got.size() + ")", () -> got.size() >= prios.length);
        int[] sortedP = prios.clone();
        Arrays.sort(sortedP);
        List<String> want = new ArrayList<>();
        for (int p : sortedP) want.add("prio" + p);
        eq(want, new ArrayList<>(got), "consumed in priority order (lowest value first)");
    }

    static void simpleQueue(Ctx c) throws Exception {
        String path = c.p("sq");
        CuratorFramework a = c.curator(), b2 = c.curator(), d = c.curator();
        SimpleDistributedQueue qa = new SimpleDistributedQueue(a, path);
        check(qa.poll() == null, "empty queue polls null");
        for (int i = 0; i < 10; i++) check(qa.offer(b("e" + i)), "offer");
        eq("e0", s(qa.peek()), "peek head");
        SimpleDistributedQueue qb = new SimpleDistributedQueue(b2, path);
        List<String> got = new ArrayList<>();
        for (int i = 0; i < 4; i++) got.add(s(qb.poll(5, TimeUnit.SECONDS)));
        eq(Arrays.asList("e0", "e1", "e2", "e3"), got, "FIFO across clients");
        // two concurrent takers get disjoint items
        Set<String> taken = ConcurrentHashMap.newKeySet();
        AtomicInteger dups = new AtomicInteger();
        ExecutorService ex = c.pool(2);
        List<Future<?>> fs = new ArrayList<>();
        for (CuratorFramework cf : Arrays.asList(b2, d)) {
            fs.add(ex.submit(() -> {
                SimpleDistributedQueue q = new SimpleDistributedQueue(cf, path);
                byte[] item;
                while ((item = q.poll(500, TimeUnit.MILLISECONDS)) != null) if (!taken.add(s(item))) dups.incrementAndGet();
                return null;
            }));
        }
        allDone(fs, 20);
        eq(0, dups.get(), "an item was taken twice");
        eq(new HashSet<>(Arrays.asList("e4", "e5", "e6", "e7", "e8", "e9")), taken, "remaining items taken once");
        // take() blocks until an item arrives (uses a child watch)
        AtomicReference<String> late = new AtomicReference<>();
        Thread t = new Thread(() -> { try { late.set(s(new SimpleDistributedQueue(d, path).take())); } catch (Exception ignored) { } });
        t.setDaemon(true);
        t.start();
        Thread.sleep(300);
        check(late.get() == null, "take blocks on empty queue");
        qa.offer(b("late"));
        t.join(5000);
        eq("late", late.get(), "take returns the item offered later");
    }

    // ------------------------------------------------------------------ counters

    static void atomicLong(Ctx c) throws Exception {
        String path = c.p("counter");
        List<CuratorFramework> cfs = clients(c, 5);
        int threadsPer = 2, iters = 15;
        Set<Long> postValues = ConcurrentHashMap.newKeySet();
        AtomicInteger dupPost = new AtomicInteger();
        ExecutorService ex = c.pool(cfs.size() * threadsPer);
        List<Future<?>> fs = new ArrayList<>();
        for (CuratorFramework cf : cfs) {
            for (int t = 0; t < threadsPer; t++) {
                fs.add(ex.submit(() -> {
                    DistributedAtomicLong al = new DistributedAtomicLong(cf, path, new RetryNTimes(20, 5),
                            PromotedToLock.builder().lockPath(path + "-lock").retryPolicy(new RetryNTimes(20, 10)).timeout(20, TimeUnit.SECONDS).build());
                    for (int i = 0; i < iters; i++) {
                        AtomicValue<Long> v;
                        int attempts = 0;
                        do {
                            v = al.increment();
                            check(++attempts < 50, "increment never succeeded");
                        } while (!v.succeeded());
                        eq(v.preValue() + 1, (long) v.postValue(), "post = pre + 1");
                        if (!postValues.add(v.postValue())) dupPost.incrementAndGet();
                    }
                    return null;
                }));
            }
        }
        allDone(fs, 50);
        long total = (long) cfs.size() * threadsPer * iters;
        eq(0, dupPost.get(), "two increments observed the same result");
        DistributedAtomicLong reader = new DistributedAtomicLong(cfs.get(0), path, new RetryNTimes(3, 10));
        eq(total, (long) reader.get().postValue(), "final counter value");
        Set<Long> want = new HashSet<>();
        for (long i = 1; i <= total; i++) want.add(i);
        eq(want, postValues, "every value 1..N produced exactly once");
        // compareAndSet semantics
        check(!reader.compareAndSet(total + 5, 0L).succeeded(), "CAS with wrong expected value fails");
        check(reader.compareAndSet(total, 1000L).succeeded(), "CAS with right expected value succeeds");
        eq(1000L, (long) reader.get().postValue(), "value after CAS");
    }

    static void sharedCount(Ctx c) throws Exception {
        String path = c.p("shared");
        List<CuratorFramework> cfs = clients(c, 5);
        SharedCount observer = new SharedCount(cfs.get(4), path, 0);
        c.track(observer);
        List<Integer> observed = new CopyOnWriteArrayList<>();
        observer.addListener(new org.apache.curator.framework.recipes.shared.SharedCountListener() {
            @Override public void countHasChanged(org.apache.curator.framework.recipes.shared.SharedCountReader r, int newCount) { observed.add(newCount); }
            @Override public void stateChanged(CuratorFramework client, ConnectionState newState) { }
        });
        observer.start();
        int per = 25;
        ExecutorService ex = c.pool(4);
        List<Future<?>> fs = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            final CuratorFramework cf = cfs.get(i);
            fs.add(ex.submit(() -> {
                SharedCount sc = new SharedCount(cf, path, 0);
                sc.start();
                try {
                    for (int k = 0; k < per; k++) {
                        int attempts = 0;
                        while (true) {
                            VersionedValue<Integer> v = sc.getVersionedValue();
                            if (sc.trySetCount(v, v.getValue() + 1)) break;
                            check(++attempts < 500, "trySetCount never succeeded");
                        }
                    }
                } finally { sc.close(); }
                return null;
            }));
        }
        allDone(fs, 50);
        waitFor(10000, "observer converges on " + (4 * per), () -> observer.getCount() == 4 * per);
        VersionedValue<Integer> vv = observer.getVersionedValue();
        eq(4 * per, (int) vv.getValue(), "final count");
        eq(4 * per, vv.getVersion(), "znode version == number of successful sets");
        for (int i = 1; i < observed.size(); i++) check(observed.get(i) > observed.get(i - 1), "observer saw values going backwards: " + observed);
    }

    // ------------------------------------------------------------------ caches

    @SuppressWarnings("deprecation")
    static void nodeCache(Ctx c) throws Exception {
        String path = c.p("node");
        CuratorFramework watcherCf = c.curator(), writer = c.curator();
        NodeCache nc = new NodeCache(watcherCf, path);
        c.track(nc);
        AtomicInteger changes = new AtomicInteger();
        nc.getListenable().addListener(changes::incrementAndGet);
        nc.start(true);
        check(nc.getCurrentData() == null, "no data for missing node");
        writer.create().forPath(path, b("one"));
        waitFor(5000, "cache sees create", () -> nc.getCurrentData() != null && "one".equals(s(nc.getCurrentData().getData())));
        writer.setData().forPath(path, b("two"));
        waitFor(5000, "cache sees update", () -> "two".equals(s(nc.getCurrentData().getData())));
        eq(1, nc.getCurrentData().getStat().getVersion(), "cached stat version");
        writer.delete().forPath(path);
        waitFor(5000, "cache sees delete", () -> nc.getCurrentData() == null);
        writer.create().forPath(path, b("three"));
        waitFor(5000, "cache sees re-create", () -> nc.getCurrentData() != null && "three".equals(s(nc.getCurrentData().getData())));
        check(changes.get() >= 4, "listener called for each change (" + changes.get() + ")");
    }

    @SuppressWarnings("deprecation")
    static void pathChildrenCache(Ctx c) throws Exception {
        String path = c.p("pcc");
        CuratorFramework watcherCf = c.curator(), writer = c.curator();
        writer.create().forPath(path);
        writer.create().forPath(path + "/c1", b("1"));
        writer.create().forPath(path + "/c2", b("2"));
        PathChildrenCache pcc = new PathChildrenCache(watcherCf, path, true);
        c.track(pcc);
        java.util.concurrent.LinkedBlockingQueue<String> ev = new java.util.concurrent.LinkedBlockingQueue<>();
        pcc.getListenable().addListener((cl, e) -> {
            if (e.getType() == PathChildrenCacheEvent.Type.INITIALIZED) ev.add("INITIALIZED");
            else if (e.getData() != null) ev.add(e.getType() + " " + e.getData().getPath().substring(path.length()) + " " + s(e.getData().getData()));
        });
        pcc.start(PathChildrenCache.StartMode.POST_INITIALIZED_EVENT);
        List<String> initial = new ArrayList<>();
        for (int i = 0; i < 3; i++) { String e = ev.poll(5, TimeUnit.SECONDS); check(e != null, "initial events: " + initial); initial.add(e); }
        eq(Arrays.asList("CHILD_ADDED /c1 1", "CHILD_ADDED /c2 2"), sorted(initial.subList(0, 2)), "initial events");
        eq("INITIALIZED", initial.get(2), "initialized event last");
        writer.create().forPath(path + "/c3", b("3"));
        eq("CHILD_ADDED /c3 3", ev.poll(5, TimeUnit.SECONDS), "add event");
        writer.setData().forPath(path + "/c1", b("1b"));
        eq("CHILD_UPDATED /c1 1b", ev.poll(5, TimeUnit.SECONDS), "update event");
        writer.create().forPath(path + "/c1/grandchild");       // not reported (only direct children)
        writer.delete().forPath(path + "/c2");
        eq("CHILD_REMOVED /c2 2", ev.poll(5, TimeUnit.SECONDS), "remove event");
        List<String> names = new ArrayList<>();
        for (ChildData d : pcc.getCurrentData()) names.add(d.getPath().substring(path.length()));
        eq(Arrays.asList("/c1", "/c3"), names, "cached children");
        Thread.sleep(200);
        check(ev.isEmpty(), "no extra events: " + ev);
    }

    static List<String> concat(List<String> a, List<String> b2) { List<String> l = new ArrayList<>(a); l.addAll(b2); return l; }

    static void treeCache(Ctx c) throws Exception {
        String path = c.p("tree");
        CuratorFramework watcherCf = c.curator(), writer = c.curator();
        writer.create().creatingParentsIfNeeded().forPath(path + "/a/b", b("ab"));
        TreeCache tc = TreeCache.newBuilder(watcherCf, path).setCacheData(true).build();
        c.track(tc);
        java.util.concurrent.LinkedBlockingQueue<String> ev = new java.util.concurrent.LinkedBlockingQueue<>();
        tc.getListenable().addListener((cl, e) -> {
            if (e.getType() == TreeCacheEvent.Type.INITIALIZED) ev.add("INITIALIZED");
            else if (e.getData() != null) ev.add(e.getType() + " " + rel(path, e.getData().getPath()));
        });
        tc.start();
        List<String> initial = new ArrayList<>();
        for (int i = 0; i < 4; i++) { String e = ev.poll(5, TimeUnit.SECONDS); check(e != null, "initial events: " + initial); initial.add(e); }
        eq(Arrays.asList("NODE_ADDED /", "NODE_ADDED /a", "NODE_ADDED /a/b", "INITIALIZED"), initial, "initial tree events");
        writer.create().forPath(path + "/a/b/c", b("abc"));
        eq("NODE_ADDED /a/b/c", ev.poll(5, TimeUnit.SECONDS), "deep add");
        writer.setData().forPath(path + "/a", b("A"));
        eq("NODE_UPDATED /a", ev.poll(5, TimeUnit.SECONDS), "update");
        eq("A", s(tc.getCurrentData(path + "/a").getData()), "cached data");
        eq(new HashSet<>(Collections.singletonList("b")), tc.getCurrentChildren(path + "/a").keySet(), "cached children");
        writer.delete().forPath(path + "/a/b/c");
        eq("NODE_REMOVED /a/b/c", ev.poll(5, TimeUnit.SECONDS), "remove");
        writer.delete().deletingChildrenIfNeeded().forPath(path + "/a");
        List<String> rm = new ArrayList<>();
        for (int i = 0; i < 2; i++) rm.add(ev.poll(5, TimeUnit.SECONDS));
        eq(Arrays.asList("NODE_REMOVED /a", "NODE_REMOVED /a/b"), sorted(rm), "subtree removal");
        check(tc.getCurrentData(path + "/a") == null, "removed from cache");
    }

    static String rel(String base, String p) { return p.equals(base) ? "/" : p.substring(base.length()); }

    static void curatorCache(Ctx c) throws Exception {
        String path = c.p("cc");
        CuratorFramework watcherCf = c.curator(), writer = c.curator();
        writer.create().forPath(path, b("root"));
        writer.create().forPath(path + "/pre", b("p"));
        CuratorCache cache = CuratorCache.build(watcherCf, path);
        c.track(cache);
        java.util.concurrent.LinkedBlockingQueue<String> ev = new java.util.concurrent.LinkedBlockingQueue<>();
        CountDownLatch init = new CountDownLatch(1);
        cache.listenable().addListener(CuratorCacheListener.builder()
                .forCreates(d -> ev.add("create " + rel(path, d.getPath()) + " " + s(d.getData())))
                .forChanges((o, n) -> ev.add("change " + rel(path, n.getPath()) + " " + s(o.getData()) + "->" + s(n.getData())))
                .forDeletes(d -> ev.add("delete " + rel(path, d.getPath())))
                .forInitialized(init::countDown)
                .build());
        cache.start();
        check(init.await(10, TimeUnit.SECONDS), "cache initialized");
        List<String> initial = new ArrayList<>();
        ev.drainTo(initial);
        eq(Arrays.asList("create / root", "create /pre p"), sorted(initial), "initial creates");
        // the cache uses one persistent recursive watch on its root (addWatch registers it in the data table too)
        long csid = sid(watcherCf);
        Map<String, Set<Long>> w = wchpUnder(path);
        check(w.containsKey(path) && w.get(path).contains(csid), "persistent recursive watch on the cache root: " + w);
        eq(Collections.singleton(path), w.keySet(), "no per-node watches below the cache root");
        writer.create().creatingParentsIfNeeded().forPath(path + "/x/y/z", b("deep"));
        List<String> got = new ArrayList<>();
        for (int i = 0; i < 3; i++) got.add(ev.poll(5, TimeUnit.SECONDS));
        eq(Arrays.asList("create /x ", "create /x/y ", "create /x/y/z deep"), got, "deep creates in order");
        writer.setData().forPath(path + "/x/y", b("Y"));
        eq("change /x/y ->Y", ev.poll(5, TimeUnit.SECONDS), "update");
        writer.delete().forPath(path + "/x/y/z");
        eq("delete /x/y/z", ev.poll(5, TimeUnit.SECONDS), "delete");
        writer.setData().forPath(path, b("root2"));
        eq("change / root->root2", ev.poll(5, TimeUnit.SECONDS), "root update");
        eq(4, cache.size(), "cache size (/, /pre, /x, /x/y)");
        eq("Y", s(cache.get(path + "/x/y").get().getData()), "cached data");
        Thread.sleep(200);
        check(ev.isEmpty(), "no extra events: " + ev);
    }

    // ------------------------------------------------------------------ nodes

    static void groupMember(Ctx c) throws Exception {
        String path = c.p("group");
        List<CuratorFramework> cfs = clients(c, 3);
        List<GroupMember> members = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            GroupMember m = new GroupMember(cfs.get(i), path, "m" + i, b("payload" + i));
            c.track(m);
            members.add(m);
            m.start();
        }
        for (int i = 0; i < 3; i++) {
            final GroupMember m = members.get(i);
            waitFor(10000, "member " + i + " sees the whole group", () -> m.getCurrentMembers().size() == 3);
            Map<String, byte[]> cur = m.getCurrentMembers();
            for (int k = 0; k < 3; k++) eq("payload" + k, s(cur.get("m" + k)), "payload of m" + k + " seen by m" + i);
        }
        members.get(1).setThisData(b("updated"));
        waitFor(10000, "data update propagates", () -> "updated".equals(s(members.get(0).getCurrentMembers().get("m1"))));
        members.get(1).close();
        waitFor(10000, "others see m1 leave", () -> !members.get(0).getCurrentMembers().containsKey("m1")
                && !members.get(2).getCurrentMembers().containsKey("m1"));
        eq(new HashSet<>(Arrays.asList("m0", "m2")), members.get(2).getCurrentMembers().keySet(), "remaining members");
        // a member whose session closes disappears
        cfs.get(2).close();
        waitFor(10000, "m0 sees m2's session end", () -> members.get(0).getCurrentMembers().keySet().equals(Collections.singleton("m0")));
    }

    static void persistentNode(Ctx c) throws Exception {
        String path = c.p("pn");
        TcpProxy proxy = c.proxy();
        CuratorFramework owner = c.curator(proxy.connectString(), 2000);
        CuratorFramework obs = c.curator();
        PersistentNode pn = new PersistentNode(owner, CreateMode.EPHEMERAL, false, path, b("alive"));
        c.track(pn);
        pn.start();
        check(pn.waitForInitialCreate(10, TimeUnit.SECONDS), "initial create");
        long firstSid = sid(owner);
        Stat st = obs.checkExists().forPath(path);
        check(st != null, "node exists");
        eq(firstSid, st.getEphemeralOwner(), "ephemeral owned by the recipe's session");
        // someone deletes the node: it is recreated
        obs.delete().forPath(path);
        waitFor(10000, "recreated after delete", sup(() -> obs.checkExists().forPath(path) != null));
        // session loss: cut the owner off until the server expires the session
        proxy.cut();
        waitFor(15000, "server expired the owner's session and deleted the ephemeral", sup(() -> obs.checkExists().forPath(path) == null));
        proxy.restore();
        AtomicReference<Long> newOwner = new AtomicReference<>();
        waitFor(20000, "node recreated by a new session", sup(() -> {
            Stat s2 = obs.checkExists().forPath(path);
            if (s2 == null) return false;
            newOwner.set(s2.getEphemeralOwner());
            return s2.getEphemeralOwner() != firstSid;
        }));
        eq(sid(owner), (long) newOwner.get(), "new ephemeral owned by the client's new session");
        eq("alive", s(obs.getData().forPath(path)), "data preserved");
        pn.close();
        waitFor(5000, "closing the recipe deletes the node", sup(() -> obs.checkExists().forPath(path) == null));
    }

    static void persistentTtlNode(Ctx c) throws Exception {
        String path = c.p("ttlnode");
        CuratorFramework cf = c.curator(), obs = c.curator();
        PersistentTtlNode tn = new PersistentTtlNode(cf, path, 1000, b("ttl-data"));
        c.track(tn);
        tn.start();
        check(tn.waitForInitialCreate(10, TimeUnit.SECONDS), "initial create");
        eq("ttl-data", s(obs.getData().forPath(path)), "data");
        waitFor(5000, "touch child exists", sup(() -> obs.checkExists().forPath(path + "/" + PersistentTtlNode.DEFAULT_CHILD_NODE_NAME) != null));
        // stays alive for longer than the ttl while the recipe keeps touching
        Thread.sleep(2500);
        check(obs.checkExists().forPath(path) != null, "node kept alive by the recipe");
        Stat parent = obs.checkExists().forPath(path);
        eq(0L, parent.getEphemeralOwner(), "container parent shows ephemeralOwner 0");
        tn.close();
        waitFor(12000, "node removed after the recipe stops touching (ttl child expires, container reaped)",
                sup(() -> obs.checkExists().forPath(path) == null));
    }

    static void containerParents(Ctx c) throws Exception {
        String base = c.p("cont");
        CuratorFramework cf = c.curator();
        cf.create().creatingParentContainersIfNeeded().forPath(base + "/a/leaf1", b("1"));
        cf.create().creatingParentContainersIfNeeded().forPath(base + "/b/leaf2", b("2"));
        check(cf.checkExists().forPath(base + "/a") != null, "container parent a created");
        cf.delete().forPath(base + "/a/leaf1");
        waitFor(8000, "empty container a reaped", sup(() -> cf.checkExists().forPath(base + "/a") == null));
        check(cf.checkExists().forPath(base + "/b") != null, "container b with a child survives");
        cf.delete().forPath(base + "/b/leaf2");
        waitFor(8000, "container b reaped", sup(() -> cf.checkExists().forPath(base + "/b") == null));
        waitFor(8000, "container " + base + " reaped once its children are gone", sup(() -> cf.checkExists().forPath(base) == null));
    }

    // ------------------------------------------------------------------ two-phase commit

    /** Waits (with watches, no polling) until the node exists and its data satisfies pred. */
    static String awaitData(CuratorFramework cf, String path, java.util.function.Predicate<String> pred, long ms) throws Exception {
        long deadline = System.currentTimeMillis() + ms;
        while (true) {
            CountDownLatch l = new CountDownLatch(1);
            Watcher w = e -> l.countDown();
            String val = null;
            if (cf.checkExists().usingWatcher(w).forPath(path) != null) {
                try {
                    CountDownLatch l2 = new CountDownLatch(1);
                    val = s(cf.getData().usingWatcher((Watcher) e -> { l.countDown(); l2.countDown(); }).forPath(path));
                } catch (KeeperException.NoNodeException ignored) { }
                if (val != null && pred.test(val)) return val;
            }
            long left = deadline - System.currentTimeMillis();
            check(left > 0, "timed out waiting for " + path + " (last value " + val + ")");
            l.await(left, TimeUnit.MILLISECONDS);
        }
    }

    static void twoPhaseCommit(Ctx c) throws Exception {
        String root = c.p("2pc");
        CuratorFramework coord = c.curator();
        int n = 4;
        List<CuratorFramework> parts = clients(c, n);
        coord.create().forPath(root);
        runTxn(c, coord, parts, root + "/txn1", new boolean[] {true, true, true, true}, "commit");
        runTxn(c, coord, parts, root + "/txn2", new boolean[] {true, false, true, true}, "abort");
    }

    static void runTxn(Ctx c, CuratorFramework coord, List<CuratorFramework> parts, String txn, boolean[] votes, String expected) throws Exception {
        int n = parts.size();
        Map<Integer, String> outcomes = new ConcurrentHashMap<>();
        ExecutorService ex = c.pool(n);
        List<Future<?>> fs = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            final int idx = i;
            fs.add(ex.submit(() -> {
                CuratorFramework cf = parts.get(idx);
                awaitData(cf, txn, v -> v.equals("prepare"), 15000);
                cf.create().withMode(CreateMode.EPHEMERAL_SEQUENTIAL).forPath(txn + "/votes/vote-", b((votes[idx] ? "yes:" : "no:") + "p" + idx));
                outcomes.put(idx, awaitData(cf, txn, v -> !v.equals("prepare"), 15000));
                return null;
            }));
        }
        Thread.sleep(100); // participants are waiting for the txn node (exists watch)
        List<CuratorTransactionResult> created = coord.transaction().forOperations(
                coord.transactionOp().create().forPath(txn, b("prepare")),
                coord.transactionOp().create().forPath(txn + "/votes"));
        eq(2, created.size(), "prepare transaction results");
        // collect votes with a child watch until all are in
        List<String> voteNodes;
        long deadline = System.currentTimeMillis() + 15000;
        while (true) {
            CountDownLatch l = new CountDownLatch(1);
            voteNodes = coord.getChildren().usingWatcher((Watcher) e -> l.countDown()).forPath(txn + "/votes");
            if (voteNodes.size() == n) break;
            check(voteNodes.size() < n, "too many votes");
            long left = deadline - System.currentTimeMillis();
            check(left > 0, "votes did not arrive: " + voteNodes);
            l.await(left, TimeUnit.MILLISECONDS);
        }
        boolean allYes = true;
        Set<Long> voters = new HashSet<>();
        for (String v : voteNodes) {
            Stat st = new Stat();
            String val = s(coord.getData().storingStatIn(st).forPath(txn + "/votes/" + v));
            allYes &= val.startsWith("yes:");
            voters.add(st.getEphemeralOwner());
            check(v.matches("vote-\\d{10}"), "vote node name " + v);
        }
        Set<Long> partSessions = new HashSet<>();
        for (CuratorFramework p : parts) partSessions.add(sid(p));
        eq(partSessions, voters, "each participant voted once with its own session");
        String decision = allYes ? "commit" : "abort";
        eq(expected, decision, "decision");
        Stat txnStat = coord.checkExists().forPath(txn);
        eq(0, txnStat.getVersion(), "txn untouched before decision");
        List<CuratorOp> ops = Arrays.asList(
                coord.transactionOp().check().withVersion(0).forPath(txn),
                coord.transactionOp().setData().withVersion(0).forPath(txn, b(decision)),
                coord.transactionOp().create().forPath(txn + "/outcome", b(decision)));
        List<CuratorTransactionResult> res = coord.transaction().forOperations(ops);
        eq(3, res.size(), "decision transaction results");
        // a stale rival coordinator cannot overwrite the decision: its check fails and nothing is applied
        try {
            coord.transaction().forOperations(
                    coord.transactionOp().check().withVersion(0).forPath(txn),
                    coord.transactionOp().setData().forPath(txn, b("rival")),
                    coord.transactionOp().create().forPath(txn + "/rival"));
            throw new AssertionError("stale transaction succeeded");
        } catch (KeeperException.BadVersionException expectedEx) { }
        check(coord.checkExists().forPath(txn + "/rival") == null, "rival transaction left no trace");
        allDone(fs, 20);
        for (int i = 0; i < n; i++) eq(decision, outcomes.get(i), "participant " + i + " learned the decision");
        eq(decision, s(coord.getData().forPath(txn)), "txn data");
        eq(decision, s(coord.getData().forPath(txn + "/outcome")), "outcome node");
    }
}
