"""Connection cost: server CPU per SMTP connection, postroom vs bare aiosmtpd vs Postfix.

Contract (`.venv/bin/python bench/connections.py [options]`, as root, from the
repo root): `--connections` K connections, `--concurrency` C at a time, each
doing connect, banner, EHLO, QUIT (with `--message`: EHLO, then one MAIL, RCPT
to `user@bench.test` and DATA of `--size` bytes, then QUIT), against

- postroom: `postroom serve` (tests/peers/postroom.py via bench/relay.py's
  `ProfiledPostroom` and `postroom_config`: fresh SQLite state, loopback,
  `[logging] level = "warning"`, `[server] workers = 1` when the tree knows
  that key), its DNS from an NSD serving `bench.test MX → 127.0.0.10`, its
  deliveries to a Postfix `smtp-sink` there;
- aiosmtpd: a bare `aiosmtpd.smtp.SMTP` with a trivial handler (DATA: 250) in
  its own process (this file's `_bare-aiosmtpd` role, uvloop as `serve` uses);
- Postfix: relay.py's private instance (tests/peers/postfix.py), relaying to
  the same sink (skipped with `--no-postfix`).

Per run and server: server CPU seconds (utime+stime of the server's process
tree from /proc, relay.py's `sample_tree`: before the load generator starts
and once the server has gone quiet, bounded) divided by K, in ms; with
`--message` that includes relaying the message (aiosmtpd drops it). The load
generator is this file's `_loadgen` role in its own process (uvloop); each run
is checked (no client error, K sessions completed). Runs alternate the order
of servers `--repeat` times; medians are printed (`--json`: one document).

`--compare NAME=DIR` (repeatable) adds postroom run from another source tree
(DIR holds its `postroom` package, e.g. `git archive REV src | tar -x -C /tmp/rev`
then DIR=/tmp/rev/src; PYTHONPATH puts it before the installed one), labelled
`postroom@NAME` and alternated with the others: before/after in the same run.

`--profile FILE` runs postroom once under cProfile (relay.py's `_serve-profiled`
role; thread CPU time) and prints the top functions.

Loopback only; every wait is bounded (`--timeout` per run). Exit status: 0 when
every run verified, 1 otherwise, 2 for a setup failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import relay  # bench/ is sys.path[0] when this file runs as a script

SERVERS = ("postroom", "aiosmtpd", "postfix")
SETTLE_MAX_S = 20.0


# -- the load generator (its own process) -----------------------------------------


async def _loadgen(
    host: str, port: int, connections: int, concurrency: int, message: bytes | None
) -> dict[str, Any]:
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    start = time.monotonic()
    remaining = iter(range(connections))
    state = {"completed": 0, "errors": 0}
    first_errors: list[str] = []
    envelope = f"MAIL FROM:<{relay.SENDER}>\r\nRCPT TO:<{relay.RECIPIENT}>\r\nDATA\r\n"

    async def expect(reader: asyncio.StreamReader, code: int, what: str) -> None:
        if (got := await relay._reply(reader)) != code:
            raise ConnectionError(f"{what}: {got}")

    async def one() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            await expect(reader, 220, "banner")
            writer.write(b"EHLO client.bench.test\r\n")
            await expect(reader, 250, "EHLO")
            if message is not None:
                writer.write(envelope.encode())  # one write: the reads stay in step
                await expect(reader, 250, "MAIL")
                await expect(reader, 250, "RCPT")
                await expect(reader, 354, "DATA")
                writer.write(message + b".\r\n")
                await expect(reader, 250, "end of DATA")
            writer.write(b"QUIT\r\n")
            await expect(reader, 221, "QUIT")
        finally:
            writer.close()

    async def worker() -> None:
        for _ in remaining:
            try:
                await one()
                state["completed"] += 1
            except (OSError, ConnectionError) as failure:
                state["errors"] += 1
                if len(first_errors) < 5:
                    first_errors.append(str(failure))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    usage = os.times()
    return {
        "elapsed_s": time.monotonic() - start,
        "completed": state["completed"],
        "errors": state["errors"],
        "first_errors": first_errors,
        "cpu_s": usage.user + usage.system,
    }


def loadgen_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="connections.py _loadgen")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--size", type=int, help="send one message of SIZE bytes")
    parser.add_argument("--timeout", type=float, required=True)
    args = parser.parse_args(argv)
    message = None
    if args.size:
        message = relay.make_message(0, args.size, "conn", relay.make_filler(args.size))
    work = _loadgen(args.host, args.port, args.connections, args.concurrency, message)
    result = _run(asyncio.wait_for(work, args.timeout))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


def _run(main: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


# -- a bare aiosmtpd server (its own process) --------------------------------------


class _AcceptAll:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


def bare_aiosmtpd_main(argv: list[str]) -> int:
    """`_bare-aiosmtpd HOST PORT`: aiosmtpd's SMTP per connection, until killed."""
    from aiosmtpd.smtp import SMTP

    host, port = argv[0], int(argv[1])

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        handler = _AcceptAll()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="bare.bench.test", loop=loop),
            host,
            port,
            reuse_address=True,
            backlog=1024,
        )
        async with server:
            await server.serve_forever()

    _run(serve())
    return 0


