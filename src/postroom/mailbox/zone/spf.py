"""SPF records of linked domains: syntax check, merge with ours, DNS lookup count.

Purpose: before asking a domain owner to publish an SPF record we check what
is published today, compute the one record that keeps the owner's policy and
adds our mechanisms (`merge_spf`), check whether a record already covers us
(`covers`), and count the DNS lookups a receiver would spend on it
(`count_lookups`), since more than 10 is a permanent error.

Inputs: record texts as published (TXT strings already joined) and our
mechanisms ("include:_spf.mail.example.test", "ip4:192.0.2.1"). Outputs:
`SpfRecord` values, one merged record text, a `LookupCount`. The only I/O is
`count_lookups`, through the resolver passed in (`await resolver.txt(name)`).

RFCs: 7208 (SPF): 4.5 (record selection), 4.6 and 12 (term syntax), 4.6.4
(lookup limit), 5 (mechanisms), 6 (modifiers), 7 (macro syntax, checked but never expanded).
Untrusted input: published records come from DNS, written by anyone; parsing
is by regular expressions without backtracking hazards, and lookups are bounded.

Deliberately stricter than RFC 7208 for an audit: a modifier named like a
mechanism ("include=x") or a second "v=spf1" inside a record is valid syntax
for an unknown modifier, yet is always a mistake, so it is reported as an error.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from postroom.core.dns import DnsNoData, DnsNotFound, DnsTemporaryError

VERSION = "v=spf1"
DEFAULT_LOOKUP_LIMIT = 10  # RFC 7208 4.6.4
# Includes nested deeper than this are not followed, whatever the limit.
MAX_INCLUDE_DEPTH = 10
QUALIFIERS = "+-?~"
MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
# RFC 7208 4.6.4: the terms that cause DNS queries and count against the limit.
LOOKUP_MECHANISMS = frozenset({"include", "a", "mx", "ptr", "exists"})
# For choosing the "all" of several published records: never the weaker one.
_ALL_STRENGTH = {"-": 3, "~": 2, "?": 1, "+": 0}

_MODIFIER = re.compile(r"([A-Za-z][A-Za-z0-9._-]*)=(.*)", re.S)
# RFC 7208 7.1; c, r and t are allowed only in explanation text, never in a record.
_MACRO_EXPAND = re.compile(r"%\{([slodiphv])(\d*)(r?)([-.+,/_=]*)\}", re.I)
_TOPLABEL = re.compile(r"[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9-]*[A-Za-z0-9]")
_CIDR = re.compile(r"0|[1-9][0-9]{0,2}")
# Optional domain-spec, then dual-cidr-length ("/24", "//64", "/24//64") at the very end.
_SPEC_AND_CIDRS = re.compile(r"(?P<spec>.*?)(?:/(?P<ip4>\d*))?(?://(?P<ip6>\d*))?", re.S)


class SpfSyntaxError(ValueError):
    """A record or term that does not follow RFC 7208; the message says which term and why."""


class SpfMergeError(ValueError):
    """Published records that cannot become one record without a human choice."""


class TxtResolver(Protocol):
    """What `count_lookups` needs: TXT records of a name, each record's strings joined."""

    async def txt(self, name: str) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class SpfRecord:
    """A syntactically valid SPF record: its terms as written, without "v=spf1"."""

    terms: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join((VERSION, *self.terms))


@dataclass(frozen=True, slots=True)
class LookupCount:
    """DNS lookups a receiver spends on a record (RFC 7208 4.6.4).

    `count`: lookup terms counted, through include/redirect targets (a lower
    bound when a target could not be fetched). `over_limit`: more than the
    limit, or an include loop (evaluation would recurse until the limit).
    `detail`: one line per counted term ("lookup 3: include:a.test > mx") and
    per problem ("include:x.test: no SPF record"). `temporary_error`: a DNS
    lookup failed temporarily, so part of the tree is unchecked.
    `permanent_error`: a target has no, several or an invalid SPF record
    (a receiver's permerror).
    """

    count: int
    over_limit: bool
    detail: tuple[str, ...]
    temporary_error: bool = False
    permanent_error: bool = False


@dataclass(frozen=True, slots=True)
class _Term:
    """One parsed term: `name` lower-case; `value` is the domain-spec of include/redirect."""

    text: str
    qualifier: str
    name: str
    is_modifier: bool
    value: str

    @property
    def key(self) -> str:
        """Comparison key: case-insensitive, "+" (the default qualifier) dropped."""
        return self.text.lower() if self.is_modifier else self.text.lower().removeprefix("+")


