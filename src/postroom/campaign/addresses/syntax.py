"""Address syntax for campaign lists: email-validator, plus the campaign's own rules.

Purpose: decide whether a cleaned string (junk.py ran first) is an address a
campaign can send to, and give its normalised form. email-validator does what
it does well — RFC 5321/5322 dot-atom syntax, length limits (strict: 64 octets
before the @), unsafe Unicode, NFC normalisation, IDNA 2008 / UTS 46 for the
domain, SMTPUTF8 detection — called with `check_deliverability=False` (the DNS
step is ours, dns_step.py). On top of it:

- a quoted local part (`"a b"@example.com`) gives `quoted_local_part` and an IP
  literal domain (`a@[192.0.2.1]`) gives `ip_literal`, unless the policy allows
  them; both are still parsed, so the verdict names the normalised address;
- a domain without a dot gives `syntax` (no public mailbox lives at a TLD);
- special-use and reserved TLDs (RFC 2606, RFC 6761, RFC 6762, RFC 7686,
  RFC 9476, ICANN's .internal) give `reserved_tld` unless the policy accepts
  them. email-validator refuses some of them outright whatever the caller
  wants, so the syntax of such an address is checked with its TLD spelled
  `test` (which email-validator's test mode accepts) and the TLD put back.

A plain address — a lower-case ASCII dot-atom local part (letters, digits, `_`,
`+`, `-`) at a lower-case LDH domain whose TLD is letters, not reserved — is
what nearly every stored contact is, and what email-validator returns unchanged
(nothing to normalise, unquote or IDNA-encode). `_plain_address` accepts it
without email-validator, whose per-character Unicode checks were most of a
100,000-contact launch's time (a reserved TLD gets `reserved_tld` as below);
one over a length limit (64 octets before the @, 63 per label, 253 after it,
254 in all), with `--` in its domain, or under another special-use name of
email-validator's still goes to email-validator. tests/unit/campaign/
test_addresses_plain.py checks that the two always agree.

Inputs: untrusted text, already cleaned, and the policy's switches. Outputs:
`SyntaxResult` (the parsed address or None, reason codes, email-validator's
message). Pure; no I/O. Config read: the `ValidationPolicy` fields
`allow_quoted`, `allow_ip_literal`, `accepted_reserved_tlds`.
RFCs: 5321, 5322, 6531/6532 (SMTPUTF8), 5890-5892 (IDNA 2008).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from postroom.core.hostnames import RESERVED_TLDS  # no public mailbox lives under them

__all__ = ["RESERVED_TLDS", "ParsedAddress", "SyntaxResult", "parse_address"]

_STAND_IN_TLD = "test"


@dataclass(frozen=True, slots=True)
class ParsedAddress:
    """An address email-validator accepted, in normalised form.

    `address` keeps the local part as written (after NFC normalisation and the
    removal of unneeded quotes) and the domain in lower-case Unicode;
    `ascii_domain` is the IDNA form DNS uses ("[192.0.2.1]" for a literal).
    """

    address: str
    local_part: str
    domain: str
    ascii_domain: str
    smtputf8: bool
    quoted: bool
    ip_literal: bool


@dataclass(frozen=True, slots=True)
class SyntaxResult:
    """The parse, or None; the syntax reasons; email-validator's explanation."""

    parsed: ParsedAddress | None
    reasons: tuple[str, ...]
    message: str


def parse_address(
    text: str,
    *,
    allow_quoted: bool,
    allow_ip_literal: bool,
    accepted_reserved_tlds: frozenset[str],
) -> SyntaxResult:
    """Parse `text` as one address (see module docstring)."""
    if not text:
        return SyntaxResult(None, ("empty",), "nothing left once junk was removed")
    plain = _plain_address(text, accepted_reserved_tlds)
    if plain is not None:
        return plain
    head, at_sign, domain_part = text.rpartition("@")
    reserved = ""
    checked = text
    if at_sign and not domain_part.startswith("["):
        last_label = domain_part.rsplit(".", 1)[-1]
        if last_label.lower() in RESERVED_TLDS:
            reserved = last_label.lower()
            checked = head + "@" + domain_part[: len(domain_part) - len(last_label)] + _STAND_IN_TLD
    try:
        validated = validate_email(
            checked,
            allow_smtputf8=True,
            allow_empty_local=False,
            allow_quoted_local=True,
            allow_domain_literal=True,
            allow_display_name=False,
            strict=True,
            check_deliverability=False,
            test_environment=True,
            globally_deliverable=True,
        )
    except EmailNotValidError as error:
        return SyntaxResult(None, ("syntax",), str(error))
    domain, ascii_domain = validated.domain, validated.ascii_domain
    if reserved:
        domain = domain[: len(domain) - len(_STAND_IN_TLD)] + reserved
        ascii_domain = ascii_domain[: len(ascii_domain) - len(_STAND_IN_TLD)] + reserved
    ip_literal = getattr(validated, "domain_address", None) is not None
    if not ip_literal and "." not in ascii_domain:
        return SyntaxResult(None, ("syntax",), "the domain has no dot")
    parsed = ParsedAddress(
        address=validated.local_part + "@" + domain,
        local_part=validated.local_part,
        domain=domain,
        ascii_domain=ascii_domain,
        smtputf8=bool(validated.smtputf8),
        quoted=text.startswith('"'),
        ip_literal=ip_literal,
    )
    reasons: list[str] = []
    if parsed.quoted and not allow_quoted:
        reasons.append("quoted_local_part")
    if ip_literal and not allow_ip_literal:
        reasons.append("ip_literal")
    if reserved and reserved not in accepted_reserved_tlds:
        reasons.append("reserved_tld")
    if parsed.smtputf8:
        reasons.append("smtputf8")
    return SyntaxResult(parsed, tuple(reasons), "")


_PLAIN_LOCAL = re.compile(r"[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*")
_LDH_DOMAIN = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)+")
_MAX_LOCAL, _MAX_LABEL, _MAX_DOMAIN, _MAX_ADDRESS = 64, 63, 253, 254  # email-validator's


def _plain_address(text: str, accepted_reserved_tlds: frozenset[str]) -> SyntaxResult | None:
    """`text` parsed when it is a plain address (see the module docstring), else None.
    Linear: two regular expressions without nested repetition, then one pass."""
    local, _, domain = text.partition("@")
    if (
        len(text) > _MAX_ADDRESS
        or len(local) > _MAX_LOCAL
        or len(domain) > _MAX_DOMAIN
        or "--" in domain
        or _PLAIN_LOCAL.fullmatch(local) is None
        or _LDH_DOMAIN.fullmatch(domain) is None
    ):
        return None
    labels = domain.split(".")
    tld = labels[-1]
    if not tld.isalpha():
        return None
    for label in labels:
        if len(label) > _MAX_LABEL or label.startswith("-") or label.endswith("-"):
            return None
    reasons: tuple[str, ...] = ()
    if tld in RESERVED_TLDS:  # as parse_address checks it: with the stand-in TLD
        reasons = () if tld in accepted_reserved_tlds else ("reserved_tld",)
    elif any(domain == name or domain.endswith("." + name) for name in SPECIAL_USE_DOMAIN_NAMES):
        return None
    parsed = ParsedAddress(
        address=text,
        local_part=local,
        domain=domain,
        ascii_domain=domain,
        smtputf8=False,
        quoted=False,
        ip_literal=False,
    )
    return SyntaxResult(parsed, reasons, "")
