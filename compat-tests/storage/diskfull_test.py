"""A full disk under dataDir and dataLogDir, end to end, against either server (ZK_TARGET).

The data dir is a small tmpfs mounted for this test (root only: without root, or if the mount
fails, the test fails). A filler file takes most of its space; clients write 100 KiB nodes until
the disk refuses one; then the filler is deleted, so space returns without touching the server.

Both servers: no write that was acknowledged is missing once space is back and the server has
restarted (SIGKILL, so only what was synced counts).
ferrokeeper also: the refused writes get SystemError (-1), reads keep working for the writer and
for another client, the server logs the cause once, refused writes are never applied, and writes
succeed again after space returns, without a restart.
The real ZooKeeper 3.8 stops when its log cannot be written (SyncRequestProcessor dies, the server
shuts down and the JVM exits); the test checks that too, as README documents it as a difference.
"""
import os
import subprocess
import sys
import time

from kazoo.exceptions import KazooException, SystemZookeeperError
from kazoo.handlers.threading import KazooTimeoutError

import signal

from kazoo.client import KazooClient

from common import PORT, TARGET, alive, check, client, close, finish, start, stop, write_config

WORK = os.path.join(os.environ["ZK_WORKDIR"], "diskfull")
MOUNT = os.path.join(WORK, "data")
TMPFS_BYTES = 48 << 20
# Space left next to the filler: room for some acknowledged writes, then the disk is full.
HEADROOM_BYTES = 3 << 20
VALUE = b"v" * (100 << 10)
REFUSED_LINE = "refusing writes until the transaction log accepts them again"


def mounted():
    with open("/proc/mounts") as f:
        return any(line.split()[1] == MOUNT for line in f)


def free_bytes():
    st = os.statvfs(MOUNT)
    return st.f_bavail * st.f_frsize


def server_log():
    with open(os.path.join(WORK, "server.log"), errors="replace") as f:
        return f.read()


def write(zk, path, value, timeout=15):
    """Creates `path`; returns None if acknowledged, else the exception."""
    try:
        zk.create_async(path, value).get(timeout=timeout)
        return None
    except (KazooException, KazooTimeoutError, OSError) as e:
        return e


