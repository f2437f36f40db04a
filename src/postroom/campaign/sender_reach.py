"""Two-way or send-only: where a sender's replies go, and what DMARC makes of its mail.

A sender whose domain is a verified linked domain of ITS OWN project is
two-way: postroom signs its mail (DKIM d= that domain, aligned) and receives
the replies. `reply_route(accounts, address)` says where they land, with the
router's own answer (`Accounts.resolve`): the mailbox with that address, else
the mailboxes an alias of the address or the domain's catch-all ("@domain")
points at; when none receives them, it names the command that fixes it.

Any other domain is send-only: postroom cannot sign for it and the return path
is ours, so its mail never passes DMARC (RFC 7489). What that costs depends on
the domain's published policy, read by `mta.checks.dmarc.evaluate` exactly as a
receiver reads it for a message with no aligned identifier (`dmarc_outlook`):
p=reject or p=quarantine (sp= for a subdomain) is a risk — `dmarc_risk` returns
a one-line reason, `sender add` warns, `campaign launch` refuses unless the
operator overrides; p=none, no record or an invalid one is no risk. DNS trouble
is a risk too: the policy is unknown, and a launch must not pass by accident.
`dmarc_risk` is meant for send-only senders (a two-way sender's mail aligns).

Untrusted input: TXT answers from DNS (parsed by the DMARC checks' parser only).
Config keys: [dns] nameservers, timeout, cache_max_ttl (the resolver).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import Connection, select

from postroom.core.dns import Resolver
from postroom.db.models import DomainState, domains
from postroom.mailbox.accounts import Accounts, RecipientKind
from postroom.mta.checks.dmarc import DmarcPolicy, DmarcResult, evaluate
from postroom.mta.checks.lookup import BlockingLookup, DnsLookup

if TYPE_CHECKING:
    from postroom.config import Config


class SenderMode(StrEnum):
    TWO_WAY = "two-way"
    SEND_ONLY = "send-only"


@dataclass(frozen=True, slots=True)
class DmarcOutlook:
    risk: str | None
    """Why the sender's mail will fail at receivers (or the policy is unknown); None: no risk."""
    note: str
    """One line for `sender show`: what the published policy means for this sender."""


_EFFECT = {DmarcPolicy.REJECT: "reject its mail", DmarcPolicy.QUARANTINE: "put its mail in spam"}


def verified_domains_of(conn: Connection, project_id: int) -> set[str]:
    return set(
        conn.execute(
            select(domains.c.name).where(
                domains.c.project_id == project_id,
                domains.c.state == DomainState.VERIFIED.value,
            )
        ).scalars()
    )


def sender_mode(address: str, own_verified_domains: Collection[str]) -> SenderMode:
    domain = address.rpartition("@")[2]
    return SenderMode.TWO_WAY if domain in own_verified_domains else SenderMode.SEND_ONLY


def reply_route(accounts: Accounts, address: str) -> str:
    """Where replies to the two-way sender `address` land, or what to add (one line)."""
    domain = address.rpartition("@")[2]
    resolution = accounts.resolve(address)
    if resolution.kind is not RecipientKind.LOCAL:
        return (
            f"no mailbox or alias receives replies to {address}: add one with "
            f"`postroom mailbox add {address}` or `postroom alias add {address} MAILBOX`"
        )
    targets = [target.address for target in resolution.targets]
    if targets == [address]:
        return f"replies land in the mailbox {address}"
    aliased = any(alias.source == address for alias in accounts.aliases(domain=domain))
    through = f"the alias {address}" if aliased else f"the catch-all @{domain}"
    return f"replies land in {', '.join(targets)} (through {through})"


def send_only_route(address: str) -> str:
    domain = address.rpartition("@")[2]
    return (
        f"send-only: {domain} is not a verified domain of this project, so postroom neither "
        f"signs its mail nor receives its replies (they go to {domain}'s own mail servers)"
    )


def dmarc_outlook(lookup: DnsLookup, domain: str) -> DmarcOutlook:
    """What receivers will do with unsigned mail from `domain` (blocking DNS through `lookup`)."""
    # No identifier can align: the verdict is the domain's policy, and a sample of 0 puts
    # every message under it (pct= only softens some of them, the risk stays).
    verdict = evaluate(lookup, domain, None, (), sample=lambda: 0.0)
    where = f"_dmarc.{verdict.policy_domain}"
    if verdict.result is DmarcResult.TEMPERROR:
        reason = f"the DMARC policy of {domain} is unknown ({verdict.reason}); try again later"
        return DmarcOutlook(risk=reason, note=reason)
    if verdict.result is DmarcResult.PERMERROR:
        note = f"{verdict.reason}: receivers treat {domain} as having no DMARC policy"
        return DmarcOutlook(risk=None, note=note)
    if verdict.result is DmarcResult.NONE or verdict.policy is None:
        note = f"{domain}: {verdict.reason}; receivers judge its unsigned mail by their own rules"
        return DmarcOutlook(risk=None, note=note)
    effect = _EFFECT.get(verdict.policy)
    if effect is None:
        note = (
            f"{domain} publishes DMARC policy none ({where}): its mail from postroom fails "
            "DMARC, but receivers are asked to deliver it anyway"
        )
        return DmarcOutlook(risk=None, note=note)
    risk = (
        f"{domain} publishes DMARC policy {verdict.policy} ({where}) and postroom cannot sign "
        f"for it: receivers will {effect}"
    )
    fix = "; send from a verified domain of the project instead"
    return DmarcOutlook(risk=risk, note=risk + fix)


def lookup_dmarc_outlook(config: Config, domain: str) -> DmarcOutlook:
    """`dmarc_outlook` through the configured resolver. Runs its own event loop: call it
    from synchronous code (a CLI command), never from a running loop."""

    async def look() -> DmarcOutlook:
        lookup = BlockingLookup(Resolver.from_config(config.dns), asyncio.get_running_loop())
        return await asyncio.to_thread(dmarc_outlook, lookup, domain)

    return asyncio.run(look())


def dmarc_risk(config: Config, address: str) -> str | None:
    """One line when the send-only sender `address`'s mail will fail DMARC at receivers
    (p=reject or quarantine) or its policy cannot be looked up; None otherwise."""
    return lookup_dmarc_outlook(config, address.rpartition("@")[2]).risk
