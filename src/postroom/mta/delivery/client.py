"""One outbound SMTP connection: a lane's source address to one host of a destination.

`SiteConnection.open()` tries the destination's MX hosts in preference order,
binding the socket to the source's address and saying EHLO with its name; a
connection-scope failure (refused, timeout, 4xx/5xx greeting or EHLO) moves on
to the next host, and when none is left it raises `SiteUnreachable` with the
last outcome. STARTTLS is opportunistic: offered → used, without certificate
checks (RFC 7435), then EHLO again (RFC 3207 4.2); a failed handshake retries
that host in plain text.

`send(job, body)` runs one transaction (MAIL, RCPT per recipient, DATA) and
returns one `Outcome` per recipient, classified by `outcome.py`; the
connection stays open for the next message of the same site while it is
usable. When the server offers PIPELINING (RFC 2920) MAIL, every RCPT and DATA
go out in one write and their replies are read in order; the body follows a
354. Without it, each command waits for its reply. After a transaction that
did not reach the end of the body (MAIL refused, no recipient accepted, DATA
refused) the client sends RSET. A connection that breaks or times out defers
whoever has no answer yet and is not used again.

Why not aiosmtplib all the way: its `mail()`/`rcpt()` re-parse every address
with `email.utils.parseaddr`, every command is a round trip, and its
`SMTPProtocol` cannot read pipelined replies (it parses one reply per arriving
packet and drops data that arrives while a parsed reply waits to be taken).
So aiosmtplib (checked: 5.1.3; we require >=3) opens the session — connect,
greeting, EHLO, STARTTLS — and `ReplyStream` then takes over its transport
with asyncio's public `BaseTransport.set_protocol()`. Of aiosmtplib only public
API is used: `SMTP(...)`, `connect`, `ehlo`, `starttls`, `supports_extension`,
`esmtp_extensions` and `transport`.

Every reply is awaited at most `command_timeout_s`, the final reply to the
body included (RFC 5321 4.5.3.2 suggests 10 minutes for that one; the
configured default of 300 s has been enough in practice).

Untrusted input: the remote server's replies (kept verbatim in outcomes; reply
lines are bounded in length and size). Config keys (through the caller):
[delivery] port, connect_timeout, command_timeout, starttls.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from dataclasses import dataclass

import aiosmtplib

from postroom.mta.delivery.mx import Destination, MxHost
from postroom.mta.delivery.outcome import (
    Outcome,
    Scope,
    Stage,
    delivered,
    from_error,
    from_reply,
    try_next_mx,
)
from postroom.mta.delivery.wire import ReplyStream, data_payload
from postroom.mta.lanes.pools import Source
from postroom.mta.queue.records import ClaimedDelivery, Job

log = logging.getLogger("postroom.delivery")

_QUIT_TIMEOUT_S = 5.0
# Addresses were validated on entry; a control character here would inject commands.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class ConnectSettings:
    port: int = 25
    connect_timeout_s: float = 30
    command_timeout_s: float = 300
    starttls: bool = True


class SiteUnreachable(Exception):
    """No host of the destination could be used; `outcome` is the last failure."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.detail)
        self.outcome = outcome


def _tls_context() -> ssl.SSLContext:
    # Opportunistic TLS (RFC 7435): encrypt when offered, do not authenticate.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def needs_smtputf8(job: Job) -> bool:
    """An internationalised address in the envelope (RFC 6531)."""
    return not job.mail_from.isascii() or not all(d.recipient.isascii() for d in job.deliveries)


def _paired(
    deliveries: list[ClaimedDelivery],
    outcomes: list[Outcome | None],
    unanswered: Outcome | None = None,
) -> list[tuple[ClaimedDelivery, Outcome]]:
    paired = []
    for delivery, outcome in zip(deliveries, outcomes, strict=True):
        outcome = outcome or unanswered
        assert outcome is not None  # every path answers every delivery
        paired.append((delivery, outcome))
    return paired


