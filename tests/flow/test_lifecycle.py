"""The process contract: sd_notify READY/RELOADING/STOPPING, SIGHUP reload (a bad
config is refused, the old one kept), SIGTERM drains and exits 0, config errors
name the key; and opportunistic STARTTLS toward a real TLS sink."""

from __future__ import annotations

import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from tests.flow.conftest import TLS_IP, World, start_postroom
from tests.flow.test_relay_flow import message, send, wait_token
from tests.peers.postroom import free_tcp_port
from tests.peers.sinks import AiosmtpdSink

from postroom.db.migrate import MIGRATIONS_DIR

pytestmark = pytest.mark.flow


def read_notifications(sock: socket.socket, until: bytes, timeout_s: float = 15) -> list[bytes]:
    seen: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            seen.append(sock.recv(4096))
        except TimeoutError:
            break
        if until in seen[-1]:
            break
    return seen


@pytest.mark.parametrize("workers", [1, 2])
def test_notify_reload_and_drain(world: World, tmp_path: Path, workers: int) -> None:
    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        server = start_postroom(
            tmp_path / "srv", world, env={"NOTIFY_SOCKET": str(notify_path)}, workers=workers
        )
        started = read_notifications(notify, b"READY=1")
        assert sum(b"READY=1" in n for n in started) == 1
        # One READY for the service, sent once every worker is ready; none from workers.
        log = server.log()
        assert log.count("postroom ready node=") == workers
        if workers > 1:
            assert log.index("postroom ready: 2 workers") > log.rindex("postroom ready node=")
            assert len(server.worker_pids()) == workers

        good = server.config_path.read_text()
        server.config_path.write_text(good + "\n[bogus]\nkey = 1\n")
        server.process.send_signal(signal.SIGHUP)  # with a broken config
        seen = read_notifications(notify, b"READY=1")
        assert any(b"RELOADING=1" in n for n in seen)
        assert "reload refused" in server.log()
        assert "bogus" in server.log()
        assert server.process.poll() is None  # still serving on the old config

        server.config_path.write_text(good)
        server.process.send_signal(signal.SIGHUP)
        assert any(b"READY=1" in n for n in read_notifications(notify, b"READY=1"))
        assert server.log().count("reloaded pools") == workers  # every worker reloaded first

        workers_before = server.worker_pids()
        assert server.stop() == 0
        assert any(b"STOPPING=1" in n for n in read_notifications(notify, b"STOPPING=1", 2))
        assert server.log().count("stopped") == workers + (workers > 1)
        assert all(not Path(f"/proc/{pid}").exists() for pid in workers_before)


def test_config_check_names_the_bad_key(world: World, tmp_path: Path) -> None:
    server = start_postroom(tmp_path, world)
    try:
        assert "ok" in server.cli("config", "check").stdout
        server.config_path.write_text(
            server.config_path.read_text().replace("relay_networks", "relay_netwroks")
        )
        result = server.cli("config", "check", check=False)
    finally:
        server.stop()
    assert result.returncode == 2
    assert "smtp.inbound.relay_netwroks: unknown key" in result.stderr
    assert str(server.config_path) in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def tls_sink(world: World) -> Iterator[AiosmtpdSink]:
    with AiosmtpdSink(TLS_IP, world.sink_port, hostname="mx.tls.test", starttls=True) as sink:
        yield sink


def test_opportunistic_starttls_to_a_tls_sink(
    world: World, tls_sink: AiosmtpdSink, tmp_path: Path, token: str
) -> None:
    server = start_postroom(tmp_path, world)
    try:
        send(server, "app@sender.test", ["user@tls.test"], message(token, to="user@tls.test"))
        [got] = wait_token(tls_sink, token)
    finally:
        server.stop()
    assert got.tls is True


def test_config_init_writes_a_trial_config_once(tmp_path: Path) -> None:
    def postroom(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "postroom.cli.main", "-c", str(tmp_path / "p.toml"), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    first = postroom("config", "init", "--state-dir", str(tmp_path / "state"))
    assert first.returncode == 0 and "written" in first.stdout
    assert postroom("config", "check").returncode == 0
    assert "127.0.0.1:2525" in (tmp_path / "p.toml").read_text()
    again = postroom("config", "init", "--state-dir", str(tmp_path / "other"))
    assert "exists, left as it is" in again.stdout
    assert str(tmp_path / "state") in (tmp_path / "p.toml").read_text()
    upgraded = postroom("db", "upgrade")
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert upgraded.returncode == 0 and f"revision {head}" in upgraded.stdout
    assert (tmp_path / "state" / "postroom.db").exists()


def test_ipv6_listener_relays_for_an_ipv6_relay_network(
    world: World, tmp_path: Path, token: str
) -> None:
    port = free_tcp_port()
    server = start_postroom(
        tmp_path, world, extra_listen=(f"[::1]:{port}",), relay_networks=("127.0.0.1/32", "::1/128")
    )
    try:
        with smtplib.SMTP("::1", port, timeout=10) as client:
            client.ehlo("app.src.test")
            client.sendmail("app@src.test", ["user@dest.test"], message(token))
        [got] = wait_token(world.dest, token)
        assert b"[IPv6:::1]" in got.data  # the Received header names the IPv6 client
    finally:
        server.stop()
