"""A clean stop (SIGTERM) and restart: every write is back, on both servers.

Writes well below snapCount, so no periodic snapshot covers them, then stops the server with
SIGTERM and starts it again on the same data. Both servers must bring back every node and its data.

Where they differ (README, deliberate differences): ZooKeeper's newest snapshot stays older than the
last write, so its next start replays the log; ferrokeeper snapshots the tree as it stops, so its
newest snapshot holds the last write and the next start replays nothing (its log line
`txns_replayed=0`).
"""
import os
import subprocess

from common import TARGET, check, client, close, finish, snapshot_dir, start, stop, write_config, zxid_files

WORK = os.path.join(os.environ["ZK_WORKDIR"], "clean-stop")
NODES = 300


def run():
    subprocess.run(["rm", "-rf", WORK])
    os.makedirs(WORK)
    write_config(WORK)
    pid = start(WORK)
    zk = client()
    zk.ensure_path("/cs")
    expected = {}
    for i in range(NODES):
        path = f"/cs/n{i}"
        zk.create(path, b"%d" % i)
        expected[path] = b"%d" % i
    for i in range(0, NODES, 4):
        zk.set(f"/cs/n{i}", b"set-%d" % i)
        expected[f"/cs/n{i}"] = b"set-%d" % i
    last_zxid = zk.exists(f"/cs/n{NODES - 4}").mzxid
    close(zk)
    stop(pid)

    newest = max(zxid_files(snapshot_dir(WORK), "snapshot"), default=None)
    if TARGET == "ferrokeeper":
        check("the stop wrote a snapshot holding the last write", newest is not None and newest >= last_zxid,
              (newest, last_zxid))
    else:
        check("ZooKeeper's newest snapshot is older than the last write (its start replays the log)",
              newest is not None and newest < last_zxid, (newest, last_zxid))

    log_before = os.path.getsize(os.path.join(WORK, "server.log"))
    pid = start(WORK)
    zk = client()
    found = {path: zk.get(path)[0] for path in expected}
    check(f"all {NODES} nodes and their data are back after the restart", found == expected,
          [p for p in expected if found.get(p) != expected[p]][:5])
    close(zk)
    stop(pid)
    if TARGET == "ferrokeeper":
        with open(os.path.join(WORK, "server.log")) as f:
            f.seek(log_before)
            restart_log = f.read()
        check("the restart replayed no txn", "txns_replayed=0 " in restart_log,
              [line for line in restart_log.splitlines() if "data restored" in line])


if __name__ == "__main__":
    run()
    raise SystemExit(finish())