class BareAiosmtpd:
    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BareAiosmtpd:
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "_bare-aiosmtpd",
            relay.SERVER_IP,
            str(self.port),
        ]
        self.process = subprocess.Popen(command)
        relay.wait_for_greeting(relay.SERVER_IP, self.port, relay.READY_TIMEOUT_S)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)


# -- one run ----------------------------------------------------------------------


@dataclass
class RunResult:
    server: str
    run: int
    connections: int
    completed: int = 0
    client_errors: int = 0
    first_errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    server_cpu_s: float = 0.0
    server_cpu_ms_per_connection: float = 0.0
    server_cpu_by_process: dict[str, float] = field(default_factory=dict)
    loadgen_cpu_s: float = 0.0
    ok: bool = False


def drive(args: argparse.Namespace, result: RunResult, port: int, server_pid: int) -> None:
    """Run the load generator against SERVER_IP:port and fill `result`."""
    command = [
        sys.executable, str(Path(__file__).resolve()), "_loadgen",
        "--host", relay.SERVER_IP, "--port", str(port),
        "--connections", str(args.connections), "--concurrency", str(args.concurrency),
        "--timeout", str(args.timeout), *(["--size", str(args.size)] if args.message else []),
    ]  # fmt: skip
    loadgen = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert loadgen.stdin is not None and loadgen.stdout is not None
    try:
        ready, _, _ = select.select([loadgen.stdout], [], [], relay.READY_TIMEOUT_S)
        if not ready or loadgen.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"load generator not ready (exit {loadgen.poll()})")
        before = relay.sample_tree(server_pid)
        loadgen.stdin.write(b"go\n")
        loadgen.stdin.flush()
        output, _ = loadgen.communicate(timeout=args.timeout + 10)
    finally:
        if loadgen.poll() is None:
            loadgen.kill()
            loadgen.wait(5)
    if loadgen.returncode != 0:
        raise RuntimeError(f"load generator failed ({loadgen.returncode})")
    after = relay.settle(server_pid, SETTLE_MAX_S)
    report = json.loads(output.decode().strip().splitlines()[-1])
    result.completed = report["completed"]
    result.client_errors = report["errors"]
    result.first_errors = report["first_errors"]
    result.elapsed_s = round(report["elapsed_s"], 3)
    result.loadgen_cpu_s = round(report["cpu_s"], 3)
    result.server_cpu_s = round(after.total - before.total, 3)
    result.server_cpu_ms_per_connection = round(1000 * result.server_cpu_s / args.connections, 4)
    result.server_cpu_by_process = relay.cpu_by_name(before, after)
    result.ok = result.client_errors == 0 and result.completed == args.connections


