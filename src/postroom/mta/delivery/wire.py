"""The outbound SMTP wire after the handshake: pipelined replies and the DATA payload.

- `ReplyStream` is the asyncio protocol that takes over a connection's
  transport once aiosmtplib has opened the session (connect, greeting, EHLO,
  STARTTLS): commands go out as bytes, replies are parsed as they arrive and
  queued in order, however the server's packets split or join them, so the
  replies of an RFC 2920 pipelined group can be taken one by one.
- `data_payload(body)` is RFC 5321 4.5.2 transparency: CRLF line endings,
  leading periods doubled, CRLF.CRLF appended.

Untrusted input: the remote server's replies; reply lines are bounded in length
and each reply in size (as aiosmtplib bounds its own).
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from typing import cast

# Bounds on what a server may send as one reply (as aiosmtplib's own limits).
_MAX_REPLY_LINE_BYTES = 8192
_MAX_REPLY_BYTES = 4 * _MAX_REPLY_LINE_BYTES
_LINE_ENDING = re.compile(rb"\r\n|\r|\n")
_LEADING_PERIOD = re.compile(rb"^\.", re.MULTILINE)


def data_payload(body: bytes) -> bytes:
    """The bytes that follow a 354 for `body` (RFC 5321 4.5.2 transparency).

    Line endings become CRLF, a period that starts a line is doubled, and the
    terminating CRLF.CRLF is appended (after a CRLF of our own when the body
    does not end with one).
    """
    crlf = body.count(b"\r\n")
    if body.count(b"\r") != crlf or body.count(b"\n") != crlf:
        body = _LINE_ENDING.sub(b"\r\n", body)
    if body.startswith(b".") or b"\n." in body:
        body = _LEADING_PERIOD.sub(b"..", body)
    return body + (b".\r\n" if body.endswith(b"\r\n") else b"\r\n.\r\n")


class ReplyStream(asyncio.Protocol):
    """The session after the handshake: commands out, replies parsed as they arrive.

    Complete replies are queued in order, however the server's packets split or
    join them, so a pipelined group's replies can be taken one by one; taking a
    reply that is already queued does not wait. A reply when none is owed
    (unsolicited) is dropped. A 421 ends the stream after it is queued: the
    server is closing the session (RFC 5321 3.8).
    """

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport = cast(asyncio.Transport, transport)
        self._partial = b""
        self._lines: list[bytes] = []
        self._reply_bytes = 0
        self._replies: deque[tuple[int, str]] = deque()
        self._owed = 0
        # Resolved with True on a timeout, False when replies arrive or the stream breaks.
        self._waiter: asyncio.Future[bool] | None = None
        self._broken = ""
        transport.set_protocol(self)

    @property
    def is_open(self) -> bool:
        return not self._broken and not self._transport.is_closing()

    def send(self, commands: bytes, replies: int) -> None:
        """Write one or more commands; `replies` is how many replies they owe."""
        if not self.is_open:
            raise ConnectionError(self._broken or "connection closed")
        self._owed += replies
        self._transport.write(commands)

    async def reply(self, timeout_s: float) -> tuple[int, str]:
        """The next reply (code, text with lines joined by LF), waiting at most `timeout_s`."""
        if not self._replies:
            if self._broken:
                raise ConnectionError(self._broken)
            waiter = self._waiter = self._loop.create_future()
            timer = self._loop.call_later(timeout_s, self._time_out, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
            if not self._replies:
                timed_out = waiter.result()
                raise TimeoutError(self._broken) if timed_out else ConnectionError(self._broken)
        return self._replies.popleft()

    def close(self, *, abort: bool = False) -> None:
        self._break("connection closed by us")
        if abort:
            self._transport.abort()
        else:
            self._transport.close()

    # asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        if self._broken:
            return
        lines = (self._partial + data if self._partial else data).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > _MAX_REPLY_LINE_BYTES:
            self._fail("reply line too long")
            return
        for line in lines:
            if not self._take_line(line):
                break
        if self._replies and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(False)

    def eof_received(self) -> bool:
        self._break("connection closed by the server")
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._break(f"connection lost: {exc}" if exc else "connection lost")

    # internals

    def _take_line(self, line: bytes) -> bool:
        code = line[:3]
        if not (len(code) == 3 and code.isdigit() and line[3:4] in (b" ", b"-", b"\r", b"")):
            self._fail(f"malformed reply line {line[:80]!r}")
            return False
        self._reply_bytes += len(line)
        if len(line) > _MAX_REPLY_LINE_BYTES or self._reply_bytes > _MAX_REPLY_BYTES:
            self._fail("reply too long")
            return False
        self._lines.append(line[4:].strip(b" \t\r"))
        if line[3:4] == b"-":
            return True
        text = b"\n".join(self._lines).decode("utf-8", "surrogateescape")
        self._lines = []
        self._reply_bytes = 0
        if self._owed:
            self._owed -= 1
            self._replies.append((int(code), text))
        if code == b"421":
            self._break("the server is closing the connection (421)")
            self._transport.close()
            return False
        return True

    def _fail(self, reason: str) -> None:
        # The stream is out of step with the server: nothing after this can be trusted.
        self._break(reason)
        self._transport.abort()

    def _time_out(self, waiter: asyncio.Future[bool]) -> None:
        if not waiter.done():
            waiter.set_result(True)
            self._fail("timed out waiting for the server's reply")

    def _break(self, reason: str) -> None:
        if not self._broken:
            self._broken = reason
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(False)
