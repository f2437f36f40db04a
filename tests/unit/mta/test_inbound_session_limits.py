"""Junk commands and errors per session, as Postfix's smtpd counts them: a real
session on port 0 (aiosmtpd's default hooks accept everything), a real client.

Timing is asserted from below only: a delayed reply takes at least the error
sleep, however loaded the machine; nothing is asserted to be fast."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from postroom.mta.inbound.session import ConnectionLimits, ErrorLimits, Session

REPLY_TIMEOUT_S = 10.0


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def reply(self) -> bytes:
        """One reply (its last line for a multi-line one); b"" at EOF."""
        while True:
            line = await asyncio.wait_for(self.reader.readline(), REPLY_TIMEOUT_S)
            if line[3:4] != b"-":
                return line.rstrip(b"\r\n")

    async def command(self, line: bytes) -> bytes:
        self.writer.write(line + b"\r\n")
        return await self.reply()


@asynccontextmanager
async def session(limits: ErrorLimits) -> AsyncIterator[Client]:
    server = await asyncio.get_running_loop().create_server(
        lambda: Session(
            object(),  # no hooks: aiosmtpd's defaults accept every command
            limits=ConnectionLimits(max_total=10, max_per_ip=10),
            max_line_length=998,
            idle_timeout_s=30,
            data_timeout_s=30,
            error_limits=limits,
            hostname="mx.test",
        ),
        "127.0.0.1",
        0,
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    client = Client(reader, writer)
    try:
        assert (await client.reply()).startswith(b"220 ")
        yield client
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


async def test_junk_commands_count_as_errors_past_the_limit_then_slow_down_then_disconnect() -> (
    None
):
    limits = ErrorLimits(junk_commands=5, soft_errors=2, hard_errors=4, error_sleep_s=0.3)
    async with session(limits) as client:
        durations, replies = [], []
        for _ in range(9):
            started = time.monotonic()
            replies.append(await client.command(b"NOOP"))
            durations.append(time.monotonic() - started)
        # Junk 6 and 7 are errors 1 and 2; from then on every reply waits.
        assert all(reply.startswith(b"250 ") for reply in replies), replies
        assert min(durations[7:]) >= 0.3, durations
        # Error 4 (junk 9) reaches the hard limit: 421 at once, then the end.
        assert (await client.reply()).startswith(b"421 4.7.0 ")
        assert await client.reply() == b""


async def converse(client: Client, exchanges: list[tuple[bytes | None, bytes]]) -> None:
    """Send each command (None: send nothing) and check how its reply begins."""
    for command, expected in exchanges:
        reply = await (client.reply() if command is None else client.command(command))
        assert reply.startswith(expected), (command, reply)


async def test_errors_are_4xx_and_5xx_replies_and_successes_do_not_count() -> None:
    limits = ErrorLimits(junk_commands=100, soft_errors=10, hard_errors=3, error_sleep_s=0)
    async with session(limits) as client:
        await converse(
            client,
            [
                (b"FOO", b"500 5.5.2 "),
                (b"NOOP", b"250 "),
                (b"MAIL FROM:<a@x.test>", b"503 5.5.1 "),  # no EHLO yet
                (b"EHLO client.test", b"250 "),
                (b"MAIL FROM:<a@x.test", b"501 5.1.7 "),
                (None, b"421 4.7.0 "),  # the third error, answered at once
                (None, b""),
            ],
        )


async def test_a_message_accepted_clears_both_counts() -> None:
    limits = ErrorLimits(junk_commands=2, soft_errors=10, hard_errors=3, error_sleep_s=0)
    async with session(limits) as client:
        await converse(
            client,
            [
                (b"FOO", b"500 "),
                (b"NOOP", b"250 "),
                (b"EHLO client.test", b"250 "),  # junk 2
                (b"MAIL FROM:<a@x.test>", b"250 "),
                (b"RCPT TO:<b@y.test>", b"250 "),
                (b"DATA", b"354 "),
                (b"Subject: x\r\n\r\nbody\r\n.", b"250 "),
                # Without the reset, junk 3 and 4 would be errors 2 and 3, and the end.
                (b"NOOP", b"250 "),
                (b"NOOP", b"250 "),
                (b"FOO", b"500 "),
                (b"FOO", b"500 "),
                (b"NOOP", b"250 "),
            ],
        )
