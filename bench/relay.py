"""Relay throughput: postroom against a private Postfix, both relaying to one smtp-sink.

Contract (`.venv/bin/python bench/relay.py [options]`, as root, from the repo root):
issue 14's workload — `--messages` N (10,000) messages from `--clients` (20)
concurrent SMTP sessions of Postfix's `smtp-source` (bench/smtp_source.py:
`-s 20 -m N -l 2111`, `--size` being the payload after its four header lines),
all to `user@bench.test` from `bench@client.bench.test` — goes through

- postroom: `postroom serve` (tests/peers/postroom.py) with a fresh SQLite state
  directory, production durability (WAL, synchronous=FULL: 250 only after
  fsync), `[logging] level = "warning"`, default delivery settings, its
  `[dns] nameservers` pointing at an NSD (tests/peers/dns.py) that serves
  `bench.test MX → mx.bench.test A 127.0.0.10`, `[delivery] port` = the sink's,
  `[server] workers` = `--workers` when given (else the server's default);
- Postfix: a private instance (tests/peers/postfix.py: `postfix -c DIR`, its
  own main.cf, master.cf and queue directory, smtpd on 127.0.0.1 only) with
  `relayhost = [127.0.0.10]:PORT`, stock settings otherwise (queue files fsynced);

each time into a fresh Postfix `smtp-sink` on 127.0.0.10 (tests/peers/sinks.py,
no recording, `-c` running counters: the sink's "mesg=" counter is how delivered
messages are counted, polled every 50 ms).

Workloads (`--workload`, comma-separated; default `new,reuse`), one row each of
the issue's table, run in one series: per `--repeat` round (3), each workload
on postroom and on Postfix, the order flipped every other round.

- `new`: a new connection per message (connect, banner, HELO, MAIL, RCPT, DATA,
  QUIT), as internet MX traffic arrives (`--new-connections` is `--workload new`);
- `reuse`: each session keeps its connection (`smtp-source -d`);
- `sign` (or `--sign`): reuse, and postroom DKIM-signs every message with
  RSA-2048 — the sender's domain is made a verified linked domain before serve
  starts (through the directory API: the bench measures signing, not the DNS
  proof), the sink appends every transaction to one dump file (in /dev/shm when
  there is one: written to disk, its writeback cost the sink 1-3 s of CPU per
  run, taken from the server's two cores, which Postfix's reuse runs, without a
  dump, never paid), and the run only verifies if it holds N DKIM-Signature
  fields for d=client.bench.test. Postfix does not sign: this row's Postfix
  figures are the reuse runs.

Per run it measures, from the first injection (smtp-source's start):

- accepted msg/s: N / (time of the last 250 to DATA − start);
- delivered msg/s: N / (time the sink counted N messages − start), end to end;
- server CPU seconds of the server's whole process tree (bench/cpu_meter.py:
  a child cgroup v2 the server is started in, `cpu.stat` usage_usec, as the
  maintainers measured; else, or with `--cpu proc`, /proc utime+stime of the
  live tree plus its reaped children — Postfix's exited daemons, postroom's
  restarted workers), up to "delivered" and once the server has gone quiet
  (bounded settle), and per message; the /proc tree's count and a breakdown by
  process name beside it. The output says which source counted.

Goals (issue 14), delivered msg/s over Postfix's: new ≥ 2.0×, reuse ≥ 3.0×,
sign ≥ 1.5× (against an unsigned Postfix); the table says met or not.

`--loadgen python` uses this file's own load generator instead (`_loadgen` in
its own process: asyncio, uvloop, a minimal non-pipelining SMTP client with
EHLO, connections opened before the clock starts; `--size` is the whole
message). Its options `--sender` (MAIL FROM and From), `--starttls`/`--cafile`
and `--auth USER:PASSWORD` (AUTH PLAIN), and `run_postroom`'s `PostroomSetup`,
serve bench/submission.py, which always uses it (smtp-source has no TLS, no
AUTH). The load generator's CPU is reported too.

Each run is checked: no client error, every message accepted, the sink counted
exactly N, and (postroom) `queue stats` says N delivered, SIGTERM exits 0,
SQLite is WAL with synchronous=FULL; (Postfix) its queue is empty. Medians per
workload and server, the ratio postroom/Postfix and the goal are printed as one
Markdown table (`--json`: one JSON document).

`--profile FILE` runs postroom once (no Postfix; the first workload) under
cProfile inside the server process (this file's `_serve-profiled` role: one
profile for the event loop thread, one merged for the worker threads such as
the group-commit thread; thread CPU time by default, `--profile-clock wall` for
wall time), writes FILE and FILE.threads (pstats) and prints the top functions.

Loopback only (127.0.0.0/8); every wait is bounded (`--timeout` per run).
Exit status: 0 when every run verified, 1 otherwise, 2 for a setup failure
(a peer that would not start, a run past `--timeout`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import os
import re
import select
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cpu_meter import CpuMeter, cpu_by_name, open_meter, sample_tree, settle
from smtp_source import SmtpSource

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SINK_IP = "127.0.0.10"
SERVER_IP = "127.0.0.1"
DOMAIN = "bench.test"
RECIPIENT = f"user@{DOMAIN}"
SENDER = "bench@client.bench.test"
PROJECT = "bench"  # the project of the sender's domain under --sign
POLL_S = 0.05
SETTLE_MAX_S = 30.0
READY_TIMEOUT_S = 30.0
_SINK_COUNTER = re.compile(rb"mesg=(\d+)\r")


# -- the messages ---------------------------------------------------------------


def make_message(index: int, size: int, token: str, filler: bytes, sender: str = SENDER) -> bytes:
    """One RFC 5322 message of exactly `size` bytes (CRLF lines, none starting with '.')."""
    head = (
        f"From: Bench <{sender}>\r\n"
        f"To: <{RECIPIENT}>\r\n"
        f"Subject: relay bench {token} #{index}\r\n"
        f"Message-ID: <{token}.{index}@client.bench.test>\r\n"
        "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
    ).encode()
    room = size - len(head)
    if room < 2:
        return head
    return head + filler[: room - 2] + b"\r\n"


def make_filler(size: int) -> bytes:
    """Body text: 76-character lines of letters, CRLF-terminated, at least `size` bytes."""
    line = (b"abcdefghijklmnopqrstuvwxyz" * 3)[:76] + b"\r\n"
    return line * (size // len(line) + 2)


# -- the load generator (its own process) -----------------------------------------


async def _reply(reader: asyncio.StreamReader) -> int:
    """The code of one (possibly multi-line) SMTP reply."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            return int(line[:3])


