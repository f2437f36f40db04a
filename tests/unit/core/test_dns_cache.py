"""Resolver logic without sockets: names, answer classification, cache, in-flight sharing.

The network seam `Resolver._exchange` is replaced by responses built from text.
"""

from __future__ import annotations

import asyncio

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rrset
import pytest

from postroom.config.schema import DnsConfig
from postroom.core.dns import (
    NODATA,
    NXDOMAIN,
    AnswerCache,
    CachedAnswer,
    DnsNoData,
    DnsNotFound,
    DnsTemporaryError,
    Resolver,
    answer_from_response,
    normalize_name,
)

SOA = "example.test. 300 IN SOA ns.example.test. host.example.test. 1 3600 600 86400 45"


def response(
    name: str,
    rdtype: str,
    answers: list[str] = (),  # type: ignore[assignment]
    *,
    rcode: int = dns.rcode.NOERROR,
    authority: list[str] = (),  # type: ignore[assignment]
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    reply = dns.message.make_response(query)
    reply.set_rcode(rcode)
    reply.flags |= dns.flags.AA
    for section, lines in ((reply.answer, answers), (reply.authority, authority)):
        for line in lines:
            parsed = dns.rrset.from_text(*line.split(maxsplit=4))
            # find_rrset(create=True) keeps the message's index in step.
            target = reply.find_rrset(
                section, parsed.name, parsed.rdclass, parsed.rdtype, create=True
            )
            for rdata in parsed:
                target.add(rdata, parsed.ttl)
    return reply


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedResolver(Resolver):
    """Answers from a table; counts exchanges; optional gate to hold lookups open."""

    def __init__(self, table: dict[tuple[str, str], object], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.table = table
        self.exchanges: list[tuple[str, str]] = []
        self.gate: asyncio.Event | None = None

    async def _exchange(self, qname, qtype):  # type: ignore[no-untyped-def]
        key = (qname.to_text(), dns.rdatatype.to_text(qtype))
        self.exchanges.append(key)
        if self.gate is not None:
            await self.gate.wait()
        entry = self.table.get(key)
        if entry is None:
            return response(key[0], key[1], rcode=dns.rcode.NXDOMAIN, authority=[SOA])
        if isinstance(entry, Exception):
            raise entry
        return entry


# -- names ------------------------------------------------------------------


def test_normalize_lowercases_and_makes_absolute() -> None:
    assert normalize_name("Mail.Example.TEST").to_text() == "mail.example.test."
    assert normalize_name("mail.example.test.").to_text() == "mail.example.test."


def test_normalize_encodes_unicode_with_idna() -> None:
    assert normalize_name("Bücher.test").to_text() == "xn--bcher-kva.test."


@pytest.mark.parametrize("bad", ["", "  ", "a..test", "x" * 64 + ".test"])
def test_normalize_refuses_impossible_names_permanently(bad: str) -> None:
    with pytest.raises(DnsNotFound):
        normalize_name(bad)


# -- classification ---------------------------------------------------------


def test_positive_answer_uses_record_ttl_capped() -> None:
    reply = response("example.test.", "MX", ["example.test. 120 IN MX 10 mx.example.test."])
    answer = answer_from_response(reply, max_ttl_s=3600)
    assert answer.negative == ""
    assert answer.ttl_s == 120
    assert answer_from_response(reply, max_ttl_s=30).ttl_s == 30


def test_nodata_negative_ttl_is_soa_minimum() -> None:
    reply = response("example.test.", "MX", authority=[SOA])
    answer = answer_from_response(reply, max_ttl_s=3600)
    assert (answer.negative, answer.ttl_s) == (NODATA, 45)


def test_nxdomain_negative_ttl_is_min_of_soa_ttl_and_minimum() -> None:
    soa = SOA.replace(" 300 ", " 20 ")
    reply = response("gone.example.test.", "A", rcode=dns.rcode.NXDOMAIN, authority=[soa])
    assert answer_from_response(reply, max_ttl_s=3600) == CachedAnswer((), NXDOMAIN, 20)


def test_cname_chain_is_followed() -> None:
    reply = response(
        "www.example.test.",
        "A",
        ["www.example.test. 300 IN CNAME web.example.test.", "web.example.test. 60 IN A 127.0.0.9"],
    )
    answer = answer_from_response(reply, max_ttl_s=3600)
    assert [rdata.address for rdata in answer.rdatas] == ["127.0.0.9"]
    assert answer.ttl_s == 60


@pytest.mark.parametrize("rcode", [dns.rcode.SERVFAIL, dns.rcode.REFUSED, dns.rcode.FORMERR])
def test_server_failures_are_temporary(rcode: int) -> None:
    with pytest.raises(DnsTemporaryError):
        answer_from_response(response("example.test.", "MX", rcode=rcode), max_ttl_s=3600)


# -- cache ------------------------------------------------------------------


def test_cache_expires_entries_on_the_clock() -> None:
    clock = Clock()
    cache = AnswerCache(10, clock)
    key = (dns.name.from_text("a.test."), dns.rdatatype.A)
    cache.put(key, CachedAnswer((), NODATA, 30))
    clock.now += 29.9
    assert cache.get(key) is not None
    clock.now += 0.1
    assert cache.get(key) is None
    assert len(cache) == 0


def test_cache_is_bounded_and_evicts_least_recently_used() -> None:
    cache = AnswerCache(2, Clock())
    keys = [(dns.name.from_text(f"{n}.test."), dns.rdatatype.A) for n in "abc"]
    cache.put(keys[0], CachedAnswer((), NODATA, 60))
    cache.put(keys[1], CachedAnswer((), NODATA, 60))
    assert cache.get(keys[0]) is not None  # a is now the most recent
    cache.put(keys[2], CachedAnswer((), NODATA, 60))
    assert cache.get(keys[1]) is None
    assert cache.get(keys[0]) is not None and cache.get(keys[2]) is not None


def test_ttl_zero_is_not_cached() -> None:
    cache = AnswerCache(10, Clock())
    key = (dns.name.from_text("a.test."), dns.rdatatype.A)
    cache.put(key, CachedAnswer((), NODATA, 0))
    assert cache.get(key) is None


# -- resolver over a scripted exchange ---------------------------------------


MX_TABLE = {
    ("example.test.", "MX"): response(
        "example.test.",
        "MX",
        [
            "example.test. 300 IN MX 20 b.example.test.",
            "example.test. 300 IN MX 10 A.example.test.",
        ],
    ),
    ("example.test.", "TXT"): response(
        "example.test.", "TXT", ['example.test. 300 IN TXT "v=spf1 " "-all"']
    ),
    ("host.example.test.", "A"): response(
        "host.example.test.", "A", ["host.example.test. 300 IN A 127.0.0.7"]
    ),
    ("host.example.test.", "AAAA"): response(
        "host.example.test.", "AAAA", ["host.example.test. 300 IN AAAA ::1"]
    ),
    ("v6.example.test.", "A"): response("v6.example.test.", "A", authority=[SOA]),
    ("v6.example.test.", "AAAA"): response(
        "v6.example.test.", "AAAA", ["v6.example.test. 300 IN AAAA ::2"]
    ),
    ("bare.example.test.", "A"): response("bare.example.test.", "A", authority=[SOA]),
    ("bare.example.test.", "AAAA"): response("bare.example.test.", "AAAA", authority=[SOA]),
    ("broken.example.test.", "MX"): response(
        "broken.example.test.", "MX", rcode=dns.rcode.SERVFAIL
    ),
}


async def test_mx_sorted_and_lowercased_and_cached() -> None:
    resolver = ScriptedResolver(MX_TABLE)
    assert await resolver.mx("EXAMPLE.test") == [(10, "a.example.test"), (20, "b.example.test")]
    assert await resolver.mx("example.test.") == [(10, "a.example.test"), (20, "b.example.test")]
    assert resolver.exchanges == [("example.test.", "MX")]


async def test_txt_joins_strings_of_one_record() -> None:
    assert await ScriptedResolver(MX_TABLE).txt("example.test") == ["v=spf1 -all"]


async def test_addresses_ipv4_first_and_nodata_family_ignored() -> None:
    resolver = ScriptedResolver(MX_TABLE)
    assert await resolver.addresses("host.example.test") == ["127.0.0.7", "::1"]
    assert await resolver.addresses("v6.example.test") == ["::2"]
    with pytest.raises(DnsNotFound, match="no A or AAAA"):
        await resolver.addresses("bare.example.test")
    with pytest.raises(DnsNotFound, match="NXDOMAIN"):
        await resolver.addresses("nothing.example.test")


async def test_negative_answers_are_cached_until_soa_minimum() -> None:
    clock = Clock()
    resolver = ScriptedResolver(MX_TABLE, clock=clock)
    for _ in range(2):
        with pytest.raises(DnsNotFound):
            await resolver.query("nothing.example.test", "MX")
        with pytest.raises(DnsNoData):
            await resolver.query("v6.example.test", "A")
    assert len(resolver.exchanges) == 2
    clock.now += 46
    with pytest.raises(DnsNotFound):
        await resolver.query("nothing.example.test", "MX")
    assert len(resolver.exchanges) == 3


async def test_temporary_failures_are_not_cached() -> None:
    resolver = ScriptedResolver(MX_TABLE)
    for _ in range(2):
        with pytest.raises(DnsTemporaryError, match="SERVFAIL"):
            await resolver.mx("broken.example.test")
    assert len(resolver.exchanges) == 2


async def test_concurrent_identical_queries_share_one_lookup() -> None:
    resolver = ScriptedResolver(MX_TABLE)
    resolver.gate = asyncio.Event()
    waiters = [asyncio.create_task(resolver.mx("example.test")) for _ in range(5)]
    await asyncio.sleep(0)
    resolver.gate.set()
    results = await asyncio.gather(*waiters)
    assert all(result == results[0] for result in results)
    assert resolver.exchanges == [("example.test.", "MX")]


async def test_one_cancelled_waiter_does_not_cancel_the_shared_lookup() -> None:
    resolver = ScriptedResolver(MX_TABLE)
    resolver.gate = asyncio.Event()
    first = asyncio.create_task(resolver.mx("example.test"))
    second = asyncio.create_task(resolver.mx("example.test"))
    await asyncio.sleep(0)
    first.cancel()
    resolver.gate.set()
    assert await second == [(10, "a.example.test"), (20, "b.example.test")]
    with pytest.raises(asyncio.CancelledError):
        await first


def test_from_config_reads_nameservers_and_durations() -> None:
    config = DnsConfig(nameservers=("127.0.0.1:5353", "[::1]:53"), timeout=2.5, cache_max_ttl=60)
    resolver = Resolver.from_config(config)  # type: ignore[arg-type]
    assert resolver.nameservers == (("127.0.0.1", 5353), ("::1", 53))
    assert (resolver.timeout_s, resolver.cache_max_ttl_s) == (2.5, 60.0)
