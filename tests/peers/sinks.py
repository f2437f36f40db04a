"""SMTP sinks: real receiving peers for flow tests and benchmarks.

Two sinks, each a separate process listening on a loopback address, each
recording what it received as `ReceivedMessage` values:

- `SmtpSink` runs Postfix's `smtp-sink` (package postfix). Fast (benchmarks),
  scriptable only per command for every transaction: `hard_reject=("RCPT",)`
  refuses every RCPT with `hard_reply`, `soft_reject=(".",)` every end of DATA
  with `soft_reply`, `disconnect_421` / `disconnect` drop the session after a
  command, `data_abort_delay_s` answers 550 while the client sends DATA,
  `data_delay_s` and `command_delays` slow replies. It cannot refuse one
  recipient and accept another. Its dump (-d) records the client address, HELO,
  MAIL and RCPT arguments and the message (line ends turned into LF,
  dot-unstuffed); it records a transaction even when it refused its end of DATA
  (a "." reject), and it does not record the client port or the reply.
- `AiosmtpdSink` runs tests/peers/aiosmtpd_sink.py (aiosmtpd) under
  sys.executable. Slower, fully scriptable: per-sender MAIL and per-recipient
  RCPT replies, a sequence of DATA replies, a DATA delay, optional STARTTLS; it
  records peer IP and port, TLS, and the DATA reply, with the bytes as received
  (CRLF kept, dot-unstuffed). Its script can be changed while it runs.

Both are context managers; `messages()` lists accepted transactions in arrival
order, `wait_for(count, timeout_s)` polls (bounded) until that many arrived.
Port 0 means "pick a free port". Readiness is a TCP connect probe, so
smtp-sink's session counters (-n, -c) include one empty session. As root,
smtp-sink drops to the `postfix` user (-u postfix: it refuses root otherwise).

Untrusted input: the recorded bytes come from the SMTP client under test.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from tests.peers.lifecycle import Peer, stop_process

SMTP_SINK = "/usr/sbin/smtp-sink"
AIOSMTPD_SINK_SCRIPT = Path(__file__).with_name("aiosmtpd_sink.py")
_POLL_INTERVAL_S = 0.05


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One mail transaction as a sink saw it."""

    peer_ip: str
    peer_port: int | None  # smtp-sink does not record it
    helo: str | None
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    path: Path
    mail_options: tuple[str, ...] = ()
    rcpt_options: tuple[str, ...] = ()
    reply: tuple[int, str] | None = None  # None: smtp-sink does not record it
    tls: bool | None = None  # None: unknown (smtp-sink)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.reply is None or self.reply[0] < 400


