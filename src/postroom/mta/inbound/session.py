"""The SMTP session on the wire: aiosmtpd's protocol with our edge rules.

aiosmtpd runs the commands; this subclass owns what reaches them and what goes
back, for port 25 and submission alike:
- the command loop is ours (`_handle_client`): a line is what ends with CRLF
  (a bare LF or CR refuses the whole line, RFC 5321 2.3.8), arguments are
  strict UTF-8 or ASCII, paths are parsed strictly (wire.py: nothing guessed,
  no email-package fallback that "repairs" them), non-SMTP commands (an HTTP
  request, mail headers sent without a dialogue) end the session; aiosmtpd's
  PROXY protocol, call limits and handle_STARTTLS hook are not offered;
- junk commands and errors are counted as Postfix's smtpd(8) does: past
  `junk_command_limit` each HELO/EHLO/NOOP/RSET/VRFY/HELP counts as an error;
  errors are 4xx/5xx replies; from `soft_error_limit` errors on every reply
  waits `error_sleep`, at `hard_error_limit` the client hears 421 4.7.0 and is
  disconnected. A message accepted for delivery clears both counts. AUTH
  failures count too: the AUTH throttle works across sessions, this within one;
- every reply carries an RFC 3463 enhanced status code (RFC 2034), except the
  greeting, HELO/EHLO and 354 — aiosmtpd's own bare replies get one here, the
  single place where replies become bytes (never an encoding error: client
  text reaches replies only after strict decoding);
- `[smtp.inbound] max_line_length` bounds DATA lines; `idle_timeout` bounds
  the wait for a command and `data_timeout` the whole DATA phase, and a timed-
  out client hears 421 4.4.2 before the connection closes. No timer outlives
  its connection, and a STARTTLS handshake that does not complete (the client
  left, or the idle timer cut it) ends the session and frees its slot;
- a per-client-IP and a global connection cap (421 4.7.0), counted by the
  `ConnectionLimits` that all sessions of a listener share;
- a connection is cheap: what aiosmtpd's constructor finds by introspection
  per connection (AUTH mechanisms, handler hooks, command methods) is built
  once per (session class, handler) and reused, and the lines of the EHLO
  reply leave in one write.
Untrusted input: everything the client sends. What we log of it is escaped
once for all loggers (core/logsetup.py).
Config keys (through the listener): [smtp.inbound] max_line_length,
idle_timeout, data_timeout, max_message_size, junk_command_limit,
soft_error_limit, hard_error_limit, error_sleep.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiosmtpd.smtp import (
    ALLOWED_BEFORE_STARTTLS,
    DATA_SIZE_DEFAULT,
    MISSING,
    SMTP,
    TLSSetupException,
    _AuthMechAttr,
    login_always_fail,
    syntax,
)
from aiosmtpd.smtp import __ident__ as aiosmtpd_ident

from postroom.core.reply import Reply
from postroom.mta.inbound.data import discard_until, read_message
from postroom.mta.inbound.wire import (
    ARGUMENT_REFUSALS,
    BARE_LINE_ENDING,
    LINE_TOO_LONG,
    UNKNOWN_COMMAND,
    Command,
    add_enhanced_code,
    parse_command,
    parse_path,
)

log = logging.getLogger("postroom.smtp")

# Commands a client may repeat without moving a transaction forward (Postfix's
# SMTPD_CMD_FLAG_LIMIT set, with HELP, which Postfix does not implement).
JUNK_COMMANDS = frozenset({"HELO", "EHLO", "NOOP", "RSET", "VRFY", "HELP"})
# An HTTP client or proxy talking to an SMTP port: what follows is no SMTP dialogue.
NON_SMTP_VERBS = frozenset({"CONNECT", "GET", "HEAD", "POST", "PUT"})
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Error: too many errors, closing connection")
NON_SMTP = Reply(421, "4.7.0", "Error: not an SMTP command, closing connection")
# The client left: its task ends quietly.
_CLIENT_GONE = (ConnectionError, asyncio.IncompleteReadError)


@dataclass(frozen=True, slots=True)
class ErrorLimits:
    """Postfix's smtpd junk-command and error limits, per session."""

    junk_commands: int = 100
    soft_errors: int = 10
    hard_errors: int = 20
    error_sleep_s: float = 1.0