@dataclass(frozen=True, slots=True)
class ClientSetup:
    """How each load generator connection starts; the defaults are relay.py's."""

    sender: str = SENDER  # MAIL FROM and the From header
    tls: ssl.SSLContext | None = None  # STARTTLS after EHLO, then EHLO again
    auth: tuple[str, str] | None = None  # AUTH PLAIN (user, password), initial response
    new_connections: bool = False  # connect, greet and QUIT for every message


async def _open(host: str, port: int, setup: ClientSetup) -> Any:
    """One connection, greeted, and (per `setup`) over TLS and authenticated."""
    reader, writer = await asyncio.open_connection(host, port)
    if await _reply(reader) != 220:
        raise ConnectionError("no 220 greeting")
    writer.write(b"EHLO client.bench.test\r\n")
    if await _reply(reader) != 250:
        raise ConnectionError("EHLO refused")
    if setup.tls is not None:
        writer.write(b"STARTTLS\r\n")
        if (code := await _reply(reader)) != 220:
            raise ConnectionError(f"STARTTLS refused ({code})")
        await writer.start_tls(setup.tls, server_hostname=host)
        writer.write(b"EHLO client.bench.test\r\n")
        if await _reply(reader) != 250:
            raise ConnectionError("EHLO after STARTTLS refused")
    if setup.auth is not None:
        user, password = setup.auth
        blob = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        writer.write(f"AUTH PLAIN {blob}\r\n".encode())
        if (code := await _reply(reader)) != 235:
            raise ConnectionError(f"AUTH PLAIN as {user} refused ({code})")
    return reader, writer


async def _loadgen(
    host: str,
    port: int,
    messages: int,
    clients: int,
    size: int,
    token: str,
    setup: ClientSetup = ClientSetup(),
) -> Any:
    filler = make_filler(size)
    # Fresh connections are opened in the timed part, one per message.
    connections = (
        [] if setup.new_connections else [await _open(host, port, setup) for _ in range(clients)]
    )
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    start = time.monotonic()
    indices = iter(range(messages))
    state = {"accepted": 0, "errors": 0, "last": start}
    first_errors: list[str] = []
    mail = f"MAIL FROM:<{setup.sender}>\r\n".encode()
    rcpt = f"RCPT TO:<{RECIPIENT}>\r\n".encode()

    def error(text: str) -> None:
        state["errors"] += 1
        if len(first_errors) < 5:
            first_errors.append(text)

    async def transaction(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int
    ) -> None:
        for command, expected in ((mail, 250), (rcpt, 250), (b"DATA\r\n", 354)):
            writer.write(command)
            if (code := await _reply(reader)) != expected:
                error(f"{command.split()[0].decode()} {code}")
                writer.write(b"RSET\r\n")
                await _reply(reader)
                return
        writer.write(make_message(index, size, token, filler, setup.sender) + b".\r\n")
        if (code := await _reply(reader)) == 250:
            state["accepted"] += 1
            state["last"] = time.monotonic()
        else:
            error(f"end of DATA {code}")

    async def quit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"QUIT\r\n")
        with contextlib.suppress(OSError, ConnectionError):
            await _reply(reader)
        writer.close()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for index in indices:
            await transaction(reader, writer, index)
        await quit(reader, writer)

    async def connection_per_message() -> None:
        for index in indices:
            try:
                reader, writer = await _open(host, port, setup)
            except (OSError, ConnectionError) as failure:
                error(f"connect {failure}")
                continue
            await transaction(reader, writer, index)
            await quit(reader, writer)

    if setup.new_connections:
        await asyncio.gather(*(connection_per_message() for _ in range(clients)))
    else:
        await asyncio.gather(*(client(reader, writer) for reader, writer in connections))
    usage = os.times()
    return {
        "start": start,
        "last_accept": state["last"],
        "accepted": state["accepted"],
        "errors": state["errors"],
        "first_errors": first_errors,
        "cpu_s": usage.user + usage.system,
    }


