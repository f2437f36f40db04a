"""Crash safety under load: kill -9 workers and the whole service while postroom relays.

Contract (`.venv/bin/python bench/crash.py [options]`, as root, from the repo root):
`postroom serve` with `[server] workers = --workers` (tests/peers/postroom.py, fresh
SQLite state, production durability) relays to a Postfix `smtp-sink` on 127.0.0.10
that records every message (tests/peers/sinks.py), `bench.test` resolving through a
private NSD. `--clients` threads send `--messages` messages, a new connection each (as
MX traffic arrives), each message with its own Message-ID; a message counts as
accepted when DATA got 250, and a client whose connection a crash cut sends it again.
While they run:
- at 25 % and 50 % of the messages accepted: SIGKILL of one worker (the supervisor
  starts it again, and it takes back its leases);
- at 75 %: SIGKILL of the supervisor (its workers die with it), then a new start on
  the same state, as systemd's Restart= would.
Then it waits (bounded) until the sink holds every accepted message and prints
accepted, delivered, lost (accepted, never delivered) and duplicates (delivered twice:
an attempt whose outcome died with its process; allowed, counted), the time each
worker took to come back, and the delivery rate. Exit status 0 when nothing was lost,
1 otherwise, 2 for a setup failure. Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import signal
import smtplib
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SINK_IP = "127.0.0.10"
DOMAIN = "bench.test"
KILLS = ((0.25, "worker"), (0.50, "worker"), (0.75, "service"))
_MESSAGE_ID = re.compile(rb"Message-ID: <crash-(\d+)@bench\.test>")


def message(index: int) -> bytes:
    return (
        f"From: bench@client.bench.test\r\nTo: user@{DOMAIN}\r\n"
        f"Subject: crash {index}\r\nMessage-ID: <crash-{index}@bench.test>\r\n\r\n"
        + ("x" * 76 + "\r\n")
        * 26
    ).encode()


class Load:
    """`clients` threads sending `messages` messages; `accepted` grows with each 250."""

    def __init__(self, port: int, messages: int, clients: int, deadline: float) -> None:
        self.port = port
        self.todo: queue.Queue[int] = queue.Queue()
        for index in range(messages):
            self.todo.put(index)
        self.accepted: set[int] = set()
        self.retries = 0
        self.last_error = ""
        self.deadline = deadline
        self.threads = [threading.Thread(target=self._client) for _ in range(clients)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(max(0.0, self.deadline - time.monotonic()))

    def _client(self) -> None:
        while time.monotonic() < self.deadline:
            try:
                index = self.todo.get_nowait()
            except queue.Empty:
                return
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as smtp:
                    smtp.sendmail("bench@client.bench.test", [f"user@{DOMAIN}"], message(index))
            except (OSError, smtplib.SMTPException) as error:
                self.retries += 1  # no 250: still ours to send
                self.last_error = repr(error)
                self.todo.put(index)
                time.sleep(0.1)
                continue
            self.accepted.add(index)


def wait_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def run(args: argparse.Namespace) -> int:
    from tests.peers.dns import make_zone

    zone = make_zone(DOMAIN, ["@ IN MX 10 mx.bench.test.", f"mx IN A {SINK_IP}"])
    directory = Path(tempfile.mkdtemp(prefix="postroom-crash-", dir=args.workdir))
    try:
        return _run(args, directory, zone)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _run(args: argparse.Namespace, directory: Path, zone: str) -> int:
    from tests.peers.dns import NsdServer
    from tests.peers.postroom import PostroomServer, flow_config, free_tcp_port
    from tests.peers.sinks import SmtpSink

    with (
        NsdServer({DOMAIN: zone}) as nsd,
        SmtpSink(SINK_IP, 0, hostname="mx.bench.test") as sink,
    ):
        port = free_tcp_port()
        config = flow_config(
            state_dir=directory / "state",
            smtp_port=port,
            nameserver=nsd.nameserver(),
            delivery_port=sink.port,
            workers=args.workers,
            inbound="max_connections_per_ip = 1000",
            extra='[logging]\nlevel = "warning"\n',
        )
        server = PostroomServer(directory, config, port).start()
        started = time.monotonic()
        load = Load(port, args.messages, args.clients, started + args.timeout)
        load.start()
        events: list[str] = []
        for number, (fraction, what) in enumerate(KILLS):
            if not wait_until(
                lambda f=fraction: len(load.accepted) >= f * args.messages, args.timeout
            ):
                print(
                    f"bench/crash.py: the load stalled at {len(load.accepted)} accepted "
                    f"({load.last_error}):\n" + server.log()[-3000:],
                    file=sys.stderr,
                )
                return 2
            at = len(load.accepted)
            if what == "worker" and args.workers > 1:
                victim = server.worker_pids()[number % args.workers]
                os.kill(victim, signal.SIGKILL)
                killed = time.monotonic()
                back = wait_until(
                    lambda victim=victim: (
                        len(server.worker_pids()) == args.workers
                        and victim not in server.worker_pids()
                    ),
                    30,
                )
                events.append(
                    f"kill -9 worker pid {victim} at {at} accepted: "
                    + (
                        f"successor started in {time.monotonic() - killed:.2f}s"
                        if back
                        else "NOT restarted"
                    )
                )
            elif what == "service":
                server.kill()
                killed = time.monotonic()
                server.start()
                events.append(
                    f"kill -9 of the service at {at} accepted: serving again in "
                    f"{time.monotonic() - killed:.2f}s"
                )
        load.join()

        def delivered() -> list[int]:
            found = (_MESSAGE_ID.search(m.data) for m in sink.messages())
            return [int(match.group(1)) for match in found if match is not None]

        wait_until(lambda: load.accepted <= set(delivered()), args.timeout)
        elapsed = time.monotonic() - started
        seen = delivered()
        server.stop()
    lost = load.accepted - set(seen)
    for event in events:
        print(event)
    print(
        f"crash bench: workers {args.workers}, {args.messages} messages, {args.clients} clients "
        f"(a connection each): {len(load.accepted)} accepted, {len(set(seen))} delivered, "
        f"{len(lost)} lost, {len(seen) - len(set(seen))} duplicates, {load.retries} client "
        f"retries; {len(set(seen)) / elapsed:.0f} msg/s delivered through the crashes"
    )
    if lost:
        print(f"lost: {sorted(lost)[:20]}", file=sys.stderr)
    return 0 if not lost and len(load.accepted) == args.messages else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/crash.py", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="postroom's [server] workers")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound of each wait, s")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp"))
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/crash.py: run as root (smtp-sink, NSD)", file=sys.stderr)
        return 2
    try:
        return run(args)
    except (RuntimeError, OSError) as failure:
        print(f"bench/crash.py: {failure}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
