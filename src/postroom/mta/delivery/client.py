"""One outbound SMTP connection: a lane's source address to one host of a destination.

`SiteConnection.open()` tries the destination's MX hosts in preference order,
binding the socket to the source's address and saying EHLO with its name; a
connection-scope failure (refused, timeout, 4xx/5xx greeting or EHLO) moves on
to the next host, and when none is left it raises `SiteUnreachable` with the
last outcome. STARTTLS is opportunistic: offered → used, without certificate
checks (RFC 7435); a failed handshake retries that host in plain text.
`send(job, body)` runs one transaction (MAIL, RCPT per recipient, DATA) and
returns one `Outcome` per recipient, classified by `outcome.py`; the
connection stays open for the next message of the same site while it is usable.

Untrusted input: the remote server's replies (kept verbatim in outcomes).
Config keys (through the caller): [delivery] port, connect_timeout,
command_timeout, starttls.
"""

from __future__ import annotations

import logging
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
from postroom.mta.lanes.pools import Source
from postroom.mta.queue.records import ClaimedDelivery, Job

log = logging.getLogger("postroom.delivery")


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


class SiteConnection:
    def __init__(self, client: aiosmtplib.SMTP, host: MxHost, address: str) -> None:
        self._client = client
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
        return cls(client, host, address)

    async def send(self, job: Job, body: bytes) -> list[tuple[ClaimedDelivery, Outcome]]:
        """One SMTP transaction for the job's recipients."""
        client = self._client
        options = []
        if client.supports_extension("size"):
            limit = client.esmtp_extensions.get("size", "")
            if limit.isdigit() and 0 < int(limit) < len(body):
                outcome = from_error(
                    Stage.MAIL,
                    f"message size {len(body)} exceeds {self.remote_host}'s limit {limit}",
                    permanent=True,
                    status="5.3.4",
                    scope=Scope.MESSAGE,
                    remote_host=self.remote_host,
                )
                return [(delivery, outcome) for delivery in job.deliveries]
            options.append(f"SIZE={len(body)}")
        if client.supports_extension("8bitmime") and not body.isascii():
            options.append("BODY=8BITMIME")
        stage = Stage.MAIL
        results: list[tuple[ClaimedDelivery, Outcome]] = []
        try:
            try:
                await client.mail(job.mail_from, options=options, encoding="utf-8")
            except aiosmtplib.SMTPResponseException as error:
                outcome = from_reply(Stage.MAIL, error.code, error.message, self.remote_host)
                await self._reset()
                return [(delivery, outcome) for delivery in job.deliveries]
            stage = Stage.RCPT
            accepted: list[ClaimedDelivery] = []
            for delivery in job.deliveries:
                try:
                    await client.rcpt(delivery.recipient, encoding="utf-8")
                    accepted.append(delivery)
                except aiosmtplib.SMTPResponseException as error:
                    results.append(
                        (
                            delivery,
                            from_reply(Stage.RCPT, error.code, error.message, self.remote_host),
                        )
                    )
            if not accepted:
                await self._reset()
                return results
            stage = Stage.DATA
            try:
                response = await client.data(body)
                outcome = from_reply(Stage.DATA, response.code, response.message, self.remote_host)
                if outcome.reply is not None and outcome.reply.code < 300:
                    outcome = delivered(self.remote_host, outcome.reply)
            except aiosmtplib.SMTPResponseException as error:
                outcome = from_reply(Stage.DATA, error.code, error.message, self.remote_host)
            results.extend((delivery, outcome) for delivery in accepted)
            self.messages_sent += 1
            if outcome.scope is Scope.CONNECTION:
                self.usable = False
            return results
        except (aiosmtplib.SMTPException, OSError) as error:
            # The connection broke mid-transaction: whoever has no answer yet is deferred.
            self.usable = False
            self._client.close()
            answered = {delivery.delivery_id for delivery, _ in results}
            outcome = from_error(
                stage, f"{stage.value} {self.remote_host}: {error}", remote_host=self.remote_host
            )
            return results + [
                (delivery, outcome)
                for delivery in job.deliveries
                if delivery.delivery_id not in answered
            ]

    async def _reset(self) -> None:
        try:
            await self._client.rset()
        except (aiosmtplib.SMTPException, OSError):
            self.usable = False
            self._client.close()

    async def close(self) -> None:
        if not self._client.is_connected:
            return
        try:
            await self._client.quit(timeout=5)
        except (aiosmtplib.SMTPException, OSError):
            self._client.close()
