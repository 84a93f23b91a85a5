package compat;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BooleanSupplier;
import java.util.regex.Pattern;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.WatchedEvent;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.Watcher.Event.EventType;
import org.apache.zookeeper.Watcher.Event.KeeperState;
import org.apache.zookeeper.ZKUtil;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;

/**
 * Tiny self-contained test harness (no JUnit). Every test runs in its own thread with a timeout,
 * gets its own znode subtree ({@link Ctx#base}) and a resource tracker that is closed after the test.
 * Output: one line per test, then exactly "N passed, N failed".
 */
public final class Harness {
    static String CONNECT;      // host:port as given in ZK_CONNECT (first server if several)
    static String HOST;
    static int PORT;
    static String TARGET;
    static String RUN_ROOT;     // per-run root znode, e.g. /java-compat-18c0a1b2
    static final List<Test> TESTS = new ArrayList<>();

    // ------------------------------------------------------------------ registration

    @FunctionalInterface
    public interface Body { void run(Ctx c) throws Exception; }

    @FunctionalInterface
    public interface ThrowingRunnable { void run() throws Exception; }

    public static final class Test {
        final String name; final int timeoutSec; final Body body;
        Test(String name, int timeoutSec, Body body) { this.name = name; this.timeoutSec = timeoutSec; this.body = body; }
    }

    static void test(String name, int timeoutSec, Body body) { TESTS.add(new Test(name, timeoutSec, body)); }

    // ------------------------------------------------------------------ main