def is_spf(txt: str) -> bool:
    """True when `txt` is an SPF record: "v=spf1" then a space or the end (RFC 7208 4.5)."""
    return txt[:6].lower() == VERSION and txt[6:7] in ("", " ")


def parse_spf(text: str) -> SpfRecord:
    """Check the syntax of an SPF record; raise `SpfSyntaxError` naming the bad term."""
    if not is_spf(text):
        raise SpfSyntaxError(f"not an SPF record: must start with 'v=spf1': {text[:40]!r}")
    terms = tuple(term for term in text[6:].split(" ") if term)
    seen_modifiers: set[str] = set()
    for term in terms:
        parsed = _parse_term(term)
        if parsed.name in ("redirect", "exp") and parsed.is_modifier:
            if parsed.name in seen_modifiers:
                raise SpfSyntaxError(f"{parsed.name}= appears more than once (RFC 7208 6)")
            seen_modifiers.add(parsed.name)
    return SpfRecord(terms)


def _parse_term(term: str) -> _Term:
    modifier = _MODIFIER.fullmatch(term)
    if modifier is not None:
        return _parse_modifier(term, modifier.group(1).lower(), modifier.group(2))
    qualifier, body = (term[0], term[1:]) if term[0] in QUALIFIERS else ("", term)
    if not body:
        raise SpfSyntaxError(f"{term!r}: qualifier without a mechanism")
    if not body[0].isascii() or not body[0].isalnum():
        raise SpfSyntaxError(f"{term!r}: bad qualifier {body[0]!r} (expected +, -, ~ or ?)")
    if _MODIFIER.fullmatch(body):
        raise SpfSyntaxError(f"{term!r}: a modifier takes no qualifier")
    name_length = len(re.split("[:/]", body, maxsplit=1)[0])
    name, rest = body[:name_length].lower(), body[name_length:]
    if name not in MECHANISMS:
        raise SpfSyntaxError(f"{term!r}: unknown mechanism {name!r}")
    value = _check_mechanism_argument(term, name, rest)
    return _Term(term, qualifier, name, False, value)


def _parse_modifier(term: str, name: str, value: str) -> _Term:
    if name == "v":
        raise SpfSyntaxError(f"{term!r}: a second version term inside the record (two joined?)")
    if name in MECHANISMS:
        raise SpfSyntaxError(f"{term!r}: mechanism {name!r} takes ':' not '='")
    if name in ("redirect", "exp"):
        _check_domain_spec(term, value)
    else:
        _check_macro_string(term, value)
    return _Term(term, "", name, True, value)


def _check_mechanism_argument(term: str, name: str, rest: str) -> str:
    """Check what follows the mechanism name; return its domain-spec ("" when none)."""
    if name == "all":
        if rest:
            raise SpfSyntaxError(f"{term!r}: 'all' takes no argument")
        return ""
    if name in ("ip4", "ip6"):
        if not rest.startswith(":"):
            raise SpfSyntaxError(f"{term!r}: {name} needs ':<network>'")
        network, slash, length = rest[1:].partition("/")
        _check_network(term, name, network)
        if slash:
            _check_cidr(term, length, 32 if name == "ip4" else 128)
        return ""
    if name in ("include", "exists"):
        if not rest.startswith(":"):
            raise SpfSyntaxError(f"{term!r}: {name} needs ':<domain>'")
        _check_domain_spec(term, rest[1:])
        return rest[1:]
    if name == "ptr":
        if rest and not rest.startswith(":"):
            raise SpfSyntaxError(f"{term!r}: ptr takes an optional ':<domain>' and no CIDR length")
        if rest:
            _check_domain_spec(term, rest[1:])
        return rest[1:]
    # a and mx: [":" domain-spec] [dual-cidr-length]
    has_spec = rest.startswith(":")
    parts = _SPEC_AND_CIDRS.fullmatch(rest[1:] if has_spec else rest)
    assert parts is not None  # every group is optional: the pattern matches any text
    if has_spec:
        _check_domain_spec(term, parts["spec"])
    elif parts["spec"]:
        raise SpfSyntaxError(f"{term!r}: expected ':<domain>' or '/<length>'")
    if parts["ip4"] is not None:
        _check_cidr(term, parts["ip4"], 32)
    if parts["ip6"] is not None:
        _check_cidr(term, parts["ip6"], 128)
    return parts["spec"] if has_spec else ""


def _check_network(term: str, name: str, network: str) -> None:
    try:
        if name == "ip4":
            ipaddress.IPv4Address(network)
        elif "%" in network:  # ipaddress accepts a scope ("fe80::1%eth0"); SPF does not
            raise ValueError(network)
        else:
            ipaddress.IPv6Address(network)
    except ValueError:
        raise SpfSyntaxError(f"{term!r}: {network!r} is not an {name} address") from None