def _workers_key_known() -> bool:
    from postroom.config import schema

    server = getattr(schema, "ServerConfig", None)
    fields = getattr(server, "__dataclass_fields__", None) or getattr(server, "model_fields", {})
    return "workers" in fields


def run_postroom(
    args: argparse.Namespace,
    run: int,
    nameserver: str,
    sink_port: int,
    profile: str | None,
    label: str = "postroom",
) -> RunResult:
    from tests.peers.postroom import free_tcp_port

    result = RunResult(label, run, args.connections)
    directory = Path(tempfile.mkdtemp(prefix="postroom-conn-bench-", dir=args.workdir))
    try:
        directory.chmod(0o755)
        port = free_tcp_port(relay.SERVER_IP)
        config = relay.postroom_config(directory / "state", port, nameserver, sink_port)
        if _workers_key_known():
            config = config.replace("[server]\n", "[server]\nworkers = 1\n", 1)
        server = relay.ProfiledPostroom(directory, config, port, profile, "cpu")
        if label in args.compare:
            server.server.env = {"PYTHONPATH": args.compare[label]}
        with server:
            assert server.process is not None
            drive(args, result, port, server.process.pid)
            result.ok = result.ok and server.stop() == 0
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return result


def run_aiosmtpd(args: argparse.Namespace, run: int) -> RunResult:
    from tests.peers.postroom import free_tcp_port

    result = RunResult("aiosmtpd", run, args.connections)
    port = free_tcp_port(relay.SERVER_IP)
    with BareAiosmtpd(port) as bare:
        assert bare.process is not None
        drive(args, result, port, bare.process.pid)
    return result


def run_postfix(args: argparse.Namespace, run: int, sink_port: int) -> RunResult:
    from tests.peers.postfix import PostfixRelay

    result = RunResult("postfix", run, args.connections)
    listen = f"{relay.SERVER_IP}:0"
    with PostfixRelay(listen=listen, relayhost=f"[{relay.SINK_IP}]:{sink_port}") as postfix:
        master = postfix.master_pid()
        if master is None:
            raise RuntimeError("private postfix has no master pid")
        drive(args, result, postfix.port, master)
    return result


# -- orchestration and output ------------------------------------------------------


def schedule(args: argparse.Namespace) -> Iterator[tuple[int, str]]:
    for run in range(1, args.repeat + 1):
        order = args.servers if run % 2 else list(reversed(args.servers))
        for server in order:
            yield run, server


def summarise(results: list[RunResult]) -> dict[str, dict[str, float]]:
    """Medians per server label."""
    medians: dict[str, dict[str, float]] = {}
    for server in sorted({result.server for result in results}):
        runs = [result for result in results if result.server == server]
        if runs:
            medians[server] = {
                "server_cpu_ms_per_connection": round(
                    statistics.median(r.server_cpu_ms_per_connection for r in runs), 4
                ),
                "connections_per_s": round(
                    statistics.median(r.connections / r.elapsed_s for r in runs if r.elapsed_s), 1
                ),
                "runs": len(runs),
            }
    return medians


