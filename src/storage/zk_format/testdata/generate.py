#!/usr/bin/env python3
"""Generates the ZooKeeper data-dir fixture used by the zk_format tests, with the real server.

Starts the Debian Apache ZooKeeper 3.8.0 (`ZooKeeperServerMain`) on a fresh data dir and a separate
data-log dir, with a small snapCount so snapshots are taken mid-way and the log goes on past them,
and a small preAllocSize so log files stay small. Drives it with kazoo through every txn type the
importer must replay, dumps the final state the server reports (every node's data, Stat and ACL,
the sessions left open, the last zxid) into expected.txt, stops the server with SIGTERM while a
session is still open, and copies version-2/ of both dirs into the fixture directory, cutting the
zero padding off the end of each log file (a log entry ends with 0x42, so trailing zeros are never
part of an entry; the 16-byte file header is always kept).

Usage: generate.py OUT_DIR [PORT]     (PORT defaults to 24101; loopback only)
"""
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, BadVersionError, NoNodeError
from kazoo.protocol.serialization import int_struct, long_struct, stat_struct, read_string, write_buffer, write_string
from kazoo.protocol.states import ZnodeStat
from kazoo.security import ACL, Id, Permissions, make_digest_acl, OPEN_ACL_UNSAFE

ZK_CP = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"


def _acl_bytes(acl):
    b = bytearray(int_struct.pack(len(acl)))
    for a in acl:
        b += int_struct.pack(a.perms) + write_string(a.id.scheme) + write_string(a.id.id)
    return b


class CreateTtl:
    """createTTL (opcode 21): kazoo 2.11 has no TTL support."""
    type = 21

    def __init__(self, path, data, acl, flags, ttl):
        self.path, self.data, self.acl, self.flags, self.ttl = path, data, acl, flags, ttl

    def serialize(self):
        return (write_string(self.path) + write_buffer(self.data) + _acl_bytes(self.acl)
                + int_struct.pack(self.flags) + long_struct.pack(self.ttl))

    @classmethod
    def deserialize(cls, buf, offset):
        path, offset = read_string(buf, offset)
        return path, ZnodeStat._make(stat_struct.unpack_from(buf, offset))


class CreateContainer(CreateTtl):
    """createContainer (opcode 19, flags 4)."""
    type = 19

    def __init__(self, path, data, acl):
        super().__init__(path, data, acl, 4, None)

    def serialize(self):
        return write_string(self.path) + write_buffer(self.data) + _acl_bytes(self.acl) + int_struct.pack(self.flags)


def call(client, request):
    result = client.handler.async_result()
    client._call(request, result)
    return result.get(timeout=10)


def four_letter(port, cmd):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(cmd.encode())
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out.decode()
            out += chunk


def dump_tree(client):
    nodes = {}
    stack = ["/"]
    while stack:
        path = stack.pop()
        data, stat = client.get(path)
        acls, _ = client.get_acls(path)
        nodes[path] = {
            "data_hex": None if data is None else data.hex(),
            "stat": dict(zip(ZnodeStat._fields, stat)),
            "acl": [[a.perms, a.id.scheme, a.id.id] for a in acls],
        }
        for child in client.get_children(path):
            stack.append(("" if path == "/" else path) + "/" + child)
    return nodes


