"""DMARC records: the one syntax check of postroom, and the never-weaker record we ask for.

Purpose: read a DMARC record's tags (`read_tags`, shared with the receiver's
evaluation in `postroom.mta.checks.dmarc`), check a published record of a
linked domain (`parse_dmarc`), compare policies (`policy_strength`), and
compute the record to publish so that our aggregate reports arrive without
weakening what the owner asked for (`expected_dmarc`).

Inputs: the TXT text found at _dmarc.<domain> (strings already joined) and our
report address. Outputs: `DmarcTags`, `DmarcRecord` values and normalised
record text ("tag=value" pairs joined by "; "). No I/O.

RFCs: 7489 (DMARC) 6.3 (tags), 6.4 (formal definition), 6.6.3 (policy
discovery); 6376 3.2 (tag-list rules it reuses: duplicate tags invalidate the record).
Untrusted input: the published record comes from DNS, written by anyone; it is
only split and matched against anchored regular expressions.

Decisions. Tag names are matched case-insensitively (ABNF literals) and kept
lower-case; "DMARC1" is case-sensitive (%x44... in RFC 7489 6.4). Unknown
tags are kept (6.3: they MUST be ignored). `read_tags` leaves the verdict on
p= and sp= to its reader, because RFC 7489 6.6.3 step 6 lets a receiver fall
back to p=none when they are bad and rua= is valid, while the audit must
report them. For the audit (`parse_dmarc`) a record without p= is valid only
when it has rua= (receivers then act as for p=none); without rua= it is an
error, as is a p= that is present with a bad value or not second. Report URIs:
6.4 allows any URI, but receivers only have to support mailto: (6.2), so the
audit accepts mailto: only while a receiver accepts any URI (`mailto_only`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VERSION_TAG = ("v", "DMARC1")
POLICIES = ("none", "quarantine", "reject")  # weakest first: index is the strength

# Same rules as parse_dmarc: the tag name in any case, "DMARC1" exactly.
_VERSION_FIRST = re.compile(r"[ \t]*[vV][ \t]*=[ \t]*DMARC1[ \t]*(?:;|$)")
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # RFC 6376 3.2 tag-name
# RFC 7489 6.2/6.4: a mailto URI, optionally "!" size limit with a unit.
_REPORT_URI = re.compile(r"(mailto:([^\s,!@]+@[^\s,!@]+))(?:!\d+[kmgt]?)?", re.I)
# RFC 7489 6.4 dmarc-uri: a URI in RFC 3986 generic syntax (scheme ":" then URI
# characters or %-escapes; "," and "!" must be escaped inside it, which is what
# lets them separate the list and the size limit), then the optional size limit.
# RFC 3986 allows nothing after the scheme; a report URI that names nothing is refused.
_ANY_URI = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*:(?:[A-Za-z0-9._~:/?#\[\]@$&'()*+=-]|%[0-9A-Fa-f]{2})+"
    r"(?:!\d+[kmgt]?)?",
    re.I,
)
_FAILURE_OPTIONS = re.compile(r"[01ds](?:[ \t]*:[ \t]*[01ds])*")
_REPORT_FORMATS = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*(?:[ \t]*:[ \t]*[A-Za-z0-9][A-Za-z0-9-]*)*")


class DmarcSyntaxError(ValueError):
    """A record that is not valid DMARC; the message names the tag and the rule."""


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    """A valid DMARC record: (tag, value) pairs in published order, normalised.

    Tag names are lower-case; p, sp, adkim and aspf values lower-case;
    rua/ruf lists joined by "," without spaces.
    """

    tags: tuple[tuple[str, str], ...]

    def tag(self, name: str) -> str | None:
        return next((value for tag, value in self.tags if tag == name), None)

    @property
    def policy(self) -> str:
        """p=, or "none" for a record without p= (RFC 7489 6.6.3 step 5)."""
        return self.tag("p") or "none"

    @property
    def subdomain_policy(self) -> str:
        """sp=, defaulting to the policy (RFC 7489 6.3)."""
        return self.tag("sp") or self.policy

    @property
    def pct(self) -> int:
        return int(self.tag("pct") or "100")

    @property
    def rua(self) -> tuple[str, ...]:
        """Aggregate report URIs as published (with any "!size" suffix)."""
        value = self.tag("rua")
        return tuple(value.split(",")) if value else ()

    @property
    def text(self) -> str:
        return "; ".join(f"{tag}={value}" for tag, value in self.tags)


def is_dmarc(txt: str) -> bool:
    """True when `txt` starts with the v=DMARC1 tag (RFC 7489 6.6.3 discards other TXT)."""
    return _VERSION_FIRST.match(txt) is not None


def policy_strength(policy: str) -> int:
    """0 for none, 1 for quarantine, 2 for reject; ValueError for anything else."""
    try:
        return POLICIES.index(policy.lower())
    except ValueError:
        raise ValueError(f"not a DMARC policy: {policy!r}") from None


@dataclass(frozen=True, slots=True)
class DmarcTags:
    """A record's tags after the syntax check of `read_tags`, before the verdict on p= and sp=.

    `tags`: the valid tags in published order, normalised as in `DmarcRecord`,
    starting with ("v", "DMARC1"); a p= or sp= with a bad value, and a p= that
    is not second, are left out. `policy_error`: what is wrong with those, ""
    when nothing (a missing p= is not an error here: readers judge it).
    """

    tags: tuple[tuple[str, str], ...]
    policy_error: str


def read_tags(text: str, *, mailto_only: bool = True, lenient: bool = False) -> DmarcTags:
    """The tags of a DMARC record; `DmarcSyntaxError` names the tag and the rule broken.

    Every rule of RFC 7489 6.3/6.4 raises except those about p= and sp=, which
    `DmarcTags.policy_error` reports. With `mailto_only`, rua= and ruf= must
    hold mailto: URIs; otherwise any URI (see module docstring). With `lenient`
    (a receiver applying the policy, RFC 7489 6.3: "syntax errors in the
    remainder of the record SHOULD be discarded in favor of default values"), a
    bad value of any other tag drops that tag instead of the whole record.
    """
    pairs = _tag_list(text)
    if not pairs or pairs[0] != VERSION_TAG:
        raise DmarcSyntaxError("a DMARC record must start with v=DMARC1 (RFC 7489 6.3)")
    tags = [VERSION_TAG]
    policy_errors = []
    for position, (name, value) in enumerate(pairs[1:], start=1):
        try:
            if name == "p" and position != 1:
                raise DmarcSyntaxError("p= must directly follow v=DMARC1 (RFC 7489 6.3)")
            tags.append((name, _normalised_value(name, value, mailto_only)))
        except DmarcSyntaxError as error:
            if name in ("p", "sp"):
                policy_errors.append(str(error))
            elif not lenient:
                raise
    return DmarcTags(tuple(tags), policy_errors[0] if policy_errors else "")


def parse_dmarc(text: str) -> DmarcRecord:
    """Check a DMARC record; raise `DmarcSyntaxError` naming the tag and the rule broken."""
    checked = read_tags(text)
    if checked.policy_error:
        raise DmarcSyntaxError(checked.policy_error)
    names = [name for name, _ in checked.tags]
    if "p" not in names and "rua" not in names:
        raise DmarcSyntaxError("p= is missing and there is no rua= (RFC 7489 6.3, 6.6.3)")
    return DmarcRecord(checked.tags)


def _tag_list(text: str) -> list[tuple[str, str]]:
    """(lower-case name, stripped value) pairs; raises for what is not a tag-list."""
    pairs: list[tuple[str, str]] = []
    # RFC 6376 3.2 allows one trailing ";"; empty segments elsewhere are
    # tolerated, as receivers do, and disappear when the record is normalised.
    for segment in text.split(";"):
        if not segment.strip(" \t"):
            continue
        name, equals, value = segment.partition("=")
        name, value = name.strip(" \t"), value.strip(" \t")
        if not equals or _TAG_NAME.fullmatch(name) is None:
            raise DmarcSyntaxError(f"{segment.strip()!r} is not tag=value")
        name = name.lower()
        if any(name == seen for seen, _ in pairs):
            raise DmarcSyntaxError(f"tag {name}= appears more than once (RFC 6376 3.2)")
        pairs.append((name, value))
    return pairs


def _normalised_value(name: str, value: str, mailto_only: bool) -> str:
    if name in ("p", "sp"):
        if value.lower() not in POLICIES:
            raise DmarcSyntaxError(f"{name}={value!r}: must be none, quarantine or reject")
        return value.lower()
    if name in ("adkim", "aspf"):
        if value.lower() not in ("r", "s"):
            raise DmarcSyntaxError(f"{name}={value!r}: must be r or s")
        return value.lower()
    if name == "pct":
        if not (value.isascii() and value.isdigit() and len(value) <= 3 and int(value) <= 100):
            raise DmarcSyntaxError(f"pct={value!r}: must be an integer from 0 to 100")
        return str(int(value))
    if name == "ri" and not (value.isascii() and value.isdigit()):
        raise DmarcSyntaxError(f"ri={value!r}: must be a number of seconds")
    if name in ("rua", "ruf"):
        uris = [uri.strip(" \t") for uri in value.split(",")]
        pattern, kind = (
            (_REPORT_URI, "a mailto: URI (RFC 7489 6.2)")
            if mailto_only
            else (_ANY_URI, "a URI (RFC 7489 6.4)")
        )
        for uri in uris:
            if pattern.fullmatch(uri) is None:
                raise DmarcSyntaxError(f"{name}=: {uri!r} is not {kind}")
        return ",".join(uris)
    if name == "fo" and _FAILURE_OPTIONS.fullmatch(value) is None:
        raise DmarcSyntaxError(f"fo={value!r}: must be 0, 1, d or s, separated by ':'")
    if name == "rf" and _REPORT_FORMATS.fullmatch(value) is None:
        raise DmarcSyntaxError(f"rf={value!r}: must be format keywords separated by ':'")
    if name in ("fo", "rf"):
        return re.sub(r"[ \t]", "", value)
    return value


def _report_address(uri: str) -> str:
    match = _REPORT_URI.fullmatch(uri)
    assert match is not None  # only called on URIs that passed validation
    return match.group(2).lower()


def expected_dmarc(existing: str | None, rua: str) -> str:
    """The DMARC record to publish so that aggregate reports also reach `rua`.

    `rua` is our report address, with or without "mailto:". With nothing or
    an invalid record published: "v=DMARC1; p=none; rua=mailto:<rua>" (an
    invalid record is ignored by receivers, so this weakens nothing). With a
    valid record: the same tags and values (never a weaker p, sp, pct, adkim
    or aspf), normalised, our URI appended to rua= unless its address is
    already there, and an explicit "p=none" where p= was missing (what
    receivers already apply). ValueError when `rua` is not an address.
    """
    uri = rua if rua[:7].lower() == "mailto:" else f"mailto:{rua}"
    if _REPORT_URI.fullmatch(uri) is None or "!" in uri:
        raise ValueError(f"not a report address: {rua!r}")
    try:
        record = parse_dmarc(existing or "")
    except DmarcSyntaxError:
        return DmarcRecord((VERSION_TAG, ("p", "none"), ("rua", uri))).text
    tags = list(record.tags)
    if record.tag("p") is None:
        tags.insert(1, ("p", "none"))
    if _report_address(uri) not in {_report_address(known) for known in record.rua}:
        merged = ",".join((*record.rua, uri))
        tags = [(name, merged if name == "rua" else value) for name, value in tags]
        if not record.rua:
            tags.append(("rua", uri))
    return DmarcRecord(tuple(tags)).text