def _check_cidr(term: str, length: str, maximum: int) -> None:
    if _CIDR.fullmatch(length) is None or int(length) > maximum:
        raise SpfSyntaxError(f"{term!r}: bad CIDR length {length!r} (0-{maximum})")


def _check_macro_string(term: str, text: str) -> bool:
    """Check RFC 7208 7.1 macro-string syntax; True when it ends with a macro-expand."""
    position, ends_with_macro = 0, False
    while position < len(text):
        char = text[position]
        if char == "%":
            expand = _MACRO_EXPAND.match(text, position)
            if text[position + 1 : position + 2] in ("%", "_", "-"):
                position += 2
            elif expand is not None:
                if expand.group(2)[:1] == "0":  # RFC 7208 7.3: the DIGIT must be nonzero
                    raise SpfSyntaxError(f"{term!r}: macro digit must be nonzero")
                position = expand.end()
            else:
                raise SpfSyntaxError(f"{term!r}: malformed macro at {text[position:]!r}")
            ends_with_macro = True
            continue
        if not "\x21" <= char <= "\x7e":
            raise SpfSyntaxError(f"{term!r}: character {char!r} not allowed")
        position, ends_with_macro = position + 1, False
    return ends_with_macro


def _check_domain_spec(term: str, spec: str) -> None:
    if not spec:
        raise SpfSyntaxError(f"{term!r}: empty domain")
    if _check_macro_string(term, spec):
        return
    body = spec.removesuffix(".")
    top = body.rpartition(".")[2]
    if "." not in body or _TOPLABEL.fullmatch(top) is None:
        raise SpfSyntaxError(f"{term!r}: {spec!r} does not end in a domain name (RFC 7208 7.1)")
    if "%" not in spec:
        labels = body.split(".")
        if any(not 1 <= len(label) <= 63 for label in labels) or len(body) > 253:
            raise SpfSyntaxError(f"{term!r}: {spec!r} has an empty or too long label")


def _unique(terms: Iterable[_Term]) -> list[_Term]:
    seen: set[str] = set()
    kept = []
    for term in terms:
        if term.key not in seen:
            seen.add(term.key)
            kept.append(term)
    return kept


def _our_mechanisms(ours: Sequence[str]) -> list[_Term]:
    parsed = [_parse_term(mechanism) for mechanism in ours]
    for term in parsed:
        if term.is_modifier or term.name == "all":
            raise SpfSyntaxError(f"{term.text!r}: ours must be mechanisms other than 'all'")
    return _unique(parsed)


def merge_spf(existing: Sequence[str], ours: Sequence[str]) -> str:
    """The one SPF record to publish: the owner's policy plus our mechanisms.

    `existing`: TXT texts published at the domain; those that are not SPF
    records are ignored, so every TXT of the name may be passed. Several SPF
    records (a permerror today) become one. Result: the mechanisms of every
    record in order, duplicates dropped (case-insensitive, "+" ignored); then
    ours not already among them; then the strictest published `all`, exactly
    as written ("+all" and "?all" are kept: the audit warns, only the owner may
    change who else sends for the domain); then the modifiers, a `redirect=`
    last. Mechanisms after a record's `all` are dropped: they are never
    evaluated (RFC 7208 4.6.2). A published record without `all` stays without
    one; with nothing published the record ends with "~all".

    Raises `SpfSyntaxError` for a published record or one of ours that is
    invalid, `SpfMergeError` when records carry different redirect= or exp=.
    """
    records = [parse_spf(text) for text in existing if is_spf(text)]
    our_terms = _our_mechanisms(ours)
    if not records:
        return " ".join([VERSION, *(term.text for term in our_terms), "~all"])
    mechanisms: list[_Term] = []
    modifiers: list[_Term] = []
    alls: list[_Term] = []
    for record in records:
        record_all: _Term | None = None
        for term in map(_parse_term, record.terms):
            if term.is_modifier:
                modifiers.append(term)
            elif term.name == "all" and record_all is None:
                record_all = term
                alls.append(term)
            elif record_all is None:
                mechanisms.append(term)
    modifiers = _unique(modifiers)
    for name in ("redirect", "exp"):
        values = {term.value.lower() for term in modifiers if term.name == name}
        if len(values) > 1:
            raise SpfMergeError(f"the records have different {name}= ({', '.join(sorted(values))})")
    present = {term.key for term in mechanisms}
    merged = _unique(mechanisms) + [term for term in our_terms if term.key not in present]
    if alls:
        merged.append(max(alls, key=lambda term: _ALL_STRENGTH[term.qualifier or "+"]))
    merged += [term for term in modifiers if term.name != "redirect"]
    merged += [term for term in modifiers if term.name == "redirect"]
    return " ".join([VERSION, *(term.text for term in merged)])