def loadgen_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="relay.py _loadgen")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--sender", default=SENDER, help="MAIL FROM and From address")
    parser.add_argument("--starttls", action="store_true", help="STARTTLS after EHLO")
    parser.add_argument("--cafile", help="CA certificates (PEM) the TLS client trusts")
    parser.add_argument("--auth", metavar="USER:PASSWORD", help="AUTH PLAIN as USER")
    parser.add_argument("--new-connections", action="store_true", help="a connection a message")
    args = parser.parse_args(argv)
    user, colon, password = (args.auth or "").partition(":")
    if args.auth is not None and not (user and colon):
        parser.error("--auth takes USER:PASSWORD")
    setup = ClientSetup(
        sender=args.sender,
        tls=ssl.create_default_context(cafile=args.cafile) if args.starttls else None,
        auth=(user, password) if args.auth is not None else None,
        new_connections=args.new_connections,
    )

    async def bounded() -> Any:
        return await asyncio.wait_for(
            _loadgen(
                args.host, args.port, args.messages, args.clients, args.size, args.token, setup
            ),
            args.timeout,
        )

    try:
        import uvloop

        result = uvloop.run(bounded())
    except ImportError:
        result = asyncio.run(bounded())
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


# -- postroom under cProfile (its own process) ------------------------------------


def serve_profiled_main(argv: list[str]) -> int:
    """`_serve-profiled OUT CONFIG CLOCK`: `postroom serve` with every thread profiled."""
    import cProfile
    import threading

    out, config, clock = argv
    timer: Callable[[], int] = time.thread_time_ns if clock == "cpu" else time.perf_counter_ns
    threads: list[tuple[str, cProfile.Profile]] = []
    lock = threading.Lock()

    def start_thread_profile(frame: Any, event: str, arg: Any) -> None:
        # Called once in each new thread: swap this hook for a cProfile of its own.
        profile = cProfile.Profile(timer, 1e-9)
        with lock:
            threads.append((threading.current_thread().name, profile))
        profile.enable()

    threading.setprofile(start_thread_profile)
    main_profile = cProfile.Profile(timer, 1e-9)
    main_profile.enable()
    try:
        from postroom.cli.main import main

        status = main(["-c", config, "serve"])
    finally:
        main_profile.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
        main_profile.dump_stats(out)
        import pstats

        merged: pstats.Stats | None = None
        names = []
        for name, profile in threads:
            try:
                stats = pstats.Stats(profile)
            except TypeError:  # the thread never called anything
                continue
            names.append(name)
            if merged is None:
                merged = stats
            else:
                merged.add(stats)
        if merged is not None:
            merged.dump_stats(f"{out}.threads")
        Path(f"{out}.threads.names").write_text("\n".join(names) + "\n")
    return status


# -- the sink counter -------------------------------------------------------------


class SinkCounter:
    """Messages smtp-sink received, from its `-c` counters ("... mesg=N\\r") in its log."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path

    def count(self) -> int:
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, io.SEEK_END)
                log.seek(max(0, log.tell() - 4096))
                tail = log.read()
        except OSError:
            return 0
        matches = _SINK_COUNTER.findall(tail)
        return int(matches[-1]) if matches else 0


# -- one run ----------------------------------------------------------------------


@dataclass
class RunResult:
    server: str
    run: int
    messages: int
    workload: str = ""  # WORKLOADS key; "" for another bench's runs (submission.py)
    accepted: int = 0
    client_errors: int = 0
    first_errors: list[str] = field(default_factory=list)
    accepted_s: float = 0.0
    delivered_s: float = 0.0
    accepted_per_s: float = 0.0
    delivered_per_s: float = 0.0
    sink_count: int = 0
    server_cpu_delivered_s: float = 0.0
    server_cpu_total_s: float = 0.0
    server_cpu_ms_per_msg: float = 0.0
    server_cpu_by_process: dict[str, float] = field(default_factory=dict)
    cpu_source: str = ""  # how server CPU was counted (cpu_meter: cgroup v2 or /proc)
    server_cpu_tree_s: float = 0.0  # the /proc tree's count of server_cpu_total_s
    loadgen_cpu_s: float = 0.0
    sink_cpu_s: float = 0.0
    checks: dict[str, bool] = field(default_factory=dict)
    log_tail: str = ""
    ok: bool = False
    profiled: bool = False


class PythonLoadgen:
    """This file's `_loadgen` role in its own process: connections opened (and, per
    `options`, encrypted and authenticated) in `prepare()`, the clock starts at
    `start()`. The same interface as smtp_source.SmtpSource."""

    def __init__(
        self, args: argparse.Namespace, token: str, port: int, options: Sequence[str]
    ) -> None:
        self.command = [
            sys.executable, str(Path(__file__).resolve()), "_loadgen",
            "--host", SERVER_IP, "--port", str(port), "--messages", str(args.messages),
            "--clients", str(args.clients), "--size", str(args.size),
            "--token", token, "--timeout", str(args.timeout),
            *(["--new-connections"] if getattr(args, "new_connections", False) else []),
            *options,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def prepare(self) -> None:
        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], READY_TIMEOUT_S)
        if not ready or self.process.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"load generator not ready (exit {self.process.poll()})")

    def start(self) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        self.process.stdin.flush()

    def poll(self) -> int | None:
        assert self.process is not None
        return self.process.poll()

    def wait(self, timeout_s: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout_s)

    def report(self) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        output = self.process.stdout.read().decode(errors="replace")
        if self.process.returncode != 0:
            raise RuntimeError(
                f"load generator failed ({self.process.returncode}): {output[-2000:]}"
            )
        return json.loads(output.strip().splitlines()[-1])

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


def make_loadgen(
    args: argparse.Namespace, token: str, port: int, options: Sequence[str]
) -> PythonLoadgen | SmtpSource:
    """The load generator `args.loadgen` names; options (STARTTLS, AUTH) need Python's."""
    if getattr(args, "loadgen", "python") == "python" or options:
        return PythonLoadgen(args, token, port, options)
    return SmtpSource(
        SERVER_IP,
        port,
        messages=args.messages,
        clients=args.clients,
        size=args.size,
        new_connections=args.new_connections,
        sender=SENDER,
        recipient=RECIPIENT,
    )


