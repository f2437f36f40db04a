"""The one asynchronous DNS resolver of the process.

Purpose: every DNS lookup of postroom (MX for delivery, A/AAAA, TXT for SPF,
DKIM, DMARC and domain verification) goes through one `Resolver`, so that the
`[dns] nameservers` setting is obeyed everywhere and answers are cached once.

Inputs: names as text (ASCII or Unicode; Unicode is encoded with the IDNA codec
dnspython provides, IDNA 2003 unless the `idna` package is installed) and
record types as text ("MX", "TXT", ...). Outputs: lists of dnspython rdata for
`query`, plain values for `mx`, `addresses` and `txt`. Failures are exceptions:

- `DnsNotFound`: NXDOMAIN (or a name that cannot exist) — permanent.
- `DnsNoData`: the name exists but has no record of the type — permanent for that type.
- `DnsTemporaryError`: timeout, SERVFAIL, REFUSED, network error, malformed
  answer — temporary. Anything we cannot classify lands here, so that DNS
  trouble never becomes a permanent failure by accident.

Behaviour: with nameservers configured, every query goes to them (UDP, TCP on
truncation; dnspython's stub resolver does the retrying); without, the system
configuration (/etc/resolv.conf) is read at the first query. Answers are cached,
positive ones for their TTL and negative ones for the RFC 2308 negative TTL
(min of the SOA TTL and SOA MINIMUM), both capped by `cache_max_ttl_s`, in a
bounded LRU. Temporary failures are not cached. Concurrent identical queries
share one in-flight lookup.

RFCs: 1035 (DNS), 2308 (negative caching), 5891 / 3490 (IDNA).
Untrusted input: names come from mail (recipient domains) and answers from the
network; both are parsed by dnspython, TXT bytes are decoded with replacement.
Config keys read: `[dns] nameservers`, `timeout`, `cache_max_ttl` (via `from_config`).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.resolver

from postroom.config.schema import parse_listen

if TYPE_CHECKING:
    from postroom.config.schema import DnsConfig

DEFAULT_CACHE_MAX_ENTRIES = 10_000
# A per-attempt timeout below the lifetime lets dnspython retry a lost UDP
# datagram (or try the next server) before the whole lookup gives up.
_ATTEMPT_TIMEOUT_S = 2.0
# Extra time granted on top of dnspython's own lifetime before we cancel it
# ourselves; only a bug or a stuck loop would ever need it.
_HARD_DEADLINE_MARGIN_S = 1.0

NXDOMAIN = "nxdomain"
NODATA = "nodata"

CacheKey = tuple[dns.name.Name, dns.rdatatype.RdataType]


class DnsError(Exception):
    """A lookup failed; `name` and `rdtype` say which one, `reason` why."""

    def __init__(self, name: str, rdtype: str, reason: str) -> None:
        super().__init__(f"{name} {rdtype}: {reason}" if rdtype else f"{name}: {reason}")
        self.name = name
        self.rdtype = rdtype
        self.reason = reason


class DnsNotFound(DnsError):
    """NXDOMAIN, or a name that cannot exist: permanent."""


class DnsNoData(DnsError):
    """The name exists but has no records of this type: permanent for this type."""


class DnsTemporaryError(DnsError):
    """Timeout, SERVFAIL, REFUSED, network or format error: try again later."""


def normalize_name(name: str) -> dns.name.Name:
    """`name` as an absolute, lower-case, IDNA-encoded DNS name.

    Raises `DnsNotFound` for text that is not a valid domain name (an empty
    label, a label over 63 octets, a name that IDNA refuses): such a name
    cannot exist, so the failure is permanent.
    """
    text = name.strip()
    try:
        if not text:
            raise ValueError("empty name")
        parsed = dns.name.from_text(text.lower()) if text.isascii() else dns.name.from_unicode(text)
    except (dns.exception.DNSException, UnicodeError, ValueError) as error:
        raise DnsNotFound(name, "", f"invalid domain name ({error})") from None
    return parsed.canonicalize()


def name_text(name: dns.name.Name) -> str:
    """A name as text without the final dot ("." for the root)."""
    return "." if name == dns.name.root else name.to_text(omit_final_dot=True)


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """One cacheable outcome: records, or a negative kind (`NXDOMAIN`/`NODATA`)."""

    rdatas: tuple[dns.rdata.Rdata, ...]
    negative: str
    ttl_s: float


def answer_from_response(response: dns.message.Message, max_ttl_s: float) -> CachedAnswer:
    """Classify a response to one question; pure, no I/O.

    CNAME chains inside the response are followed. The TTL is the smallest
    along the chain, or for a negative answer min(SOA TTL, SOA MINIMUM)
    (RFC 2308 section 5; dnspython uses 300 s when no SOA came back), capped
    by `max_ttl_s`. An rcode other than NOERROR/NXDOMAIN, or a response
    that cannot be interpreted, raises `DnsTemporaryError`.
    """
    question = response.question[0] if response.question else None
    qname = name_text(question.name) if question else "?"
    qtype = dns.rdatatype.to_text(question.rdtype) if question else "?"
    rcode = response.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise DnsTemporaryError(qname, qtype, f"server answered {dns.rcode.to_text(rcode)}")
    try:
        chain = response.resolve_chaining()
    except dns.exception.DNSException as error:
        raise DnsTemporaryError(qname, qtype, f"unusable answer ({error!r})") from None
    ttl_s = max(0.0, min(float(chain.minimum_ttl), max_ttl_s))
    if rcode == dns.rcode.NXDOMAIN:
        return CachedAnswer((), NXDOMAIN, ttl_s)
    if chain.answer is None or len(chain.answer) == 0:
        return CachedAnswer((), NODATA, ttl_s)
    return CachedAnswer(tuple(chain.answer), "", ttl_s)


class AnswerCache:
    """A bounded LRU of `CachedAnswer` by (name, type), expiring on `clock`."""

    def __init__(self, max_entries: int, clock: Callable[[], float]) -> None:
        self._max_entries = max(1, max_entries)
        self._clock = clock
        self._entries: OrderedDict[CacheKey, tuple[float, CachedAnswer]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> CachedAnswer | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires_at, answer = found
        if self._clock() >= expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return answer

    def peek(self, key: CacheKey) -> CachedAnswer | None:
        """Like `get`, without touching the LRU order: safe from another thread, where
        each dict operation is atomic but a get-then-reorder sequence is not."""
        found = self._entries.get(key)
        if found is None or self._clock() >= found[0]:
            return None
        return found[1]

    def put(self, key: CacheKey, answer: CachedAnswer) -> None:
        if answer.ttl_s <= 0:
            # TTL 0 means "use once, do not cache" (RFC 1035 section 3.2.1).
            self._entries.pop(key, None)
            return
        self._entries[key] = (self._clock() + answer.ttl_s, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


class Resolver:
    """Asynchronous, caching DNS resolver; one per process (see module docstring)."""

    def __init__(
        self,
        nameservers: Sequence[tuple[str, int]] = (),
        *,
        timeout_s: float = 5.0,
        cache_max_ttl_s: float = 3600,
        cache_max_entries: int = DEFAULT_CACHE_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.nameservers = tuple(nameservers)
        self.timeout_s = float(timeout_s)
        self.cache_max_ttl_s = float(cache_max_ttl_s)
        self.cache = AnswerCache(cache_max_entries, clock)
        self._in_flight: dict[CacheKey, asyncio.Task[CachedAnswer]] = {}
        self._stub: dns.asyncresolver.Resolver | None = None

    @classmethod
    def from_config(cls, dns_config: DnsConfig) -> Resolver:
        nameservers = tuple(
            parse_listen(value, f"dns.nameservers[{index}]")
            for index, value in enumerate(dns_config.nameservers)
        )
        return cls(
            nameservers,
            timeout_s=float(dns_config.timeout),
            cache_max_ttl_s=float(dns_config.cache_max_ttl),
        )

    async def query(self, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        """The records of type `rdtype` at `name` (after CNAMEs), never empty.

        Raises `DnsNotFound`, `DnsNoData` or `DnsTemporaryError`.
        """
        key = _cache_key(name, rdtype)
        answer = self.cache.get(key)
        if answer is None:
            answer = await self._shared_lookup(key)
        return _records(answer, key, rdtype)

    def cached(self, name: str, rdtype: str) -> list[dns.rdata.Rdata] | None:
        """What `query` would return from the cache alone, or None when it would have to
        ask the network. Callable from any thread (blocking checks use it to skip the
        round trip to the event loop on a warm cache)."""
        key = _cache_key(name, rdtype)
        answer = self.cache.peek(key)
        return None if answer is None else _records(answer, key, rdtype)

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        """(preference, exchange) pairs sorted by preference then name.

        Exchanges are lower-case ASCII without the final dot; the root (a null
        MX, RFC 7505) is ".". Sorting by name among equal preferences keeps
        results deterministic; callers that want load spreading shuffle.
        """
        records = await self.query(domain, "MX")
        pairs = {(int(record.preference), name_text(record.exchange).lower()) for record in records}
        return sorted(pairs)

    async def addresses(self, host: str) -> list[str]:
        """IPv4 addresses, then IPv6, of `host`.

        Raises `DnsNotFound` when the host has no address at all (NXDOMAIN, or
        neither A nor AAAA records), `DnsTemporaryError` when one of the two
        lookups failed temporarily and the other found nothing. One family
        failing temporarily while the other answers still returns what was found.
        """
        results = await asyncio.gather(
            self.query(host, "A"), self.query(host, "AAAA"), return_exceptions=True
        )
        found: list[str] = []
        temporary: DnsTemporaryError | None = None
        nxdomain = False
        for result in results:
            if isinstance(result, DnsTemporaryError):
                temporary = result
            elif isinstance(result, DnsNotFound):
                nxdomain = True
            elif isinstance(result, DnsNoData):
                continue
            elif isinstance(result, BaseException):
                raise result
            else:
                found.extend(record.address for record in result)
        if found:
            return found
        if temporary is not None:
            raise temporary
        qname = name_text(normalize_name(host))
        reason = "no such domain (NXDOMAIN)" if nxdomain else "no A or AAAA records"
        raise DnsNotFound(qname, "A/AAAA", reason)

    async def txt(self, name: str) -> list[str]:
        """TXT records, each record's strings joined (RFC 7208 3.3, RFC 6376 3.6.2.2)."""
        records = await self.query(name, "TXT")
        return [b"".join(record.strings).decode("utf-8", "replace") for record in records]

    async def _shared_lookup(self, key: CacheKey) -> CachedAnswer:
        task = self._in_flight.get(key)
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.get_running_loop().create_task(self._lookup(key))
            self._in_flight[key] = task
            task.add_done_callback(functools.partial(self._lookup_done, key))
        # shield: one waiter being cancelled must not cancel the lookup the others share.
        return await asyncio.shield(task)

    def _lookup_done(self, key: CacheKey, task: asyncio.Task[CachedAnswer]) -> None:
        if self._in_flight.get(key) is task:
            del self._in_flight[key]
        if not task.cancelled():
            task.exception()  # marks it retrieved when every waiter went away

    async def _lookup(self, key: CacheKey) -> CachedAnswer:
        qname, qtype = key
        response = await self._exchange(qname, qtype)
        answer = answer_from_response(response, self.cache_max_ttl_s)
        self.cache.put(key, answer)
        return answer

    async def _exchange(
        self, qname: dns.name.Name, qtype: dns.rdatatype.RdataType
    ) -> dns.message.Message:
        """Ask the network; the final response, whatever its rcode.

        This is the only method that does I/O: a test may override it to
        serve responses built from zone text.
        """
        shown, shown_type = name_text(qname), dns.rdatatype.to_text(qtype)
        try:
            stub = self._stub_resolver()
            async with asyncio.timeout(self.timeout_s + _HARD_DEADLINE_MARGIN_S):
                answer = await stub.resolve(
                    qname, qtype, raise_on_no_answer=False, search=False, lifetime=self.timeout_s
                )
            return answer.response
        except dns.resolver.NXDOMAIN as error:
            responses = error.responses()
            response = responses.get(qname) or next(iter(responses.values()), None)
            if response is None:
                raise DnsNotFound(shown, shown_type, "no such domain (NXDOMAIN)") from None
            return response
        except dns.resolver.YXDOMAIN:
            raise DnsNotFound(shown, shown_type, "name too long after DNAME (YXDOMAIN)") from None
        except (dns.exception.Timeout, TimeoutError):
            raise DnsTemporaryError(shown, shown_type, "timed out") from None
        except dns.resolver.NoNameservers as error:
            raise DnsTemporaryError(shown, shown_type, f"no server answered ({error})") from None
        except (dns.exception.DNSException, OSError) as error:
            raise DnsTemporaryError(shown, shown_type, f"lookup failed ({error!r})") from None

    def _stub_resolver(self) -> dns.asyncresolver.Resolver:
        if self._stub is None:
            if self.nameservers:
                stub = dns.asyncresolver.Resolver(configure=False)
                stub.nameservers = [
                    dns.nameserver.Do53Nameserver(address, port)
                    for address, port in self.nameservers
                ]
            else:
                # Reads /etc/resolv.conf; a missing one raises, which the
                # caller reports as a temporary error and retries later.
                stub = dns.asyncresolver.Resolver()
            stub.timeout = min(_ATTEMPT_TIMEOUT_S, self.timeout_s)
            stub.lifetime = self.timeout_s
            stub.cache = None  # we cache ourselves, with negative answers and a bound
            self._stub = stub
        return self._stub


def _cache_key(name: str, rdtype: str) -> CacheKey:
    return normalize_name(name), dns.rdatatype.RdataType.make(rdtype.upper())


def _records(answer: CachedAnswer, key: CacheKey, rdtype: str) -> list[dns.rdata.Rdata]:
    qname = key[0]
    if answer.negative == NXDOMAIN:
        raise DnsNotFound(name_text(qname), rdtype.upper(), "no such domain (NXDOMAIN)")
    if answer.negative == NODATA:
        raise DnsNoData(name_text(qname), rdtype.upper(), "no records of this type")
    return list(answer.rdatas)
