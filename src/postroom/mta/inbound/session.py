"""The SMTP session on the wire: aiosmtpd's protocol with our edge rules.

aiosmtpd parses commands; this subclass makes what goes back RFC-correct and
bounded:
- every reply carries an RFC 3463 enhanced status code (RFC 2034), except the
  greeting, HELO/EHLO and 354 — aiosmtpd's own bare replies get one here, the
  single place where replies become text;
- `[smtp.inbound] max_line_length` bounds DATA lines; `idle_timeout` bounds
  the wait for a command and `data_timeout` the whole DATA phase, and a timed-
  out client hears 421 4.4.2 before the connection closes;
- a per-client-IP and a global connection cap (421 4.7.0), counted by the
  `ConnectionLimits` that all sessions of a listener share.
Untrusted input: everything the client sends.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP

from postroom.mta.inbound.data import read_message

log = logging.getLogger("postroom.smtp")

# <local@domain> [params] with nothing an address parser would have to think about.
_PLAIN_PATH = re.compile(r"<(?:([A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+))?>(?: +(.*))?\Z")
_HAS_ENHANCED = re.compile(rb"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)")
# The enhanced code that best describes aiosmtpd's bare replies, by reply code.
_ENHANCED_FOR_CODE = {
    b"211": b"2.0.0",
    b"214": b"2.0.0",
    b"220": b"2.0.0",
    b"221": b"2.0.0",
    b"250": b"2.0.0",
    b"252": b"2.5.0",
    b"421": b"4.3.0",
    b"451": b"4.3.0",
    b"452": b"4.5.3",
    b"454": b"4.7.0",
    b"500": b"5.5.2",
    b"501": b"5.5.4",
    b"502": b"5.5.1",
    b"503": b"5.5.1",
    b"504": b"5.5.4",
    b"530": b"5.7.0",
    b"535": b"5.7.8",
    b"550": b"5.0.0",
    b"552": b"5.3.4",
    b"553": b"5.1.3",
    b"554": b"5.0.0",
    b"555": b"5.5.4",
}
# aiosmtpd texts we replace outright because they say too little.
_REWRITES = {
    b"552 Error: Too much mail data": b"552 5.3.4 Message size exceeds fixed maximum message size",
    b"500 Line too long (see RFC5321 4.5.3.1.6)": (
        b"500 5.5.2 Line too long (RFC 5321 4.5.3.1.6 allows 1000 octets)"
    ),
}


class ConnectionLimits:
    """Counts open sessions overall and per client address."""

    def __init__(self, *, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self._per_ip: Counter[str] = Counter()
        self._total = 0

    def admit(self, client_ip: str) -> bool:
        if self._total >= self.max_total or self._per_ip[client_ip] >= self.max_per_ip:
            return False
        self._total += 1
        self._per_ip[client_ip] += 1
        return True

    def release(self, client_ip: str) -> None:
        self._total -= 1
        self._per_ip[client_ip] -= 1
        if self._per_ip[client_ip] <= 0:
            del self._per_ip[client_ip]


class Session(SMTP):
    """One client connection. Created by the listener for each accepted socket."""

    def __init__(
        self,
        handler: Any,
        *,
        limits: ConnectionLimits,
        max_line_length: int,
        idle_timeout_s: float,
        data_timeout_s: float,
        **kwargs: Any,
    ) -> None:
        # StreamReader's limit counts the separator; +1 for the transparent dot.
        self.line_length_limit = max_line_length + 1
        super().__init__(handler, timeout=idle_timeout_s, **kwargs)
        self._limits = limits
        self._data_timeout_s = data_timeout_s
        self._admitted_ip: str | None = None
        self._plain_reply = False
        self._greeted = False

    # -- connection caps -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first_time = self.transport is None
        if first_time:
            peer = transport.get_extra_info("peername")
            client_ip = peer[0] if peer else ""
            if not self._limits.admit(client_ip):
                log.warning("refused connection from %s: too many connections", client_ip)
                transport.write(b"421 4.7.0 Too many connections, try again later\r\n")  # type: ignore[attr-defined]
                transport.close()
                return
            self._admitted_ip = client_ip
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._admitted_ip is not None:
            self._limits.release(self._admitted_ip)
            self._admitted_ip = None
        self._abandon_transaction()
        if self.session is not None:
            super().connection_lost(error)

    def _set_rset_state(self) -> None:
        # RSET, HELO/EHLO and STARTTLS start over; aiosmtpd hands the handler's RSET
        # hook the new envelope, so the old one is announced here.
        self._abandon_transaction()
        super()._set_rset_state()

    def _abandon_transaction(self) -> None:
        """A handler that holds something per transaction (submission: the project's
        message reservations) hears that it will not be finished."""
        abandoned = getattr(self.event_handler, "transaction_abandoned", None)
        if abandoned is not None and getattr(self, "envelope", None) is not None:
            abandoned(self.envelope)

    def eof_received(self) -> bool | None:
        if self.session is None or self._handler_coroutine is None:
            return False
        return super().eof_received()

    def _timeout_cb(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"421 4.4.2 Timeout exceeded, closing connection\r\n")  # type: ignore[attr-defined]
        super()._timeout_cb()

    # -- replies with enhanced codes -------------------------------------------

    async def push(self, status: str | bytes) -> None:
        response = status.encode("utf-8") if isinstance(status, str) else status
        if not self._greeted:  # the 220 greeting carries no enhanced code
            self._greeted = True
        elif not self._plain_reply:
            response = add_enhanced_code(response)
        await super().push(response)

    async def smtp_HELO(self, hostname: str) -> None:
        self._plain_reply = True  # RFC 2034: no enhanced codes in HELO/EHLO replies
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._plain_reply = False

    async def smtp_EHLO(self, hostname: str) -> None:
        self._plain_reply = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._plain_reply = False

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd parses every path with the email package's header parser, a
        # quarter of the event loop's time per message; plain paths need a regex.
        match = _PLAIN_PATH.match(arg)
        if match is not None:
            return match.group(1) or "<>", match.group(2) or ""
        return super()._getaddr(arg)

    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA preconditions, then the whole message in one read (data.py)."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        # The idle timer would otherwise bound the whole upload as well.
        self._reset_timeout(self._data_timeout_s)
        try:
            result = await read_message(
                self._reader,
                max_size_bytes=self.data_size_limit or 0,
                max_line_bytes=self.line_length_limit - 1,
            )
        finally:
            self._reset_timeout()
        if result.problem is not None:
            self._set_post_data_state()
            await self.push(result.problem.wire())
            return
        self.envelope.content = self.envelope.original_content = result.content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 2.0.0 OK" if status is MISSING else status)


def add_enhanced_code(response: bytes) -> bytes:
    """'503 Error: need MAIL command' → '503 5.5.1 Error: need MAIL command'."""
    if response in _REWRITES:
        return _REWRITES[response]
    if len(response) < 3 or response[:1] == b"3" or _HAS_ENHANCED.match(response):
        return response
    enhanced = _ENHANCED_FOR_CODE.get(response[:3])
    if enhanced is None:
        return response
    separator = response[3:4] or b" "
    return response[:3] + separator + enhanced + b" " + response[4:].lstrip()
