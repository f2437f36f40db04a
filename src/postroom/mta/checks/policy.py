"""What the authentication verdicts lead to: the `[checks]` table applied.

`decide(verdicts, config)` returns a `Decision`: accept, quarantine (store in
the mailbox's Junk folder), reject (a 5xx at the end of DATA) or defer (4xx:
DNS trouble left the outcome open, the sender retries). The checks themselves
only report; this is the one place that turns verdicts into a reply.

Order of the rules:
1. Several From fields or From addresses: `dmarc_reject` (RFC 7489 6.6.1 —
   otherwise a second From would pick which domain's policy applies).
2. DMARC fail: nothing if the applied disposition is none (p=none, or not
   sampled under pct); else, when an SPF or DKIM temperror of an identity
   aligned with the From domain could have produced the pass, `temperror`;
   else `dmarc_reject` / `dmarc_quarantine`.
3. DMARC temperror (the record could not be fetched): `temperror`.
4. No DMARC policy and SPF fail: `spf_fail`.
5. Otherwise accept.
Replies: 550 5.7.1 (DMARC), 550 5.7.23 (SPF, RFC 7372), 451 4.7.24 when SPF
DNS trouble is the cause, else 451 4.7.0.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from postroom.config.schema import ChecksConfig
from postroom.core.reply import Reply
from postroom.mta.checks.dkim import DkimResult
from postroom.mta.checks.dmarc import DmarcPolicy, DmarcResult, aligned
from postroom.mta.checks.spf import SpfResult

if TYPE_CHECKING:
    from postroom.mta.checks.pipeline import AuthVerdicts


class Action(StrEnum):
    ACCEPT = "accept"
    QUARANTINE = "quarantine"
    REJECT = "reject"
    DEFER = "defer"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str
    reply: Reply | None = None  # for REJECT and DEFER


ACCEPT = Decision(Action.ACCEPT, "accepted")


def decide(verdicts: AuthVerdicts, config: ChecksConfig) -> Decision:
    dmarc = verdicts.dmarc
    spf = verdicts.spf.mail_from
    if verdicts.from_fields != 1 or (
        dmarc.result is DmarcResult.PERMERROR and not dmarc.from_domain
    ):
        return _apply(
            config.dmarc_reject,
            "no single From address",
            Reply(550, "5.7.1", "Message must have exactly one From address (RFC 5322 3.6.2)"),
        )
    if dmarc.result is DmarcResult.FAIL and dmarc.disposition is not DmarcPolicy.NONE:
        if _undecided(verdicts):
            return _defer(config, verdicts, f"DMARC fail for {dmarc.from_domain} with DNS trouble")
        action = (
            config.dmarc_reject
            if dmarc.disposition is DmarcPolicy.REJECT
            else config.dmarc_quarantine
        )
        return _apply(
            action,
            f"DMARC fail for {dmarc.from_domain} (disposition {dmarc.disposition.value})",
            Reply(550, "5.7.1", f"Rejected by the DMARC policy of {dmarc.from_domain}"),
        )
    if dmarc.result is DmarcResult.TEMPERROR:
        return _defer(config, verdicts, f"DMARC record of {dmarc.from_domain} unavailable")
    if dmarc.policy is None and spf.result is SpfResult.FAIL:
        return _apply(
            config.spf_fail,
            f"SPF fail for {spf.domain}",
            Reply(550, "5.7.23", f"SPF check failed for {spf.domain}: {spf.explanation}"[:400]),
        )
    return ACCEPT


def _undecided(verdicts: AuthVerdicts) -> bool:
    """True when an SPF or DKIM result left open by DNS could have passed DMARC: only an
    identity aligned with the From domain could (relaxed, the looser mode), else a
    sender could escape p=reject by making its own unrelated DNS time out."""
    author = verdicts.dmarc.from_domain
    spf = verdicts.spf.mail_from
    if spf.result is SpfResult.TEMPERROR and aligned(author, spf.domain, "r"):
        return True
    return any(
        verdict.result is DkimResult.TEMPERROR and aligned(author, verdict.domain, "r")
        for verdict in verdicts.dkim
    )


def _defer(config: ChecksConfig, verdicts: AuthVerdicts, reason: str) -> Decision:
    if config.temperror != "defer":
        return Decision(Action.ACCEPT, reason + " (accepted by [checks] temperror)")
    spf_cause = verdicts.spf.mail_from.result is SpfResult.TEMPERROR
    return Decision(
        Action.DEFER,
        reason,
        Reply(
            451,
            "4.7.24" if spf_cause else "4.7.0",
            "Temporary authentication failure (DNS), try again later",
        ),
    )


def _apply(action: str, reason: str, reply: Reply) -> Decision:
    if action == "reject":
        return Decision(Action.REJECT, reason, reply)
    if action == "quarantine":
        return Decision(Action.QUARANTINE, reason)
    return Decision(Action.ACCEPT, reason + " (accepted by [checks])")
