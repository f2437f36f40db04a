"""`Resolver.cached()` and `AnswerCache.peek()`: reading the cache from another thread.

`cached(name, type)` is what `query` would return from the cache alone: None on
a miss or an expired entry (never a network query), the records on a hit, and
`DnsNotFound` / `DnsNoData` for cached negative answers. `peek` reads without
touching the LRU order, so an entry only peeked at is still evicted first.
The network seam `Resolver._exchange` refuses, or answers from a table.
"""

from __future__ import annotations

import threading

import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset
import pytest

from postroom.core.dns import (
    NODATA,
    NXDOMAIN,
    AnswerCache,
    CachedAnswer,
    CacheKey,
    DnsNoData,
    DnsNotFound,
    Resolver,
    normalize_name,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class NoNetwork(Resolver):
    """A resolver that fails the test if it ever asks the network."""

    async def _exchange(self, qname, qtype):  # type: ignore[no-untyped-def]
        raise AssertionError(f"network query for {qname} {qtype}")


def key(name: str, rdtype: str = "TXT") -> CacheKey:
    return normalize_name(name), dns.rdatatype.RdataType.make(rdtype)


def txt(text: str) -> dns.rdata.Rdata:
    return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [text.encode()])


def a_record(address: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.A, address)


def answer(*records: dns.rdata.Rdata, ttl: float = 60) -> CachedAnswer:
    return CachedAnswer(tuple(records), "", ttl)


# -- Resolver.cached ----------------------------------------------------------------------


def test_cached_is_none_when_nothing_is_cached() -> None:
    resolver = NoNetwork()
    assert resolver.cached("example.test", "TXT") is None
    assert len(resolver.cache) == 0


def test_cached_returns_the_records_of_a_cached_answer() -> None:
    resolver = NoNetwork()
    records = (txt("v=spf1 -all"), txt("other"))
    resolver.cache.put(key("example.test"), answer(*records))
    found = resolver.cached("example.test", "TXT")
    assert found == list(records)
    assert isinstance(found, list)


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [("EXAMPLE.Test", "TXT"), ("example.test.", "txt"), ("Example.TEST.", "Txt")],
)
def test_cached_normalises_name_and_type_as_query_does(name: str, rdtype: str) -> None:
    resolver = NoNetwork()
    resolver.cache.put(key("example.test"), answer(txt("hello")))
    assert resolver.cached(name, rdtype) == [txt("hello")]


def test_cached_distinguishes_types() -> None:
    resolver = NoNetwork()
    resolver.cache.put(key("host.example.test", "A"), answer(a_record("192.0.2.1")))
    assert resolver.cached("host.example.test", "A") == [a_record("192.0.2.1")]
    assert resolver.cached("host.example.test", "AAAA") is None
    assert resolver.cached("host.example.test", "TXT") is None


def test_cached_unicode_names_use_their_idna_form() -> None:
    resolver = NoNetwork()
    resolver.cache.put(key("xn--bcher-kva.test"), answer(txt("books")))
    assert resolver.cached("Bücher.test", "TXT") == [txt("books")]


def test_a_cached_nxdomain_raises_not_found() -> None:
    resolver = NoNetwork()
    resolver.cache.put(key("gone.example.test"), CachedAnswer((), NXDOMAIN, 60))
    with pytest.raises(DnsNotFound) as caught:
        resolver.cached("Gone.Example.Test", "txt")
    assert (caught.value.name, caught.value.rdtype) == ("gone.example.test", "TXT")


def test_a_cached_nodata_raises_no_data() -> None:
    resolver = NoNetwork()
    resolver.cache.put(key("example.test", "MX"), CachedAnswer((), NODATA, 60))
    with pytest.raises(DnsNoData) as caught:
        resolver.cached("example.test", "MX")
    assert (caught.value.name, caught.value.rdtype) == ("example.test", "MX")
    assert not isinstance(caught.value, DnsNotFound)


@pytest.mark.parametrize("negative", [NXDOMAIN, NODATA])
def test_an_expired_negative_answer_is_a_miss(negative: str) -> None:
    clock = Clock()
    resolver = NoNetwork(clock=clock)
    resolver.cache.put(key("example.test"), CachedAnswer((), negative, 30))
    with pytest.raises((DnsNotFound, DnsNoData)):
        resolver.cached("example.test", "TXT")
    clock.now += 30
    assert resolver.cached("example.test", "TXT") is None


def test_an_expired_answer_is_a_miss() -> None:
    clock = Clock()
    resolver = NoNetwork(clock=clock)
    resolver.cache.put(key("example.test"), answer(txt("x"), ttl=10))
    clock.now += 9.5
    assert resolver.cached("example.test", "TXT") == [txt("x")]
    clock.now += 0.5
    assert resolver.cached("example.test", "TXT") is None


