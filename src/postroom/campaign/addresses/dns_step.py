"""Does a domain accept mail? The DNS step of the address validator.

Purpose: `MailDomainChecker.check(domains)` asks DNS, once per distinct domain,
whether mail can be delivered there, and answers with reason codes:

- MX records that name hosts: nothing to report;
- a null MX (RFC 7505: one MX whose exchange is the root, "."): `null_mx`;
- no MX records (NODATA): the domain's A/AAAA records stand in for an MX
  (RFC 5321 section 5.1): a globally reachable address → `implicit_mx` (a
  note); none, or only loopback, private, link-local or otherwise non-global
  ones (a parked domain pointing at 127.0.0.1 receives nothing) → `no_mx`.
  MX hosts themselves are not resolved: that is delivery's business;
- the domain does not exist (NXDOMAIN): `no_domain`;
- a timeout, SERVFAIL, or any failure we cannot classify: `dns_temporary`
  (risky), never a permanent reason by accident (STYLE.md #4).

All lookups go through postroom's resolver (`postroom.core.dns.Resolver`, or
any object with its `mx` and `addresses` coroutines and exceptions). At most
`concurrency` domains are looked up at once; each domain's whole check is
bounded by `timeout_s`. Outcomes are cached per domain for `cache_ttl_s` in a
bounded map owned by the checker; temporary failures are not cached.

Inputs: lower-case ASCII (IDNA) domains, untrusted (they come from lists).
Outputs: a mapping domain → reason codes. I/O: DNS through the resolver only.
Config read: `ValidationPolicy.dns_concurrency`, `dns_timeout_s` (passed in).
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Protocol

from postroom.core.dns import DnsNoData, DnsNotFound, DnsTemporaryError

__all__ = ["MailDomainChecker", "MailDomainResolver", "reasons_from_mx"]

DEFAULT_CACHE_TTL_S = 3600.0
DEFAULT_CACHE_ENTRIES = 50_000


class MailDomainResolver(Protocol):
    """The part of `postroom.core.dns.Resolver` this step uses."""

    async def mx(self, domain: str) -> list[tuple[int, str]]: ...

    async def addresses(self, host: str) -> list[str]: ...


def reasons_from_mx(records: list[tuple[int, str]]) -> tuple[str, ...] | None:
    """Reasons from an MX answer; None when the domain has no usable MX (see A/AAAA).

    A null MX is a single record whose exchange is the root; a root exchange
    among real ones is a misconfiguration RFC 7505 says to ignore.
    """
    hosts = [exchange for _, exchange in records if exchange not in (".", "")]
    if hosts:
        return ()
    if records:
        return ("null_mx",)
    return None


class MailDomainChecker:
    """Checks domains for mail exchangers, with a cache (see module docstring)."""

    def __init__(
        self,
        resolver: MailDomainResolver,
        *,
        concurrency: int = 20,
        timeout_s: float = 10.0,
        cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
        cache_entries: int = DEFAULT_CACHE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolver = resolver
        self._concurrency = max(1, concurrency)
        self._timeout_s = timeout_s
        self._cache_ttl_s = cache_ttl_s
        self._cache_entries = max(1, cache_entries)
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, tuple[str, ...]]] = OrderedDict()

    async def check(self, domains: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """Reason codes for each distinct domain of `domains`."""
        results: dict[str, tuple[str, ...]] = {}
        pending: list[str] = []
        for domain in dict.fromkeys(domains):
            cached = self._cached(domain)
            if cached is None:
                pending.append(domain)
            else:
                results[domain] = cached
        if pending:
            gate = asyncio.Semaphore(self._concurrency)
            outcomes = await asyncio.gather(*(self._check_one(domain, gate) for domain in pending))
            results.update(zip(pending, outcomes, strict=True))
        return results

    def _cached(self, domain: str) -> tuple[str, ...] | None:
        found = self._cache.get(domain)
        if found is None:
            return None
        expires_at, reasons = found
        if self._clock() >= expires_at:
            del self._cache[domain]
            return None
        self._cache.move_to_end(domain)
        return reasons

    async def _check_one(self, domain: str, gate: asyncio.Semaphore) -> tuple[str, ...]:
        async with gate:
            try:
                async with asyncio.timeout(self._timeout_s):
                    reasons = await self._ask(domain)
            except (DnsTemporaryError, TimeoutError):
                return ("dns_temporary",)
            except Exception:
                # Whatever else went wrong is not proof that the domain refuses
                # mail: it must stay temporary, never become a permanent verdict.
                return ("dns_temporary",)
        self._cache[domain] = (self._clock() + self._cache_ttl_s, reasons)
        self._cache.move_to_end(domain)
        while len(self._cache) > self._cache_entries:
            self._cache.popitem(last=False)
        return reasons

    async def _ask(self, domain: str) -> tuple[str, ...]:
        try:
            from_mx = reasons_from_mx(await self._resolver.mx(domain))
        except DnsNotFound:
            return ("no_domain",)
        except DnsNoData:
            from_mx = None
        if from_mx is not None:
            return from_mx
        try:
            found = await self._resolver.addresses(domain)
        except (DnsNotFound, DnsNoData):
            return ("no_mx",)
        return ("implicit_mx",) if any(_is_global(address) for address in found) else ("no_mx",)


def _is_global(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False
