"""With the feedback worker busy on slow input, a plain RCPT is still answered at once.

The port 25 handler runs in-process behind real SMTP sessions on a loopback
socket; the clients are raw asyncio connections (no thread of their own). More
bounces arrive than the event loop's default executor has threads (min(32,
CPUs + 4)); the inbox holds each one it is given (a stand-in for a report that
takes long to read). Then, on another connection, RCPT to a mailbox, whose
lookup runs in the default executor. Before the feedback worker, the bounces
filled that executor and the RCPT waited for them (here: until the test gave
up); now they hold the worker's one thread and backlog only, the bounces past
those are refused at once with 451 4.3.2, and the RCPT is answered in
milliseconds (the assertion allows 3 s).
"""

from __future__ import annotations

import asyncio
import os
import time

from tests.fakes.bounce_intake import DOMAIN, FakeIntake, inbound_handler
from tests.fakes.smtp_listener import listening

from postroom.mta.bounce.worker import FeedbackWorker

SLOW_BOUNCES = min(32, (os.cpu_count() or 1) + 4) + 4
RCPT_DEADLINE_S = 3.0
BOUNCE = (
    b"From: MAILER-DAEMON@far.test\r\nSubject: Undelivered Mail\r\n\r\n"
    b"<user@far.test>: 550 5.1.1 user unknown\r\n"
)


class Client:
    """A minimal SMTP client on asyncio streams: one command, one (multi-line) reply."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        client = cls(*await asyncio.open_connection("127.0.0.1", port))
        await client.reply()
        await client.command(b"EHLO client.test")
        return client

    async def reply(self) -> bytes:
        lines = []
        while True:
            line = await self.reader.readline()
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return b"".join(lines)

    async def command(self, line: bytes) -> bytes:
        self.writer.write(line + b"\r\n")
        return await self.reply()

    async def send(self, rcpt: str, data: bytes) -> bytes:
        await self.command(b"MAIL FROM:<>")
        await self.command(b"RCPT TO:<%s>" % rcpt.encode())
        await self.command(b"DATA")
        self.writer.write(data + b".\r\n")
        return await self.reply()

    def close(self) -> None:
        self.writer.close()


async def test_rcpt_is_answered_while_slow_bounces_hold_the_feedback_worker() -> None:
    intake = FakeIntake(FeedbackWorker(threads=1, backlog=2, time_limit_s=30))
    intake.inbox.release.clear()
    clients: list[Client] = []
    async with listening(inbound_handler(intake)) as port:
        try:
            for _ in range(SLOW_BOUNCES):
                clients.append(await Client.connect(port))
            bounces = [
                asyncio.create_task(client.send(f"bounce+good@{DOMAIN}", BOUNCE))
                for client in clients
            ]
            expected_refusals = SLOW_BOUNCES - intake.worker.capacity
            for _ in range(500):  # until all have arrived: held, waiting or refused (5 s)
                if intake.inbox.entered and sum(t.done() for t in bounces) >= expected_refusals:
                    break
                await asyncio.sleep(0.01)

            plain = await Client.connect(port)
            clients.append(plain)
            await plain.command(b"MAIL FROM:<someone@far.test>")
            started = time.monotonic()
            reply = await asyncio.wait_for(
                plain.command(f"RCPT TO:<alice@{DOMAIN}>".encode()), RCPT_DEADLINE_S
            )
            assert reply.startswith(b"250 "), reply
            assert time.monotonic() - started < RCPT_DEADLINE_S

            # The bounces past the worker's thread and backlog were refused, not queued.
            refused = [task for task in bounces if task.done()]
            assert len(refused) == expected_refusals
            assert all(task.result().startswith(b"451 4.3.2 ") for task in refused)
        finally:
            intake.inbox.release.set()
        answers = await asyncio.wait_for(asyncio.gather(*bounces), 20)
        assert sum(answer.startswith(b"250 ") for answer in answers) == intake.worker.capacity
        for client in clients:
            client.close()