class SiteConnection:
    def __init__(
        self,
        stream: ReplyStream,
        extensions: dict[str, str],
        host: MxHost,
        address: str,
        command_timeout_s: float,
    ) -> None:
        self._stream = stream
        self._timeout_s = command_timeout_s
        self._pipelining = "pipelining" in extensions
        self._size_limit: int | None = None
        if "size" in extensions:
            limit = extensions["size"]
            self._size_limit = int(limit) if limit.isdigit() else 0  # 0: no stated limit
        self._eight_bit_mime = "8bitmime" in extensions
        self._smtputf8 = "smtputf8" in extensions
        self.remote_host = f"{host.name}[{address}]"
        self.usable = True
        self.messages_sent = 0

    @classmethod
    async def open(
        cls, destination: Destination, source: Source, settings: ConnectSettings
    ) -> SiteConnection:
        last: Outcome | None = None
        for host in destination.hosts:
            for address in host.addresses:
                attempt = await cls._try_host(host, address, source, settings, settings.starttls)
                if isinstance(attempt, SiteConnection):
                    return attempt
                last = attempt
                if not try_next_mx(attempt):
                    raise SiteUnreachable(attempt)
        if last is None:
            last = from_error(Stage.DNS, f"no usable address for {destination.domain}")
        raise SiteUnreachable(last)

    @classmethod
    async def _try_host(
        cls, host: MxHost, address: str, source: Source, settings: ConnectSettings, tls: bool
    ) -> SiteConnection | Outcome:
        remote = f"{host.name}[{address}]"
        client = aiosmtplib.SMTP(
            hostname=address,
            port=settings.port,
            local_hostname=source.helo,
            source_address=(source.address, 0) if source.address else None,
            timeout=settings.command_timeout_s,
            start_tls=False,
            validate_certs=False,
        )
        stage = Stage.CONNECT
        try:
            await client.connect(timeout=settings.connect_timeout_s)
            stage = Stage.EHLO
            await client.ehlo()
            if tls and client.supports_extension("starttls"):
                stage = Stage.STARTTLS
                await client.starttls(server_hostname=host.name, tls_context=_tls_context())
                stage = Stage.EHLO
                await client.ehlo()
        except aiosmtplib.SMTPResponseException as error:
            client.close()
            return from_reply(
                stage if stage is not Stage.CONNECT else Stage.GREETING,
                error.code,
                error.message,
                remote,
            )
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as error:
            client.close()
            if stage is Stage.STARTTLS:
                log.info("STARTTLS with %s failed (%s); retrying in plain text", remote, error)
                return await cls._try_host(host, address, source, settings, tls=False)
            return from_error(stage, f"{stage.value} {remote}: {error}", remote_host=remote)
        if client.transport is None:  # lost between the EHLO reply and here
            return from_error(stage, f"{stage.value} {remote}: connection lost", remote_host=remote)
        # From here on the session is ours: the aiosmtplib client is dropped unclosed,
        # since closing it would close the transport the stream now reads.
        stream = ReplyStream(client.transport)
        return cls(stream, dict(client.esmtp_extensions), host, address, settings.command_timeout_s)

    async def send(self, job: Job, body: bytes) -> list[tuple[ClaimedDelivery, Outcome]]:
        """One SMTP transaction for the job's recipients: one outcome per delivery."""
        deliveries = job.deliveries
        refusal = self._refusal(job, body)
        if refusal is not None:
            return [(delivery, refusal) for delivery in deliveries]
        outcomes: list[Outcome | None] = [None] * len(deliveries)
        # (index in deliveries, RCPT command) for every recipient we may send.
        recipients: list[tuple[int, bytes]] = []
        for index, delivery in enumerate(deliveries):
            if _CONTROL_CHARACTERS.search(delivery.recipient):
                outcomes[index] = from_error(
                    Stage.RCPT,
                    f"recipient address with control characters: {delivery.recipient!r}",
                    permanent=True,
                    status="5.1.3",
                    scope=Scope.RECIPIENT,
                    remote_host=self.remote_host,
                )
            else:
                recipients.append((index, b"RCPT TO:<%s>\r\n" % delivery.recipient.encode()))
        if not recipients:
            return _paired(deliveries, outcomes)

        stream, timeout_s, remote = self._stream, self._timeout_s, self.remote_host
        pipelining = self._pipelining
        mail = self._mail_command(job, body)
        accepted: list[int] = []
        finished = False  # the server answered the end of the body
        stage = Stage.MAIL
        try:
            if pipelining:
                batch = b"".join([mail, *(command for _, command in recipients), b"DATA\r\n"])
                stream.send(batch, len(recipients) + 2)
            else:
                stream.send(mail, 1)
            code, text = await stream.reply(timeout_s)
            mail_accepted = 200 <= code < 300
            if not mail_accepted:
                refused = from_reply(Stage.MAIL, code, text, remote)
                for index, _ in recipients:
                    outcomes[index] = refused
            stage = Stage.RCPT
            for index, command in recipients:
                if not pipelining:
                    if not mail_accepted:
                        break
                    stream.send(command, 1)
                # After a refused MAIL the pipelined RCPT replies (503) only keep us in step.
                code, text = await stream.reply(timeout_s)
                if not mail_accepted:
                    continue
                if 200 <= code < 300:
                    accepted.append(index)
                else:
                    outcomes[index] = from_reply(Stage.RCPT, code, text, remote)
            stage = Stage.DATA
            if pipelining or accepted:
                if not pipelining:
                    stream.send(b"DATA\r\n", 1)
                code, text = await stream.reply(timeout_s)
                if code == 354:
                    # RFC 2920 3.1: a server may say 354 although no recipient was
                    # accepted; then we end an empty message instead of sending the body.
                    stream.send(data_payload(body) if accepted else b".\r\n", 1)
                    code, text = await stream.reply(timeout_s)
                    finished = True
                if accepted:
                    outcome = self._data_outcome(code, text, finished)
                    for index in accepted:
                        outcomes[index] = outcome
                    self.messages_sent += 1
                    if outcome.scope is Scope.CONNECTION:
                        self.usable = False
        except OSError as error:  # ConnectionError, TimeoutError
            # The connection broke mid-transaction: whoever has no answer yet is deferred.
            self._give_up()
            lost = from_error(stage, f"{stage.value} {remote}: {error}", remote_host=remote)
            return _paired(deliveries, outcomes, lost)
        except asyncio.CancelledError:
            self._give_up()
            raise
        if not (accepted and finished) and self.usable:
            await self._reset()
        return _paired(deliveries, outcomes)

    def _refusal(self, job: Job, body: bytes) -> Outcome | None:
        """The outcome for every recipient when the message cannot be offered at all."""
        if self._size_limit and self._size_limit < len(body):
            return self._refused(
                f"message size {len(body)} exceeds {self.remote_host}'s limit {self._size_limit}",
                "5.3.4",
            )
        if _CONTROL_CHARACTERS.search(job.mail_from):
            return self._refused(
                f"sender address with control characters: {job.mail_from!r}", "5.1.7"
            )
        if needs_smtputf8(job) and not self._smtputf8:
            # RFC 6531 3.2: no downgrade of an internationalised address; bounce it.
            return self._refused(
                f"{self.remote_host} does not support SMTPUTF8, needed for a non-ASCII address",
                "5.6.7",
            )
        return None

    def _refused(self, detail: str, status: str) -> Outcome:
        return from_error(
            Stage.MAIL,
            detail,
            permanent=True,
            status=status,
            scope=Scope.MESSAGE,
            remote_host=self.remote_host,
        )

    def _data_outcome(self, code: int, text: str, finished: bool) -> Outcome:
        """The outcome for the accepted recipients: the reply to DATA, or to the body."""
        if not finished and 200 <= code < 300:
            # A 2xx to DATA itself: the body was never sent, so nothing was delivered.
            return from_error(
                Stage.DATA,
                f"unexpected reply to DATA: {code} {text}",
                status="4.5.0",
                scope=Scope.MESSAGE,
                remote_host=self.remote_host,
            )
        outcome = from_reply(Stage.DATA, code, text, self.remote_host)
        if outcome.reply is not None and 200 <= code < 300:
            return delivered(self.remote_host, outcome.reply)
        return outcome

    def _mail_command(self, job: Job, body: bytes) -> bytes:
        # Our own formatting: "<address>", the null sender "<>" (RFC 5321 4.1.2).
        command = b"MAIL FROM:<%s>" % job.mail_from.encode()
        if self._size_limit is not None:
            command += b" SIZE=%d" % len(body)
        if self._eight_bit_mime and not body.isascii():
            command += b" BODY=8BITMIME"
        if self._smtputf8 and needs_smtputf8(job):
            command += b" SMTPUTF8"
        return command + b"\r\n"

    async def _reset(self) -> None:
        try:
            self._stream.send(b"RSET\r\n", 1)
            code, _ = await self._stream.reply(self._timeout_s)
        except OSError:
            self._give_up()
            return
        if not 200 <= code < 300:
            self._give_up()

    def _give_up(self) -> None:
        self.usable = False
        self._stream.close(abort=True)

    async def close(self) -> None:
        if not self._stream.is_open:
            self._stream.close(abort=True)
            return
        try:
            self._stream.send(b"QUIT\r\n", 1)
            await self._stream.reply(_QUIT_TIMEOUT_S)
        except OSError:
            pass
        self._stream.close()