def drive(
    args: argparse.Namespace,
    result: RunResult,
    port: int,
    meter: CpuMeter,
    server_pid: int,
    sink_pid: int,
    counter: SinkCounter,
    loadgen_options: Sequence[str] = (),
) -> None:
    """Run the load generator (with `loadgen_options`) against SERVER_IP:port and fill
    `result`: the server's CPU from `meter`, its breakdown from the tree of `server_pid`."""
    loadgen = make_loadgen(args, f"{result.server}{result.run}", port, loadgen_options)
    meter.wait_for_strays(SETTLE_MAX_S)
    try:
        loadgen.prepare()
        tree_start = sample_tree(server_pid)
        cpu_start = meter.total()
        sink_start = sample_tree(sink_pid).total
        loadgen.start()
        deadline = time.monotonic() + args.timeout
        target = args.messages
        report: dict[str, Any] | None = None
        delivered_at = None
        while delivered_at is None:
            now = time.monotonic()
            if counter.count() >= target:
                delivered_at = now
                break
            if report is None and loadgen.poll() is not None:
                report = loadgen.report()
                target = min(target, report["accepted"])
                continue
            if now > deadline:
                raise TimeoutError(
                    f"{result.server}: sink has {counter.count()} of {target} after "
                    f"{args.timeout} s"
                )
            time.sleep(POLL_S)
        cpu_delivered = meter.total()
        if report is None:
            loadgen.wait(max(1.0, deadline - time.monotonic()))
            report = loadgen.report()
    finally:
        loadgen.kill()
    cpu_total = settle(meter, SETTLE_MAX_S)
    result.accepted = report["accepted"]
    result.client_errors = report["errors"]
    result.first_errors = report["first_errors"]
    result.loadgen_cpu_s = round(report["cpu_s"], 3)
    result.accepted_s = round(report["last_accept"] - report["start"], 3)
    result.delivered_s = round(delivered_at - report["start"], 3)
    if result.accepted_s > 0:
        result.accepted_per_s = round(result.accepted / result.accepted_s, 1)
    if result.delivered_s > 0:
        result.delivered_per_s = round(target / result.delivered_s, 1)
    result.server_cpu_delivered_s = round(cpu_delivered - cpu_start, 3)
    result.server_cpu_total_s = round(cpu_total - cpu_start, 3)
    result.server_cpu_ms_per_msg = round(1000 * result.server_cpu_total_s / args.messages, 3)
    tree_end = sample_tree(server_pid)
    result.server_cpu_tree_s = round(tree_end.total - tree_start.total, 3)
    result.server_cpu_by_process = cpu_by_name(tree_start, tree_end)
    result.cpu_source = meter.source
    result.sink_cpu_s = round(sample_tree(sink_pid).total - sink_start, 3)
    result.sink_count = counter.count()
    result.checks["no_client_errors"] = result.client_errors == 0
    result.checks["all_accepted"] = result.accepted == args.messages
    result.checks["sink_count_equals_n"] = result.sink_count == args.messages


def postroom_config(
    state_dir: Path,
    smtp_port: int,
    nameserver: str,
    sink_port: int,
    extra: str = "",
    workers: int | None = None,
) -> str:
    """The bench's config; `workers` sets `[server] workers` (None: the server's default)."""
    workers_line = "" if workers is None else f"workers = {workers}\n"
    return f"""
[server]
hostname = "relay.postroom.test"
drain_timeout = "30s"
{workers_line}
[state]
dir = "{state_dir}"

[smtp.inbound]
listen = ["{SERVER_IP}:{smtp_port}"]
relay_networks = ["127.0.0.0/8"]

[dns]
nameservers = ["{nameserver}"]

[delivery]
port = {sink_port}

[logging]
level = "warning"
{extra}"""


@dataclass(frozen=True, slots=True)
class PostroomSetup:
    """What another bench changes in a postroom run (bench/submission.py); the
    defaults are this file's own runs."""

    name: str = "postroom"  # RunResult.server, and the messages' token
    extra_config: str = ""  # appended to postroom_config's text
    prepare_state: Callable[[Path], None] | None = None  # the state dir, before serve
    client_port: int | None = None  # where the load generator connects; None: port 25
    loadgen_options: tuple[str, ...] = ()
    check_state: Callable[[Path], dict[str, bool]] | None = None  # after serve stopped


