"""What a connection costs the session, on a real loopback socket: the EHLO reply
leaves in one write, with the same lines as before (aiosmtpd pushes each line)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from postroom.mta.inbound.session import ConnectionLimits, Session

REPLY_TIMEOUT_S = 10.0


async def reply_lines(reader: asyncio.StreamReader) -> list[bytes]:
    lines = []
    while True:
        line = await asyncio.wait_for(reader.readline(), REPLY_TIMEOUT_S)
        lines.append(line)
        if line[3:4] != b"-":
            return lines


@asynccontextmanager
async def served(
    handler: Any = None, **options: Any
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter, list[Session]]]:
    sessions: list[Session] = []

    def new_session() -> Session:
        session = Session(
            handler if handler is not None else object(),
            limits=ConnectionLimits(max_total=10, max_per_ip=10),
            max_line_length=998,
            idle_timeout_s=30,
            data_timeout_s=30,
            hostname="mx.test",
            data_size_limit=1000,
            enable_SMTPUTF8=True,
            **options,
        )
        sessions.append(session)
        return session

    server = await asyncio.get_running_loop().create_server(new_session, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer, sessions
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


def count_writes(session: Session) -> list[bytes]:
    writes: list[bytes] = []
    real: Callable[[bytes], None] = session._writer.write

    def write(data: bytes) -> None:
        writes.append(data)
        real(data)

    session._writer.write = write  # type: ignore[method-assign]
    return writes


async def test_the_ehlo_reply_is_one_write_with_every_line() -> None:
    async with served() as (reader, writer, sessions):
        assert (await reply_lines(reader))[0].startswith(b"220 mx.test ")
        writes = count_writes(sessions[0])
        writer.write(b"EHLO client.test\r\n")
        lines = await reply_lines(reader)
        assert lines == [
            b"250-mx.test\r\n",
            b"250-SIZE 1000\r\n",
            b"250-8BITMIME\r\n",
            b"250-SMTPUTF8\r\n",
            b"250 HELP\r\n",
        ]
        assert writes == [b"".join(lines)]
        writer.write(b"NOOP\r\n")
        assert await reply_lines(reader) == [b"250 2.0.0 OK\r\n"]
        assert len(writes) == 2


class FailingEhloHook:
    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        return ["550 no thanks"]


async def test_an_ehlo_refused_by_the_handler_counts_as_an_error_and_is_sent() -> None:
    async with served(FailingEhloHook()) as (reader, writer, sessions):
        await reply_lines(reader)
        writer.write(b"EHLO client.test\r\n")
        assert await reply_lines(reader) == [b"550 no thanks\r\n"]
        assert sessions[0]._errors == 1
