"""SPF checks of the HELO and MAIL FROM identities (RFC 7208), with pyspf.

Purpose: say whether the connecting client is authorised to send for the
domain of the envelope sender, and for its HELO name, by the SPF records those
domains publish. pyspf evaluates the records; this module feeds it DNS, picks
the identities and turns its answers into typed verdicts.

Inputs: the client IP address (IPv4, IPv6 or IPv4-mapped IPv6, which pyspf
evaluates as IPv4; anything else is a caller bug and raises `ValueError`), the
MAIL FROM address as received ("" for the null reverse-path), the HELO/EHLO
name as received, and a `DnsLookup` (`postroom.mta.checks.lookup`). The calls
block on DNS: run them in a worker thread (`asyncio.to_thread`).

Outputs: `check_spf` returns `SpfVerdicts`: the HELO identity (RFC 7208 2.3)
and the MAIL FROM identity (2.4; for the null sender that identity is
postmaster@<helo>, so it is the HELO evaluation again). `check_host` is one
RFC 7208 4 check_host() of a MAIL FROM identity. Results are those of RFC 7208
2.6 (`SpfResult`); pyspf's non-RFC results never come out as `pass`.
- `none`: no SPF record, or nothing to evaluate (RFC 7208 4.3): a sender
  without a domain, a HELO that is an address literal, an IP address or not a
  multi-label domain name — `domain` is "" then, and no DNS is asked;
- `temperror`: DNS trouble (`DnsTemporaryError`) or the evaluation running out
  of time: the same check may give an answer later;
- `permerror`: a broken policy (syntax, two records, more than 10 lookups or 2
  void lookups, RFC 7208 4.6.4), or a record pyspf fails on in any other way.
`explanation` is the domain's exp= text for `fail` (RFC 7208 6.2), pyspf's
error text for `permerror`/`temperror`, pyspf's Received-SPF comment otherwise.

DNS: pyspf has no per-query DNS parameter; it calls the module global
`spf.DNSLookup(name, qtype, strict, timeout)`. This module installs `_dispatch`
there once, at import. The dispatcher takes the `DnsLookup` of the check in
progress from a `ContextVar` that `check_host` sets for the duration of the
call. pyspf calls the dispatcher synchronously in the thread running the check,
and every thread has its own current context (`asyncio.to_thread` runs each
check in a copy of the caller's), so concurrent checks with different lookups
never see each other's. The dispatcher converts the rdata to pyspf's shapes,
answers NXDOMAIN and no-data with an empty list, and raises `spf.TempError` for
`DnsTemporaryError`. pyspf used outside `check_host` finds no lookup and raises
`RuntimeError` rather than querying some other resolver. An exception from the
lookup that is not a DNS answer (a bug) propagates out of `check_host`, even
where pyspf would swallow it.

RFCs: 7208 (SPF), 5321 (reverse-path, HELO), 8601 (where verdicts are reported).
Untrusted input: the sender, the HELO name and every DNS answer (records,
exp= texts, PTR names). pyspf enforces the processing limits and rejects
non-ASCII policies; `explanation` is cut to one line of at most 200 printable
ASCII characters without "(", ")" or "\\", so it is safe in a header comment.
"""

from __future__ import annotations

import ipaddress
from contextvars import ContextVar
from dataclasses import dataclass, replace
from enum import StrEnum

import dns.rdata
import dns.rdatatype
import dns.rdtypes.ANY.MX
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.nsbase
import dns.rdtypes.txtbase
import spf

from postroom.core.dns import DnsNoData, DnsNotFound, DnsTemporaryError, name_text
from postroom.mta.checks.lookup import DnsLookup

MAX_EXPLANATION = 200

_MAIL_FROM = "mailfrom"
_HELO = "helo"
# Longest domain name in text form: 255 octets on the wire (RFC 1035 3.1).
_MAX_DOMAIN = 253
# A header comment ends at ")" and escapes with "\\"; "(" would need its ")".
_COMMENT_SAFE = str.maketrans({"(": "[", ")": "]", "\\": "?"})

_PyspfAnswer = tuple[tuple[str, str], object]


class SpfResult(StrEnum):
    NONE = "none"
    NEUTRAL = "neutral"
    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


@dataclass(frozen=True, slots=True)
class SpfVerdict:
    result: SpfResult
    identity: str  # "mailfrom" or "helo" (RFC 7208 2.3/2.4: the identity checked)
    domain: str  # the domain whose policy was evaluated, lower case ("" when none could be)
    sender: str  # the address checked: the MAIL FROM, or postmaster@<helo> for the null sender
    explanation: str  # exp= text for fail, or pyspf's comment; one line, safe for a header comment


@dataclass(frozen=True, slots=True)
class SpfVerdicts:
    helo: SpfVerdict  # the HELO identity (RFC 7208 2.3); none when helo is not a domain name
    mail_from: SpfVerdict  # the MAIL FROM identity; for the null sender, postmaster@helo (2.4)


@dataclass(slots=True)
class _Check:
    """The DNS of one check in progress, and a failure of the lookup itself."""

    lookup: DnsLookup
    failure: Exception | None = None


_current_check: ContextVar[_Check | None] = ContextVar("postroom_spf_check", default=None)


def check_spf(
    lookup: DnsLookup, client_ip: str, mail_from: str, helo: str, *, timeout_s: float = 20.0
) -> SpfVerdicts:
    """The HELO and the MAIL FROM identity of one SMTP transaction, checked."""
    helo_verdict = replace(
        check_host(lookup, client_ip, "", helo, timeout_s=timeout_s), identity=_HELO
    )
    if mail_from:
        mail_from_verdict = check_host(lookup, client_ip, mail_from, helo, timeout_s=timeout_s)
    else:
        # RFC 7208 2.4: with the null sender the MAIL FROM identity is
        # postmaster@<helo>, the very evaluation the HELO check just made.
        mail_from_verdict = replace(helo_verdict, identity=_MAIL_FROM)
    return SpfVerdicts(helo_verdict, mail_from_verdict)


