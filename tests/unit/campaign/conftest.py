"""Fixtures of the campaign unit tests: a shared validator and a DNS fake from data.

`FakeResolver` answers `mx` and `addresses` from dicts and raises the
exceptions of `postroom.core.dns` exactly as the real `Resolver` does; it
counts its lookups so tests can see the validator's cache at work. No test
here ever queries real DNS.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence

import pytest

from postroom.campaign.addresses import ValidationPolicy, Validator
from postroom.core.dns import DnsNoData, DnsNotFound, DnsTemporaryError

TEMPORARY = "temporary"
HANG = "hang"


class FakeResolver:
    """DNS from data.

    `mx`: domain → list of (preference, exchange), or TEMPORARY / HANG.
    `hosts`: name → list of addresses, or TEMPORARY / HANG.
    A domain in neither map does not exist (NXDOMAIN); a domain only in
    `hosts` has no MX (NODATA).
    """

    def __init__(
        self,
        mx: Mapping[str, Sequence[tuple[int, str]] | str] | None = None,
        hosts: Mapping[str, Sequence[str] | str] | None = None,
    ) -> None:
        self._mx = dict(mx or {})
        self._hosts = dict(hosts or {})
        self.lookups: Counter[tuple[str, str]] = Counter()

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        self.lookups[("MX", domain)] += 1
        answer = self._mx.get(domain)
        if answer is None:
            if domain in self._hosts:
                raise DnsNoData(domain, "MX", "no records of this type")
            raise DnsNotFound(domain, "MX", "no such domain (NXDOMAIN)")
        return list(await self._special(answer, domain, "MX"))

    async def addresses(self, host: str) -> list[str]:
        self.lookups[("A/AAAA", host)] += 1
        answer = self._hosts.get(host)
        if answer is None or (isinstance(answer, list | tuple) and not answer):
            raise DnsNotFound(host, "A/AAAA", "no A or AAAA records")
        return list(await self._special(answer, host, "A/AAAA"))

    @staticmethod
    async def _special(answer: object, name: str, rdtype: str) -> Sequence[object]:
        if answer == TEMPORARY:
            raise DnsTemporaryError(name, rdtype, "server answered SERVFAIL")
        if answer == HANG:
            await asyncio.sleep(3600)
        assert isinstance(answer, list | tuple)
        return answer


@pytest.fixture(scope="session")
def syntax_validator() -> Validator:
    """A validator without DNS, default policy; building one loads the data files."""
    return Validator(ValidationPolicy(dns=False))


@pytest.fixture
def make_resolver() -> type[FakeResolver]:
    """The `FakeResolver` class: `make_resolver(mx={...}, hosts={...})`."""
    return FakeResolver
