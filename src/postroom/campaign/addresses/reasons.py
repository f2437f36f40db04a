"""Reason codes of the address validator, their severity, and the verdict rule.

Purpose: the one place that lists every reason an `AddressVerdict` can carry,
what it means, and which verdict it forces. Codes are short, stable snake_case
strings: operators filter on them and the JSON output of
`postroom address check` carries them, so a code is never renamed.

Severity of a reason:

- `note`: information only; the address is still `valid` (junk was trimmed,
  a display name was dropped, the address needs SMTPUTF8, ...).
- `risky`: send only if the operator says so.
- `invalid`: do not send.
- `duplicate`: the input repeats an earlier one (after normalisation).

Verdict precedence: invalid > duplicate > risky > valid. A duplicate of an
invalid input is itself invalid (the same checks fail for it), yet still names
the first occurrence in `duplicate_of`; a risky input repeated is `duplicate`,
because sending it once is the operator's decision for the first occurrence.

Inputs and outputs: reason codes in, a verdict string out. Pure; no I/O.
No untrusted bytes are handled here. Reads no configuration.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "DUPLICATE",
    "INVALID",
    "NOTE",
    "REASONS",
    "RISKY",
    "VALID",
    "ReasonInfo",
    "verdict_for",
]

VALID = "valid"
RISKY = "risky"
INVALID = "invalid"
DUPLICATE = "duplicate"
NOTE = "note"


@dataclass(frozen=True, slots=True)
class ReasonInfo:
    """What a reason code means and the verdict it forces (`severity`)."""

    code: str
    severity: str
    meaning: str


_ALL = (
    # Cleaning the input (junk.py): the address itself is fine.
    ReasonInfo(
        "junk_trimmed",
        NOTE,
        "spaces, invisible characters, mailto:, angle brackets, "
        "quotes or trailing punctuation were removed around the address",
    ),
    ReasonInfo("display_name", NOTE, 'a display name ("Ann" <ann@example.com>) was dropped'),
    ReasonInfo("smtputf8", NOTE, "the local part is non-ASCII: only SMTPUTF8 servers accept it"),
    ReasonInfo(
        "implicit_mx", NOTE, "no MX record; mail goes to the domain's A/AAAA (RFC 5321 section 5.1)"
    ),
    ReasonInfo(
        "shared_mailbox",
        NOTE,
        "a shared contact mailbox (info@, sales@, ...); legitimate, read by people",
    ),
    # Syntax (syntax.py).
    ReasonInfo("empty", INVALID, "nothing left once surrounding junk was removed"),
    ReasonInfo(
        "syntax",
        INVALID,
        "not an address under RFC 5321/5322 as a campaign list "
        "needs it (email-validator's message says why)",
    ),
    ReasonInfo(
        "quoted_local_part",
        INVALID,
        'a quoted local part ("a b"@example.com); refused unless the policy allows it',
    ),
    ReasonInfo(
        "ip_literal",
        INVALID,
        "an IP literal domain (a@[192.0.2.1]); refused unless the policy allows it",
    ),
    # Domain name (domain_checks.py, typos.py).
    ReasonInfo("unknown_tld", INVALID, "the top-level domain does not exist"),
    ReasonInfo(
        "reserved_tld",
        INVALID,
        "a special-use or reserved top-level domain "
        "(.invalid, .localhost, .local, .onion, .arpa, ...) the policy does not accept",
    ),
    ReasonInfo(
        "typo_domain",
        INVALID,
        "a sure misspelling of a common provider's domain or "
        "of a top-level domain; `suggestion` holds the corrected address",
    ),
    ReasonInfo(
        "typo_domain_suspected",
        RISKY,
        "close to a common provider's domain but "
        "not surely a typo; `suggestion` holds the likely address",
    ),
    ReasonInfo(
        "mixed_script",
        INVALID,
        "a domain label mixes scripts (a Cyrillic letter in a Latin label): a lookalike",
    ),
    ReasonInfo(
        "confusable",
        INVALID,
        "a domain label written in another script that reads "
        "as a common provider's name: a lookalike",
    ),
    ReasonInfo("disposable", INVALID, "a disposable (temporary mailbox) domain"),
    # Local part (roles.py, domain_checks.py).
    ReasonInfo(
        "role_account",
        RISKY,
        "a mailbox no person reads, or one that exists to catch "
        "mail (postmaster@, abuse@, noreply@, mailer-daemon@, ...)",
    ),
    ReasonInfo(
        "mixed_script_local_part",
        RISKY,
        "the local part mixes scripts (a Cyrillic letter among Latin ones)",
    ),
    # DNS step (dns_step.py).
    ReasonInfo("no_domain", INVALID, "the domain does not exist (NXDOMAIN)"),
    ReasonInfo("no_mx", INVALID, "the domain has neither MX nor A/AAAA records"),
    ReasonInfo("null_mx", INVALID, "the domain publishes a null MX: it accepts no mail (RFC 7505)"),
    ReasonInfo("dns_temporary", RISKY, "DNS failed temporarily (timeout, SERVFAIL); try again"),
    # Across inputs (dedupe.py).
    ReasonInfo(
        "duplicate", DUPLICATE, "repeats an earlier input once normalised; `duplicate_of` names it"
    ),
)

REASONS: MappingProxyType[str, ReasonInfo] = MappingProxyType({info.code: info for info in _ALL})


def verdict_for(reasons: Iterable[str]) -> str:
    """The verdict the reasons force: invalid > duplicate > risky > valid.

    An unknown code is a programming error and raises `KeyError`.
    """
    severities = {REASONS[code].severity for code in reasons}
    for verdict in (INVALID, DUPLICATE, RISKY):
        if verdict in severities:
            return verdict
    return VALID
