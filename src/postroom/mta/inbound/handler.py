"""Port 25 transaction rules: local recipients, who may relay, limits, and DATA.

The aiosmtpd hooks of the inbound listener. MAIL and RCPT are judged by
`policy` (no open relay, no relay tricks). At RCPT a recipient of a verified
linked domain is looked up (`LocalMail.resolve`, in a thread): a mailbox, alias
or catch-all is accepted from anyone (550 5.1.1 when there is none, 452 4.2.2
when its mailbox is full); any other recipient needs a relay network (554 5.7.1).
The bounce inbox's addresses come first (bounces, complaints, unsubscribes by
mail); on a bounce domain that is also a linked domain, a `bounce+` or
`unsubscribe+` name that is no token of ours goes to the lookup.
At the end of DATA the message is checked (bare CR/LF, hops, quotas, pool
header). Mail for local mailboxes from outside the relay networks then goes
through the authentication checks (`checks.pipeline`: SPF, DKIM, DMARC, ARC;
the `[checks]` table may reject, defer or send it to the Junk folder); any
Authentication-Results claiming our authserv-id is removed and ours is put on
top. It is stamped with a Received header and handed to the router, which
answers only after the Maildir fsync and the queue's commit: the 250 carries
the queue id. Errors inside become 451 4.3.0 with the session's queue id, never
a traceback on the wire. Mail for the bounce inbox is processed on the feedback
worker (mta/bounce/worker.py: 451 4.3.2 when full, 451 4.4.5 past its time limit).

Untrusted input: the envelope and the message bytes.
Config keys: [server] hostname; [smtp.inbound] relay_networks, max_recipients, max_hops;
[checks] (through `InboundChecks`) and its authserv_id.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession

from postroom.core.reply import Reply
from postroom.db.models import MessageOrigin
from postroom.mailbox.accounts import NOT_LOCAL, LocalTarget, RecipientKind
from postroom.mailbox.local import LocalMail
from postroom.mta.bounce.inbox import BounceIntake, InboxTarget
from postroom.mta.checks.pipeline import CheckOutcome, InboundChecks
from postroom.mta.checks.policy import Action
from postroom.mta.checks.results import remove_forged
from postroom.mta.inbound.policy import RelayNetworks, check_address, normalise_sender
from postroom.mta.lanes.pools import PoolTable, UnknownPool
from postroom.mta.queue.ids import new_queue_id
from postroom.mta.queue.records import NewMessage
from postroom.mta.router import Router
from postroom.rating.suppression import Suppression

log = logging.getLogger("postroom.smtp")

RECEIVED_HEADER = re.compile(rb"^Received:", re.I | re.M)
POOL_HEADER = re.compile(rb"^X-Postroom-Pool:[ \t]*(.*?)[ \t]*\r\n(?![ \t])", re.I | re.M | re.S)


# What may not appear inside the Received header's comment: controls, parentheses, backslash.
_UNSAFE_IN_COMMENT = re.compile(r"[\x00-\x1f\x7f()\\]|[^\x20-\x7e]")


@dataclass(frozen=True, slots=True)
class InboundPolicy:
    hostname: str
    relay_networks: RelayNetworks
    max_recipients: int
    max_hops: int
    authserv_id: str = ""  # empty: Authentication-Results are neither added nor removed


class InboundHandler:
    """Port 25. `SubmissionHandler` (587/465) reuses it through the class attributes
    and the two hooks below: who is trusted, and what DATA must look like."""

    origin = MessageOrigin.RELAY
    default_pool: str | None = None  # the pool when the client names none

    def trusted(self, session: SmtpSession, client_ip: str) -> bool:
        """May relay, choose a pool, and skip the authentication checks."""
        return self.policy.relay_networks.allows(client_ip)

    async def prepare(
        self, session: SmtpSession, envelope: Envelope, headers: bytes
    ) -> bytes | Reply:
        """The header section to queue, or a refusal (port 25 takes it as it is)."""
        return headers

    def admit(self, session: SmtpSession, address: str) -> Reply | None:
        """The last word on a recipient that every other check accepted, said with
        nothing awaited between it and the acceptance, so that what it counts is
        exactly the accepted recipients (submission: the mailbox's rate)."""
        return None

    def __init__(
        self,
        policy: InboundPolicy,
        router: Router,
        pools: PoolTable,
        local: LocalMail,
        bounces: BounceIntake | None = None,
        suppression: Suppression | None = None,
        checks: InboundChecks | None = None,
    ) -> None:
        self.policy = policy
        self.router = router
        self.pools = pools
        self.local = local
        self.bounces = bounces
        self.suppression = suppression
        self.checks = checks

    async def handle_exception(self, error: Exception) -> str:
        """aiosmtpd's last resort for an error in a hook (the database at RCPT, say):
        its default reply would quote the exception to the client."""
        log.error("session error: %s", error, exc_info=error)
        return Reply.temporary_failure().wire()

    async def handle_MAIL(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        sender = normalise_sender(address)
        if sender:
            refusal = check_address(sender, smtputf8=envelope.smtp_utf8, sender=True)
            if refusal is not None:
                return refusal.wire()
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        # Assigned at MAIL (as Postfix does) so that every log line of the
        # transaction, refusals included, carries the id the 250 will name.
        envelope.queue_id = new_queue_id()
        envelope.local_targets = {}
        envelope.bounce_targets = {}
        envelope.held = set()
        return Reply(250, "2.1.0", "Ok").wire()

    async def handle_RCPT(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        queue_id = getattr(envelope, "queue_id", "-")
        if len(envelope.rcpt_tos) >= self.policy.max_recipients:
            log.info("queue_id=%s too many recipients", queue_id)
            return Reply(452, "4.5.3", "Too many recipients").wire()
        refusal = check_address(address, smtputf8=envelope.smtp_utf8)
        if refusal is not None:
            log.info("queue_id=%s rcpt refused: %s", queue_id, refusal.text)
            return refusal.wire()
        client_ip = client_ip_of(session)
        inbox_target = self.bounces.target(address) if self.bounces is not None else None
        if isinstance(inbox_target, Reply) and self.local.is_local_domain(address):
            # The bounce domain is also a linked domain: not a token of ours, so the
            # name may be a mailbox's ("bounce+news@"); the lookup below decides.
            inbox_target = None
        if isinstance(inbox_target, Reply):
            log.info("queue_id=%s rcpt refused: %s", queue_id, inbox_target.text)
            return inbox_target.wire()
        if inbox_target is not None:
            refusal = self.admit(session, address)
            if refusal is not None:
                return refusal.wire()
            envelope.bounce_targets[address] = inbox_target
            envelope.rcpt_tos.append(address)
            return Reply(250, "2.1.5", "Ok").wire()
        if self.local.is_local_domain(address):
            resolution = await asyncio.to_thread(self.local.resolve, address)
        else:
            resolution = NOT_LOCAL
        if resolution.kind is RecipientKind.UNKNOWN:
            log.info("queue_id=%s rcpt refused: no mailbox <%s>", queue_id, address)
            return Reply(550, "5.1.1", f"<{address}>: no such mailbox here").wire()
        held = False
        if resolution.kind is RecipientKind.LOCAL:
            refusal = await asyncio.to_thread(
                self.local.quota_refusal, resolution.targets, _declared_size(envelope)
            )
            if refusal is not None:
                log.info("queue_id=%s rcpt refused: %s", queue_id, refusal.text)
                return refusal.wire()
        elif not self.trusted(session, client_ip):
            log.info("queue_id=%s relay denied client=%s rcpt=<%s>", queue_id, client_ip, address)
            return Reply.relay_denied(f"<{address}>: Relay access denied").wire()
        elif self.suppression is not None and self.suppression.at_rcpt:
            project_id = self.local.project_of(normalise_sender(envelope.mail_from or ""))
            if project_id is not None:
                verdict = await self.suppression.check(project_id, address, queue_id)
                if isinstance(verdict, Reply):
                    return verdict.wire()
                held = bool(verdict)
        refusal = self.admit(session, address)
        if refusal is not None:
            return refusal.wire()
        if resolution.kind is RecipientKind.LOCAL:
            envelope.local_targets[address] = resolution.targets
        if held:
            envelope.held.add(address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return Reply(250, "2.1.5", "Ok").wire()

    async def _process_bounce(
        self, content: bytes, inbox: dict[str, InboxTarget], queue_id: str
    ) -> Reply | None:
        """Processed on the feedback worker: None when done, else a temporary refusal."""
        intake = self.bounces
        assert intake is not None
        return await intake.worker.refusal(
            lambda deadline: intake.process(content, inbox.values(), deadline), queue_id
        )

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        queue_id: str = envelope.queue_id
        content: bytes = envelope.original_content or b""
        if has_bare_line_ending(content):
            log.info("refused queue_id=%s: bare CR or LF in DATA", queue_id)
            return Reply(550, "5.5.2", "Bare CR or LF in message data is not accepted").wire()
        client_ip = client_ip_of(session)
        header_end = _header_end(content)
        headers, body = content[:header_end], content[header_end:]
        if count_hops(headers) > self.policy.max_hops:
            log.info("refused queue_id=%s: more than %d hops", queue_id, self.policy.max_hops)
            return Reply(554, "5.4.6", "Too many hops: mail loop detected").wire()
        requested_pool, headers = take_pool_header(headers)
        trusted = self.trusted(session, client_ip)
        if not trusted:
            requested_pool = None  # only trusted clients may choose a pool
        prepared = await self.prepare(session, envelope, headers)
        if isinstance(prepared, Reply):
            return prepared.wire()
        headers = prepared
        sender = normalise_sender(envelope.mail_from or "")
        try:
            pool = self.pools.choose_pool(
                requested=requested_pool or self.default_pool,
                sender_domain=sender.rpartition("@")[2],
                client_ip=client_ip,
            )
        except UnknownPool:
            log.info("queue_id=%s refused: unknown pool %r", queue_id, requested_pool)
            return Reply(550, "5.7.1", f"Unknown pool {requested_pool!r} in X-Postroom-Pool").wire()
        received = received_header(
            helo=session.host_name or "unknown",
            client_ip=client_ip,
            hostname=self.policy.hostname,
            queue_id=queue_id,
            recipient=envelope.rcpt_tos[0] if len(envelope.rcpt_tos) == 1 else None,
            esmtp=session.extended_smtp,
            authenticated=bool(session.authenticated),
        )
        local: dict[str, tuple[LocalTarget, ...]] = envelope.local_targets
        local_targets = [target for targets in local.values() for target in targets]
        inbox: dict[str, InboxTarget] = envelope.bounce_targets
        if local_targets:
            # Before the checks (a permanent refusal needs no DNS) and before the bounce
            # is processed: a refusal here makes the client send it again, and a rating
            # step applied twice (mailbox full) would stay applied.
            size = len(received) + len(headers) + len(body)
            refusal = await asyncio.to_thread(self.local.quota_refusal, local_targets, size)
            if refusal is not None:
                log.info("refused queue_id=%s: %s", queue_id, refusal.text)
                return refusal.wire()
        folder, sender_verified = "", True
        if local_targets and not trusted:
            outcome = await self._check(
                headers + body, queue_id, client_ip, session.host_name or "", sender
            )
            if isinstance(outcome, Reply):
                return outcome.wire()
            if self.policy.authserv_id:
                headers = remove_forged(headers, self.policy.authserv_id)
            if outcome is not None:
                received = outcome.header + received
                folder = ".Junk" if outcome.decision.action is Action.QUARANTINE else ""
                sender_verified = (
                    outcome.decision.action is Action.ACCEPT
                    and outcome.verdicts.sender_verified(sender)
                )
        content = received + headers + body
        if inbox:
            refusal = await self._process_bounce(content, inbox, queue_id)
            if refusal is not None:
                return refusal.wire()
            if len(inbox) == len(envelope.rcpt_tos):
                return Reply.ok(f"Ok: processed as {queue_id}").wire()
        message = NewMessage(
            queue_id=queue_id,
            mail_from=sender,
            recipients=tuple(r for r in envelope.rcpt_tos if r not in local and r not in inbox),
            held=frozenset(envelope.held),
            project_id=self.local.project_of(sender),
            body=content,
            pool=pool,
            origin=self.origin,
            created_at=time.time(),
            client_ip=client_ip,
        )
        try:
            await self.router.accept(
                message, local_targets, folder=folder, sender_verified=sender_verified
            )
        except Exception:
            log.exception("queue write failed queue_id=%s", queue_id)
            return Reply.temporary_failure(
                f"Queue write failed, try again later ({queue_id})"
            ).wire()
        log.info(
            "queued queue_id=%s from=<%s> nrcpt=%d local=%d size=%d pool=%s client=%s",
            queue_id,
            sender,
            len(message.recipients),
            len(local),
            len(message.body),
            pool,
            client_ip,
        )
        return Reply.ok(f"Ok: queued as {queue_id}").wire()

    async def _check(
        self, message: bytes, queue_id: str, client_ip: str, helo: str, sender: str
    ) -> CheckOutcome | Reply | None:
        """The checks' outcome, a refusal, or None when checks are off."""
        if self.checks is None:
            return None
        try:
            outcome = await self.checks.check(
                message, client_ip=client_ip, helo=helo, mail_from=sender
            )
        except Exception:
            log.exception("authentication checks failed queue_id=%s", queue_id)
            return Reply.temporary_failure(f"Checks failed, try again later ({queue_id})")
        verdicts = outcome.verdicts
        log.info(
            "queue_id=%s auth spf=%s dkim=%s dmarc=%s arc=%s action=%s (%s)",
            queue_id,
            verdicts.spf.mail_from.result,
            ",".join(f"{v.result}:{v.domain}" for v in verdicts.dkim) or "none",
            verdicts.dmarc.result,
            verdicts.arc.result,
            outcome.decision.action,
            outcome.decision.reason,
        )
        return outcome.decision.reply or outcome


def has_bare_line_ending(content: bytes) -> bool:
    """True when a CR or LF appears outside a CRLF pair (SMTP smuggling, RFC 5321 2.3.8)."""
    crlf = content.count(b"\r\n")
    return content.count(b"\n") != crlf or content.count(b"\r") != crlf


def count_hops(headers: bytes) -> int:
    """Received headers so far: the hop count of RFC 5321 6.3 loop detection."""
    return len(RECEIVED_HEADER.findall(headers))


def take_pool_header(headers: bytes) -> tuple[str | None, bytes]:
    """The X-Postroom-Pool value (first one) and the headers without any of them."""
    match = POOL_HEADER.search(headers)
    if match is None:
        return None, headers
    value = match.group(1).decode("utf-8", "replace").strip()
    return value, POOL_HEADER.sub(b"", headers)


def received_header(
    *,
    helo: str,
    client_ip: str,
    hostname: str,
    queue_id: str,
    recipient: str | None,
    esmtp: bool,
    authenticated: bool = False,
) -> bytes:
    """RFC 5321 4.4 trace header; `for` only with a single recipient (privacy); the
    protocol says ESMTPSA after AUTH (RFC 3848), never who authenticated."""
    helo = _UNSAFE_IN_COMMENT.sub("", helo)[:255]
    literal = f"IPv6:{client_ip}" if ":" in client_ip else client_ip
    for_clause = f"\r\n\tfor <{recipient}>" if recipient else ""
    # AUTH needs EHLO, and we offer it only over TLS: authenticated means ESMTPSA.
    protocol = "ESMTPSA" if authenticated else ("ESMTP" if esmtp else "SMTP")
    return (
        f"Received: from {helo} ([{literal}])\r\n\tby {hostname} (postroom) with {protocol} "
        f"id {queue_id}{for_clause};\r\n\t{formatdate(localtime=False, usegmt=True)}\r\n"
    ).encode("utf-8", "surrogateescape")


def _header_end(content: bytes) -> int:
    """Offset where the body (including the blank separator line) begins."""
    if content.startswith(b"\r\n"):
        return 0
    index = content.find(b"\r\n\r\n")
    return len(content) if index < 0 else index + 2


def _declared_size(envelope: Envelope) -> int:
    """The SIZE= of MAIL FROM (RFC 1870), 0 when absent or malformed."""
    for option in envelope.mail_options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return 0


def client_ip_of(session: SmtpSession) -> str:
    peer: Any = session.peer
    return peer[0] if isinstance(peer, tuple) else ""
