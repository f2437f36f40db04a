"""Bounce reasons: the closed vocabulary, and which of them are hard bounces.

Purpose: one enum, `Reason`, names why a message did not reach (or did reach)
a recipient, in the vocabulary that bounce-parsing tools share (ARCHITECTURE.md,
"Bounce reasons"), so that our verdicts compare with theirs. `is_hard(reason,
status)` says whether a failure is a fact about the *address* (it will fail the
same way next time) rather than about this message, this sender or this moment.

The hard/soft rule follows the convention the reference corpus labels with
(`hardbounce` in corpora/bounces/expectations.jsonl): hard means "the address
is bad", not "the reply was 5xx". A 550 for spam content, a blocked IP or a
full mailbox is permanent for that message but says nothing final about the
address, so it is soft. The hard reasons are:

- userunknown, hostunknown, hasmoved: the mailbox or domain does not exist
  (or not any more), whatever the reply class — a 450 "user unknown" is still
  an unknown user (Postfix answers 450 while its recipient map is unsure);
- notaccept (the domain accepts no mail: null MX, RFC 7505) when permanent
  (a 4.x.x status means the refusal may pass).

Everything else is soft, including undefined: an unexplained bounce must not
block a contact on its own.

Inputs: a Reason and an RFC 3463 status string ("5.1.1", "" when unknown).
No I/O, no untrusted input beyond the status string, which is only compared.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["NON_FAILURE_REASONS", "Reason", "is_hard"]


class Reason(StrEnum):
    """Why a delivery failed (or the non-failure reports: feedback, vacation, delivered)."""

    USERUNKNOWN = "userunknown"
    HOSTUNKNOWN = "hostunknown"
    HASMOVED = "hasmoved"
    MAILBOXFULL = "mailboxfull"
    EXCEEDLIMIT = "exceedlimit"
    MESGTOOBIG = "mesgtoobig"
    SUSPEND = "suspend"
    FILTERED = "filtered"
    BLOCKED = "blocked"
    SPAMDETECTED = "spamdetected"
    POLICYVIOLATION = "policyviolation"
    VIRUSDETECTED = "virusdetected"
    NORELAYING = "norelaying"
    NOTACCEPT = "notaccept"
    REJECTED = "rejected"
    AUTHFAILURE = "authfailure"
    REQUIREPTR = "requireptr"
    NOTCOMPLIANTRFC = "notcompliantrfc"
    SECURITYERROR = "securityerror"
    FAILEDSTARTTLS = "failedstarttls"
    BADREPUTATION = "badreputation"
    TOOMANYCONN = "toomanyconn"
    SPEEDING = "speeding"
    EXPIRED = "expired"
    NETWORKERROR = "networkerror"
    SYSTEMERROR = "systemerror"
    SYSTEMFULL = "systemfull"
    CONTENTERROR = "contenterror"
    MAILERERROR = "mailererror"
    SYNTAXERROR = "syntaxerror"
    ONHOLD = "onhold"
    UNDEFINED = "undefined"
    FEEDBACK = "feedback"
    VACATION = "vacation"
    DELIVERED = "delivered"


# Reports that are not delivery failures: no contact should be penalised for them.
NON_FAILURE_REASONS = frozenset({Reason.FEEDBACK, Reason.VACATION, Reason.DELIVERED})

_ALWAYS_HARD = frozenset({Reason.USERUNKNOWN, Reason.HOSTUNKNOWN, Reason.HASMOVED})


def is_hard(reason: Reason, status: str) -> bool:
    """True when the failure condemns the address itself (see the module docstring)."""
    if reason in _ALWAYS_HARD:
        return True
    if reason is Reason.NOTACCEPT:
        return not status.startswith("4")
    return False
