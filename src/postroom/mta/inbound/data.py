"""Reading the DATA phase in one piece instead of line by line.

`read_message(reader, ...)` returns the message as the client meant it
(dot-unstuffed, RFC 5321 4.5.2) or the problem that makes it unacceptable.
The only end of data is CRLF "." CRLF (RFC 5321 4.1.1.4); a bare LF or CR
never ends it, so the SMTP smuggling variants stay inside the message, where
the session refuses them. Limits: `max_size_bytes` (552 5.3.4 after the
client finished sending, RFC 5321 4.5.3.1.7) and `max_line_bytes` per line.
`discard_until` drops input past a stream limit up to a separator (the
session uses it for overlong command lines too).

Why not aiosmtpd's reader: it costs a coroutine round trip and a log call per
line, about a third of the event loop's time per 2 KB message. Here one
`readuntil` finds the terminator in C. It needs two things asyncio's
StreamReader keeps private: its `_limit` (raised for the duration of DATA, as
the command-phase limit is one line) and its `_buffer` (a CRLF is put in
front, so that a message whose first line is the terminator ends there too).
Both have been stable since Python 3.7; tests/unit covers them.

Untrusted input: every byte.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from postroom.core.reply import Reply

TERMINATOR = b"\r\n.\r\n"


@dataclass(frozen=True, slots=True)
class DataResult:
    content: bytes | None
    problem: Reply | None


async def read_message(
    reader: asyncio.StreamReader, *, max_size_bytes: int, max_line_bytes: int
) -> DataResult:
    """Read up to and including CRLF.CRLF; `max_line_bytes` counts the CRLF."""
    original_limit = reader._limit  # type: ignore[attr-defined]
    reader._buffer[:0] = b"\r\n"  # type: ignore[attr-defined]
    # Room for the message, its terminator and the CRLF we put in front.
    reader._limit = max_size_bytes + len(TERMINATOR) + 2  # type: ignore[attr-defined]
    try:
        try:
            raw = await reader.readuntil(TERMINATOR)
        except asyncio.LimitOverrunError as overrun:
            await discard_until(reader, TERMINATOR, overrun.consumed)
            return DataResult(
                None, Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
            )
    finally:
        reader._limit = original_limit  # type: ignore[attr-defined]
    # raw = CRLF + wire data + "." CRLF; the last line's CRLF belongs to the message.
    wire = raw[:-3]
    if len(wire) - 2 > max_size_bytes:
        return DataResult(
            None, Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
        )
    # A dot-stuffed line may be one octet longer on the wire than in the message.
    if len(wire) > max_line_bytes and max(map(len, wire.split(b"\r\n"))) > max_line_bytes - 1:
        return DataResult(
            None, Reply(500, "5.5.2", "Line too long (RFC 5321 4.5.3.1.6 allows 1000 octets)")
        )
    return DataResult(wire.replace(b"\r\n.", b"\r\n")[2:], None)


async def discard_until(reader: asyncio.StreamReader, separator: bytes, consumed: int) -> None:
    """After a LimitOverrunError that `consumed` bytes: drop what arrives up to and
    including `separator` (an oversized message, an overlong command line), keeping
    memory bounded."""
    while True:
        await reader.readexactly(consumed)
        try:
            await reader.readuntil(separator)
            return
        except asyncio.LimitOverrunError as overrun:
            consumed = overrun.consumed