def workload(port, expected_notes):
    hosts = f"127.0.0.1:{port}"
    a = KazooClient(hosts=hosts, timeout=30)
    a.start()
    a.add_auth("digest", "alice:secret")

    # Plenty of plain nodes, so that snapshots are taken mid-way.
    a.create("/app", b"application root")
    a.create("/app/cfg", b'{"k": 1}')
    a.create("/bulk")
    for i in range(40):
        a.create(f"/bulk/n{i:03}", bytes([i]) * (i % 7))
    a.create("/deep/a/b/c/d/e/f", b"deep", makepath=True)
    a.create("/bin", bytes(range(256)))
    a.create("/\u00fcn\u00efc\u00f6de", "caf\u00e9".encode())
    a.create("/empty", b"")
    a.create("/app/create2", b"via create2", include_data=True)  # logged as type 15

    # Sequential nodes.
    a.create("/seq")
    for _ in range(5):
        a.create("/seq/item-", b"s", sequence=True)

    # ACLs: digest, ip, world read-only, setACL.
    digest_acl = make_digest_acl("alice", "secret", all=True)
    a.create("/secure", b"top secret", acl=[digest_acl])
    a.create("/secure/child", b"c", acl=[digest_acl, ACL(Permissions.READ, Id("world", "anyone"))])
    a.create("/iponly", b"ip", acl=[ACL(Permissions.ALL, Id("ip", "127.0.0.1")),
                                  ACL(Permissions.READ, Id("ip", "10.0.0.0/8"))])
    a.create("/readonly", b"ro", acl=[ACL(Permissions.READ, Id("world", "anyone"))])
    a.set_acls("/app/cfg", [digest_acl, ACL(Permissions.READ, Id("world", "anyone"))])
    a.set_acls("/app/cfg", [ACL(Permissions.READ | Permissions.WRITE, Id("world", "anyone"))])

    # setData, several versions; deletes (pzxid moves, cversion does not).
    for i in range(4):
        a.set("/app", f"version {i}".encode())
    for i in range(0, 40, 3):
        a.delete(f"/bulk/n{i:03}")

    # Containers: one kept alive by a child, one emptied so the container manager deletes it
    # (deleteContainer txn), TTL nodes: one long-lived, one that expires.
    call(a, CreateContainer("/cont", b"container", list(OPEN_ACL_UNSAFE)))
    a.create("/cont/child", b"keeps it")
    call(a, CreateContainer("/cont2", b"", list(OPEN_ACL_UNSAFE)))
    a.create("/cont2/x")
    a.delete("/cont2/x")
    call(a, CreateTtl("/ttl-long", b"lives", list(OPEN_ACL_UNSAFE), 5, 3_600_000))
    call(a, CreateTtl("/ttl-seq-", b"seq ttl", list(OPEN_ACL_UNSAFE), 6, 3_600_000))
    call(a, CreateTtl("/ttl-short", b"dies", list(OPEN_ACL_UNSAFE), 5, 1))
    deadline = time.time() + 15
    while (a.exists("/cont2") or a.exists("/ttl-short")) and time.time() < deadline:
        time.sleep(0.2)
    expected_notes.append("container /cont2 and TTL /ttl-short deleted by the container manager")

    # Multi: successful, then failed (check with a wrong version) -> error txn.
    a.create("/multi")
    t = a.transaction()
    t.create("/multi/a", b"ma")
    t.create("/multi/b", b"mb")
    t.set_data("/app", b"set in multi")
    t.delete("/bulk/n001")
    t.check("/multi", 0)
    results = t.commit()
    assert not any(isinstance(r, Exception) for r in results), results
    t = a.transaction()
    t.create("/multi/c", b"never")
    t.check("/multi", 99)
    results = t.commit()
    assert any(isinstance(r, Exception) for r in results), results

    # Failed single writes (error txns: NodeExists, BadVersion, NoNode).
    for fn in (lambda: a.create("/app"), lambda: a.set("/app", b"x", version=42),
               lambda: a.delete("/nope/nope")):
        try:
            fn()
        except (NodeExistsError, BadVersionError, NoNodeError):
            pass

    # A session that creates ephemerals and closes (closeSession with paths).
    c = KazooClient(hosts=hosts, timeout=10)
    c.start()
    c.create("/app/eph-closed", b"gone soon", ephemeral=True)
    c.create("/seq/eph-", b"", ephemeral=True, sequence=True)
    c.stop()
    c.close()

    # More bulk writes so the log runs past the latest snapshot.
    for i in range(40, 60):
        a.create(f"/bulk/n{i:03}", b"late")
    for i in range(40, 50):
        a.set(f"/bulk/n{i:03}", b"late v1")

    # A session left open: its ephemerals must survive the import, its session too.
    b = KazooClient(hosts=hosts, timeout=20)
    b.start()
    b.create("/app/eph-open", b"owned by b", ephemeral=True)
    b.create("/seq/eph-", b"ephemeral seq", ephemeral=True, sequence=True)
    a.set("/app", b"final")
    return a, b