def run_postroom(
    args: argparse.Namespace,
    run: int,
    nameserver: str,
    workdir: Path,
    profile: str | None,
    setup: PostroomSetup = PostroomSetup(),
) -> RunResult:
    from sqlalchemy import text
    from tests.peers.postroom import free_tcp_port
    from tests.peers.sinks import SmtpSink

    from postroom.db.engine import make_engine

    result = RunResult(setup.name, run, args.messages, profiled=profile is not None)
    directory = Path(tempfile.mkdtemp(prefix="postroom-bench-", dir=workdir))
    shm = Path("/dev/shm")
    dump_dir = Path(
        tempfile.mkdtemp(prefix="postroom-dump-", dir=shm if shm.is_dir() else directory)
    )
    try:
        # smtp-sink drops root for an unprivileged user before it writes the dump.
        dump_dir.chmod(0o1777)
        directory.chmod(0o755)
        dump = dump_dir / "sink.dump"
        dump_args = ["-D", str(dump)] if args.sign else []
        with SmtpSink(
            SINK_IP, 0, hostname="mx.bench.test", record=False, extra_args=["-c", *dump_args]
        ) as sink:
            assert sink.process is not None and sink.base_dir is not None
            counter = SinkCounter(sink.base_dir / "smtp-sink.log")
            port = free_tcp_port(SERVER_IP)
            config = postroom_config(
                directory / "state",
                port,
                nameserver,
                sink.port,
                setup.extra_config,
                getattr(args, "workers", None),
            )
            if args.sign:
                link_sender_domain(directory / "state")
            if setup.prepare_state is not None:
                setup.prepare_state(directory / "state")
            server = ProfiledPostroom(directory, config, port, profile, args.profile_clock)
            meter = open_meter(getattr(args, "cpu", "auto"))
            with contextlib.ExitStack() as cleanup:
                cleanup.callback(meter.close)
                with meter.spawning():
                    cleanup.enter_context(server)
                assert server.process is not None
                meter.watch(server.process.pid)
                client_port = port
                if setup.client_port is not None:  # bound after port 25 (see serve)
                    wait_for_greeting(SERVER_IP, setup.client_port, READY_TIMEOUT_S)
                    client_port = setup.client_port
                drive(
                    args,
                    result,
                    client_port,
                    meter,
                    server.process.pid,
                    sink.process.pid,
                    counter,
                    setup.loadgen_options,
                )
                status = server.stop()
            result.checks["serve_exit_0_on_sigterm"] = status == 0
            stats = server.cli_json("queue", "stats")["by_state"]
            result.checks["queue_delivered_equals_n"] = stats.get("delivered") == args.messages
            engine = make_engine(f"sqlite:///{directory}/state/postroom.db")
            with engine.connect() as conn:
                journal = conn.execute(text("PRAGMA journal_mode")).scalar_one()
                synchronous = conn.execute(text("PRAGMA synchronous")).scalar_one()
            engine.dispose()
            result.checks["sqlite_wal_synchronous_full"] = journal == "wal" and synchronous == 2
            if args.sign:
                signed = dump.read_bytes().count(b"DKIM-Signature: v=1; a=rsa-sha256;")
                result.checks["every_message_dkim_signed"] = signed == args.messages
            if setup.check_state is not None:
                result.checks |= setup.check_state(directory / "state")
            if not all(result.checks.values()):
                result.log_tail = server.log()[-2000:]
    finally:
        shutil.rmtree(dump_dir, ignore_errors=True)
        shutil.rmtree(directory, ignore_errors=True)
    result.ok = all(result.checks.values())
    return result


def wait_for_greeting(host: str, port: int, timeout_s: float) -> None:
    """Until an SMTP server greets on host:port (bounded; RuntimeError after `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0) as probe:
                if probe.recv(512).startswith(b"220"):
                    probe.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"no SMTP greeting on {host}:{port} within {timeout_s} s")
        time.sleep(0.1)


def link_sender_domain(state_dir: Path) -> None:
    """The sender's domain verified, with its first (active) RSA-2048 key."""
    from postroom.config.schema import DkimConfig
    from postroom.db.engine import make_engine
    from postroom.db.migrate import upgrade
    from postroom.mailbox.directory import Directory
    from postroom.mailbox.keyring import Keyring

    state_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{state_dir}/postroom.db")
    upgrade(engine)
    directory = Directory(engine)
    sender_domain = SENDER.rpartition("@")[2]
    directory.add_project(PROJECT)
    directory.add_domain(sender_domain, PROJECT)
    keyring = Keyring(directory, DkimConfig(), state_dir / "secret.key", state_dir)
    directory.mark_verified(sender_domain, keyring.first_keys(sender_domain))
    engine.dispose()


