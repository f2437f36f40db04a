"""Nothing is lost: SIGKILL the server while it accepts and delivers, restart it,
and every message that got a 250 reaches the sink (duplicates are counted and
reported; a duplicate is an attempt whose outcome died with the process)."""

from __future__ import annotations

import queue
import smtplib
import threading
import time
from collections.abc import Iterator

import pytest
from tests.flow.conftest import CRASH_IP, World, start_postroom
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


def test_sigkill_while_accepting_and_delivering_loses_nothing(
    world: World, crash_sink: AiosmtpdSink, tmp_path
) -> None:
    server = start_postroom(tmp_path, world)
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
        server.kill()
        time.sleep(0.3)
        server.start()
    for thread in threads:
        thread.join(timeout=120)

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        delivered = [m for m in crash_sink.messages() if b"crash-" in m.data]
        seen = {int(m.data.split(b"<crash-")[1].split(b"@")[0]) for m in delivered}
        if accepted <= seen:
            break
        time.sleep(0.5)
    server.stop()
    lost = accepted - seen
    duplicates = len(delivered) - len(seen)
    print(
        f"\ncrash safety: {len(accepted)} accepted, {len(seen)} delivered, "
        f"{len(lost)} lost, {duplicates} duplicate deliveries after 2 SIGKILLs"
    )
    assert len(accepted) == MESSAGES
    assert not lost, f"lost after SIGKILL: {sorted(lost)[:20]}\n{server.log()[-3000:]}"
