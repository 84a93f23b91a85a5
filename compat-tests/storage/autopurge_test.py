"""autopurge.snapRetainCount / autopurge.purgeInterval against either server (ZK_TARGET).

A server with a small snapCount takes many snapshots under writes; restarted with
autopurge.purgeInterval=1 and snapRetainCount=3 it purges at start-up (ZooKeeper's
DatadirCleanupManager runs its first purge with delay 0): of the snapshots that existed, exactly the
newest 3 remain (snapshots written after the restart are new), the log no longer holds txns from
before the oldest snapshot kept, and after one more restart the whole tree is still there.
Also: the AdminServer's last_snapshot reports the newest snapshot file (zxid, mtime in seconds).

Layouts differ: ZooKeeper keeps version-2/snapshot.<zxid> and log.<zxid> files (a purge deletes log
files wholly before the oldest snapshot kept, keeping the one that covers it); ferrokeeper keeps
ferrokeeper/snapshots/snapshot.<zxid> and a RocksDB log, inspected with `ferrokeeper log-summary`.
ZooKeeper runs as zkServer.sh runs it (QuorumPeerMain): only that main class starts the purge task.
"""
import json
import os
import subprocess
import sys
import time
import urllib.request

from common import (ADMIN_PORT, TARGET, check, client, close, finish, snapshot_dir, start, stop, write_config,
                    zxid_files)

WORK = os.path.join(os.environ["ZK_WORKDIR"], "autopurge")
DATA = os.path.join(WORK, "data")
ENV = {"JVMFLAGS": "-Dzookeeper.snapCount=10", "COMPAT_ZK_MAIN": "org.apache.zookeeper.server.quorum.QuorumPeerMain"}
NODES = 150
RETAIN = 3


def snapshots():
    return zxid_files(snapshot_dir(WORK), "snapshot")


def log_state():
    """ZooKeeper: {zxid: path} of log files. ferrokeeper: the log-summary fields (server stopped)."""
    if TARGET == "zookeeper":
        return zxid_files(os.path.join(DATA, "version-2"), "log")
    out = subprocess.run([os.environ["FERROKEEPER_BIN"], "log-summary", "--data-log-dir", DATA],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"log-summary failed: {out.stderr}")
    fields = dict(kv.split("=", 1) for kv in out.stdout.split())
    return {k: (None if v == "none" else int(v, 0)) for k, v in fields.items()}


def last_snapshot():
    with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN_PORT}/commands/last_snapshot", timeout=10) as r:
        return json.loads(r.read())


def newest_snapshot_reported():
    """Waits until last_snapshot names the newest snapshot file; returns (reported, file zxid, file mtime)."""
    deadline = time.time() + 20
    while True:
        snaps = snapshots()
        reported = last_snapshot()
        if snaps:
            zxid = max(snaps)
            mtime = int(os.path.getmtime(snaps[zxid]))
            matches = reported["zxid"] == format(zxid, "x") and abs(reported["timestamp"] - mtime) <= 1
            if matches or time.time() > deadline:
                return reported, zxid, mtime
        elif time.time() > deadline:
            return reported, None, None
        time.sleep(0.2)


def run():
    subprocess.run(["rm", "-rf", WORK])
    os.makedirs(WORK)
    write_config(WORK)
    pid = start(WORK, ENV)
    zk = client()
    zk.ensure_path("/ap")
    expected = {}
    for i in range(NODES):
        path = zk.create(f"/ap/n{i}", b"%d" % i)
        expected[path] = b"%d" % i
    for i in range(0, NODES, 3):
        zk.set(f"/ap/n{i}", b"set-%d" % i)
        expected[f"/ap/n{i}"] = b"set-%d" % i
    reported, zxid, mtime = newest_snapshot_reported()
    check("last_snapshot reports the newest snapshot file (zxid in hex, mtime in seconds)",
          zxid is not None and zxid > 0 and reported["zxid"] == format(zxid, "x") and abs(reported["timestamp"] - mtime) <= 1,
          (reported, zxid, mtime))
    close(zk)
    stop(pid)

    before = snapshots()
    logs_before = log_state()
    print(f"# before the purge: {len(before)} snapshots {sorted(hex(z) for z in before)}; log {summary(logs_before)}", flush=True)
    check(f"snapCount=10 produced several snapshots ({len(before)})", len(before) >= RETAIN + 3, sorted(before))
    if TARGET == "ferrokeeper":
        check("before the purge the log starts at the first txn", logs_before["first_zxid"] == 1, logs_before)

    # Restart with autopurge: the purge runs at start-up.
    with open(os.path.join(WORK, "zoo.cfg"), "a") as f:
        f.write(f"autopurge.purgeInterval=1\nautopurge.snapRetainCount={RETAIN}\n")
    pid = start(WORK, ENV)
    newest = sorted(before, reverse=True)[:RETAIN]
    deadline = time.time() + 30
    while time.time() < deadline and set(before) & set(snapshots()) != set(newest):
        time.sleep(0.2)
    after = snapshots()
    kept = set(before) & set(after)
    check(f"of the {len(before)} old snapshots exactly the newest {RETAIN} remain",
          kept == set(newest), (sorted(hex(z) for z in kept), sorted(hex(z) for z in newest)))
    check("snapshots written since the restart are newer", all(z >= max(before) for z in set(after) - set(before)),
          sorted(hex(z) for z in set(after) - set(before)))
    stop(pid)

    oldest_kept = min(newest)
    logs_after = log_state()
    print(f"# after the purge: log {summary(logs_after)}; oldest snapshot kept {oldest_kept:#x}", flush=True)
    if TARGET == "zookeeper":
        # The log file that covers the oldest snapshot kept is the newest one starting at or before it.
        covering = max(z for z in logs_before if z <= oldest_kept)
        wanted = {z for z in logs_before if z >= covering}
        check("log files wholly before the oldest snapshot kept are deleted, the rest kept",
              set(logs_before) & set(logs_after) == wanted,
              (sorted(hex(z) for z in logs_after), sorted(hex(z) for z in wanted)))
        check("the purge deleted some log files", len(set(logs_before) - set(logs_after)) > 0, sorted(logs_after))
    else:
        check("the log was purged through the oldest snapshot kept", logs_after["purged_through"] == oldest_kept, logs_after)
        check("no txn at or before the oldest snapshot kept is left in the log",
              logs_after["first_zxid"] is not None and oldest_kept < logs_after["first_zxid"] <= oldest_kept + 1, logs_after)
        check("the newest txns are still in the log", logs_after["last_zxid"] == logs_before["last_zxid"], logs_after)

    # Another restart: the tree comes back whole from what was kept.
    pid = start(WORK, ENV)
    zk = client()
    got = {f"/ap/{c}": zk.get(f"/ap/{c}")[0] for c in zk.get_children("/ap")}
    check(f"after another restart all {len(expected)} nodes and their values are there", got == expected,
          (len(got), sorted(set(expected) ^ set(got))[:5]))
    close(zk)
    stop(pid)


def summary(state):
    if TARGET == "zookeeper":
        return f"{len(state)} files {sorted(hex(z) for z in state)}"
    return state


if __name__ == "__main__":
    print(f"# autopurge test against {TARGET}", flush=True)
    try:
        run()
    except SystemExit as e:
        check("the test ran to the end", False, e)
    sys.exit(finish())