def test_an_impossible_name_raises_not_found_as_query_would() -> None:
    with pytest.raises(DnsNotFound):
        NoNetwork().cached("a..example.test", "TXT")


def test_cached_returns_a_copy_that_callers_may_change() -> None:
    resolver = NoNetwork()
    resolver.cache.put(key("example.test"), answer(txt("x")))
    first = resolver.cached("example.test", "TXT")
    assert first is not None
    first.clear()
    assert resolver.cached("example.test", "TXT") == [txt("x")]


class TableResolver(Resolver):
    """Answers TXT queries from a table with a real response, counting exchanges."""

    def __init__(self, table: dict[str, str]) -> None:
        super().__init__()
        self.table = table
        self.exchanges = 0

    async def _exchange(self, qname, qtype):  # type: ignore[no-untyped-def]
        self.exchanges += 1
        query = dns.message.make_query(qname, qtype)
        reply = dns.message.make_response(query)
        text = self.table[qname.to_text()]
        parsed = dns.rrset.from_text(qname, 300, "IN", "TXT", f'"{text}"')
        # find_rrset(create=True) keeps the message's index in step with the section.
        target = reply.find_rrset(
            reply.answer, parsed.name, parsed.rdclass, parsed.rdtype, create=True
        )
        target.update(parsed)
        return reply


async def test_cached_sees_what_query_cached() -> None:
    resolver = TableResolver({"example.test.": "v=spf1 -all"})
    assert resolver.cached("example.test", "TXT") is None
    queried = await resolver.query("example.test", "TXT")
    assert resolver.cached("example.test", "TXT") == queried
    assert resolver.exchanges == 1


def test_cached_works_from_another_thread() -> None:
    resolver = NoNetwork()
    resolver.cache.put(key("example.test"), answer(txt("x")))
    found: list[object] = []
    worker = threading.Thread(target=lambda: found.append(resolver.cached("example.test", "TXT")))
    worker.start()
    worker.join()
    assert found == [[txt("x")]]


# -- AnswerCache.peek ------------------------------------------------------------------------


def three_keys() -> list[CacheKey]:
    return [(dns.name.from_text(f"{label}.test."), dns.rdatatype.A) for label in "abc"]


def test_peek_returns_the_answer_or_none() -> None:
    cache = AnswerCache(10, Clock())
    first, second, _ = three_keys()
    stored = CachedAnswer((a_record("192.0.2.1"),), "", 60)
    cache.put(first, stored)
    assert cache.peek(first) == stored
    assert cache.peek(second) is None


def test_peek_does_not_refresh_the_lru_order() -> None:
    cache = AnswerCache(2, Clock())
    first, second, third = three_keys()
    cache.put(first, CachedAnswer((), NODATA, 60))
    cache.put(second, CachedAnswer((), NODATA, 60))
    assert cache.peek(first) is not None  # read, but not "used"
    cache.put(third, CachedAnswer((), NODATA, 60))
    assert cache.peek(first) is None  # still the oldest: evicted
    assert cache.peek(second) is not None and cache.peek(third) is not None


def test_get_by_contrast_does_refresh_the_lru_order() -> None:
    # The control for the test above: the same sequence with get keeps the first entry.
    cache = AnswerCache(2, Clock())
    first, second, third = three_keys()
    cache.put(first, CachedAnswer((), NODATA, 60))
    cache.put(second, CachedAnswer((), NODATA, 60))
    assert cache.get(first) is not None
    cache.put(third, CachedAnswer((), NODATA, 60))
    assert cache.peek(first) is not None
    assert cache.peek(second) is None


def test_resolver_cached_does_not_refresh_the_lru_order() -> None:
    resolver = NoNetwork(cache_max_entries=2)
    names = ["a.test", "b.test", "c.test"]
    resolver.cache.put(key(names[0]), answer(txt("a")))
    resolver.cache.put(key(names[1]), answer(txt("b")))
    assert resolver.cached(names[0], "TXT") is not None
    resolver.cache.put(key(names[2]), answer(txt("c")))
    assert resolver.cached(names[0], "TXT") is None
    assert resolver.cached(names[1], "TXT") == [txt("b")]


def test_peek_treats_an_expired_entry_as_absent() -> None:
    clock = Clock()
    cache = AnswerCache(10, clock)
    first, _, _ = three_keys()
    cache.put(first, CachedAnswer((), NODATA, 30))
    clock.now += 29.9
    assert cache.peek(first) is not None
    clock.now += 0.1
    assert cache.peek(first) is None


def test_peek_is_none_for_a_ttl_zero_answer() -> None:
    cache = AnswerCache(10, Clock())
    first, _, _ = three_keys()
    cache.put(first, CachedAnswer((), NODATA, 60))
    cache.put(first, CachedAnswer((), NODATA, 0))  # "use once": replaces and is not kept
    assert cache.peek(first) is None
