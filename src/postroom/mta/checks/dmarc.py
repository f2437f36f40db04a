"""DMARC evaluation of a received message (RFC 7489).

Purpose: tell whether the author domain of a message (its RFC5322.From domain)
is authenticated by an aligned SPF or DKIM pass, and what its owner asks a
receiver to do when it is not. Nothing here decides: `policy.decide` does.

Inputs and outputs:
- `from_domain(header_value)`: the author domain of a From field value (RFC
  7489 6.6.1, RFC 5322 3.4 / RFC 6854 syntax) as lower-case A-labels, or None
  when there is no usable one: no address, a domain-literal, addresses in
  several domains (6.6.1 asks to check each; the caller decides), or text that
  is not a mailbox list. Display names, comments, quoted strings, groups and
  encoded-words (never decoded) are handled: the field is read by
  `core.address_list.mailbox_addresses`, which submission's From check shares.
- `parse_record(text)`: a `DmarcRecord` (6.3, 6.4) or `DmarcRecordError`.
  The syntax check is `postroom.mailbox.zone.dmarc.read_tags`, shared with the
  domain audit: one parser.
- `organizational_domain(domain, psl)` (3.2) and `aligned(from, auth, mode,
  psl)` (3.1) over a public suffix list (the process's shared one by default).
- `evaluate(lookup, from_domain, spf, dkim, psl=, sample=)`: policy discovery
  (6.6.3), identifier alignment, the result and the disposition after "pct"
  sampling (6.6.4), as a `DmarcVerdict`. I/O: TXT queries through `lookup`.

Untrusted input: the From value comes from the message and every TXT answer
from DNS; they are tokenised and matched against anchored expressions only.
`evaluate` never raises because of them: DNS trouble is `temperror`, a record
it cannot use is `permerror` with the reason.

Decisions:
- `parse_record` is strict on the record's syntax (RFC 7489 6.3: it MUST comply
  with 6.4): a bad value of a known tag makes the record invalid, as in
  OpenDMARC (the vectors test that reading). `evaluate` reads leniently, taking
  6.3's SHOULD of discarding bad tags for their defaults: a typo in fo= or pct=
  must not switch off a domain's p=reject at our door (big receivers apply the
  policy too). The structure (v=DMARC1 first, tag=value pairs, no repeated tag)
  must still hold. The RFC's own exceptions: a missing, bad or misplaced p= or a bad
  sp= with a valid rua= reads as p=none (6.6.3 step 6); an unregistered rf=
  format is accepted (6.3: a receiver SHOULD ignore it); report URIs may be
  any URI (6.4), mailto: or not. Unknown tags (DMARCbis t=, np=, psd=) are ignored.
- Several DMARC records at the name where discovery stops: no policy, result
  none (6.6.3 step 5), and no fallback to the organizational domain, which is
  only asked when the From domain has no DMARC record at all.
- sp= applies only when the record came from the organizational domain for a
  From domain below it (6.3 "sp"); a record at the From domain itself uses p=.
- `spf_aligned` / `dkim_aligned` count identifiers that both passed and align.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from publicsuffixlist import PublicSuffixList

from postroom.core.address_list import mailbox_addresses
from postroom.core.dns import DnsNoData, DnsNotFound, DnsTemporaryError
from postroom.mailbox.names import lookup_form, public_suffixes
from postroom.mailbox.zone.dmarc import DmarcSyntaxError, is_dmarc, read_tags
from postroom.mta.checks.lookup import DnsLookup, txt_strings

AlignmentMode = Literal["r", "s"]  # relaxed, strict (RFC 7489 3.1)

# One parser, one error: the shared syntax check raises it, and so does parse_record.
DmarcRecordError = DmarcSyntaxError


class DmarcResult(StrEnum):
    NONE = "none"
    PASS = "pass"
    FAIL = "fail"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


class DmarcPolicy(StrEnum):
    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"


# RFC 7489 6.6.4: a failing message left out by "pct" gets the next less strict policy.
_UNSAMPLED = {
    DmarcPolicy.REJECT: DmarcPolicy.QUARANTINE,
    DmarcPolicy.QUARANTINE: DmarcPolicy.NONE,
    DmarcPolicy.NONE: DmarcPolicy.NONE,
}


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    """A usable DMARC record (RFC 7489 6.3), defaults filled in.

    `rua`/`ruf` are the URIs as published (with any "!size" limit); `fo` and
    `rf` are lower-case, `rf` possibly naming formats we do not know.
    """

    policy: DmarcPolicy
    subdomain_policy: DmarcPolicy | None = None  # None: sp= absent, p= applies
    adkim: AlignmentMode = "r"
    aspf: AlignmentMode = "r"
    pct: int = 100
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()
    fo: tuple[str, ...] = ("0",)
    rf: tuple[str, ...] = ("afrf",)
    ri: int = 86400


@dataclass(frozen=True, slots=True)
class AuthenticatedIdentifier:
    """A domain an authentication method vouched for, and that method's result.

    SPF: the MAIL FROM (or HELO) domain; DKIM: a signature's d=. Only "pass" counts.
    """

    domain: str
    result: str


@dataclass(frozen=True, slots=True)
class DmarcVerdict:
    result: DmarcResult
    from_domain: str
    policy_domain: str  # where the record was found ("" when none was)
    policy: DmarcPolicy | None  # p=, or sp= for a subdomain; None without a usable record
    disposition: DmarcPolicy  # after pct sampling; NONE unless the result is FAIL
    spf_aligned: bool
    dkim_aligned: bool
    reason: str  # one line, for logs and Authentication-Results comments


def parse_record(text: str, *, lenient: bool = False) -> DmarcRecord:
    """The DMARC record in `text` (TXT strings joined); `DmarcRecordError` says what is wrong.
    `lenient`: a bad value of a tag other than v=, p= and sp= is dropped (its default
    applies) instead of invalidating the record — how `evaluate` reads a policy."""
    checked = read_tags(text, mailto_only=False, lenient=lenient)
    values = dict(checked.tags)
    problem = checked.policy_error or ("" if "p" in values else "p= is missing (RFC 7489 6.3)")
    if problem:
        if "rua" not in values:
            raise DmarcRecordError(f"{problem}; no rua= to fall back to p=none (RFC 7489 6.6.3)")
        # RFC 7489 6.6.3 step 6: act as if the record had a valid v= and p=none.
        values["p"] = DmarcPolicy.NONE
        values.pop("sp", None)
    return DmarcRecord(
        policy=DmarcPolicy(values["p"]),
        subdomain_policy=DmarcPolicy(values["sp"]) if "sp" in values else None,
        adkim=_mode(values.get("adkim")),
        aspf=_mode(values.get("aspf")),
        pct=int(values.get("pct", "100")),
        rua=_uris(values.get("rua")),
        ruf=_uris(values.get("ruf")),
        fo=tuple(values.get("fo", "0").split(":")),
        rf=tuple(values.get("rf", "afrf").lower().split(":")),
        ri=int(values.get("ri", "86400")),
    )


def _mode(value: str | None) -> AlignmentMode:
    # read_tags has already refused anything but "r" and "s".
    return "s" if value == "s" else "r"


def _uris(value: str | None) -> tuple[str, ...]:
    return tuple(value.split(",")) if value else ()


def organizational_domain(domain: str, psl: PublicSuffixList | None = None) -> str:
    """The Organizational Domain of `domain` (RFC 7489 3.2): its public suffix plus one label.

    Lower-case, without a final dot. A name the list cannot place (a public
    suffix itself, or not a domain name) is its own organizational domain.
    """
    name = domain.lower().removesuffix(".")
    suffixes = psl if psl is not None else public_suffixes()
    return suffixes.privatesuffix(name) or name


def aligned(
    from_domain: str, auth_domain: str, mode: str, psl: PublicSuffixList | None = None
) -> bool:
    """Identifier alignment (RFC 7489 3.1): "s" needs the same name, "r" the same
    organizational domain. Case and a final dot do not matter; a name with an
    empty label (".example.com") is no domain name and aligns with nothing."""
    author, authenticated = _comparable(from_domain), _comparable(auth_domain)
    if author is None or authenticated is None:
        return False
    if mode == "s":
        return author == authenticated
    if mode == "r":
        return organizational_domain(author, psl) == organizational_domain(authenticated, psl)
    raise ValueError(f"alignment mode must be 'r' or 's', not {mode!r}")


def _comparable(domain: str) -> str | None:
    name = domain.lower().removesuffix(".")
    return None if "" in name.split(".") else name


def evaluate(
    lookup: DnsLookup,
    from_domain: str,
    spf: AuthenticatedIdentifier | None,
    dkim: Sequence[AuthenticatedIdentifier],
    *,
    psl: PublicSuffixList | None = None,
    sample: Callable[[], float] = random.random,
) -> DmarcVerdict:
    """The DMARC verdict for a message from `from_domain` (see module docstring).

    `spf`: the SPF-checked domain and result, None when SPF had no domain;
    `dkim`: one identifier per DKIM signature. `sample()` returns a number in
    [0, 1); below pct/100 the failing message is subject to the policy.
    """
    author = from_domain.lower().removesuffix(".")
    if not author:
        return _unevaluated(DmarcResult.NONE, author, "", "no From domain")
    try:
        policy_domain, found = _discover(lookup, author, organizational_domain(author, psl))
    except DnsTemporaryError as error:
        # The record may exist: no policy can be assumed either way (RFC 7489 6.6.3).
        return _unevaluated(DmarcResult.TEMPERROR, author, "", f"DMARC lookup failed: {error}")
    if not found:
        return _unevaluated(DmarcResult.NONE, author, "", "no DMARC record")
    if len(found) > 1:
        reason = f"{len(found)} DMARC records at _dmarc.{policy_domain}: none applies"
        return _unevaluated(DmarcResult.NONE, author, policy_domain, f"{reason} (RFC 7489 6.6.3)")
    try:
        record = parse_record(found[0], lenient=True)
    except DmarcRecordError as error:
        reason = f"invalid DMARC record at _dmarc.{policy_domain}: {error}"
        return _unevaluated(DmarcResult.PERMERROR, author, policy_domain, reason)

    spf_aligned = spf is not None and _aligned_pass(author, spf, record.aspf, psl)
    dkim_passes = [ident for ident in dkim if _aligned_pass(author, ident, record.adkim, psl)]
    # sp= is for the organizational domain's subdomains, not for a record found at the From domain.
    subdomain_policy = record.subdomain_policy if policy_domain != author else None
    policy = subdomain_policy or record.policy
    if spf_aligned or dkim_passes:
        passes = ([f"spf={spf.domain}"] if spf is not None and spf_aligned else []) + [
            f"dkim={ident.domain}" for ident in dkim_passes
        ]
        result, disposition = DmarcResult.PASS, DmarcPolicy.NONE
        reason = f"aligned pass: {', '.join(passes)}"
    else:
        # pct=100 needs no draw: every failing message is subject to the policy.
        sampled = record.pct >= 100 or sample() < record.pct / 100
        result, disposition = DmarcResult.FAIL, policy if sampled else _UNSAMPLED[policy]
        reason = f"no aligned SPF or DKIM pass; {'sp' if subdomain_policy else 'p'}={policy}"
        if not sampled:
            reason += f", not in pct={record.pct}: {disposition}"
    return DmarcVerdict(
        result=result,
        from_domain=author,
        policy_domain=policy_domain,
        policy=policy,
        disposition=disposition,
        spf_aligned=spf_aligned,
        dkim_aligned=bool(dkim_passes),
        reason=reason,
    )


def _discover(lookup: DnsLookup, domain: str, organizational: str) -> tuple[str, list[str]]:
    """RFC 7489 6.6.3 steps 1-4: (where, DMARC records) at the From domain, else at
    its organizational domain. DnsTemporaryError propagates."""
    found = _dmarc_records(lookup, domain)
    if found or organizational == domain:
        return domain, found
    return organizational, _dmarc_records(lookup, organizational)


def _dmarc_records(lookup: DnsLookup, domain: str) -> list[str]:
    try:
        answers = lookup(f"_dmarc.{domain}", "TXT")
    except (DnsNotFound, DnsNoData):
        return []
    texts = (txt_strings(answer).decode("utf-8", "replace") for answer in answers)
    # Steps 2 and 4: TXT records that do not start with v=DMARC1 are not DMARC records.
    return [text for text in texts if is_dmarc(text)]


def _aligned_pass(
    author: str, ident: AuthenticatedIdentifier, mode: str, psl: PublicSuffixList | None
) -> bool:
    return ident.result.lower() == "pass" and aligned(author, ident.domain, mode, psl)


def _unevaluated(result: DmarcResult, author: str, policy_domain: str, reason: str) -> DmarcVerdict:
    return DmarcVerdict(
        result=result,
        from_domain=author,
        policy_domain=policy_domain,
        policy=None,
        disposition=DmarcPolicy.NONE,
        spf_aligned=False,
        dkim_aligned=False,
        reason=reason,
    )


def from_domain(header_value: str) -> str | None:
    """The RFC5322.From domain of a From field value (see module docstring), or None."""
    addresses = mailbox_addresses(header_value)
    if not addresses:
        return None
    # RFC 7489 6.6.1: with several addresses, one domain can still be evaluated once.
    domains = {lookup_form(address.rpartition("@")[2]) for address in addresses}
    return domains.pop() if len(domains) == 1 else None
