"""postroom itself as a process under test: `postroom serve` with a generated config.

`PostroomServer(directory, config_text)` writes the config, runs `python -m
postroom.cli.main -c FILE serve` as a child process (its log in
`directory/serve.log`), and waits (bounded) until the inbound port accepts
connections and the service said READY=1 on a notify socket of its own (unless the
caller's env names one): with several workers, port 25 answers as soon as one
worker does, and READY comes once every worker is ready — a test that read the
workers' pinning or killed one before then raced their start. `stop()` sends
SIGTERM and waits for the drain; `kill()` is SIGKILL, for crash tests; `start()`
again reuses the same state directory.
`cli(*args)` runs another `postroom` command against the same config;
`worker_pids()` lists the worker processes when `[server] workers` > 1.
`flow_config(...)` renders the config most flow tests need.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.peers.lifecycle import Peer, die_with_parent

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 40.0


def flow_config(
    *,
    state_dir: Path,
    smtp_port: int,
    nameserver: str,
    delivery_port: int,
    extra: str = "",
    relay_networks: tuple[str, ...] = ("127.0.0.0/8",),
    extra_listen: tuple[str, ...] = (),
    inbound: str = "",
    delivery: str = "",
    database_url: str = "",
    hostname: str = "relay.postroom.test",
    workers: int = 1,
    node_name: str = "",
) -> str:
    database = f'[database]\nurl = "{database_url}"\n' if database_url else ""
    # Nodes sharing one database need names of their own (default: the hostname).
    node = f'node_name = "{node_name}"' if node_name else ""
    return f"""
[server]
hostname = "{hostname}"
drain_timeout = "10s"
workers = {workers}
{node}

[state]
dir = "{state_dir}"

{database}
[smtp.inbound]
listen = {json.dumps([f"127.0.0.1:{smtp_port}", *extra_listen])}
relay_networks = {json.dumps(list(relay_networks))}
{inbound}

[dns]
nameservers = ["{nameserver}"]
timeout = "2s"

[delivery]
port = {delivery_port}
min_backoff = "1s"
max_backoff = "2s"
connect_timeout = "3s"
command_timeout = "10s"
idle_connection_timeout = "1s"
{delivery}

{extra}
"""


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class PostroomServer(Peer):
    def __init__(
        self, directory: Path, config_text: str, smtp_port: int, env: dict[str, str] | None = None
    ) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path = directory / "postroom.toml"
        self.config_path.write_text(config_text)
        self.smtp_port = smtp_port
        self.log_path = directory / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.env = env or {}

    def start(self) -> Self:
        if self.process is not None and self.process.poll() is None:
            # `with server.start():` would start it twice; the second could not bind.
            raise RuntimeError("postroom serve is already running: `with` starts it")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with contextlib.ExitStack() as cleanup:
            notify: socket.socket | None = None
            if "NOTIFY_SOCKET" not in self.env:  # else the caller reads READY itself
                notify = cleanup.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
                name = f"@postroom-test-{os.getpid()}-{time.monotonic_ns()}"
                notify.bind("\0" + name[1:])
                notify.setblocking(False)
                env["NOTIFY_SOCKET"] = name
            self._spawn(env)
            if self._wait_until_ready(notify):
                return self
        self.kill()
        raise RuntimeError(f"postroom serve was not ready within {START_TIMEOUT_S}s:\n{self.log()}")

    def _spawn(self, env: dict[str, str]) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "postroom.cli.main", "-c", str(self.config_path), "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=die_with_parent,
        )
        log.close()

    def _wait_until_ready(self, notify: socket.socket | None) -> bool:
        """Port 25 greets and (with `notify`) READY=1 came; False after START_TIMEOUT_S."""
        assert self.process is not None
        said_ready = notify is None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postroom serve exited early:\n{self.log()}")
            while notify is not None and not said_ready:
                try:
                    said_ready = b"READY=1" in notify.recv(4096)
                except BlockingIOError:
                    break
            try:
                with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=0.5) as probe:
                    probe.recv(256)
                    probe.sendall(b"QUIT\r\n")
                if said_ready:
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise RuntimeError(f"postroom serve did not stop on SIGTERM:\n{self.log()}") from None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def worker_pids(self) -> list[int]:
        """The worker processes of a `[server] workers` > 1 server (its children)."""
        if self.process is None:
            return []
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except FileNotFoundError:
            return []

    def cli(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "postroom.cli.main", "-c", str(self.config_path), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"postroom {' '.join(args)} failed: {result.stderr}")
        return result

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            self.kill()