class SinkError(RuntimeError):
    """The sink binary is missing, or the sink did not start."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (another process may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def wait_until_listening(
    host: str, port: int, timeout_s: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll until a TCP connect to host:port succeeds; SinkError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SinkError(f"process exited with {process.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            time.sleep(_POLL_INTERVAL_S)
    raise SinkError(f"nothing listening on {host}:{port} after {timeout_s} s")


def _wait_for(
    count: int, timeout_s: float, read: Callable[[], list[ReceivedMessage]], description: str
) -> list[ReceivedMessage]:
    deadline = time.monotonic() + timeout_s
    while True:
        received = read()
        if len(received) >= count:
            return received
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{description}: {len(received)} of {count} messages after {timeout_s} s"
            )
        time.sleep(_POLL_INTERVAL_S)


def _split_args(arguments: str) -> tuple[str, tuple[str, ...]]:
    """'<a@x> SIZE=12' → ('a@x', ('SIZE=12',))."""
    address, _, options = arguments.strip().partition(" ")
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    return address, tuple(options.split())


class SmtpSink(Peer):
    """Postfix's smtp-sink on host:port as a child process; see the module docstring."""

    def __init__(
        self,
        host: str = "127.0.0.10",
        port: int = 0,
        *,
        hostname: str = "smtp-sink.test",
        record: bool = True,
        hard_reject: Iterable[str] = (),
        soft_reject: Iterable[str] = (),
        disconnect: Iterable[str] = (),
        disconnect_421: Iterable[str] = (),
        hard_reply: str | None = None,
        soft_reply: str | None = None,
        data_abort_delay_s: int | None = None,
        data_delay_s: int | None = None,
        command_delays: Mapping[str, int] | None = None,
        max_concurrency: int | None = None,
        backlog: int = 256,
        extra_args: Iterable[str] = (),
        start_timeout_s: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.hostname = hostname
        self.record = record
        self.start_timeout_s = start_timeout_s
        self._options: list[str] = ["-h", hostname]
        # Command lists are comma-separated, as smtp-sink(1) expects.
        for flag, commands in (
            ("-f", hard_reject),
            ("-r", soft_reject),
            ("-q", disconnect),
            ("-Q", disconnect_421),
        ):
            if commands := list(commands):
                self._options += [flag, ",".join(commands)]
        if hard_reply:
            self._options += ["-B", hard_reply]
        if soft_reply:
            self._options += ["-b", soft_reply]
        if data_abort_delay_s is not None:
            self._options += ["-A", str(data_abort_delay_s)]
        if data_delay_s is not None:
            self._options += ["-w", str(data_delay_s)]
        for command, delay_s in (command_delays or {}).items():
            self._options += ["-W", f"{command}:{delay_s}"]
        if max_concurrency is not None:
            self._options += ["-m", str(max_concurrency)]
        self._options += list(extra_args)
        self.backlog = backlog
        self.base_dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def dump_dir(self) -> Path:
        if self.base_dir is None:
            raise RuntimeError("SmtpSink is not started")
        return self.base_dir / "dump"

    def start(self) -> Self:
        if not os.access(SMTP_SINK, os.X_OK):
            raise SinkError(f"{SMTP_SINK} not found: apt-get install postfix")
        self.base_dir = Path(tempfile.mkdtemp(prefix="postroom-smtp-sink-"))
        self.dump_dir.mkdir()
        argv = [SMTP_SINK, *self._options]
        if os.geteuid() == 0:
            # smtp-sink refuses root without -u; the dump dir must be writable by
            # the user it drops to, which opens dump files after the switch.
            postfix = pwd.getpwnam("postfix")
            for path in (self.base_dir, self.dump_dir):
                os.chown(path, postfix.pw_uid, postfix.pw_gid)
            argv += ["-u", "postfix"]
        if self.record:
            # smtp-sink appends a random hex id to the expanded template.
            argv += ["-d", f"{self.dump_dir}/msg."]
        if self.port == 0:
            self.port = free_port(self.host)
        argv += [f"inet:{self.host}:{self.port}", str(self.backlog)]
        log = (self.base_dir / "smtp-sink.log").open("wb")
        try:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        try:
            wait_until_listening(self.host, self.port, self.start_timeout_s, self.process)
        except SinkError as error:
            output = (self.base_dir / "smtp-sink.log").read_text(errors="replace")
            self.stop()
            raise SinkError(f"smtp-sink on {self.host}:{self.port}: {error}\n{output}") from None
        return self

    def _files_in_progress(self) -> set[str]:
        """Dump files smtp-sink still holds open (transactions not yet ended)."""
        if self.process is None:
            return set()
        fd_dir = Path(f"/proc/{self.process.pid}/fd")
        open_files: set[str] = set()
        try:
            descriptors = list(fd_dir.iterdir())
        except OSError:
            return open_files
        for descriptor in descriptors:
            try:
                open_files.add(os.readlink(descriptor))
            except OSError:
                continue  # closed between listing and reading
        return open_files

    def messages(self) -> list[ReceivedMessage]:
        """Completed transactions, oldest first (includes ones refused at '.')."""
        if self.base_dir is None or not self.record:
            return []
        in_progress = self._files_in_progress()
        paths = [path for path in self.dump_dir.iterdir() if str(path) not in in_progress]
        paths.sort(key=lambda path: (path.stat().st_mtime_ns, path.name))
        return [parse_smtp_sink_dump(path) for path in paths]

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[ReceivedMessage]:
        return _wait_for(count, timeout_s, self.messages, f"smtp-sink {self.host}:{self.port}")

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None


def parse_smtp_sink_dump(path: Path) -> ReceivedMessage:
    """One smtp-sink -d file: X-Client-Addr/X-Helo-Args/X-Mail-Args/X-Rcpt-Args,
    a three-line Received: header, the message, then one empty line."""
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    fields: dict[str, list[str]] = {}
    index = 0
    while index < len(lines) and not lines[index].startswith(b"Received:"):
        name, _, value = lines[index].decode("utf-8", "replace").partition(":")
        fields.setdefault(name.strip(), []).append(value.strip())
        index += 1
    index += 1  # the Received: line; its continuation lines start with a tab
    while index < len(lines) and lines[index].startswith(b"\t"):
        index += 1
    data = b"\n".join(lines[index:])
    # smtp-sink ends each dump with an empty line of its own.
    if data.endswith(b"\n\n"):
        data = data[:-1]
    elif data == b"\n":
        data = b""
    mail_from, mail_options = _split_args(fields.get("X-Mail-Args", [""])[0])
    recipients = [_split_args(args) for args in fields.get("X-Rcpt-Args", [])]
    peer_ip = fields.get("X-Client-Addr", [""])[0]
    return ReceivedMessage(
        peer_ip=peer_ip.removeprefix("ipv6:"),
        peer_port=None,
        helo=fields.get("X-Helo-Args", [None])[0],
        mail_from=mail_from,
        rcpt_tos=tuple(address for address, _ in recipients),
        data=data,
        path=path,
        mail_options=mail_options,
        rcpt_options=tuple(option for _, options in recipients for option in options),
        extra={"proto": fields.get("X-Client-Proto", [""])[0]},
    )


def make_self_signed_certificate(directory: Path, hostname: str, ip: str) -> tuple[Path, Path]:
    """(cert.pem, key.pem) for `hostname` and `ip`, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SinkError("openssl not found: apt-get install openssl")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={hostname}",
            "-addext", f"subjectAltName=DNS:{hostname},IP:{ip}",
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )  # fmt: skip
    return cert, key


class AiosmtpdSink(Peer):
    """The scriptable aiosmtpd sink in its own process; see the module docstring.

    `script` (and `set_script`) take the JSON described in aiosmtpd_sink.py, e.g.
    {"rcpt": {"bad@x.test": [550, "5.1.1 no such user"]},
     "data": [[451, "4.3.0 try later"], [250, "2.0.0 ok"]]}.
    With `starttls=True` a self-signed certificate for `hostname` and `host` is
    made (openssl CLI) unless `tls_cert`/`tls_key` are given; `cert_path` names it.
    """

    def __init__(
        self,
        host: str = "127.0.0.10",
        port: int = 0,
        *,
        hostname: str = "aiosmtpd-sink.test",
        script: Mapping[str, Any] | None = None,
        directory: Path | None = None,
        starttls: bool = False,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        start_timeout_s: float = 15.0,
    ) -> None:
        self.host = host
        self.port = port
        self.hostname = hostname
        self.initial_script: Mapping[str, Any] = script or {}
        self.requested_directory = directory
        self.starttls = starttls
        self.cert_path = tls_cert
        self.key_path = tls_key
        self.start_timeout_s = start_timeout_s
        self.directory: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._owns_directory = directory is None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def script_path(self) -> Path:
        return self._directory() / "script.json"

    def _directory(self) -> Path:
        if self.directory is None:
            raise RuntimeError("AiosmtpdSink is not started")
        return self.directory

    def set_script(self, script: Mapping[str, Any]) -> None:
        """Replace the reply script; the sink applies it from its next command."""
        partial = self._directory() / "script.json.tmp"
        partial.write_text(json.dumps(script))
        os.replace(partial, self.script_path)

    def start(self) -> Self:
        if self.requested_directory is not None:
            self.requested_directory.mkdir(parents=True, exist_ok=True)
            self.directory = self.requested_directory
        else:
            self.directory = Path(tempfile.mkdtemp(prefix="postroom-aiosmtpd-sink-"))
        (self.directory / "ready").unlink(missing_ok=True)
        self.set_script(self.initial_script)
        argv = [
            sys.executable, str(AIOSMTPD_SINK_SCRIPT),
            "--host", self.host, "--port", str(self.port),
            "--directory", str(self.directory), "--script", str(self.script_path),
            "--hostname", self.hostname, "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        if self.starttls:
            if self.cert_path is None or self.key_path is None:
                self.cert_path, self.key_path = make_self_signed_certificate(
                    self.directory, self.hostname, self.host
                )
            argv += ["--tls-cert", str(self.cert_path), "--tls-key", str(self.key_path)]
        log_path = self.directory / "sink.log"
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            self._wait_until_ready()
        except SinkError as error:
            output = log_path.read_text(errors="replace")
            self.stop()
            raise SinkError(f"aiosmtpd sink on {self.host}: {error}\n{output}") from None
        return self

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        ready = self._directory() / "ready"
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SinkError(f"exited with {self.process.returncode} before listening")
            if ready.exists():
                self.port = int(ready.read_text().split()[1])
                return
            time.sleep(_POLL_INTERVAL_S)
        raise SinkError(f"not listening after {self.start_timeout_s} s")

    def transactions(self) -> list[ReceivedMessage]:
        """Every DATA transaction, accepted or refused, oldest first."""
        if self.directory is None:
            return []
        new = self.directory / "new"
        if not new.is_dir():
            return []
        received = []
        for sidecar in sorted(new.glob("*.json")):
            record = json.loads(sidecar.read_text())
            received.append(
                ReceivedMessage(
                    peer_ip=record["peer_ip"],
                    peer_port=record["peer_port"],
                    helo=record["helo"],
                    mail_from=record["mail_from"],
                    rcpt_tos=tuple(record["rcpt_tos"]),
                    data=(new / record["eml"]).read_bytes(),
                    path=new / record["eml"],
                    mail_options=tuple(record["mail_options"]),
                    rcpt_options=tuple(record["rcpt_options"]),
                    reply=(record["reply"][0], record["reply"][1]),
                    tls=record["tls"],
                    extra={"received_at": record["received_at"]},
                )
            )
        return received

    def messages(self) -> list[ReceivedMessage]:
        """Accepted transactions (DATA answered 2xx), oldest first."""
        return [message for message in self.transactions() if message.accepted]

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[ReceivedMessage]:
        return _wait_for(count, timeout_s, self.messages, f"aiosmtpd sink {self.host}:{self.port}")

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
        if self.directory is not None and self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None
