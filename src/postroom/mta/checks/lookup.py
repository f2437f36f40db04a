"""Blocking DNS lookups for the message-authentication checks.

pyspf and dkimpy call DNS synchronously from deep inside their code, so the
checks run in a worker thread and reach DNS through a `DnsLookup`: a callable
``lookup(name, rdtype) -> list[Rdata]`` (never empty) that raises the
`postroom.core.dns` errors — `DnsNotFound` (NXDOMAIN), `DnsNoData`,
`DnsTemporaryError` (timeout, SERVFAIL: a *temporary* check result, never a
permanent one).

`BlockingLookup` is the production one: it hands each query to the process's
one asynchronous `Resolver` on its event loop and waits, so the checks share
the resolver's cache and obey `[dns] nameservers`; a cached answer is read
directly (a warm-cache check then never waits for the loop). It must never be called
from the event loop's own thread (it would wait for itself); `__call__` checks.
`KeyRecordLookup` adapts a `DnsLookup` to dkimpy's key-record callback.
`txt_strings` joins a TXT record's character-strings as RFC 7208 3.3 and
RFC 6376 3.6.2.2 both ask.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable

import dns.rdata

from postroom.core.dns import DnsError, DnsTemporaryError, Resolver

DnsLookup = Callable[[str, str], list[dns.rdata.Rdata]]


class BlockingLookup:
    """`DnsLookup` over an asynchronous `Resolver` running on `loop`."""

    def __init__(self, resolver: Resolver, loop: asyncio.AbstractEventLoop) -> None:
        self.resolver = resolver
        self.loop = loop

    def __call__(self, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            raise RuntimeError("BlockingLookup called on its own event loop")
        cached = self.resolver.cached(name, rdtype)
        if cached is not None:
            return cached
        future = asyncio.run_coroutine_threadsafe(self.resolver.query(name, rdtype), self.loop)
        # The resolver bounds each query by [dns] timeout; this is only a backstop.
        try:
            return future.result(timeout=self.resolver.timeout_s * 2 + 1)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise DnsTemporaryError(name, rdtype, "no answer in time") from None


def txt_strings(record: dns.rdata.Rdata) -> bytes:
    """A TXT record's character-strings joined without separator."""
    return b"".join(record.strings)  # type: ignore[attr-defined]


class KeyRecordLookup:
    """dkimpy's `dnsfunc` (DKIM and ARC key records): the TXT text at a name, or
    None. dkimpy turns every failure into "no key", so what went wrong is kept
    here: `problem` for the latest lookup, `temporary` if any lookup met DNS
    trouble (then a failed verification may pass later)."""

    def __init__(self, lookup: DnsLookup) -> None:
        self.lookup = lookup
        self.problem: DnsError | None = None
        self.temporary = False

    def __call__(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        self.problem = None
        try:
            records = self.lookup(text, "TXT")
        except DnsError as error:
            self.problem = error
            self.temporary = self.temporary or isinstance(error, DnsTemporaryError)
            return None
        # RFC 6376 3.6.2.2: several key records at one name are ambiguous; use the first.
        return txt_strings(records[0]) if records else None