def write_expected(path, expected):
    """A line format the Rust tests read without a JSON crate:
    `last_zxid <n>`, `session <id> <timeout_ms>`, and per node, tab-separated:
    `node <path> <data hex, or - for null> <Stat fields in wire order> <ACLs as perms/scheme/id, ' '-joined>`."""
    with open(path, "w") as f:
        f.write("# Generated by generate.py from the real ZooKeeper 3.8.0; see README.md.\n")
        for note in expected["notes"]:
            f.write(f"# {note}\n")
        f.write(f"last_zxid {expected['last_zxid']}\n")
        for sid, timeout in sorted(expected["open_sessions"].items()):
            f.write(f"session {sid} {timeout}\n")
        for p in sorted(expected["nodes"]):
            n = expected["nodes"][p]
            data = "-" if n["data_hex"] is None else n["data_hex"]
            stat = " ".join(str(n["stat"][k]) for k in ZnodeStat._fields)
            acl = " ".join(f"{perms}/{scheme}/{ident}" for perms, scheme, ident in n["acl"])
            f.write(f"node\t{p}\t{data}\t{stat}\t{acl}\n")


def main():
    out_dir = os.path.abspath(sys.argv[1])
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 24101
    work = tempfile.mkdtemp(prefix="zkfiles-gen-")
    data_dir, log_dir = f"{work}/data", f"{work}/log"
    os.makedirs(data_dir)
    os.makedirs(log_dir)
    with open(f"{work}/zoo.cfg", "w") as f:
        f.write(f"tickTime=500\ndataDir={data_dir}\ndataLogDir={log_dir}\nclientPort={port}\n"
                "clientPortAddress=127.0.0.1\nmaxSessionTimeout=60000\n4lw.commands.whitelist=*\n"
                "admin.enableServer=false\nextendedTypesEnabled=true\n")
    server_log = open(f"{work}/server.log", "w")
    server = subprocess.Popen(
        ["java", "-Xmx256m", "-Dzookeeper.extendedTypesEnabled=true", "-Dznode.container.checkIntervalMs=500",
         "-Dzookeeper.snapCount=40", "-Dzookeeper.preAllocSize=64", "-cp", ZK_CP,
         "org.apache.zookeeper.server.ZooKeeperServerMain", f"{work}/zoo.cfg"],
        stdout=server_log, stderr=subprocess.STDOUT)
    try:
        for _ in range(150):
            try:
                if four_letter(port, "ruok") == "imok":
                    break
            except OSError:
                time.sleep(0.2)
        notes = []
        a, b = workload(port, notes)
        nodes = dump_tree(a)
        srvr = four_letter(port, "srvr")
        zxid = int(next(l for l in srvr.splitlines() if l.startswith("Zxid:")).split()[1], 16)
        expected = {
            "last_zxid": zxid,
            "open_sessions": {str(b.client_id[0]): b._session_timeout, str(a.client_id[0]): a._session_timeout},
            "nodes": nodes,
            "notes": notes,
        }
        # Stop the server with both sessions still open (no closeSession is logged).
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        for client in (a, b):
            client.handler.stop()  # the server is gone; do not wait for reconnects
    finally:
        if server.poll() is None:
            server.kill()
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    for src, dst in ((data_dir, f"{out_dir}/data"), (log_dir, f"{out_dir}/log")):
        os.makedirs(f"{dst}/version-2")
        for name in sorted(os.listdir(f"{src}/version-2")):
            raw = open(f"{src}/version-2/{name}", "rb").read()
            if name.startswith("log."):
                raw = raw[:max(16, len(raw.rstrip(b"\0")))]
            open(f"{dst}/version-2/{name}", "wb").write(raw)
    write_expected(f"{out_dir}/expected.txt", expected)
    shutil.rmtree(work)
    print(f"fixture written to {out_dir}: last zxid {zxid:#x}, {len(nodes)} nodes")


if __name__ == "__main__":
    main()