    public static void main(String[] args) throws Exception {
        String connect = env("ZK_CONNECT", null);
        String port = env("ZK_PORT", null);
        if (connect == null && port == null) { System.err.println("ZK_CONNECT or ZK_PORT must be set"); System.exit(2); }
        if (connect == null) connect = "127.0.0.1:" + port;
        CONNECT = connect.split(",")[0].split("/")[0];
        int colon = CONNECT.lastIndexOf(':');
        HOST = CONNECT.substring(0, colon);
        PORT = port != null ? Integer.parseInt(port) : Integer.parseInt(CONNECT.substring(colon + 1));
        TARGET = env("ZK_TARGET", "unknown");
        Pattern filter = args.length > 0 ? Pattern.compile(args[0]) : null;

        ZkClientTests.register();
        CuratorTests.register();
        ConfigTests.register();

        RUN_ROOT = "/java-compat-" + Long.toHexString(System.currentTimeMillis()) + "-" + (int) (Math.random() * 1000);
        System.out.println("# java compat suite against " + TARGET + " at " + CONNECT + ", root " + RUN_ROOT);
        ZooKeeper admin;
        try {
            admin = connectZk(CONNECT, 15000, null);
            admin.create(RUN_ROOT, new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        } catch (Throwable e) {
            int n = 0;
            for (Test t : TESTS) {
                if (filter != null && !filter.matcher(t.name).find()) continue;
                System.out.printf("FAIL %-44s %6d ms: not run, cannot set up %s on %s: %s%n", t.name, 0, RUN_ROOT, CONNECT, e);
                n++;
            }
            System.out.println("0 passed, " + n + " failed");
            System.out.flush();
            Runtime.getRuntime().halt(1);
            return;
        }

        int passed = 0, failed = 0;
        long suiteStart = System.nanoTime();
        // overall budget so that even a hanging server cannot keep the suite running for long
        long budgetMs = Long.parseLong(env("JAVA_SUITE_BUDGET_SEC", "240")) * 1000;
        for (Test t : TESTS) {
            if (filter != null && !filter.matcher(t.name).find()) continue;
            long left = budgetMs - (System.nanoTime() - suiteStart) / 1_000_000;
            if (left < 3000) {
                System.out.printf("FAIL %-44s %6d ms: not run, suite time budget (%d s) exhausted%n", t.name, 0, budgetMs / 1000);
                failed++;
                continue;
            }
            Test bounded = left < t.timeoutSec * 1000L ? new Test(t.name, (int) (left / 1000), t.body) : t;
            String result = runOne(admin, bounded);
            if (result == null) passed++; else failed++;
        }
        // best-effort cleanup of the run root (ACL-protected nodes are removed as super), bounded in time
        Thread cleanup = new Thread(() -> {
            try {
                admin.addAuthInfo("digest", "super:test".getBytes(StandardCharsets.UTF_8));
                ZKUtil.deleteRecursive(admin, RUN_ROOT);
            } catch (Exception e) {
                System.out.println("# cleanup of " + RUN_ROOT + " failed: " + e);
            }
            try { admin.close(2000); } catch (Exception ignored) { }
        }, "cleanup");
        cleanup.setDaemon(true);
        cleanup.start();
        cleanup.join(20000);
        System.out.printf("# total %.1f s%n", (System.nanoTime() - suiteStart) / 1e9);
        System.out.println(passed + " passed, " + failed + " failed");
        System.out.flush();
        Runtime.getRuntime().halt(failed == 0 ? 0 : 1);
    }

    static String env(String k, String dflt) { String v = System.getenv(k); return v == null || v.isEmpty() ? dflt : v; }

    static String runOne(ZooKeeper admin, Test t) {
        long start = System.nanoTime();
        Ctx ctx = new Ctx(t.name);
        AtomicReference<Throwable> error = new AtomicReference<>();
        Thread th = new Thread(() -> {
            try {
                admin.create(ctx.base, new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
                t.body.run(ctx);
            } catch (Throwable e) {
                error.set(e);
            }
        }, "test-" + t.name);
        th.setDaemon(true);
        th.start();
        String failure = null;
        try {
            th.join(t.timeoutSec * 1000L);
        } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
        if (th.isAlive()) {
            StringBuilder sb = new StringBuilder();
            for (StackTraceElement el : th.getStackTrace()) sb.append("\n      at ").append(el);
            th.interrupt();
            failure = "timed out after " + t.timeoutSec + " s; test thread was at:" + sb;
        } else if (error.get() != null) {
            Throwable e = error.get();
            failure = describe(e);
        }
        // close everything the test opened, bounded in time
        Thread closer = new Thread(ctx::closeAll, "close-" + t.name);
        closer.setDaemon(true);
        closer.start();
        try { closer.join(15000); } catch (InterruptedException ignored) { }
        if (closer.isAlive()) System.out.println("# warning: closing resources of " + t.name + " took more than 15 s");
        long ms = (System.nanoTime() - start) / 1_000_000;
        if (failure == null) System.out.printf("ok   %-44s %6d ms%n", t.name, ms);
        else System.out.printf("FAIL %-44s %6d ms: %s%n", t.name, ms, failure);
        System.out.flush();
        return failure;
    }

    static String describe(Throwable e) {
        if (e instanceof AssertionError) {
            StackTraceElement where = null;
            for (StackTraceElement el : e.getStackTrace()) {
                if (el.getClassName().startsWith("compat.") && !el.getClassName().equals("compat.Harness")
                        && !el.getClassName().startsWith("compat.Harness$")) { where = el; break; }
            }
            return e.getMessage() + (where != null ? "  [" + where.getFileName() + ":" + where.getLineNumber() + "]" : "");
        }
        StringBuilder sb = new StringBuilder(e.toString());
        int n = 0;
        for (StackTraceElement el : e.getStackTrace()) {
            if (n++ > 12) break;
            sb.append("\n      at ").append(el);
        }
        if (e.getCause() != null) sb.append("\n      caused by ").append(e.getCause());
        return sb.toString();
    }

    // ------------------------------------------------------------------ per-test context

    public static final class Ctx {
        public final String name;
        public final String base;
        private final List<AutoCloseable> resources = Collections.synchronizedList(new ArrayList<>());

        Ctx(String name) {
            this.name = name;
            this.base = RUN_ROOT + "/" + name.replaceAll("[^A-Za-z0-9_.-]", "_");
        }

        public String p(String rel) { return base + (rel.startsWith("/") ? rel : "/" + rel); }

        public <T extends AutoCloseable> T track(T r) { resources.add(r); return r; }

        void closeAll() {
            List<AutoCloseable> copy;
            synchronized (resources) { copy = new ArrayList<>(resources); }
            Collections.reverse(copy);
            for (AutoCloseable r : copy) {
                try { r.close(); } catch (Throwable ignored) { }
            }
        }

        /** A connected plain ZooKeeper client with the given default watcher (may be null). */
        public ZooKeeper zk(Watcher w) throws Exception { return zk(CONNECT, 15000, w); }
        public ZooKeeper zk() throws Exception { return zk(null); }
        public ZooKeeper zk(String connect, int timeoutMs, Watcher w) throws Exception {
            ZooKeeper z = connectZk(connect, timeoutMs, w);
            track(() -> z.close(3000));
            return z;
        }

        /** Session with the chosen id/password; waits for SyncConnected (returns null if state Expired). */
        public DropZk zkWithSession(String connect, int timeoutMs, long sid, byte[] pw, Watcher w) throws Exception {
            CountDownLatch connected = new CountDownLatch(1);
            AtomicReference<KeeperState> state = new AtomicReference<>();
            DropZk z = new DropZk(connect, timeoutMs, ev -> {
                if (ev.getType() == EventType.None && (ev.getState() == KeeperState.SyncConnected || ev.getState() == KeeperState.Expired)) {
                    state.compareAndSet(null, ev.getState());
                    connected.countDown();
                }
                if (w != null) w.process(ev);
            }, sid, pw);
            track(() -> z.close(3000));
            check(connected.await(15, TimeUnit.SECONDS), "session reattach did not complete within 15 s");
            return z;
        }

        public CuratorFramework curator() throws Exception { return curator(CONNECT, 15000); }
        public CuratorFramework curator(String connect, int sessionTimeoutMs) throws Exception {
            CuratorFramework cf = CuratorFrameworkFactory.builder()
                    .connectString(connect)
                    .sessionTimeoutMs(sessionTimeoutMs)
                    .connectionTimeoutMs(10000)
                    .retryPolicy(new ExponentialBackoffRetry(50, 10, 1000))
                    .build();
            track(cf);
            cf.start();
            check(cf.blockUntilConnected(15, TimeUnit.SECONDS), "curator client did not connect within 15 s");
            return cf;
        }

        public ExecutorService pool(int n) {
            ExecutorService ex = Executors.newFixedThreadPool(n, r -> { Thread t = new Thread(r, name + "-worker"); t.setDaemon(true); return t; });
            track(ex::shutdownNow);
            return ex;
        }

        public TcpProxy proxy() throws IOException {
            TcpProxy p = new TcpProxy(HOST, PORT);
            track(p);
            return p;
        }
    }

    /** A ZooKeeper client that can drop its TCP connection without sending closeSession. */
    public static final class DropZk extends ZooKeeper {
        public DropZk(String connect, int timeout, Watcher w) throws IOException { super(connect, timeout, w); }
        public DropZk(String connect, int timeout, Watcher w, long sid, byte[] pw) throws IOException { super(connect, timeout, w, sid, pw); }
        /** Stops the client threads and closes the socket; the server-side session stays alive. */
        public void dropWithoutClosingSession() { cnxn.disconnect(); }
    }

    static ZooKeeper connectZk(String connect, int timeoutMs, Watcher w) throws Exception {
        CountDownLatch connected = new CountDownLatch(1);
        ZooKeeper z = new ZooKeeper(connect, timeoutMs, ev -> {
            if (ev.getType() == EventType.None && ev.getState() == KeeperState.SyncConnected) connected.countDown();
            if (w != null) w.process(ev);
        });
        if (!connected.await(15, TimeUnit.SECONDS)) {
            z.close(1000);
            throw new AssertionError("could not connect to " + connect + " within 15 s");
        }
        return z;
    }

    // ------------------------------------------------------------------ watch event recording

    /** Records events; a Watcher usable for explicit watches or as default watcher. */
    public static final class Events implements Watcher {
        final LinkedBlockingQueue<WatchedEvent> q = new LinkedBlockingQueue<>();
        final boolean includeSessionEvents;
        public Events() { this(false); }
        public Events(boolean includeSessionEvents) { this.includeSessionEvents = includeSessionEvents; }
        @Override public void process(WatchedEvent e) {
            if (e.getType() == EventType.None && !includeSessionEvents) return;
            q.add(e);
        }
        public WatchedEvent next(long ms) throws InterruptedException { return q.poll(ms, TimeUnit.MILLISECONDS); }
        /** Waits for the next event and checks its type and path. */
        public WatchedEvent expect(EventType type, String path) throws InterruptedException {
            WatchedEvent e = next(5000);
            check(e != null, "expected event " + type + " " + path + " but got none within 5 s");
            check(e.getType() == type && Objects.equals(path, e.getPath()),
                    "expected event " + type + " " + path + " but got " + e.getType() + " " + e.getPath() + " (state " + e.getState() + ")");
            return e;
        }
        public WatchedEvent expectState(KeeperState st, long ms) throws InterruptedException {
            long deadline = System.currentTimeMillis() + ms;
            while (true) {
                long left = deadline - System.currentTimeMillis();
                WatchedEvent e = left > 0 ? next(left) : null;
                check(e != null, "expected session state " + st + " within " + ms + " ms");
                if (e.getType() == EventType.None && e.getState() == st) return e;
            }
        }
        /** Asserts that no event is currently queued (call after {@link #flush}). */
        public void expectNone(String what) {
            WatchedEvent e = q.poll();
            check(e == null, "unexpected event " + (e == null ? "" : e.getType() + " " + e.getPath()) + (what.isEmpty() ? "" : " (" + what + ")"));
        }
        public List<String> drain() {
            List<WatchedEvent> l = new ArrayList<>();
            q.drainTo(l);
            List<String> out = new ArrayList<>();
            for (WatchedEvent e : l) out.add(e.getType() + " " + e.getPath());
            return out;
        }
        public int size() { return q.size(); }
    }

    /**
     * Round trip through the client's event thread: when this returns, every watch event the client had
     * received before the reply to this request has been delivered to its watchers.
     */
    public static void flush(ZooKeeper zk) throws InterruptedException {
        CountDownLatch l = new CountDownLatch(1);
        zk.exists("/", false, (rc, path, ctx, stat) -> l.countDown(), null);
        check(l.await(10, TimeUnit.SECONDS), "flush round trip did not complete within 10 s");
    }

    // ------------------------------------------------------------------ assertions

    public static void check(boolean cond, String msg) { if (!cond) throw new AssertionError(msg); }

    public static void eq(Object expected, Object actual, String what) {
        boolean same = expected instanceof byte[] && actual instanceof byte[]
                ? Arrays.equals((byte[]) expected, (byte[]) actual) : Objects.equals(expected, actual);
        if (!same) throw new AssertionError(what + ": expected <" + show(expected) + "> but was <" + show(actual) + ">");
    }

    static String show(Object o) {
        if (o instanceof byte[]) {
            byte[] b = (byte[]) o;
            return b.length > 64 ? "byte[" + b.length + "]" : "bytes(" + new String(b, StandardCharsets.UTF_8) + ")";
        }
        return String.valueOf(o).trim();
    }

    /** Runs r and asserts that it throws a KeeperException with the given code. */
    public static KeeperException expectKeeper(KeeperException.Code code, ThrowingRunnable r) throws Exception {
        try {
            r.run();
        } catch (KeeperException e) {
            if (e.code() != code) throw new AssertionError("expected KeeperException " + code + " but got " + e.code() + " (" + e.getMessage() + ")");
            return e;
        }
        throw new AssertionError("expected KeeperException " + code + " but the call succeeded");
    }

    /** Polls cond every 20 ms until true or the timeout expires (then fails with msg). */
    public static void waitFor(long ms, String msg, BooleanSupplier cond) throws InterruptedException {
        long deadline = System.currentTimeMillis() + ms;
        while (!cond.getAsBoolean()) {
            if (System.currentTimeMillis() > deadline) throw new AssertionError("timed out after " + ms + " ms waiting for: " + msg);
            Thread.sleep(20);
        }
    }

    public interface ThrowingBool { boolean get() throws Exception; }
    public static BooleanSupplier sup(ThrowingBool b) {
        return () -> { try { return b.get(); } catch (RuntimeException e) { throw e; } catch (Exception e) { throw new RuntimeException(e); } };
    }

    public static byte[] b(String s) { return s.getBytes(StandardCharsets.UTF_8); }
    public static String s(byte[] b) { return b == null ? null : new String(b, StandardCharsets.UTF_8); }

    public static List<String> sorted(List<String> l) { List<String> c = new ArrayList<>(l); Collections.sort(c); return c; }

    // ------------------------------------------------------------------ four letter words

    public static String fourLetter(String cmd) throws IOException {
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress(HOST, PORT), 5000);
            s.setSoTimeout(5000);
            s.getOutputStream().write(cmd.getBytes(StandardCharsets.US_ASCII));
            s.getOutputStream().flush();
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            InputStream in = s.getInputStream();
            byte[] buf = new byte[8192];
            int n;
            while ((n = in.read(buf)) > 0) out.write(buf, 0, n);
            return out.toString(StandardCharsets.UTF_8);
        }
    }

