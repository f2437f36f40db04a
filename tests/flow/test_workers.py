"""Two worker processes behave as one node: the port 25 caps hold across them, a
broken config is refused by the supervisor before any worker starts, and mail sent
over many connections is delivered once each whichever worker took it; a worker
that keeps dying stops the node instead of leaving it short of a worker."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import time
from pathlib import Path

import pytest
from tests.flow.conftest import World, start_postroom
from tests.flow.test_relay_flow import message, wait_token

pytestmark = pytest.mark.flow

PER_IP = 4


def banner(port: int) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock, sock.recv(256)


def test_the_per_client_cap_is_the_nodes_not_each_workers(world: World, tmp_path: Path) -> None:
    server = start_postroom(
        tmp_path, world, workers=2, inbound=f"max_connections_per_ip = {PER_IP}"
    )
    held: list[socket.socket] = []
    try:
        assert len(server.worker_pids()) == 2
        for _ in range(PER_IP):
            sock, greeting = banner(server.smtp_port)
            held.append(sock)
            assert greeting.startswith(b"220 ")
        # Whichever worker takes them, the node holds PER_IP sessions of this client.
        for _ in range(6):
            sock, greeting = banner(server.smtp_port)
            sock.close()
            assert greeting.startswith(b"421 4.7.0"), greeting
        held.pop().close()
        deadline = time.monotonic() + 10
        while True:  # the session ends when its worker sees the close
            sock, greeting = banner(server.smtp_port)
            sock.close()
            if greeting.startswith(b"220 ") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert greeting.startswith(b"220 ")
    finally:
        for sock in held:
            sock.close()
        server.stop()


def test_every_message_is_delivered_once_whichever_worker_took_it(
    world: World, tmp_path: Path
) -> None:
    server = start_postroom(tmp_path, world, workers=2)
    tokens = [f"workers-{index}-{time.monotonic_ns()}" for index in range(40)]
    try:
        # [server] pin_workers (default): with a CPU for each, each worker has its own.
        pinned = [os.sched_getaffinity(pid) for pid in server.worker_pids()]
        cpus = sorted(os.sched_getaffinity(0))
        assert pinned == ([{cpus[0]}, {cpus[1]}] if len(cpus) >= 2 else [set(cpus)] * 2)
        for token in tokens:  # a connection each: the kernel spreads them
            with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as client:
                client.sendmail("app@src.test", ["user@dest.test"], message(token))
        for token in tokens:
            assert len(wait_token(world.dest, token)) == 1
        # The migrations ran in a child: the long-lived supervisor never loaded the
        # database layer (it would keep some 50 MB for the node's life).
        assert server.process is not None
        maps = Path(f"/proc/{server.process.pid}/maps").read_text()
        assert "sqlalchemy" not in maps and "alembic" not in maps
    finally:
        server.stop()


def test_a_broken_config_stops_the_start_before_any_worker(world: World, tmp_path: Path) -> None:
    server = start_postroom(tmp_path, world, workers=2)
    server.stop()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    taken = busy.getsockname()[1]
    server.config_path.write_text(
        server.config_path.read_text().replace(
            f"127.0.0.1:{server.smtp_port}", f"127.0.0.1:{taken}"
        )
    )
    try:
        result = server.cli("serve", check=False)
    finally:
        busy.close()
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{taken} (smtp.inbound.listen[0])" in result.stderr
    assert "worker 0 started" not in result.stderr


def test_a_database_that_cannot_be_reached_stops_the_start_in_one_line(
    world: World, tmp_path: Path
) -> None:
    server = start_postroom(tmp_path, world, workers=2)
    server.stop()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]  # bound, never listening: connections are refused
    text = server.config_path.read_text()
    server.config_path.write_text(
        f'{text}\n[database]\nurl = "postgresql+psycopg://postroom@127.0.0.1:{port}/none"\n'
    )
    try:
        result = server.cli("serve", check=False)
    finally:
        closed.close()
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("postroom:")]
    assert len(errors) == 1 and "database error" in errors[0], result.stderr
    assert "Traceback" not in result.stderr and "worker 0 started" not in result.stderr


def test_a_worker_that_keeps_dying_stops_the_node(world: World, tmp_path: Path) -> None:
    # The config broke on disk after the start (no reload): each successor of a killed
    # worker fails to read it. The supervisor tries a few times, then stops the node
    # (exit 2) instead of running on without that worker while systemd sees READY.
    server = start_postroom(tmp_path, world, workers=2)
    good = server.config_path.read_text()
    try:
        server.config_path.write_text(good + "\n[bogus]\nkey = 1\n")
        os.kill(server.worker_pids()[1], signal.SIGKILL)
        assert server.process is not None
        status = server.process.wait(60)
    finally:
        server.config_path.write_text(good)
        server.kill()
    log = server.log()
    assert status == 2, log[-2000:]
    assert "died 5 times within 60s of its start" in log
    assert not server.worker_pids()
