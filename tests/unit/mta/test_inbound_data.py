"""read_message: the DATA phase read in one piece from a real asyncio StreamReader."""

from __future__ import annotations

import asyncio

import pytest

from postroom.mta.inbound.data import read_message

LINE_LIMIT = 1000


def reader_with(*chunks: bytes, eof: bool = False) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=LINE_LIMIT + 1)
    for chunk in chunks:
        reader.feed_data(chunk)
    if eof:
        reader.feed_eof()
    return reader


async def read(reader: asyncio.StreamReader, max_size: int = 10_000):  # type: ignore[no-untyped-def]
    return await read_message(reader, max_size_bytes=max_size, max_line_bytes=LINE_LIMIT)


async def test_plain_message_and_pipelined_commands_stay_in_the_reader() -> None:
    reader = reader_with(b"Subject: a\r\n\r\nbody\r\n.\r\nMAIL FROM:<x@y.test>\r\n")
    result = await read(reader)
    assert result.content == b"Subject: a\r\n\r\nbody\r\n"
    assert result.problem is None
    assert await reader.readuntil(b"\r\n") == b"MAIL FROM:<x@y.test>\r\n"
    assert reader._limit == LINE_LIMIT + 1  # the command-phase limit is back


async def test_empty_message_ends_at_a_first_line_dot() -> None:
    reader = reader_with(b".\r\nQUIT\r\n")
    assert (await read(reader)).content == b""
    assert await reader.readuntil(b"\r\n") == b"QUIT\r\n"


async def test_dot_unstuffing_at_every_line_start_including_the_first() -> None:
    reader = reader_with(b"..first\r\nmid\r\n..\r\n...dots\r\nnot.a.dot\r\n.\r\n")
    assert (await read(reader)).content == b".first\r\nmid\r\n.\r\n..dots\r\nnot.a.dot\r\n"


async def test_terminator_split_across_packets() -> None:
    reader = asyncio.StreamReader(limit=LINE_LIMIT + 1)
    reader.feed_data(b"Subject: a\r\n\r\nx\r")
    task = asyncio.ensure_future(read(reader))
    for part in (b"\n", b".", b"\r", b"\nNOOP\r\n"):
        await asyncio.sleep(0)
        assert not task.done()
        reader.feed_data(part)
    assert (await task).content == b"Subject: a\r\n\r\nx\r\n"


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n"])
async def test_bare_line_endings_never_end_data(fake_end: bytes) -> None:
    reader = reader_with(b"a" + fake_end + b"MAIL FROM:<evil@x.test>\r\n.\r\n")
    result = await read(reader)
    assert (
        result.content
        == b"a" + fake_end.replace(b"\r\n.", b"\r\n") + b"MAIL FROM:<evil@x.test>\r\n"
    )


async def test_oversized_message_is_refused_after_it_was_read_and_the_session_goes_on() -> None:
    big = b"Subject: big\r\n\r\n" + (b"x" * 98 + b"\r\n") * 50
    reader = reader_with(big, b".\r\nRSET\r\n")
    result = await read(reader, max_size=1000)
    assert result.content is None
    assert (result.problem.code, result.problem.enhanced) == (552, "5.3.4")
    assert await reader.readuntil(b"\r\n") == b"RSET\r\n"


async def test_size_exactly_at_the_limit_is_accepted() -> None:
    message = b"y" * 98 + b"\r\n"
    assert (await read(reader_with(message + b".\r\n"), max_size=len(message))).content == message
    refused = await read(reader_with(message + b".\r\n"), max_size=len(message) - 1)
    assert refused.problem is not None


async def test_long_line_is_refused_but_998_octets_with_a_stuffed_dot_pass() -> None:
    ok = b"." + b"z" * 997 + b"\r\n"  # 998 octets in the message, 999 on the wire
    assert (await read(reader_with(b"." + ok + b".\r\n"))).content == ok
    result = await read(reader_with(b"w" * 1200 + b"\r\n.\r\n"))
    assert (result.problem.code, result.problem.enhanced) == (500, "5.5.2")


async def test_connection_closed_mid_data_raises() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        await read(reader_with(b"partial\r\n", eof=True))