def run():
    if os.geteuid() != 0:
        check("running as root (needed to mount the small filesystem)", False, f"euid {os.geteuid()}")
        return
    subprocess.run(["rm", "-rf", WORK])
    os.makedirs(WORK)
    write_config(WORK)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", MOUNT], capture_output=True, text=True)
    if not check("a small tmpfs is mounted under dataDir", r.returncode == 0 and mounted(), r.stderr):
        return
    pid = None
    try:
        pid = start(WORK)
        scenario(pid)
    finally:
        # The server must be gone before the filesystem can be unmounted.
        if pid is not None:
            stop(pid, signal.SIGKILL)
        for proc in list_servers_on_mount():
            stop(proc, signal.SIGKILL)
        r = subprocess.run(["umount", MOUNT], capture_output=True, text=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", MOUNT])
        check("the tmpfs is unmounted", not mounted(), r.stderr)


def list_servers_on_mount():
    """Pids of processes started from this test's work dir still running (a restarted server)."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if (WORK + "/zoo.cfg").encode() in f.read():
                        pids.append(int(d))
            except OSError:
                pass
    return pids


def scenario(pid):
    writer = client()
    reader = client()
    writer.ensure_path("/df")
    acked = {}
    for i in range(5):
        path = f"/df/before-{i}"
        if write(writer, path, VALUE) is None:
            acked[path] = VALUE
    check("writes succeed while there is space", len(acked) == 5, len(acked))

    # Fill the disk: a filler file leaves HEADROOM_BYTES free.
    filler = os.path.join(MOUNT, "filler")
    size = free_bytes() - HEADROOM_BYTES
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, size)
    print(f"# filler of {size >> 20} MiB, {free_bytes() >> 10} KiB left", flush=True)

    first_error = None
    for i in range(200):
        path = f"/df/fill-{i}"
        e = write(writer, path, VALUE)
        if e is None:
            acked[path] = VALUE
        else:
            first_error = (path, e)
            break
    check("the full disk makes a write fail", first_error is not None, f"{len(acked)} writes acknowledged")
    if first_error is None:
        return
    print(f"# first failed write {first_error[0]}: {type(first_error[1]).__name__} {first_error[1]!r}", flush=True)
    refused = [first_error[0]]

    if TARGET == "zookeeper":
        # README's documented difference: ZooKeeper's SyncRequestProcessor dies on the IOException
        # and the server shuts down (ZooKeeperServerMain then exits the JVM).
        deadline = time.time() + 20
        while alive(pid) and time.time() < deadline:
            time.sleep(0.2)
        check("ZooKeeper stops when its log cannot be written", not alive(pid))
        log = server_log()
        check("ZooKeeper logs the cause", "No space left on device" in log and "Severe unrecoverable error" in log)
        os.remove(filler)
    else:
        check("ferrokeeper answers the refused write with SystemError (-1)",
              isinstance(first_error[1], SystemZookeeperError), repr(first_error[1]))
        errors = []
        for i in range(3):
            path = f"/df/full-{i}"
            errors.append(write(writer, path, VALUE))
            refused.append(path)
        check("every write is refused with SystemError while the disk is full",
              all(isinstance(e, SystemZookeeperError) for e in errors), errors)
        check("the writing client still reads", writer.get("/df/before-0")[0] == VALUE)
        children = set(reader.get_children("/df"))
        check("another client still reads, and sees every acknowledged write",
              {p.rsplit("/", 1)[1] for p in acked} <= children, sorted(children)[:5])
        check("refused writes are not applied", not ({p.rsplit("/", 1)[1] for p in refused} & children))
        # A new session is a logged txn too: it cannot be created while the disk refuses writes.
        newcomer = KazooClient(hosts=f"127.0.0.1:{PORT}", timeout=10.0)
        try:
            newcomer.start(timeout=5)
            session_refused = False
        except KazooTimeoutError:
            session_refused = True
        finally:
            close(newcomer)
        check("no new session can be created while the disk is full", session_refused)
        log = server_log()
        lines = [l for l in log.splitlines() if REFUSED_LINE in l]
        check("one log line says why writes are refused", len(lines) == 1, lines)
        check("the log line gives the cause", bool(lines) and "No space left on device" in lines[0], lines)
        check("the server kept running", alive(pid))

        os.remove(filler)
        print(f"# filler removed, {free_bytes() >> 20} MiB free", flush=True)
        recovered = None
        deadline = time.time() + 30
        attempt = 0
        while time.time() < deadline:
            path = f"/df/after-{attempt}"
            attempt += 1
            e = write(writer, path, VALUE)
            if e is None:
                acked[path] = VALUE
                recovered = path
                break
            refused.append(path)
            if not isinstance(e, SystemZookeeperError):
                break
            time.sleep(0.5)
        check("writes succeed again once space returns, without a restart", recovered is not None, f"{attempt} attempts")
        more = [write(writer, f"/df/later-{i}", VALUE) for i in range(5)]
        for i, e in enumerate(more):
            if e is None:
                acked[f"/df/later-{i}"] = VALUE
        check("and keep succeeding", all(e is None for e in more), more)
        check("the log says writes are accepted again", "the transaction log accepts writes again" in server_log())
        fresh = client()
        check("new sessions are accepted again", fresh.connected)
        close(fresh)
        children = set(reader.get_children("/df"))
        check("refused writes stay unapplied after recovery", not ({p.rsplit("/", 1)[1] for p in refused} & children),
              sorted({p.rsplit("/", 1)[1] for p in refused} & children))

    close(writer)
    close(reader)
    # Restart: only what is on disk counts.
    stop(pid, signal.SIGKILL)
    for other in list_servers_on_mount():
        stop(other, signal.SIGKILL)
    pid = start(WORK)
    zk = client()
    missing = [p for p in acked if zk.exists(p) is None]
    wrong = [p for p in acked if p not in missing and zk.get(p)[0] != acked[p]]
    check(f"after space returned and a restart, all {len(acked)} acknowledged writes are there",
          not missing and not wrong, (missing[:5], wrong[:5]))
    if TARGET == "ferrokeeper":
        back = [p for p in refused if zk.exists(p) is not None]
        check(f"none of the {len(refused)} refused writes came back after the restart", not back, back[:5])
        check("the restarted server takes writes", write(zk, "/df/after-restart", b"x") is None)
    close(zk)
    stop(pid, signal.SIGKILL)


if __name__ == "__main__":
    print(f"# disk-full test against {TARGET}", flush=True)
    try:
        run()
    except SystemExit as e:
        check("the test ran to the end", False, e)
    sys.exit(finish())