def run_postfix(args: argparse.Namespace, run: int) -> RunResult:
    from tests.peers.postfix import PostfixRelay
    from tests.peers.sinks import SmtpSink

    result = RunResult("postfix", run, args.messages)
    with SmtpSink(SINK_IP, 0, hostname="mx.bench.test", record=False, extra_args=["-c"]) as sink:
        assert sink.process is not None and sink.base_dir is not None
        counter = SinkCounter(sink.base_dir / "smtp-sink.log")
        relay = PostfixRelay(listen=f"{SERVER_IP}:0", relayhost=f"[{SINK_IP}]:{sink.port}")
        meter = open_meter(getattr(args, "cpu", "auto"))
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(meter.close)
            with meter.spawning():
                cleanup.enter_context(relay)
            master = relay.master_pid()
            if master is None:
                raise RuntimeError("private postfix has no master pid")
            meter.watch(master)
            drive(args, result, relay.port, meter, master, sink.process.pid, counter)
            result.checks["postfix_queue_empty"] = relay.queued_message_count() == 0
    result.ok = all(result.checks.values())
    return result


class ProfiledPostroom:
    """PostroomServer, optionally started under this file's `_serve-profiled` role."""

    def __init__(
        self, directory: Path, config: str, port: int, profile: str | None, clock: str
    ) -> None:
        from tests.peers.postroom import PostroomServer

        self.server = PostroomServer(directory, config, port)
        self.profile = profile
        self.clock = clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self.server, name)

    def __enter__(self) -> ProfiledPostroom:
        if self.profile is None:
            self.server.start()
            return self
        # PostroomServer.start() runs `sys.executable -m postroom.cli.main -c FILE serve`:
        # a one-off launcher stands in for sys.executable and runs our profiled role
        # instead ($4 is FILE); exec keeps the pid, so CPU sampling sees the server.
        launcher = self.server.directory / "python-profiled"
        launcher.write_text(
            "#!/bin/sh\n"
            f'exec "{sys.executable}" "{Path(__file__).resolve()}" _serve-profiled '
            f'"{self.profile}" "$4" "{self.clock}"\n'
        )
        launcher.chmod(0o755)
        real = sys.executable
        sys.executable = str(launcher)
        try:
            self.server.start()
        finally:
            sys.executable = real
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(None, None, None)


# -- orchestration and output ------------------------------------------------------


def median_of(results: list[RunResult], name: str) -> float:
    values = [getattr(result, name) for result in results]
    return round(statistics.median(values), 3) if values else 0.0


FIGURES = (
    "accepted_per_s",
    "delivered_per_s",
    "server_cpu_total_s",
    "server_cpu_ms_per_msg",
    "loadgen_cpu_s",
)


RATIO_FIGURES = ("accepted_per_s", "delivered_per_s", "server_cpu_ms_per_msg")


