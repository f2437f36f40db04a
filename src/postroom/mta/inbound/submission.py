"""Submission (587 STARTTLS, 465 implicit TLS): the port 25 transaction rules plus
AUTH, sender ownership, rate limits and the project's message limit.

`SubmissionHandler` is an `InboundHandler` whose trusted clients are the
authenticated ones (any recipient, a pool by X-Postroom-Pool, no inbound
checks), whose mail is of origin "submission" (VERP, the submission pool
`[smtp.submission] pool`), and which adds, in transaction order:

- AUTH PLAIN and LOGIN (RFC 4954, RFC 4616), offered and accepted only over
  TLS (the session refuses everything but EHLO/STARTTLS/NOOP/QUIT before
  STARTTLS on 587; on 465 the whole connection is TLS). The password is
  verified (argon2, in a thread) by `SmtpAccess.authenticate`; only a mailbox
  whose SMTP access an operator approved passes: a pending or rejected one
  hears 535 5.7.8 "not approved" (only with the right password: a guesser
  learns nothing), the log says which state. `AuthThrottle` slows repeated
  failures per client network and per account (however the user name spells
  it), then answers 454 4.7.0 for a while without checking the password.
- MAIL without AUTH: 530 5.7.0 (the session). MAIL FROM must be the
  authenticated mailbox, or an address of its linked domain when the operator
  allowed that (`smtp senders --domain`); else 553 5.7.1. The account is read
  again at MAIL (at most once a second per mailbox), so a revocation takes
  effect within a second, at the next transaction. A mailbox already at its
  rate hears 451 4.7.1 at MAIL.
- RCPT: the mailbox's rate (per minute and per day, `RateLimiter`) counts
  accepted recipients, not transactions: each leaves as a message of its own
  (VERP), and 5 transactions of 100 recipients are 500 messages. Past it 451
  4.7.1 for that recipient; a refused recipient costs nothing. A recipient of
  a transaction that does not end in 250 is not given back: the rate paces the
  client's work, heals by itself within its window, and must not let
  RCPT-and-RSET loops go unmetered (Postfix's
  smtpd_client_recipient_rate_limit counts every RCPT, refused ones too). Each
  accepted recipient also reserves one message of the project's limit
  (`ProjectUsage`, durable, exact under concurrency; written in the queue's
  group commit, so it costs no fsync of its own): past it 452 4.7.1 and the
  recipient is not accepted. That limit is the project's monthly books, so it
  is exact: a reservation is given back when its transaction does not commit a
  message (refused DATA, RSET, a dropped connection), and only then
  (`TransactionReservations`): a DATA whose client hangs up runs to its end
  (`Router.shielded`), and its reservations stand if the message committed.
- DATA: From and Sender must name addresses the mailbox may send as, by the
  rules of `authors` (550 5.6.0 when From names no address, 553 5.7.1 for
  one not owned); Date and Message-ID are added when missing (RFC 6409 8.2,
  8.3). Then the port 25 path: DKIM signing for the linked domain, the queue,
  250 after the commit.

Untrusted input: everything the client sends (credentials are never logged).
Config keys: [smtp.submission] pool, max_per_minute, max_per_day,
auth_max_failures, auth_lockout.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import time
from base64 import b64decode
from email.utils import formatdate
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession

from postroom.core.reply import Reply
from postroom.db.models import MessageOrigin
from postroom.mailbox.smtp_access import SmtpAccess, SmtpAccount, SmtpState
from postroom.mailbox.usage import ProjectUsage, Reservation
from postroom.mta.inbound.authors import author_refusal
from postroom.mta.inbound.handler import InboundHandler, client_ip_of
from postroom.mta.inbound.policy import normalise_sender
from postroom.mta.inbound.ratelimit import RateLimiter
from postroom.mta.inbound.reservations import TransactionReservations
from postroom.mta.inbound.throttle import AuthThrottle
from postroom.mta.signing.dkim import SigningError, field_values, parse_message

log = logging.getLogger("postroom.submission")

AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
AUTH_INVALID = Reply(535, "5.7.8", "Authentication credentials invalid")
AUTH_NOT_APPROVED = Reply(
    535, "5.7.8", "SMTP access of this mailbox is not approved (see `postroom smtp info`)"
)
AUTH_LOCKED = Reply(454, "4.7.0", "Too many failed authentications, try again later")
MECHANISMS = ("PLAIN", "LOGIN")
ACCOUNT_TTL_S = 1.0
MAX_CACHED_ACCOUNTS = 10_000


class SubmissionHandler(InboundHandler):
    origin = MessageOrigin.SUBMISSION

    def __init__(
        self,
        *args: Any,
        access: SmtpAccess,
        usage: ProjectUsage,
        throttle: AuthThrottle,
        rates: RateLimiter,
        default_limits: tuple[int, int],
        pool: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.access = access
        self.usage = usage
        self.throttle = throttle
        self.rates = rates
        self.default_limits = default_limits  # (per minute, per day)
        self.default_pool = pool or None
        self._accounts: dict[str, tuple[float, SmtpAccount]] = {}

    def trusted(self, session: SmtpSession, client_ip: str) -> bool:
        return bool(session.authenticated)

    async def _current(self, address: str) -> SmtpAccount:
        """The account as stored, read at most every ACCOUNT_TTL_S per mailbox: an
        operator's rejection or new limits apply within a second, without a database
        read for every message of a busy app."""
        now = time.monotonic()
        cached = self._accounts.get(address)
        if cached is not None and now - cached[0] < ACCOUNT_TTL_S:
            return cached[1]
        account = await asyncio.to_thread(self.access.account, address)
        if len(self._accounts) >= MAX_CACHED_ACCOUNTS:
            self._accounts.clear()
        self._accounts[address] = (now, account)
        return account

    # -- AUTH --------------------------------------------------------------------

    async def handle_AUTH(
        self, server: SMTP, session: SmtpSession, envelope: Envelope, args: list[str]
    ) -> str | None:
        """The whole exchange (aiosmtpd's own AUTH would verify on the event loop)."""
        mechanism = args[0].upper()
        if mechanism not in MECHANISMS:
            return Reply(504, "5.5.4", "Unrecognized authentication type").wire()
        credentials = await _read_credentials(server, mechanism, args[1:])
        if credentials is None:
            return None  # the session has already answered (cancelled, bad base64)
        if isinstance(credentials, Reply):
            return credentials.wire()
        username, password = credentials
        client_ip = client_ip_of(session)
        verdict = self.throttle.check(client_ip, username)
        if verdict.locked:
            log.warning("auth locked client=%s user=<%s>: %s", client_ip, username, verdict.reason)
            return AUTH_LOCKED.wire()
        outcome = await asyncio.to_thread(self.access.authenticate, username, password)
        if outcome.account is None:
            if outcome.failure == "bad credentials":  # the right password is no guess
                self.throttle.failed(client_ip, username)
            delay = self.throttle.check(client_ip, username).delay_s
            log.info("auth failed client=%s user=<%s>: %s", client_ip, username, outcome.failure)
            if delay:
                await asyncio.sleep(delay)  # a guesser waits; the session stays usable
            return (
                AUTH_INVALID if outcome.failure == "bad credentials" else AUTH_NOT_APPROVED
            ).wire()
        self.throttle.succeeded(client_ip, username)
        session.authenticated = True
        session.auth_data = outcome.account
        log.info("auth ok client=%s user=<%s>", client_ip, outcome.account.address)
        return AUTH_OK.wire()

    # -- MAIL, RCPT ------------------------------------------------------------------

    async def handle_MAIL(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        account: SmtpAccount = session.auth_data
        fresh = await self._current(account.address)
        if fresh.state is not SmtpState.APPROVED:
            log.info("mail refused user=<%s>: access %s since AUTH", fresh.address, fresh.state)
            return Reply(530, "5.7.0", "SMTP access of this mailbox is no longer approved").wire()
        session.auth_data = fresh
        sender = normalise_sender(address)
        if not fresh.may_send_as(sender):
            log.info("mail refused user=<%s>: sender <%s> not owned", fresh.address, sender)
            return Reply(
                553, "5.7.1", f"<{sender}>: not an address {fresh.address} may send as"
            ).wire()
        too_fast = self.rates.check(fresh.address, 1, *self._rate_limits(fresh))
        if too_fast is not None:
            log.info("mail deferred user=<%s>: %s", fresh.address, too_fast)
            return _rate_exceeded(too_fast).wire()
        reply = await super().handle_MAIL(server, session, envelope, address, options)
        envelope.reservations = TransactionReservations(self._give_back)
        return reply

    async def handle_RCPT(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        account: SmtpAccount = session.auth_data
        # A mailbox at its rate is refused before any write (`admit` counts).
        too_fast = self.rates.check(account.address, 1, *self._rate_limits(account))
        if too_fast is not None:
            log.info("rcpt deferred user=<%s>: %s", account.address, too_fast)
            return _rate_exceeded(too_fast).wire()
        reservations: TransactionReservations = envelope.reservations
        # Shielded: a reservation that commits is added to the transaction's books even
        # if the client hangs up meanwhile, which then gives it back.
        reservation = await self.router.shielded.run(
            self._reserve(account.project_id, reservations)
        )
        if reservation is None:
            used, limit = await asyncio.to_thread(self.usage.usage, account.project_id)
            log.info(
                "rcpt refused user=<%s>: project %s at its limit %s",
                account.address,
                account.project,
                limit,
            )
            return Reply(
                452,
                "4.7.1",
                f"Message limit of project {account.project} reached "
                f"({used} of {limit} this month)",
            ).wire()
        reply = await super().handle_RCPT(server, session, envelope, address, options)
        if not reply.startswith("250"):
            reservations.refuse(reservation)
        return reply

    def admit(self, session: SmtpSession, address: str) -> Reply | None:
        """Every other check accepted the recipient: count it against the mailbox's
        rate, in one step with the check (the early check in RCPT only saves work)."""
        account: SmtpAccount = session.auth_data
        too_fast = self.rates.allow(account.address, 1, *self._rate_limits(account))
        if too_fast is None:
            return None
        log.info("rcpt deferred user=<%s>: %s", account.address, too_fast)
        return _rate_exceeded(too_fast)

    def _rate_limits(self, account: SmtpAccount) -> tuple[int, int]:
        """(per minute, per day): the mailbox's overrides, else the config's defaults."""
        per_minute, per_day = self.default_limits
        return (
            per_minute if account.per_minute is None else account.per_minute,
            per_day if account.per_day is None else account.per_day,
        )

    async def _reserve(
        self, project_id: int, reservations: TransactionReservations
    ) -> Reservation | None:
        reservation = await self.router.store.transact(self.usage.reserve_batch, (project_id, 1))
        if reservation is not None:
            reservations.add(reservation)
        return reservation

    # -- DATA, and giving back what a failed transaction reserved ---------------------

    async def prepare(
        self, session: SmtpSession, envelope: Envelope, headers: bytes
    ) -> bytes | Reply:
        account: SmtpAccount = session.auth_data
        try:
            # Read as DKIM and DMARC read it (downstream judges these same fields).
            fields, _ = parse_message(headers)
        except SigningError as error:
            log.info("data refused user=<%s>: %s", account.address, error)
            return Reply(550, "5.6.0", f"Malformed header section: {error}")
        refusal = author_refusal(
            field_values(fields, b"from"),
            field_values(fields, b"sender"),
            account.address,
            account.may_send_as,
        )
        if refusal is not None:
            log.info("data refused user=<%s>: %s", account.address, refusal.text)
            return refusal
        added = b""
        if not field_values(fields, b"date"):
            added += f"Date: {formatdate(usegmt=True)}\r\n".encode()
        if not field_values(fields, b"message-id"):
            added += f"Message-ID: <{envelope.queue_id}@{self.policy.hostname}>\r\n".encode()
        return headers + added  # the section ends with its last field's CRLF

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        # From here the message's fate decides the reservations, not the connection's:
        # the DATA runs to its end even if the client hangs up now.
        reservations = envelope.reservations.hand_to_data()
        return await self.router.shielded.run(self._data(server, session, envelope, reservations))

    async def _data(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: Envelope,
        reservations: list[Reservation],
    ) -> str:
        try:
            reply = await super().handle_DATA(server, session, envelope)
        except Exception:  # nothing was queued: the caller answers 451
            self._give_back(reservations)
            raise
        if not reply.startswith("250"):  # 250 only once the message committed
            self._give_back(reservations)
        return reply

    def transaction_abandoned(self, envelope: Envelope) -> None:
        """RSET, a new EHLO, a DATA the session refused before this handler saw it, or a
        dropped connection: the transaction gives back what it holds (nothing once
        `handle_DATA` took it over)."""
        reservations: TransactionReservations | None = getattr(envelope, "reservations", None)
        if reservations is not None:
            reservations.abandon()

    def _give_back(self, reservations: list[Reservation]) -> None:
        if reservations:
            self.router.shielded.start(self._release(reservations))

    async def _release(self, reservations: list[Reservation]) -> None:
        """One write per project and month, whatever the number of recipients."""
        merged: dict[tuple[int, str], int] = {}
        for reservation in reservations:
            key = (reservation.project_id, reservation.period)
            merged[key] = merged.get(key, 0) + reservation.count
        for (project_id, period), count in merged.items():
            await self.router.store.transact(
                self.usage.release_batch, Reservation(project_id, period, count)
            )


def _rate_exceeded(reason: str) -> Reply:
    return Reply(451, "4.7.1", f"Sending rate exceeded: {reason}, try again later")


async def _read_credentials(
    server: SMTP, mechanism: str, initial: list[str]
) -> tuple[str, str] | Reply | None:
    """(username, password) from PLAIN or LOGIN, with an initial response or challenges."""
    if mechanism == "PLAIN":
        blob = _decoded(initial[0]) if initial else await server.challenge_auth("")
        if blob is MISSING:
            return None
        if isinstance(blob, Reply):
            return blob
        parts = blob.split(b"\0")
        if len(parts) != 3:
            return Reply(501, "5.5.2", "Cannot split the PLAIN response")
        authorization, username, password = parts
        if authorization and authorization != username:
            return Reply(535, "5.7.8", "Acting for another identity is not supported")
    else:
        username = _decoded(initial[0]) if initial else await server.challenge_auth("Username:")
        if username is MISSING or isinstance(username, Reply):
            return None if username is MISSING else username
        password = await server.challenge_auth("Password:")
        if password is MISSING:
            return None
    try:
        return username.decode("utf-8"), password.decode("utf-8")
    except UnicodeDecodeError:
        return AUTH_INVALID


def _decoded(text: str) -> bytes | Reply:
    try:
        return b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return Reply(501, "5.5.2", "Cannot decode base64")