    /** Parses `wchp`: watched path -> set of session ids (data-watch table of the server). */
    public static Map<String, Set<Long>> wchp() throws IOException {
        Map<String, Set<Long>> m = new LinkedHashMap<>();
        String cur = null;
        for (String line : fourLetter("wchp").split("\n")) {
            if (line.isEmpty()) continue;
            if (line.startsWith("\t")) {
                String t = line.trim();
                if (cur != null && t.startsWith("0x")) m.get(cur).add(Long.parseUnsignedLong(t.substring(2), 16));
            } else {
                cur = line;
                m.put(cur, new HashSet<>());
            }
        }
        return m;
    }

    /** wchp restricted to paths under prefix. */
    public static Map<String, Set<Long>> wchpUnder(String prefix) throws IOException {
        Map<String, Set<Long>> m = new LinkedHashMap<>();
        for (Map.Entry<String, Set<Long>> e : wchp().entrySet())
            if (e.getKey().equals(prefix) || e.getKey().startsWith(prefix + "/")) m.put(e.getKey(), e.getValue());
        return m;
    }

    // ------------------------------------------------------------------ TCP proxy (to cut a client's connection)

    /** Forwards 127.0.0.1:&lt;ephemeral&gt; to the server; can cut all connections and refuse new ones. */
    public static final class TcpProxy implements AutoCloseable {
        final ServerSocket ss;
        final String host; final int port;
        final Set<Socket> open = Collections.synchronizedSet(new HashSet<>());
        volatile boolean refusing;
        volatile boolean closed;