class SessionCounts(Protocol):
    """What caps a listener's sessions: this process's `ConnectionLimits`, or the
    node's across its workers (shared_limits.SharedConnectionLimits)."""

    def admit(self, client_ip: str) -> bool: ...

    def release(self, client_ip: str) -> None: ...


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


class _OwnAuthMethod:
    """A session's own AUTH mechanism (aiosmtpd's auth_PLAIN, auth_LOGIN) in a table
    that all sessions share: aiosmtpd calls `method(session, args)` as it would the
    session's bound method, which would be one more object (and cycle) per connection."""

    __slots__ = ("function",)

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function

    def __call__(self, session: SMTP, args: list[str]) -> Any:
        return self.function(session, session, args)


@dataclass(frozen=True, slots=True)
class _HandlerTables:
    """What aiosmtpd's constructor derives per connection by introspection
    (`inspect.getmembers`, `dir`, `inspect.signature`), built once per session class
    and handler, then shared read-only by the sessions (aiosmtpd only reads them):
    a third of a connection's CPU when done per connection, and no per-connection
    bound methods. The session's own methods are plain functions here: our command
    loop calls `method(session, argument)`; aiosmtpd's HELP reads their attributes.
    A handler's hooks are looked up when its first session starts, as the rest of a
    listener's setup: a hook assigned to the handler later is not seen."""

    handler: Any  # the identity the cache checks
    auth_methods: dict[str, _AuthMechAttr]
    handle_hooks: dict[str, Callable[..., Any]]
    ehlo_hook_ver: str | None
    smtp_methods: dict[str, Callable[..., Any]]

    @classmethod
    def build(cls, session_class: type[SMTP], handler: Any) -> _HandlerTables:
        # Mechanism names, the builtin ones first, a handler's overriding: aiosmtpd's.
        auth_methods = {
            getattr(member, "__auth_mechanism_name__", name[5:].replace("__", "-")): (
                _AuthMechAttr(_OwnAuthMethod(member), True)
                if owner is session_class
                else _AuthMechAttr(member, False)
            )
            for owner in (session_class, handler)
            for name, member in inspect.getmembers(owner)
            if name.startswith("auth_")
        }
        hooks = {
            name[7:]: getattr(handler, name) for name in dir(handler) if name.startswith("handle_")
        }
        return cls(
            handler=handler,
            auth_methods=auth_methods,
            handle_hooks=hooks,
            ehlo_hook_ver=_ehlo_hook_version(hooks.get("EHLO")),
            smtp_methods={
                name[5:]: getattr(session_class, name)
                for name in dir(session_class)
                if name.startswith("smtp_")
            },
        )


def _ehlo_hook_version(hook: Callable[..., Any] | None) -> str | None:
    """aiosmtpd's check of the handler's handle_EHLO: 5 arguments, or the deprecated 4."""
    if hook is None:
        return None
    arguments = len(inspect.signature(hook).parameters)
    if arguments == 4:
        warnings.warn(
            "Use the 5-argument handle_EHLO() hook instead of the 4-argument handle_EHLO() "
            "hook; support for the 4-argument handle_EHLO() hook will be removed in version 2.0",
            DeprecationWarning,
            stacklevel=3,
        )
        return "old"
    if arguments == 5:
        return "new"
    raise RuntimeError("Unsupported EHLO Hook")


# (session class, id(handler)) → tables. A listener has one handler for all its sessions;
# bounded, since tests build many handlers (each entry holds its handler).
_TABLES: dict[tuple[type, int], _HandlerTables] = {}
_TABLES_MAX = 32


