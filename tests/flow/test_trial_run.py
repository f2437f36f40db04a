"""What `make run` gives a new user: `config init` then `serve` (without reinstalling).

The trial config's own ports are fixed (2525, 5587, 5465); the test moves them to free
ports so that it can run beside a real `make run`, and points [dns] at the flow tests'
NSD so that no lookup leaves the machine. Then, as the notes printed by `config init`
say: submission accepts STARTTLS (and 465 implicit TLS) with the trial certificate,
which a client that trusts that file verifies; the swaks example (with `--from`) is
accepted on port 25; `postroom queue list` finds the config through POSTROOM_CONFIG.
"""

from __future__ import annotations

import os
import shlex
import smtplib
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.flow.conftest import World
from tests.peers.postroom import PostroomServer, free_tcp_port

from postroom.config import load_config

pytestmark = pytest.mark.flow

TRIAL_PORTS = ("2525", "5587", "5465")
READY_TIMEOUT_S = 30.0


def wait_ready(server: PostroomServer) -> None:
    """Port 25 answers first; every listener is bound once the log says ready (sd_notify's
    READY=1 comes at the same point)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while "postroom ready" not in server.log():
        assert time.monotonic() < deadline, f"not ready in {READY_TIMEOUT_S}s:\n{server.log()}"
        time.sleep(0.1)


def postroom(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postroom.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_trial_serves_submission_with_its_certificate_and_the_swaks_example(
    world: World, tmp_path: Path
) -> None:
    config_path = tmp_path / "postroom.toml"
    init = postroom("-c", str(config_path), "config", "init", "--state-dir", str(tmp_path / "st"))
    assert init.returncode == 0, init.stderr
    ports = {trial: free_tcp_port() for trial in TRIAL_PORTS}
    text = config_path.read_text()
    for trial, free in ports.items():
        text = text.replace(f"127.0.0.1:{trial}", f"127.0.0.1:{free}")
    text += f'\n[dns]\nnameservers = ["{world.nameserver}"]\n'
    config_path.write_text(text)
    cert = load_config(config_path).tls.cert
    trusting_the_trial = ssl.create_default_context(cafile=cert)

    with PostroomServer(tmp_path / "srv", text, ports["2525"]) as server:
        wait_ready(server)
        with smtplib.SMTP("127.0.0.1", ports["5587"], timeout=30) as client:
            client.ehlo("app.client.test")
            assert "auth" not in client.esmtp_features  # not before TLS
            code, _ = client.starttls(context=trusting_the_trial)
            client.ehlo("app.client.test")
            assert code == 220
            assert "PLAIN" in client.esmtp_features["auth"]
        with smtplib.SMTP_SSL(
            "127.0.0.1", ports["5465"], context=trusting_the_trial, timeout=30
        ) as client:
            assert client.ehlo("app.client.test")[0] == 250
            assert "PLAIN" in client.esmtp_features["auth"]

        [example] = [line for line in init.stdout.splitlines() if line.strip().startswith("swaks")]
        command = shlex.split(example.replace("--port 2525", f"--port {ports['2525']}"))
        swaks = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert swaks.returncode == 0, swaks.stdout + swaks.stderr
        assert "250 2.0.0" in swaks.stdout

        queued = postroom("queue", "list", env={"POSTROOM_CONFIG": str(server.config_path)})
        assert queued.returncode == 0, queued.stderr
        assert "you@example.test" in queued.stdout
