"""Helpers shared by the storage suite's tests: checks, servers of the suite's own on ZK_PORT+300."""
import logging
import os
import signal
import subprocess
import time

from kazoo.client import KazooClient

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.path.join(HERE, "..", "lib", "servers.sh")
TARGET = os.environ["ZK_TARGET"]
# Clear of the suite server's own ports (client, admin +100, metrics +200).
PORT = int(os.environ["ZK_PORT"]) + 300
ADMIN_PORT = PORT + 100
results = {"passed": 0, "failed": 0}
# kazoo logs every dropped connection; the tests stop servers under their clients on purpose.
logging.basicConfig(level=logging.CRITICAL)


def check(name, ok, detail=""):
    results["passed" if ok else "failed"] += 1
    print(("ok   - " if ok else "FAIL - ") + name + ("" if ok else ": " + str(detail)), flush=True)
    return ok


def finish():
    print(f"{results['passed']} passed, {results['failed']} failed", flush=True)
    return 0 if results["failed"] == 0 and results["passed"] > 0 else 1


def bash(cmd, env=None):
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run(["bash", "-c", f"source {LIB}; {cmd}"], capture_output=True, text=True, env=full)


def write_config(work, extra=""):
    """zoo.cfg as every compat server gets it (lib/servers.sh), plus `extra` lines."""
    r = bash(f"write_zoo_cfg {PORT} {work} {TARGET}")
    if r.returncode != 0:
        raise SystemExit(f"cannot write zoo.cfg: {r.stderr}")
    if extra:
        with open(os.path.join(work, "zoo.cfg"), "a") as f:
            f.write(extra)


def start(work, env=None):
    """Starts the server on `work`'s existing zoo.cfg and data. Returns the pid."""
    r = bash(f"restart_server {TARGET} {PORT} {work}", env)
    if r.returncode != 0:
        print(r.stdout, r.stderr, flush=True)
        raise SystemExit(f"could not start {TARGET}")
    return int(r.stdout.strip().splitlines()[-1])


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not reaped by its parent shell) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def stop(pid, sig=signal.SIGTERM):
    """Stops the server with `sig` (SIGKILL after 20 s) and waits until it is gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.time() + 20
    while alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.05)


def client(timeout=10.0):
    zk = KazooClient(hosts=f"127.0.0.1:{PORT}", timeout=timeout)
    zk.start(timeout=30)
    return zk


def close(zk):
    try:
        zk.stop()
        zk.close()
    except Exception:  # noqa: BLE001 - the server may be gone; nothing to close then
        pass


def snapshot_dir(work):
    data = os.path.join(work, "data")
    return os.path.join(data, "version-2") if TARGET == "zookeeper" else os.path.join(data, "ferrokeeper", "snapshots")


def zxid_files(directory, prefix):
    """{zxid: path} of `prefix.<hex zxid>` files (no temporary files)."""
    found = {}
    if not os.path.isdir(directory):
        return found
    for name in os.listdir(directory):
        if name.startswith(prefix + ".") and not name.endswith(".tmp"):
            try:
                found[int(name[len(prefix) + 1:], 16)] = os.path.join(directory, name)
            except ValueError:
                pass
    return found
