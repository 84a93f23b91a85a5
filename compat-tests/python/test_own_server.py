"""Behaviour that needs a server with settings other than the shared ones: each test starts its
own server of the kind under test (ZK_TARGET) on ZK_PORT+50 with a modified zoo.cfg."""
import os
import socket
import subprocess
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.path.join(HERE, "..", "lib", "servers.sh")


@pytest.fixture
def own_server():
    target = os.environ["ZK_TARGET"]
    port = int(os.environ["ZK_PORT"]) + 50
    work = os.path.join(os.environ["ZK_WORKDIR"], "own-server")
    pids = []

    def start(extra_lines, drop_keys=()):
        script = f"""
            source {LIB}
            rm -rf {work}; mkdir -p {work}
            write_zoo_cfg {port} {work} {target}
            grep -v -E '^({"|".join(drop_keys) or "#none#"})=' {work}/zoo.cfg > {work}/zoo.cfg.new
            mv {work}/zoo.cfg.new {work}/zoo.cfg
            cat >> {work}/zoo.cfg <<'CFG'
{chr(10).join(extra_lines)}
CFG
            launch_server {target} {port} {work}
        """
        r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        pids.append(int(r.stdout.strip().splitlines()[-1]))
        return port

    yield start
    for pid in pids:
        subprocess.run(["bash", "-c", f"source {LIB}; stop_server {pid}"], timeout=30)


def four_letter(port, word):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(word.encode())
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out.decode()
            out += chunk


def test_four_letter_whitelist_refuses_others(own_server):
    port = own_server(["4lw.commands.whitelist=ruok, conf"], drop_keys=["4lw.commands.whitelist"])
    assert four_letter(port, "ruok") == "imok"
    assert four_letter(port, "conf").startswith(f"clientPort={port}\n")
    for word in ("mntr", "stat", "cons", "wchs", "dump", "envi"):
        assert four_letter(port, word) == f"{word} is not executed because it is not in the whitelist.\n"
    # srvr is always allowed, whatever the whitelist says.
    assert four_letter(port, "srvr").startswith("Zookeeper version: 3.8.0-")


def test_default_whitelist_is_srvr_only(own_server):
    port = own_server([], drop_keys=["4lw.commands.whitelist"])
    assert four_letter(port, "srvr").startswith("Zookeeper version: 3.8.0-")
    assert four_letter(port, "ruok") == "ruok is not executed because it is not in the whitelist.\n"


def test_unknown_keys_do_not_stop_the_server(own_server):
    port = own_server(["someUnknownKey=1", "another.made.up.key=value"])
    assert four_letter(port, "ruok") == "imok"


def test_max_client_cnxns_per_address(own_server):
    port = own_server(["maxClientCnxns=3"], drop_keys=["maxClientCnxns"])
    kept = []
    try:
        # A source address nothing else uses (the readiness probe connects from 127.0.0.1).
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=("127.0.3.1", 0))
            kept.append(s)
        time.sleep(0.3)
        # The server closes the connection over the limit without a word. The close can win the
        # race with connect() itself (the real ZooKeeper then makes connect() fail with EPIPE or
        # ECONNRESET); either way no byte may ever come back.
        try:
            extra = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=("127.0.3.1", 0))
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            data = b""
        else:
            extra.settimeout(5)
            try:
                extra.sendall(b"srvr")
                data = extra.recv(1)
            except (BrokenPipeError, ConnectionResetError):
                data = b""
            extra.close()
        assert data == b""
        # Another address is not limited by this one's connections. (The real ZooKeeper now and
        # then resets one fresh connection right after refusing another; a second try is served.)
        answer = b""
        for _ in range(3):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=("127.0.3.2", 0)) as other:
                    other.sendall(b"srvr")
                    answer = other.recv(64)
                    break
            except OSError:
                time.sleep(0.2)
        assert answer.startswith(b"Zookeeper version")
    finally:
        for s in kept:
            s.close()
