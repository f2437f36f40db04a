"""Egress sources and pools: which local IP and EHLO name a delivery uses.

Input: `[[egress]]`, `[[pool]]`, `[delivery] default_pool` and `[[delivery.rule]]`
from the config. A message is assigned a pool once, when it is queued:
by its producer, by the `X-Postroom-Pool` header (relay networks and
authenticated apps only), by the first matching rule (sender domain, client
network), or else the default pool. Each delivery attempt then picks one source
of that pool, weighted, and binds the TCP connection to its address.

With no `[[egress]]` configured there is one implicit source, `default`, that
lets the kernel choose the address and says EHLO with `[server] hostname`.
Pure logic; the random choice takes an injectable `random.Random`.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

from postroom.config.schema import Config

IMPLICIT_POOL = "default"


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    address: str | None  # None: the kernel chooses
    helo: str


@dataclass(frozen=True, slots=True)
class Pool:
    name: str
    sources: tuple[Source, ...]
    weights: tuple[int, ...]


class UnknownPool(LookupError):
    """A message named a pool that is not configured."""


class PoolTable:
    def __init__(self, config: Config, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        if config.egress:
            sources = {
                egress.name: Source(
                    egress.name, egress.address, egress.helo or config.server.hostname
                )
                for egress in config.egress
            }
        else:
            sources = {"default": Source("default", None, config.server.hostname)}
        self.pools: dict[str, Pool] = {}
        for pool in config.pool:
            weighted = pool.weighted_sources()
            self.pools[pool.name] = Pool(
                pool.name,
                tuple(sources[s.name] for s in weighted),
                tuple(s.weight for s in weighted),
            )
        if not self.pools:
            self.pools[IMPLICIT_POOL] = Pool(
                IMPLICIT_POOL, tuple(sources.values()), (1,) * len(sources)
            )
        self.default_pool = config.delivery.default_pool or next(iter(self.pools))
        self._rules = tuple(
            (
                rule.sender_domain.lower(),
                ipaddress.ip_network(rule.client_network, strict=False)
                if rule.client_network
                else None,
                rule.pool,
            )
            for rule in config.delivery.rule
        )

    def choose_pool(self, *, requested: str | None, sender_domain: str, client_ip: str) -> str:
        """The pool for a new message; `requested` comes from a trusted producer or header."""
        if requested is not None:
            if requested not in self.pools:
                raise UnknownPool(requested)
            return requested
        client = _parse_ip(client_ip)
        for domain, network, pool in self._rules:
            if domain and domain != sender_domain.lower():
                continue
            if network is not None and (client is None or client not in network):
                continue
            return pool
        return self.default_pool

    def pick_source(self, pool_name: str) -> Source:
        """One source of the pool, chosen by weight. An unknown pool (the config changed
        since the message was queued) falls back to the default pool."""
        pool = self.pools.get(pool_name) or self.pools[self.default_pool]
        if len(pool.sources) == 1:
            return pool.sources[0]
        return self._rng.choices(pool.sources, weights=pool.weights, k=1)[0]


def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None