        TcpProxy(String host, int port) throws IOException {
            this.host = host; this.port = port;
            ss = new ServerSocket(0, 50, InetAddress.getByName("127.0.0.1"));
            Thread t = new Thread(this::acceptLoop, "proxy-accept");
            t.setDaemon(true);
            t.start();
        }

        public String connectString() { return "127.0.0.1:" + ss.getLocalPort(); }

        void acceptLoop() {
            while (!closed) {
                try {
                    Socket c = ss.accept();
                    if (refusing) { c.close(); continue; }
                    Socket up = new Socket();
                    up.connect(new InetSocketAddress(host, port), 5000);
                    open.add(c); open.add(up);
                    pump(c, up); pump(up, c);
                } catch (IOException e) {
                    if (closed) return;
                }
            }
        }

        void pump(Socket from, Socket to) {
            Thread t = new Thread(() -> {
                byte[] buf = new byte[16384];
                try {
                    InputStream in = from.getInputStream();
                    OutputStream out = to.getOutputStream();
                    int n;
                    while ((n = in.read(buf)) > 0) { out.write(buf, 0, n); out.flush(); }
                } catch (IOException ignored) {
                } finally {
                    try { from.close(); } catch (IOException ignored) { }
                    try { to.close(); } catch (IOException ignored) { }
                    open.remove(from); open.remove(to);
                }
            }, "proxy-pump");
            t.setDaemon(true);
            t.start();
        }

        /** Closes every forwarded connection and refuses new ones until {@link #restore()}. */
        public void cut() {
            refusing = true;
            List<Socket> copy;
            synchronized (open) { copy = new ArrayList<>(open); }
            for (Socket s : copy) { try { s.close(); } catch (IOException ignored) { } }
        }

        public void restore() { refusing = false; }

        @Override public void close() {
            closed = true;
            cut();
            try { ss.close(); } catch (IOException ignored) { }
        }
    }
}
