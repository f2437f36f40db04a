"""Where mail for a domain goes: MX lookup and host addresses (RFC 5321 section 5).

Input: a recipient domain (untrusted: it comes from an envelope; ASCII,
Unicode, or a domain literal such as "[127.0.0.5]" / "[IPv6:::1]") and the
process `Resolver`. Output: a `Destination` — the MX hosts in the order to
try, each with its addresses (IPv4 first) — or one of three errors, each
carrying the RFC 3463 enhanced status to report:

- `NullMx` (5.1.10): the domain publishes "MX 0 ." (RFC 7505), it accepts no mail.
- `NoSuchDomain` (5.1.2): NXDOMAIN, no MX and no A/AAAA, or no MX host has an address.
- `DestinationTemporaryError` (4.4.3): DNS trouble; defer and retry.

Rules: MX records are tried by preference; among equal preferences the order
is stable (sorted by name) unless a `random.Random` is passed, which shuffles
each group (RFC 5321 5.1 asks for randomisation; tests keep it deterministic).
No MX → the domain itself, as an implicit MX with preference 0. Exchanges that
are IP literals or the root are invalid and skipped; at most `max_hosts`
(10 by default) hosts are considered. A host whose lookup fails is skipped; when
none has an address, any temporary failure makes the whole result temporary,
so DNS trouble never bounces mail.

Config keys read: none (the resolver reads `[dns]`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import random
from dataclasses import dataclass

from postroom.core.dns import (
    DnsError,
    DnsNoData,
    DnsNotFound,
    DnsTemporaryError,
    Resolver,
    name_text,
    normalize_name,
)

DEFAULT_MAX_HOSTS = 10


@dataclass(frozen=True, slots=True)
class MxHost:
    """One host to try: its name (lower-case ASCII, no final dot), MX preference, addresses."""

    name: str
    preference: int
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Destination:
    """The hosts that take mail for `domain`, in the order to try them.

    `implicit` is true when the domain has no MX and its own addresses are
    used (RFC 5321 5.1), and for domain literals.
    """

    domain: str
    hosts: tuple[MxHost, ...]
    implicit: bool

    @property
    def site(self) -> str:
        """A stable name for the receiving site, used in lane keys.

        The sorted MX host names joined with ","; the domain for an implicit MX.
        Two domains served by the same MX hosts share a site (and so a lane).
        """
        if self.implicit:
            return self.domain
        return ",".join(sorted({host.name for host in self.hosts}))


class DestinationError(Exception):
    """Base of the errors of `resolve_destination`; `enhanced_status` is RFC 3463."""

    enhanced_status = "4.4.3"
    permanent = False

    def __init__(self, domain: str, reason: str) -> None:
        super().__init__(f"{domain}: {reason}")
        self.domain = domain
        self.reason = reason


class NullMx(DestinationError):
    """The domain declares it accepts no mail (RFC 7505 null MX)."""

    enhanced_status = "5.1.10"
    permanent = True


class NoSuchDomain(DestinationError):
    """No such domain, or nowhere to deliver it: permanent."""

    enhanced_status = "5.1.2"
    permanent = True


class DestinationTemporaryError(DestinationError):
    """DNS trouble: defer the delivery and retry later."""

    enhanced_status = "4.4.3"
    permanent = False


def parse_domain_literal(domain: str) -> str | None:
    """The address inside "[1.2.3.4]" or "[IPv6:...]" (RFC 5321 4.1.3); None if not a literal.

    Raises `NoSuchDomain` for a bracketed text that is not a valid address.
    """
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    inner = domain[1:-1]
    is_v6 = inner[:5].lower() == "ipv6:"
    text = inner[5:] if is_v6 else inner
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise NoSuchDomain(domain, "invalid address literal") from None
    if (address.version == 6) != is_v6:
        raise NoSuchDomain(domain, "address literal of the wrong family tag")
    return str(address)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def order_exchanges(
    records: list[tuple[int, str]], rng: random.Random | None, max_hosts: int
) -> list[tuple[int, str]]:
    """Valid exchanges by preference, shuffled within a preference if `rng`, at most `max_hosts`."""
    valid = [(pref, host) for pref, host in records if host != "." and not _is_ip_literal(host)]
    valid.sort(key=lambda record: record[0])
    ordered: list[tuple[int, str]] = []
    for _, group in itertools.groupby(valid, key=lambda record: record[0]):
        members = list(group)
        if rng is not None:
            rng.shuffle(members)
        ordered.extend(members)
    return ordered[:max_hosts]


async def resolve_destination(
    resolver: Resolver,
    domain: str,
    *,
    rng: random.Random | None = None,
    max_hosts: int = DEFAULT_MAX_HOSTS,
) -> Destination:
    """The `Destination` for `domain`; raises `NullMx`, `NoSuchDomain` or
    `DestinationTemporaryError` (see module docstring)."""
    literal = parse_domain_literal(domain.strip())
    if literal is not None:
        return Destination(domain.strip(), (MxHost(literal, 0, (literal,)),), implicit=True)
    try:
        ascii_domain = name_text(normalize_name(domain))
    except DnsNotFound as error:
        raise NoSuchDomain(domain, error.reason) from None
    try:
        records = await resolver.mx(ascii_domain)
    except DnsNotFound:
        raise NoSuchDomain(ascii_domain, "no such domain (NXDOMAIN)") from None
    except DnsNoData:
        return await _implicit_destination(resolver, ascii_domain)
    except DnsTemporaryError as error:
        raise DestinationTemporaryError(ascii_domain, f"MX lookup: {error.reason}") from None
    if len(records) == 1 and records[0] == (0, "."):
        raise NullMx(ascii_domain, "domain accepts no mail (null MX)")
    exchanges = order_exchanges(records, rng, max_hosts)
    if not exchanges:
        raise NoSuchDomain(ascii_domain, "no valid MX host (IP literals or root only)")
    lookups = await asyncio.gather(
        *(resolver.addresses(host) for _, host in exchanges), return_exceptions=True
    )
    hosts: list[MxHost] = []
    failures: list[str] = []
    temporary = False
    for (preference, host), result in zip(exchanges, lookups, strict=True):
        if isinstance(result, DnsError):
            temporary = temporary or isinstance(result, DnsTemporaryError)
            failures.append(f"{host}: {result.reason}")
        elif isinstance(result, BaseException):
            raise result
        else:
            hosts.append(MxHost(host, preference, tuple(result)))
    if hosts:
        return Destination(ascii_domain, tuple(hosts), implicit=False)
    summary = "; ".join(failures)
    if temporary:
        raise DestinationTemporaryError(ascii_domain, f"no MX host resolved yet ({summary})")
    raise NoSuchDomain(ascii_domain, f"no MX host has an address ({summary})")


async def _implicit_destination(resolver: Resolver, domain: str) -> Destination:
    try:
        addresses = await resolver.addresses(domain)
    except DnsNotFound:
        raise NoSuchDomain(domain, "no MX and no A/AAAA records") from None
    except DnsTemporaryError as error:
        raise DestinationTemporaryError(domain, f"address lookup: {error.reason}") from None
    return Destination(domain, (MxHost(domain, 0, tuple(addresses)),), implicit=True)