def medians_and_ratio(
    results: list[RunResult], labels: tuple[str, str]
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Medians of FIGURES per label (`RunResult.server`), and first label / second label
    of RATIO_FIGURES when both ran. Shared with bench/submission.py."""
    medians: dict[str, dict[str, float]] = {}
    for label in labels:
        runs = [result for result in results if result.server == label]
        if runs:
            medians[label] = {name: median_of(runs, name) for name in FIGURES}
            medians[label]["runs"] = len(runs)
    first, second = labels
    ratio: dict[str, float] = {}
    if first in medians and second in medians:
        for name in RATIO_FIGURES:
            if medians[second][name]:
                ratio[name] = round(medians[first][name] / medians[second][name], 3)
    return medians, ratio


@dataclass(frozen=True, slots=True)
class Workload:
    """One row of issue 14's table: how clients connect and whether postroom signs."""

    name: str  # what --workload takes
    title: str  # the table's first column
    new_connections: bool  # a connection per message, or each client's one reused
    sign: bool  # postroom DKIM-signs every message (RSA-2048)
    postfix_runs: str  # the workload whose Postfix runs this row compares with
    target_ratio: float  # issue 14: postroom delivered msg/s / Postfix's


WORKLOADS = {
    workload.name: workload
    for workload in (
        Workload("new", "a new connection per message", True, False, "new", 2.0),
        Workload("reuse", "connections reused", False, False, "reuse", 3.0),
        # Postfix does not sign: its figure is the reuse workload's.
        Workload(
            "sign", "connections reused, postroom signs (RSA-2048)", False, True, "reuse", 1.5
        ),
    )
}


def workload_args(args: argparse.Namespace, workload: Workload) -> argparse.Namespace:
    """`args` as run_postroom, run_postfix and drive read them for one workload."""
    return argparse.Namespace(
        **vars(args) | {"new_connections": workload.new_connections, "sign": workload.sign}
    )


def summarise(results: list[RunResult], workloads: Sequence[Workload]) -> dict[str, Any]:
    """Per workload: medians, the ratio postroom/Postfix and the issue's target."""
    rows: dict[str, Any] = {}
    for workload in workloads:
        runs = [
            result
            for result in results
            if (result.server, result.workload)
            in (("postroom", workload.name), ("postfix", workload.postfix_runs))
        ]
        medians, ratio = medians_and_ratio(runs, ("postroom", "postfix"))
        row: dict[str, Any] = {
            "title": workload.title,
            "postfix_runs": workload.postfix_runs,
            "median": medians,
            "ratio_postroom_over_postfix": ratio,
        }
        if ratio:
            met = ratio.get("delivered_per_s", 0.0) >= workload.target_ratio
            row["target"] = {"delivered_ratio_min": workload.target_ratio, "met": met}
        rows[workload.name] = row
    return {"workloads": rows}


def print_run(result: RunResult) -> None:
    flag = "ok" if result.ok else "FAILED " + json.dumps(result.checks)
    print(
        f"run {result.run} {result.workload:5s} {result.server:8s} "
        f"accepted {result.accepted_per_s:8.1f} msg/s "
        f"({result.accepted_s:.2f} s)  delivered {result.delivered_per_s:8.1f} msg/s "
        f"({result.delivered_s:.2f} s)  server CPU {result.server_cpu_total_s:.2f} s "
        f"({result.server_cpu_ms_per_msg:.3f} ms/msg; {result.server_cpu_delivered_s:.2f} s "
        f"until delivered)  loadgen CPU {result.loadgen_cpu_s:.2f} s  "
        f"sink CPU {result.sink_cpu_s:.2f} s  sink {result.sink_count}  {flag}",
        flush=True,
    )
    print(
        f"      CPU by process (/proc tree: {result.server_cpu_tree_s:.2f} s): "
        f"{json.dumps(result.server_cpu_by_process)}",
        flush=True,
    )
    if result.client_errors:
        print(f"      client errors: {result.client_errors} {result.first_errors}", flush=True)
    if result.log_tail:
        print(f"      server log (tail):\n{result.log_tail}", flush=True)


def print_medians(
    medians: dict[str, dict[str, float]],
    names: dict[str, str],
    ratio: dict[str, float],
    ratio_name: str,
) -> None:
    """The medians table and the ratio line (`names`: label → what the row says)."""
    width = max(10, *(len(name) for name in names.values()))
    print()
    print(
        f"{'median':{width}s} {'accepted msg/s':>15s} {'delivered msg/s':>16s} "
        f"{'server CPU s':>13s} {'CPU ms/msg':>11s} {'runs':>5s}"
    )
    for label, figures in medians.items():
        print(
            f"{names[label]:{width}s} {figures['accepted_per_s']:15.1f} "
            f"{figures['delivered_per_s']:16.1f} {figures['server_cpu_total_s']:13.2f} "
            f"{figures['server_cpu_ms_per_msg']:11.3f} {figures['runs']:5.0f}"
        )
    if ratio:
        print(
            f"ratio {ratio_name}: accepted {ratio.get('accepted_per_s', 0):.2f}x  "
            f"delivered {ratio.get('delivered_per_s', 0):.2f}x  "
            f"CPU per message {ratio.get('server_cpu_ms_per_msg', 0):.2f}x"
        )


def print_summary(summary: dict[str, Any], notes: Sequence[str]) -> None:
    """Issue 14's table (Markdown), one row per workload, then `notes`."""
    print()
    print(
        "| workload | Postfix delivered | postroom delivered | ratio | "
        "CPU/msg postroom vs Postfix | target |"
    )
    print("|---|---|---|---|---|---|")
    for row in summary["workloads"].values():
        postroom = row["median"].get("postroom", {})
        postfix = row["median"].get("postfix", {})
        ratio = row["ratio_postroom_over_postfix"]
        target = row.get("target")

        def rate(figures: dict[str, float]) -> str:
            return f"{figures['delivered_per_s']:,.0f} msg/s" if figures else "-"

        def cpu(figures: dict[str, float]) -> str:
            return f"{figures['server_cpu_ms_per_msg']:.2f} ms" if figures else "-"

        print(
            f"| {row['title']} | {rate(postfix)} | {rate(postroom)} | "
            + (f"**{ratio['delivered_per_s']:.2f}x**" if "delivered_per_s" in ratio else "-")
            + f" | {cpu(postroom)} vs {cpu(postfix)} | "
            + (
                f">= {target['delivered_ratio_min']}x: {'met' if target['met'] else 'NOT met'}"
                if target
                else "-"
            )
            + " |"
        )
    for note in filter(None, notes):
        print(note)


def print_profile(path: str, limit: int) -> None:
    import pstats

    for label, file in (("event loop thread", path), ("worker threads", f"{path}.threads")):
        if not Path(file).exists():
            continue
        for order in ("tottime", "cumulative"):
            print(f"\n=== profile: {label}, top {limit} by {order} ({file}) ===")
            stream = io.StringIO()
            pstats.Stats(file, stream=stream).sort_stats(order).print_stats(limit)
            print(stream.getvalue().split("\n", 4)[-1].rstrip())


def schedule(args: argparse.Namespace) -> Iterator[tuple[int, Workload, str]]:
    """(run, workload, server): per run, each workload on postroom and Postfix
    alternately (Postfix once per distinct `postfix_runs`), the order flipped
    every other run."""
    servers = [args.only] if args.only else ["postroom", "postfix"]
    for run in range(1, args.repeat + 1):
        order = servers if run % 2 else list(reversed(servers))
        scheduled: set[tuple[str, str]] = set()
        for workload in args.workloads:
            for server in order:
                name = workload.name if server == "postroom" else workload.postfix_runs
                if (server, name) not in scheduled:
                    scheduled.add((server, name))
                    yield run, WORKLOADS[name], server


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/relay.py",
        description="Relay throughput of postroom vs a private Postfix into one smtp-sink.",
    )
    parser.add_argument("--messages", type=int, default=10_000, help="messages per run")
    parser.add_argument("--clients", type=int, default=20, help="concurrent SMTP sessions")
    parser.add_argument(
        "--size",
        type=int,
        default=2111,
        help="smtp-source: payload bytes (-l); python: whole message bytes",
    )
    parser.add_argument(
        "--workload",
        help=f"comma-separated, of {', '.join(WORKLOADS)} (default: new,reuse)",
    )
    parser.add_argument(
        "--loadgen",
        choices=("smtp-source", "python"),
        default="smtp-source",
        help="Postfix's smtp-source (the issue's), or this file's _loadgen",
    )
    parser.add_argument("--only", choices=("postroom", "postfix"), help="run one server only")
    parser.add_argument(
        "--sign", action="store_true", help="add the sign workload (postroom DKIM-signs)"
    )
    parser.add_argument(
        "--new-connections", action="store_true", help="the new workload (--workload new)"
    )
    parser.add_argument("--workers", type=int, help="postroom's [server] workers (default unset)")
    parser.add_argument(
        "--cpu",
        choices=("auto", "cgroup", "proc"),
        default="auto",
        help="server CPU from a cgroup v2 or /proc (auto: cgroup when possible)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per server (medians)")
    parser.add_argument("--timeout", type=float, default=600.0, help="bound per run, seconds")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp"), help="postroom state parent")
    parser.add_argument("--profile", metavar="FILE", help="one profiled postroom run → pstats")
    parser.add_argument("--profile-clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--profile-top", type=int, default=30, help="functions printed")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.clients < 1 or args.repeat < 1 or args.size < 256:
        parser.error("--messages, --clients, --repeat must be >= 1 and --size >= 256")
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.workload:
        names = [name.strip() for name in args.workload.split(",") if name.strip()]
    else:
        names = ["new"] if args.new_connections else ["new", "reuse"]
    if args.sign and "sign" not in names:
        names.append("sign")
    if unknown := [name for name in names if name not in WORKLOADS]:
        parser.error(f"--workload: unknown {', '.join(unknown)} (known: {', '.join(WORKLOADS)})")
    args.workloads = [WORKLOADS[name] for name in dict.fromkeys(names)]
    if args.profile:
        args.only, args.repeat, args.workloads = "postroom", 1, args.workloads[:1]
        args.profile = str(Path(args.profile).resolve())
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from tests.peers.dns import NsdServer, make_zone

    if os.geteuid() != 0:
        print("bench/relay.py: run as root (private Postfix, smtp-sink)", file=sys.stderr)
        return 2
    try:
        probe = open_meter(args.cpu)
    except OSError as failure:
        print(f"bench/relay.py: --cpu {args.cpu}: no usable cgroup v2: {failure}", file=sys.stderr)
        return 2
    cpu_source = probe.source
    probe.close()
    zone = make_zone(DOMAIN, ["@ IN MX 10 mx.bench.test.", f"mx IN A {SINK_IP}"])
    log = (lambda *_: None) if args.json else print
    size = "payload bytes" if args.loadgen == "smtp-source" else "bytes"
    log(
        f"relay bench: {args.messages} messages x {args.size} {size}, {args.clients} "
        f"sessions of {args.loadgen}, workloads {', '.join(w.name for w in args.workloads)}, "
        f"sink smtp-sink on {SINK_IP}, repeat {args.repeat}, {os.cpu_count()} CPUs, "
        f"postroom workers {args.workers or 'default'}, server CPU from {cpu_source}"
    )
    results: list[RunResult] = []
    try:
        with NsdServer({DOMAIN: zone}) as nsd:
            for run, workload, server in schedule(args):
                run_args = workload_args(args, workload)
                if server == "postroom":
                    result = run_postroom(
                        run_args, run, nsd.nameserver(), args.workdir, args.profile
                    )
                else:
                    result = run_postfix(run_args, run)
                result.workload = workload.name
                results.append(result)
                if not args.json:
                    print_run(result)
    except (RuntimeError, OSError) as failure:  # a peer that would not start, a timeout
        print(f"bench/relay.py: {failure}", file=sys.stderr)
        return 2
    summary = summarise(results, args.workloads)
    if args.json:
        parameters = {
            key: value
            for key, value in vars(args).items()
            if key not in ("json", "workdir", "profile_top", "workloads", "workload")
        }
        document = {
            "parameters": parameters
            | {
                "workloads": [workload.name for workload in args.workloads],
                "sink": SINK_IP,
                "cpus": os.cpu_count(),
                "cpu_source": cpu_source,
            },
            "runs": [asdict(result) for result in results],
            **summary,
        }
        print(json.dumps(document, indent=2, default=str))
    else:
        print_summary(
            summary,
            [
                f"medians of {args.repeat} run(s); {args.messages} messages, {args.clients} "
                f"sessions of {args.loadgen}; server CPU from {cpu_source}",
                "sign: Postfix relays unsigned (its figures are the reuse runs)"
                if any(workload.sign for workload in args.workloads)
                else "",
            ],
        )
        if args.profile:
            print_profile(args.profile, args.profile_top)
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    roles = {"_loadgen": loadgen_main, "_serve-profiled": serve_profiled_main}
    if len(sys.argv) > 1 and sys.argv[1] in roles:
        sys.exit(roles[sys.argv[1]](sys.argv[2:]))
    sys.exit(main(sys.argv[1:]))
