"""Nothing is lost: SIGKILL the server while it accepts and delivers, restart it,
and every message that got a 250 reaches the sink (duplicates are counted and
reported; a duplicate is an attempt whose outcome died with the process). With
`[server] workers = 2`: the whole service (the supervisor, whose workers die with
it), and one worker at a time, which the supervisor starts again and whose leases
come back at once (well before `[delivery] lease`)."""

from __future__ import annotations

import os
import queue
import signal
import smtplib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.flow.conftest import CRASH_IP, World, start_postroom
from tests.peers.postroom import PostroomServer
from tests.peers.sinks import AiosmtpdSink

pytestmark = pytest.mark.flow

MESSAGES = 400
CLIENTS = 8
KILL_AFTER_ACCEPTED = (120, 260)  # two crashes, at these counts of 250s


@pytest.fixture
def crash_sink(world: World) -> Iterator[AiosmtpdSink]:
    # A slow sink keeps deliveries in flight and in the queue when the kill comes.
    with AiosmtpdSink(CRASH_IP, world.sink_port, script={"data_delay_s": 0.01}) as sink:
        yield sink


def send_one(port: int, index: int) -> None:
    body = f"Subject: crash {index}\r\nMessage-ID: <crash-{index}@src.test>\r\n\r\nx\r\n"
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.sendmail("app@src.test", [f"user{index}@crash.test"], body.encode())


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_while_accepting_and_delivering_loses_nothing(
    world: World, crash_sink: AiosmtpdSink, tmp_path, workers: int
) -> None:
    server = start_postroom(tmp_path, world, workers=workers)

    def crash() -> None:
        pids = server.worker_pids()
        server.kill()
        deadline = time.monotonic() + 5
        while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()], "workers outlived it"
        time.sleep(0.3)
        server.start()

    accepted, seen, duplicates = send_while_crashing(server, crash_sink, crash)
    report(server, accepted, seen, duplicates, "SIGKILLs of the service")


def test_sigkill_of_one_worker_loses_nothing(
    world: World, crash_sink: AiosmtpdSink, tmp_path
) -> None:
    server = start_postroom(tmp_path, world, workers=2)
    killed: list[int] = []

    def crash() -> None:
        pid = server.worker_pids()[len(killed) % 2]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (
            len(server.worker_pids()) < 2 or pid in server.worker_pids()
        ):
            time.sleep(0.05)

    accepted, seen, duplicates = send_while_crashing(server, crash_sink, crash)
    report(server, accepted, seen, duplicates, "SIGKILLs of one worker")
    assert server.log().count("died (signal SIGKILL)") == len(KILL_AFTER_ACCEPTED)


def send_while_crashing(
    server: PostroomServer, sink: AiosmtpdSink, crash: Callable[[], None]
) -> tuple[set[int], set[int], int]:
    """Send MESSAGES from CLIENTS threads, `crash()` at each KILL_AFTER_ACCEPTED count
    of 250s; (accepted, delivered, duplicate deliveries) once all arrived or 90 s passed."""
    to_send: queue.Queue[int] = queue.Queue()
    for index in range(MESSAGES):
        to_send.put(index)
    accepted: set[int] = set()
    stop_at = time.monotonic() + 120

    def client() -> None:
        while time.monotonic() < stop_at:
            try:
                index = to_send.get_nowait()
            except queue.Empty:
                return
            try:
                send_one(server.smtp_port, index)
            except (OSError, smtplib.SMTPException):
                # Refused or cut by the crash: no 250, so the client still owns it.
                to_send.put(index)
                time.sleep(0.2)
                continue
            accepted.add(index)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for kill_at in KILL_AFTER_ACCEPTED:
        deadline = time.monotonic() + 60
        while len(accepted) < kill_at and time.monotonic() < deadline:
            time.sleep(0.01)
        crash()
    for thread in threads:
        thread.join(timeout=120)

    # Well below [delivery] lease (600 s): what a dead process held came back at its restart.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        delivered = [m for m in sink.messages() if b"crash-" in m.data]
        seen = {int(m.data.split(b"<crash-")[1].split(b"@")[0]) for m in delivered}
        if accepted <= seen:
            break
        time.sleep(0.5)
    server.stop()
    return accepted, seen, len(delivered) - len(seen)


def report(
    server: PostroomServer, accepted: set[int], seen: set[int], duplicates: int, what: str
) -> None:
    lost = accepted - seen
    print(
        f"\ncrash safety: {len(accepted)} accepted, {len(seen)} delivered, "
        f"{len(lost)} lost, {duplicates} duplicate deliveries after 2 {what}"
    )
    assert len(accepted) == MESSAGES
    assert not lost, f"lost after SIGKILL: {sorted(lost)[:20]}\n{server.log()[-3000:]}"