def check_host(
    lookup: DnsLookup, client_ip: str, sender: str, helo: str, *, timeout_s: float = 20.0
) -> SpfVerdict:
    """RFC 7208 4 check_host() of the MAIL FROM `sender` ("" for the null sender).

    Raises `ValueError` when `client_ip` is not an IP address. `timeout_s`
    bounds the whole evaluation (RFC 7208 4.6.4); pyspf checks it between
    lookups, each of which the `DnsLookup` bounds itself.
    """
    ipaddress.ip_address(client_ip)  # ValueError: a caller bug, not a verdict
    checked = sender or f"postmaster@{helo}"
    local, at, domain_text = checked.rpartition("@")
    domain = _policy_domain(domain_text) if at else ""
    if not domain:
        return SpfVerdict(
            SpfResult.NONE, _MAIL_FROM, "", checked, "no domain name to check (RFC 7208 4.3)"
        )
    query = spf.query(
        i=client_ip, s=sender, h=helo, strict=True, timeout=timeout_s, querytime=timeout_s
    )
    # pyspf splits at the first "@", but a quoted local-part may hold one;
    # RFC 7208 4.3 names an empty local-part "postmaster".
    query.l, query.o, query.d = local or "postmaster", domain, domain
    # An empty default lets a fail's explanation tell an exp= text from none.
    query.set_default_explanation("")
    check = _Check(lookup)
    token = _current_check.set(check)
    try:
        result, explanation = _evaluate(query)
    finally:
        _current_check.reset(token)
    if check.failure is not None:
        raise check.failure
    return SpfVerdict(result, _MAIL_FROM, domain.lower(), checked, _one_line(explanation))


def _evaluate(query: spf.query) -> tuple[SpfResult, str]:
    try:
        outcome, _code, text = query.check()
    except Exception as error:
        # check() turns pyspf's own TempError and PermError into results;
        # anything else is pyspf failing on a record it did not anticipate.
        return SpfResult.PERMERROR, f"SPF Permanent Error: unusable record ({type(error).__name__})"
    try:
        result = SpfResult(outcome)
    except ValueError:
        # A result outside RFC 7208 ("ambiguous" belongs to pyspf's harsh
        # mode, not used here): whatever it means, it is not a pass.
        return SpfResult.PERMERROR, text
    if result is SpfResult.FAIL and text:
        return result, text
    if result in (SpfResult.PERMERROR, SpfResult.TEMPERROR):
        return result, text
    return result, query.get_header_comment(outcome)


def _policy_domain(text: str) -> str:
    """`text` as a domain name whose policy can be looked up, or "" (RFC 7208 4.3)."""
    name = text.removesuffix(".")
    labels = name.split(".")
    if len(labels) < 2 or len(name) > _MAX_DOMAIN:
        return ""
    if not all(0 < len(label) < 64 for label in labels):
        return ""
    if name.startswith("["):
        return ""  # an address literal (RFC 5321 4.1.3)
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    return ""  # a bare IP address, as some clients send in HELO


def _one_line(text: str) -> str:
    """`text` as one line of printable ASCII that cannot end or escape a header comment."""
    printable = "".join(
        char if " " <= char <= "~" else (" " if char.isspace() else "?") for char in text
    )
    line = printable.translate(_COMMENT_SAFE).strip()
    return line if len(line) <= MAX_EXPLANATION else line[: MAX_EXPLANATION - 3] + "..."


def _dispatch(
    name: str, qtype: str, strict: object = True, timeout: object = None
) -> list[_PyspfAnswer]:
    """pyspf's DNS hook: the lookup of the check in progress, in pyspf's shapes.

    `strict` and `timeout` are pyspf's; the `DnsLookup` applies its own timeout.
    """
    check = _current_check.get()
    if check is None:
        raise RuntimeError("pyspf looked up DNS outside postroom.mta.checks.spf.check_host")
    try:
        records = check.lookup(name, qtype)
    except (DnsNotFound, DnsNoData):
        return []
    except DnsTemporaryError as error:
        raise spf.TempError(f"DNS {error}") from None
    except Exception as error:
        # Not a DNS answer but a fault of the lookup: pyspf swallows exceptions
        # around exp= lookups, so keep it for check_host to raise.
        check.failure = error
        raise
    answers = (_pyspf_answer(name, record) for record in records)
    return [answer for answer in answers if answer is not None]


def _pyspf_answer(name: str, record: dns.rdata.Rdata) -> _PyspfAnswer | None:
    """One record as pyspf's ((name, type), value); None for a type pyspf never asks."""
    rdtype = dns.rdatatype.to_text(record.rdtype)
    value: object
    if isinstance(record, dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA):
        value = record.address
    elif isinstance(record, dns.rdtypes.ANY.MX.MX):
        value = (record.preference, name_text(record.exchange))
    elif isinstance(record, dns.rdtypes.nsbase.NSBase) and rdtype in ("PTR", "CNAME"):
        # A lookup may hand back an alias unfollowed; pyspf follows it then,
        # with its own chain-length and loop limits.
        value = name_text(record.target)
    elif isinstance(record, dns.rdtypes.txtbase.TXTBase):
        value = list(record.strings)  # pyspf joins them (RFC 7208 3.3)
    else:
        return None
    return (name, rdtype), value


# Once, at import: see the module docstring.
spf.DNSLookup = _dispatch