def covers(record: SpfRecord, ours: Sequence[str]) -> bool:
    """True when each of our mechanisms is in `record` before its `all`.

    Comparison is case-insensitive and treats "+include:x" as "include:x";
    a mechanism after `all` does not count (never evaluated), nor does one
    reachable only through an include or redirect target.
    """
    effective: set[str] = set()
    for term in map(_parse_term, record.terms):
        if term.is_modifier:
            continue
        if term.name == "all":
            break
        effective.add(term.key)
    return all(term.key in effective for term in _our_mechanisms(ours))


async def count_lookups(
    text: str, resolver: TxtResolver, *, limit: int = DEFAULT_LOOKUP_LIMIT
) -> LookupCount:
    """Count the lookup terms of `text` and of its include/redirect targets.

    include, a, mx, ptr, exists and redirect= count one each (RFC 7208 4.6.4);
    a redirect= next to `all` is ignored by receivers and not counted. Targets
    are fetched with `resolver.txt`; the walk stops after limit + 1 lookups,
    at a loop, below MAX_INCLUDE_DEPTH, and at targets holding macros (their
    name depends on the message). Raises `SpfSyntaxError` when `text` itself is invalid.
    """
    walk = _LookupWalk(resolver, limit)
    await walk.record(parse_spf(text), (), frozenset())
    return LookupCount(
        count=walk.count,
        over_limit=walk.count > limit or walk.loop,
        detail=tuple(walk.detail),
        temporary_error=walk.temporary_error,
        permanent_error=walk.permanent_error,
    )


class _LookupWalk:
    """The state of one `count_lookups` call."""

    def __init__(self, resolver: TxtResolver, limit: int) -> None:
        self.resolver = resolver
        self.limit = limit
        self.count = 0
        self.detail: list[str] = []
        self.stopped = False
        self.loop = False
        self.temporary_error = False
        self.permanent_error = False

    async def record(self, record: SpfRecord, path: tuple[str, ...], chain: frozenset[str]) -> None:
        terms = [_parse_term(term) for term in record.terms]
        has_all = any(term.name == "all" and not term.is_modifier for term in terms)
        # Receivers evaluate mechanisms in order and redirect= only after all of them.
        mechanisms = [term for term in terms if not term.is_modifier]
        redirects = [term for term in terms if term.is_modifier and term.name == "redirect"]
        for term in mechanisms + redirects:
            if self.stopped:
                return
            if term.name not in LOOKUP_MECHANISMS and term.name != "redirect":
                continue
            where = " > ".join((*path, term.text))
            if term.name == "redirect" and has_all:
                self.detail.append(f"{where}: ignored next to 'all', not counted")
                continue
            self.count += 1
            self.detail.append(f"lookup {self.count}: {where}")
            if self.count > self.limit:
                self.detail.append(f"stopped: more than {self.limit} lookups")
                self.stopped = True
                return
            if term.name in ("include", "redirect"):
                await self.follow(term.value, where, (*path, term.text), chain)

    async def follow(
        self, spec: str, where: str, path: tuple[str, ...], chain: frozenset[str]
    ) -> None:
        target = spec.lower().removesuffix(".")
        if "%" in target:
            self.detail.append(f"{where}: target depends on macros, not followed")
            return
        if target in chain:
            self.loop = True
            self.detail.append(f"{where}: loop")
            return
        if len(path) > MAX_INCLUDE_DEPTH:
            self.detail.append(f"{where}: nested deeper than {MAX_INCLUDE_DEPTH}, not followed")
            return
        try:
            texts = await self.resolver.txt(target)
        except DnsTemporaryError as error:
            self.temporary_error = True
            self.detail.append(f"{where}: temporary DNS error ({error.reason})")
            return
        except (DnsNotFound, DnsNoData) as error:
            self.permanent_error = True
            self.detail.append(f"{where}: no SPF record ({error.reason})")
            return
        records = [text for text in texts if is_spf(text)]
        if len(records) != 1:
            self.permanent_error = True
            problem = "no SPF record" if not records else f"{len(records)} SPF records"
            self.detail.append(f"{where}: {problem}")
            return
        try:
            parsed = parse_spf(records[0])
        except SpfSyntaxError as error:
            self.permanent_error = True
            self.detail.append(f"{where}: invalid SPF record: {error}")
            return
        await self.record(parsed, path, chain | {target})
