#!/usr/bin/env python3
"""Checks that a running Apache ZooKeeper serves exactly the state recorded in a zk_format
fixture's expected.txt: every node with its data, Stat and ACL, nothing else, the open sessions'
ephemerals, and no digest mismatch in its log.

Usage: check.py HOST:PORT EXPECTED_TXT SERVER_LOG
Prints one line per failure and "N passed, N failed"; exits non-zero on any failure.
"""
import re
import socket
import sys

from kazoo.client import KazooClient
from kazoo.protocol.states import ZnodeStat


def parse_expected(path):
    nodes, sessions = {}, {}
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if line.startswith("#"):
            continue
        if line.startswith("session "):
            _, sid, timeout = line.split(" ")
            sessions[int(sid)] = int(timeout)
        elif line.startswith("node\t"):
            _, p, data, stat, acl = line.split("\t")
            nodes[p] = (None if data == "-" else bytes.fromhex(data),
                        tuple(int(v) for v in stat.split(" ")),
                        sorted(tuple(a.split("/", 2)) for a in acl.split(" ")))
    return nodes, sessions


def four_letter(hostport, cmd):
    host, port = hostport.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(cmd.encode())
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out.decode()


def main():
    hostport, expected_path, server_log = sys.argv[1:4]
    nodes, sessions = parse_expected(expected_path)
    passed, failed = 0, 0

    def check(ok, what):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print(f"FAIL: {what}")

    zk = KazooClient(hosts=hostport, timeout=10)
    zk.start()
    zk.add_auth("digest", "alice:secret")
    seen = set()
    stack = ["/"]
    while stack:
        path = stack.pop()
        seen.add(path)
        data, stat = zk.get(path)
        acls, _ = zk.get_acls(path)
        want = nodes.get(path)
        check(want is not None, f"unexpected node {path}")
        if want is not None:
            check(data == want[0], f"{path}: data {data!r} != {want[0]!r}")
            check(tuple(stat) == want[1],
                  f"{path}: stat {dict(zip(ZnodeStat._fields, stat))} != {dict(zip(ZnodeStat._fields, want[1]))}")
            got_acl = sorted((str(a.perms), a.id.scheme, a.id.id) for a in acls)
            check(got_acl == want[2], f"{path}: ACL {got_acl} != {want[2]}")
        for child in zk.get_children(path):
            stack.append(("" if path == "/" else path) + "/" + child)
    for path in sorted(set(nodes) - seen):
        check(False, f"missing node {path}")

    # The sessions left open still own their ephemerals (`dump` lists them by session).
    dump = four_letter(hostport, "dump")
    owners = {stat[7] for _, stat, _ in nodes.values() if stat[7] != 0}
    for owner in owners:
        check(f"0x{owner:x}" in dump, f"session 0x{owner:x} not restored with its ephemerals:\n{dump}")
    check(owners <= set(sessions), f"ephemeral owners {owners} not among sessions {set(sessions)}")

    if server_log == "-":
        # ferrokeeper serving the import: no ZooKeeper load log to inspect.
        zk.stop()
        zk.close()
        print(f"{passed} passed, {failed} failed")
        sys.exit(1 if failed else 0)
    log = open(server_log, encoding="utf-8", errors="replace").read()
    check("not matching" not in log.lower() and "digest mismatch" not in log.lower(),
          "ZooKeeper logged a digest mismatch on load")
    check("problem reading snap file" not in log, "ZooKeeper could not read the exported snapshot")
    # The digest we stored equals the one ZooKeeper computes over the tree it loaded.
    stored = re.search(r"digest in the snapshot has digest version of 2, with zxid as 0x\w+, and digest value as (-?\d+)", log)
    computed = re.search(r"Snapshot loaded in \d+ ms, highest zxid is 0x\w+, digest is (-?\d+)", log)
    check(stored and computed and stored.group(1) == computed.group(1),
          f"stored digest {stored and stored.group(1)} != ZooKeeper's {computed and computed.group(1)}")
    zk.stop()
    zk.close()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