def print_run(result: RunResult) -> None:
    flag = "ok" if result.ok else f"FAILED {result.client_errors} errors {result.first_errors}"
    print(
        f"run {result.run} {result.server:15s} {result.completed} connections in "
        f"{result.elapsed_s:.2f} s  server CPU {result.server_cpu_s:.3f} s "
        f"({result.server_cpu_ms_per_connection:.3f} ms/connection)  "
        f"loadgen CPU {result.loadgen_cpu_s:.2f} s  {flag}",
        flush=True,
    )
    print(f"      CPU by process: {json.dumps(result.server_cpu_by_process)}", flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/connections.py",
        description="Server CPU per SMTP connection: postroom, bare aiosmtpd, Postfix.",
    )
    parser.add_argument("--connections", type=int, default=5000, help="connections per run")
    parser.add_argument("--concurrency", type=int, default=20, help="connections at a time")
    parser.add_argument("--message", action="store_true", help="one MAIL/RCPT/DATA each")
    parser.add_argument("--size", type=int, default=2048, help="message size in bytes")
    parser.add_argument("--only", choices=SERVERS, action="append", help="run these servers")
    parser.add_argument("--no-postfix", action="store_true", help="skip the private Postfix")
    parser.add_argument("--repeat", type=int, default=3, help="runs per server (medians)")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound per run, seconds")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp"), help="postroom state parent")
    parser.add_argument(
        "--compare",
        metavar="NAME=DIR",
        action="append",
        default=[],
        help="also run postroom from the source tree DIR, as postroom@NAME",
    )
    parser.add_argument("--profile", metavar="FILE", help="one profiled postroom run → pstats")
    parser.add_argument("--profile-top", type=int, default=40, help="functions printed")
    args = parser.parse_args(argv)
    if args.connections < 1 or args.concurrency < 1 or args.repeat < 1 or args.size < 256:
        parser.error("--connections, --concurrency, --repeat must be >= 1 and --size >= 256")
    args.servers = list(args.only or SERVERS)
    compare = {}
    for option in args.compare:
        name, equals, directory = option.partition("=")
        if not (name and equals and Path(directory, "postroom").is_dir()):
            parser.error(f"--compare {option}: NAME=DIR, DIR holding the postroom package")
        compare[f"postroom@{name}"] = str(Path(directory).resolve())
    args.compare = compare
    args.servers += list(compare)
    if args.no_postfix and "postfix" in args.servers:
        args.servers.remove("postfix")
    if args.profile:
        args.servers, args.repeat = ["postroom"], 1
        args.profile = str(Path(args.profile).resolve())
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from tests.peers.dns import NsdServer, make_zone
    from tests.peers.sinks import SmtpSink

    if os.geteuid() != 0:
        print("bench/connections.py: run as root (Postfix, smtp-sink, NSD)", file=sys.stderr)
        return 2
    log = (lambda *_: None) if args.json else print
    log(
        f"connection bench: {args.connections} connections, {args.concurrency} at a time, "
        f"each {'EHLO, one message of ' + str(args.size) + ' bytes' if args.message else 'EHLO'}"
        f", QUIT; repeat {args.repeat}, {os.cpu_count()} CPUs"
    )
    zone = make_zone(relay.DOMAIN, ["@ IN MX 10 mx.bench.test.", f"mx IN A {relay.SINK_IP}"])
    results: list[RunResult] = []
    sink = SmtpSink(relay.SINK_IP, 0, hostname="mx.bench.test", record=False)
    with NsdServer({relay.DOMAIN: zone}) as nsd, sink:
        for run, server in schedule(args):
            if server.startswith("postroom"):
                profile = args.profile if server == "postroom" else None
                result = run_postroom(args, run, nsd.nameserver(), sink.port, profile, server)
            elif server == "aiosmtpd":
                result = run_aiosmtpd(args, run)
            else:
                result = run_postfix(args, run, sink.port)
            results.append(result)
            if not args.json:
                print_run(result)
    medians = summarise(results)
    if args.json:
        document = {
            "parameters": {k: v for k, v in vars(args).items() if k not in ("json", "workdir")},
            "runs": [asdict(result) for result in results],
            "median": medians,
        }
        print(json.dumps(document, indent=2, default=str))
    else:
        width = max(10, *(len(server) for server in medians))
        print(
            f"\n{'median':{width}s} {'CPU ms/connection':>18s} {'connections/s':>14s} {'runs':>5s}"
        )
        for server, figures in medians.items():
            print(
                f"{server:{width}s} {figures['server_cpu_ms_per_connection']:18.3f} "
                f"{figures['connections_per_s']:14.1f} {figures['runs']:5.0f}"
            )
        if args.profile:
            relay.print_profile(args.profile, args.profile_top)
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    roles = {"_loadgen": loadgen_main, "_bare-aiosmtpd": bare_aiosmtpd_main}
    if len(sys.argv) > 1 and sys.argv[1] in roles:
        sys.exit(roles[sys.argv[1]](sys.argv[2:]))
    sys.exit(main(sys.argv[1:]))