def _tables_for(session_class: type[SMTP], handler: Any) -> _HandlerTables:
    key = (session_class, id(handler))
    tables = _TABLES.get(key)
    if tables is None or tables.handler is not handler:
        if len(_TABLES) >= _TABLES_MAX:
            _TABLES.clear()
        tables = _TABLES[key] = _HandlerTables.build(session_class, handler)
        log.debug(
            "%s sessions, AUTH mechanisms: %s",
            session_class.__name__,
            " ".join(
                name + ("(builtin)" if method.is_builtin else "")
                for name, method in sorted(tables.auth_methods.items())
            ),
        )
    return tables


class Session(SMTP):
    """One client connection. Created by the listener for each accepted socket."""

    def __init__(
        self,
        handler: Any,
        *,
        limits: SessionCounts,
        max_line_length: int,
        idle_timeout_s: float,
        data_timeout_s: float,
        hostname: str,
        error_limits: ErrorLimits = ErrorLimits(),
        implicit_tls: bool = False,
        data_size_limit: int | None = DATA_SIZE_DEFAULT,
        enable_SMTPUTF8: bool = False,
        ident: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        auth_required: bool = False,
        auth_require_tls: bool = True,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        # What aiosmtpd's SMTP.__init__ sets, from tables built once per handler instead
        # of per connection (tests/unit/mta/test_inbound_session_init.py pins that every
        # attribute it sets is set here, to the same value, but for the session's own
        # methods: shared functions rather than bound methods, see _HandlerTables).
        # Not offered: decode_data, authenticator/auth_callback, auth_exclude_mechanism,
        # command_call_limit, PROXY.
        tables = _tables_for(type(self), handler)
        # StreamReader's limit counts the separator; +1 for the transparent dot.
        self.line_length_limit = max_line_length + 1
        self.__ident__ = ident or aiosmtpd_ident
        self.loop = loop = loop or asyncio.get_running_loop()
        asyncio.StreamReaderProtocol.__init__(
            self,
            asyncio.StreamReader(loop=loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected,
            loop=loop,
        )
        self.event_handler = handler
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self._decode_data = False
        # aiosmtpd's EHLO adds to this class-level table, read only by aiosmtpd's own
        # command loop (ours applies wire.py's limits); cleared as aiosmtpd does, so
        # that it does not grow.
        self.command_size_limits.clear()
        self.hostname = hostname
        self.tls_context = tls_context
        self.require_starttls = tls_context and require_starttls
        self._timeout_duration = idle_timeout_s
        self._timeout_handle: asyncio.TimerHandle | None = None
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport: asyncio.BaseTransport | None = None
        self.session = None
        self.envelope = None
        self.transport: asyncio.BaseTransport | None = None
        self._handler_coroutine: asyncio.Task[None] | None = None
        if auth_required and not auth_require_tls and not implicit_tls:
            warnings.warn(
                "Requiring AUTH while not requiring TLS can lead to security vulnerabilities!",
                stacklevel=2,
            )
            log.warning("auth_required == True but auth_require_tls == False")
        # aiosmtpd knows TLS only as STARTTLS; on 465 the transport is TLS from the
        # first byte, so "AUTH needs TLS" holds by construction (and is no warning).
        self._auth_require_tls = auth_require_tls and not implicit_tls
        self._proxy_timeout = None
        self._auth_callback = login_always_fail
        self._authenticator = None
        self._auth_required = auth_required
        self._auth_methods = tables.auth_methods
        self._handle_hooks = tables.handle_hooks
        self._ehlo_hook_ver = tables.ehlo_hook_ver
        self._smtp_methods = tables.smtp_methods
        self._enforce_call_limit = False
        self._limits = limits
        self._data_timeout_s = data_timeout_s
        self._error_limits = error_limits
        self._client_ip = ""
        self._admitted_ip: str | None = None
        self._lost = False
        self._plain_reply = False
        self._greeted = False
        self._verb = ""  # of the command being executed
        # Set by `_getaddr` when it refuses a path: aiosmtpd's MAIL and RCPT push their
        # one "malformed address" reply next, which `push` replaces with ours.
        self._path_refusal: Reply | None = None
        self._errors = 0
        self._junk = 0
        self._inside_bare_line = False  # the last line ended with a bare LF
        self._held_lines: list[bytes] | None = None  # replies to write as one (EHLO)

    # -- connection caps, and nothing left behind -----------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first_time = self.transport is None
        if first_time:
            peer = transport.get_extra_info("peername")
            self._client_ip = client_ip = peer[0] if peer else ""
            if not self._limits.admit(client_ip):
                log.warning("refused connection from %s: too many connections", client_ip)
                transport.write(b"421 4.7.0 Too many connections, try again later\r\n")  # type: ignore[attr-defined]
                transport.close()
                return
            self._admitted_ip = client_ip
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._lost:  # a failed STARTTLS ends the session itself; asyncio may not
            return
        self._lost = True
        if self._admitted_ip is not None:
            self._limits.release(self._admitted_ip)
            self._admitted_ip = None
        self._abandon_transaction()
        if self.session is not None:
            super().connection_lost(error)

    def _reset_timeout(self, duration: float | None = None) -> None:
        # A task that ends after its connection (DATA cut short over TLS) passes
        # through here once more; a timer armed then would fire on nothing.
        if not self._lost:
            super()._reset_timeout(duration)

    def _set_post_data_state(self) -> None:
        # Every path that drops an envelope comes here: the end of DATA (delivered, or
        # refused by the handler or by this session before the handler saw it) and,
        # through `_set_rset_state`, RSET, HELO/EHLO and STARTTLS. aiosmtpd hands the
        # handler's hooks only the new envelope, so the old one is announced here.
        self._abandon_transaction()
        super()._set_post_data_state()

    def _abandon_transaction(self) -> None:
        """A handler that holds something per transaction (submission: the project's
        message reservations) hears that it will not be finished."""
        abandoned = getattr(self.event_handler, "transaction_abandoned", None)
        if abandoned is not None and getattr(self, "envelope", None) is not None:
            abandoned(self.envelope)

    def eof_received(self) -> bool:
        if self.session is not None and self._handler_coroutine is not None:
            super().eof_received()  # aiosmtpd cancels the session's task
        # False: the transport closes and `connection_lost` frees the slot. Kept open
        # (asyncio's default), a client that closed before its session task first ran
        # (the task is cancelled unstarted, so none of its cleanup runs) would hold its
        # slot until the idle timeout: connect-and-close in a loop filled the caps.
        return False

    def _timeout_cb(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"421 4.4.2 Timeout exceeded, closing connection\r\n")  # type: ignore[attr-defined]
        super()._timeout_cb()

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        """aiosmtpd's STARTTLS. When the handshake does not complete, asyncio tells
        the session nothing (its TLS layer was never connected to it): the session
        ends itself, or it would wait forever on a dead reader, holding its slot."""
        try:
            await super().smtp_STARTTLS(arg)
        except TLSSetupException as failure:
            reason = repr(failure.__cause__ or failure)
        else:
            # Answered without TLS (a syntax error), or TLS is up; a transport closed
            # under the handshake (the idle timer) lets aiosmtpd's wait end quietly.
            if self.transport is None or not self.transport.is_closing():
                return
            reason = "idle timeout during the handshake"
        self._log_client("STARTTLS failed: %s", reason)
        self.connection_lost(None)

    # -- the command loop ----------------------------------------------------------

    async def _handle_client(self) -> None:
        await self.push(f"220 {self.hostname} {self.__ident__}")
        while self.transport is not None and not self.transport.is_closing():
            try:
                if self._errors >= self._error_limits.hard_errors:
                    self._log_client("disconnected after %d errors", self._errors)
                    await self.push(TOO_MANY_ERRORS.wire())
                    self.transport.close()
                    return
                command = await self._read_command()
                if self._errors >= self._error_limits.soft_errors:  # every reply, as Postfix
                    self._timeout_handle.cancel()  # our delay is not the client's idleness
                    await asyncio.sleep(self._error_limits.error_sleep_s)
                    self._reset_timeout()
                if isinstance(command, Reply):
                    await self.push(command.wire())
                else:
                    await self._dispatch(command)
            except asyncio.CancelledError:
                self._writer.close()
                raise
            except _CLIENT_GONE:
                self._writer.close()  # nothing to answer, nothing to log
                return

    async def _read_command(self) -> Command | Reply:
        try:
            line = await self._reader.readuntil()
        except asyncio.LimitOverrunError as overrun:
            await discard_until(self._reader, b"\n", overrun.consumed)
            return LINE_TOO_LONG
        if self._inside_bare_line:  # the tail of a line that a bare LF did not end
            command: Command | Reply = BARE_LINE_ENDING
        else:
            command = parse_command(line, smtputf8=self.enable_SMTPUTF8)
        self._inside_bare_line = line[-2:] != b"\r\n"
        if command is BARE_LINE_ENDING:
            self._log_client("bare CR or LF in a command line")
        return command

    async def _dispatch(self, command: Command) -> None:
        verb = command.verb
        if verb in NON_SMTP_VERBS or ":" in verb:
            self._log_client("not an SMTP command: %s", verb)
            await self.push(NON_SMTP.wire())
            self.transport.close()  # type: ignore[union-attr]
            return
        if self.require_starttls and not self._tls_protocol and verb not in ALLOWED_BEFORE_STARTTLS:
            await self.push("530 5.7.0 Must issue a STARTTLS command first")
            return
        method = self._smtp_methods.get(verb)
        if method is None:
            await self.push(UNKNOWN_COMMAND.wire())
            return
        self._reset_timeout()
        self._verb = verb
        try:
            await method(self, command.argument)
        except _CLIENT_GONE:
            raise
        except Exception as error:  # a bug or a failing hook: 451, never a traceback
            await self.push(await self.handle_exception(error))
        if verb in JUNK_COMMANDS:
            self._junk += 1
            if self._junk > self._error_limits.junk_commands:
                self._errors += 1

    def _log_client(self, message: str, *args: object) -> None:
        helo = self.session.host_name if self.session is not None else None
        log.info("client=%s helo=<%s> " + message, self._client_ip, helo or "", *args)

    # -- replies ---------------------------------------------------------------

    async def push(self, status: str | bytes) -> None:
        response = status.encode("utf-8", "replace") if isinstance(status, str) else status
        if not self._greeted:  # the 220 greeting carries no enhanced code
            self._greeted = True
        elif not self._plain_reply:
            if self._path_refusal is not None:
                response, self._path_refusal = self._path_refusal.wire().encode(), None
            response = add_enhanced_code(response)
        if response[:1] in (b"4", b"5"):
            self._errors += 1
        if self._held_lines is not None:
            self._held_lines.append(response)
        else:
            await self._send(response)

    async def _send(self, response: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return  # the client left: writing would only make asyncio complain
        self._writer.write(response + b"\r\n")
        await self._writer.drain()

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        self._plain_reply = True  # RFC 2034: no enhanced codes in HELO/EHLO replies
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._plain_reply = False

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        """aiosmtpd's EHLO, whose reply lines (one push each) leave in one write: one
        send(2) instead of five or six."""
        self._plain_reply = True
        self._held_lines = held = []
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._plain_reply = False
            self._held_lines = None
            if held:
                await self._send(b"\r\n".join(held))

    @syntax("VRFY <address>")
    async def smtp_VRFY(self, arg: str | None) -> None:
        """One answer whatever is asked (RFC 5321 3.5.3): nothing parsed, nothing echoed."""
        if await self.check_auth_needed("VRFY"):
            return
        if not arg:
            await self.push("501 5.5.4 Syntax: VRFY <address>")
            return
        await self.push("252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery")

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd's own parser is the email package's header parser: slow (a
        # quarter of the event loop's time per message) and forgiving.
        parsed = parse_path(arg, null_allowed=self._verb == "MAIL")
        if parsed is None:
            self._log_client("%s refused: bad address syntax: %s", self._verb, arg)
            self._path_refusal = ARGUMENT_REFUSALS[self._verb]
            return None, None
        return parsed

    @syntax("DATA")
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
        reply = "250 2.0.0 OK" if status is MISSING else status
        if reply[:1] == "2":  # Postfix counts errors "without delivering mail"
            self._errors = self._junk = 0
        await self.push(reply)
