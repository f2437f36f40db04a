"""All inbound authentication checks of one message, and what they lead to.

`run_checks(lookup, message, client_ip=, helo=, mail_from=)` (blocking: DNS
through `lookup`, RSA and Ed25519 in dkimpy) runs SPF for HELO and MAIL FROM,
verifies every DKIM signature and the ARC chain, then evaluates DMARC for the
From domain with the SPF identity (the MAIL FROM domain, or HELO for the null
sender, RFC 7489 4.1) and the d= of each DKIM result. It returns
`AuthVerdicts`; nothing here decides.

`InboundChecks.check(...)` is what the port 25 session awaits: the same run in
a thread of the checks' own pool (`CHECK_THREADS`) over the process's resolver
(shared cache), then the `[checks]` table (`policy.decide`) and the
Authentication-Results field (`results.authentication_results`), as one
`CheckOutcome`. The checks wait on DNS — dozens of lookups per message, each up
to [dns] timeout, and a sender decides how slowly its own records answer — so
they do not run on the event loop's default executor, whose threads RCPT
lookups, AUTH and Maildir writes need: a burst of slow checks makes only other
checks wait.

`AuthVerdicts.sender_verified` says whether the envelope sender's own domain
authenticated the message (SPF pass for it, or a passing DKIM signature
aligned with it): the rating engine raises a contact for a reply only then,
so a forged envelope sender cannot lift a blocked address.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from postroom.config.schema import ChecksConfig
from postroom.core.dns import Resolver
from postroom.mta.checks.arc import ArcVerdict, arc_of_unparsable, verify_parsed_arc
from postroom.mta.checks.dkim import (
    DkimResult,
    DkimVerdict,
    dkim_of_unparsable,
    verify_parsed_dkim,
)
from postroom.mta.checks.dmarc import (
    AuthenticatedIdentifier,
    DmarcPolicy,
    DmarcResult,
    DmarcVerdict,
    aligned,
    evaluate,
    from_domain,
)
from postroom.mta.checks.lookup import BlockingLookup, DnsLookup
from postroom.mta.checks.policy import Decision, decide
from postroom.mta.checks.results import authentication_results
from postroom.mta.checks.spf import SpfResult, SpfVerdicts, check_spf
from postroom.mta.signing.dkim import SigningError, field_values, parse_message

# Checks of as many messages at once; more wait for a thread (their sessions, not others').
CHECK_THREADS = 16


@dataclass(frozen=True, slots=True)
class AuthVerdicts:
    spf: SpfVerdicts
    dkim: tuple[DkimVerdict, ...]
    dmarc: DmarcVerdict
    arc: ArcVerdict
    from_fields: int  # From header fields in the message (RFC 5322: exactly one)

    def sender_verified(self, mail_from: str) -> bool:
        """`mail_from` as received: the null sender is never verified (its SPF verdict
        is the HELO name's, which says nothing about a person)."""
        domain = mail_from.rpartition("@")[2]
        if not mail_from or not domain:
            return False
        if self.spf.mail_from.result is SpfResult.PASS:
            return True
        return any(
            verdict.result is DkimResult.PASS and aligned(domain, verdict.domain, "r")
            for verdict in self.dkim
        )


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    verdicts: AuthVerdicts
    decision: Decision
    header: bytes  # the Authentication-Results field, CRLF-terminated


def run_checks(
    lookup: DnsLookup, message: bytes, *, client_ip: str, helo: str, mail_from: str
) -> AuthVerdicts:
    spf = check_spf(lookup, client_ip, mail_from, helo)
    try:
        headers, body = parse_message(message)  # once, for DKIM, ARC and the From field
    except SigningError as error:
        signatures = tuple(dkim_of_unparsable(message, error))
        arc = arc_of_unparsable(error)
        from_values: list[str] = []
    else:
        signatures = tuple(verify_parsed_dkim(lookup, headers, body))
        arc = verify_parsed_arc(lookup, headers, body)
        from_values = field_values(headers, b"from")
    domain = from_domain(from_values[0]) if len(from_values) == 1 else None
    if domain is None:
        dmarc = DmarcVerdict(
            result=DmarcResult.PERMERROR,
            from_domain="",
            policy_domain="",
            policy=None,
            disposition=DmarcPolicy.NONE,
            spf_aligned=False,
            dkim_aligned=False,
            reason="no single From address",
        )
    else:
        spf_identity = (
            AuthenticatedIdentifier(spf.mail_from.domain, spf.mail_from.result.value)
            if spf.mail_from.domain
            else None
        )
        dmarc = evaluate(
            lookup,
            domain,
            spf_identity,
            [
                AuthenticatedIdentifier(verdict.domain, verdict.result.value)
                for verdict in signatures
                if verdict.domain
            ],
        )
    return AuthVerdicts(spf, signatures, dmarc, arc, len(from_values))


class InboundChecks:
    def __init__(self, resolver: Resolver, config: ChecksConfig, authserv_id: str) -> None:
        self.resolver = resolver
        self.config = config
        self.authserv_id = authserv_id
        self._threads = ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="checks")

    async def check(
        self, message: bytes, *, client_ip: str, helo: str, mail_from: str
    ) -> CheckOutcome:
        loop = asyncio.get_running_loop()
        lookup = BlockingLookup(self.resolver, loop)
        verdicts = await loop.run_in_executor(
            self._threads,
            functools.partial(
                run_checks, lookup, message, client_ip=client_ip, helo=helo, mail_from=mail_from
            ),
        )
        return CheckOutcome(
            verdicts,
            decide(verdicts, self.config),
            authentication_results(self.authserv_id, verdicts),
        )

    def close(self) -> None:
        """At shutdown: checks not yet started are dropped (their sessions are gone with
        the listeners); running ones end by their DNS timeouts without being waited for."""
        self._threads.shutdown(wait=False, cancel_futures=True)
