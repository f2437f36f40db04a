"""Resolver and MX resolution against a real authoritative server (NSD on loopback).

Only `.test` zones served by NSD on 127.0.0.1 are queried; the "silent" server
is a UDP socket on loopback that never answers.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator

import pytest
from tests.peers.dns import NsdError, NsdServer, make_zone

from postroom.core.dns import (
    DnsNoData,
    DnsNotFound,
    DnsTemporaryError,
    Resolver,
)
from postroom.mta.delivery.mx import (
    Destination,
    DestinationTemporaryError,
    MxHost,
    NoSuchDomain,
    NullMx,
    order_exchanges,
    parse_domain_literal,
    resolve_destination,
)

BIG_TXT = [f'big IN TXT "{n:02d}-{"x" * 90}"' for n in range(40)]

ZONES = {
    "mx.test": make_zone(
        "mx.test",
        [
            "@ IN MX 20 mx2",
            "@ IN MX 10 mx1",
            "mx1 IN A 127.0.0.11",
            "mx1 IN AAAA ::1",
            "mx2 IN A 127.0.0.12",
            "alias IN CNAME mx1",
        ],
    ),
    "equal.test": make_zone(
        "equal.test",
        [f"@ IN MX 10 {n}" for n in "cab"] + [f"{n} IN A 127.0.1.{i}" for i, n in enumerate("abc")],
    ),
    "implicit.test": make_zone("implicit.test", ["@ IN A 127.0.0.20", "@ IN AAAA ::20"]),
    "nullmx.test": make_zone("nullmx.test", ["@ IN MX 0 ."]),
    "noaddr.test": make_zone("noaddr.test", ['@ IN TXT "nothing to deliver to"']),
    "skips.test": make_zone(
        "skips.test",
        [
            "@ IN MX 10 nowhere",
            "@ IN MX 20 127.0.0.5.",
            "@ IN MX 30 ok",
            "ok IN A 127.0.0.30",
        ],
    ),
    "allbad.test": make_zone("allbad.test", ["@ IN MX 10 nowhere", "@ IN MX 20 gone.mx.test."]),
    "tempmx.test": make_zone("tempmx.test", ["@ IN MX 10 host.unserved.test."]),
    "txt.test": make_zone(
        "txt.test",
        [
            '@ IN TXT "v=spf1 " "ip4:127.0.0.1" " -all"',
            '_dmarc IN TXT "v=DMARC1; p=reject"',
            *BIG_TXT,
        ],
    ),
    "xn--bcher-kva.test": make_zone(
        "xn--bcher-kva.test", ["@ IN MX 5 mail", "mail IN A 127.0.0.40"]
    ),
}


@pytest.fixture(scope="module")
def nsd() -> Iterator[NsdServer]:
    with NsdServer(ZONES) as server:
        yield server


@pytest.fixture
def resolver(nsd: NsdServer) -> Resolver:
    return Resolver([(nsd.address, nsd.port)], timeout_s=2.0)


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """A loopback UDP socket that receives queries and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()


@pytest.mark.flow
def test_nsd_peer_reports_its_nameserver(nsd: NsdServer) -> None:
    assert nsd.nameserver() == f"127.0.0.1:{nsd.port}"


@pytest.mark.flow
async def test_mx_sorted_by_preference(resolver: Resolver) -> None:
    assert await resolver.mx("mx.test") == [(10, "mx1.mx.test"), (20, "mx2.mx.test")]


@pytest.mark.flow
async def test_nxdomain_and_nodata_are_permanent(resolver: Resolver) -> None:
    with pytest.raises(DnsNotFound):
        await resolver.mx("gone.mx.test")
    with pytest.raises(DnsNoData):
        await resolver.mx("implicit.test")
    with pytest.raises(DnsNotFound):
        await resolver.addresses("noaddr.test")


@pytest.mark.flow
async def test_addresses_ipv4_first_and_cname_followed(resolver: Resolver) -> None:
    assert await resolver.addresses("mx1.mx.test") == ["127.0.0.11", "::1"]
    assert await resolver.addresses("alias.mx.test") == ["127.0.0.11", "::1"]


@pytest.mark.flow
async def test_txt_joins_strings_and_large_answers_fall_back_to_tcp(resolver: Resolver) -> None:
    assert await resolver.txt("txt.test") == ["v=spf1 ip4:127.0.0.1 -all"]
    assert await resolver.txt("_dmarc.txt.test") == ["v=DMARC1; p=reject"]
    # 40 records of ~95 bytes cannot fit a 512-byte UDP answer: complete only over TCP.
    big = await resolver.txt("big.txt.test")
    assert sorted(big) == sorted(f"{n:02d}-{'x' * 90}" for n in range(40))


@pytest.mark.flow
async def test_unserved_zone_is_temporary(resolver: Resolver) -> None:
    # NSD answers REFUSED for zones it does not serve: never a permanent verdict.
    with pytest.raises(DnsTemporaryError, match="REFUSED"):
        await resolver.mx("unserved.test")


@pytest.mark.flow
async def test_destination_with_two_preferences(resolver: Resolver) -> None:
    destination = await resolve_destination(resolver, "MX.test")
    assert destination == Destination(
        "mx.test",
        (
            MxHost("mx1.mx.test", 10, ("127.0.0.11", "::1")),
            MxHost("mx2.mx.test", 20, ("127.0.0.12",)),
        ),
        implicit=False,
    )
    assert destination.site == "mx1.mx.test,mx2.mx.test"


@pytest.mark.flow
async def test_equal_preferences_stable_or_shuffled_by_rng(resolver: Resolver) -> None:
    stable = await resolve_destination(resolver, "equal.test")
    assert [host.name for host in stable.hosts] == ["a.equal.test", "b.equal.test", "c.equal.test"]
    orders = set()
    for seed in range(20):
        shuffled = await resolve_destination(resolver, "equal.test", rng=random.Random(seed))
        assert shuffled.site == stable.site == "a.equal.test,b.equal.test,c.equal.test"
        orders.add(tuple(host.name for host in shuffled.hosts))
    assert len(orders) > 1


@pytest.mark.flow
async def test_implicit_mx_uses_the_domain_addresses(resolver: Resolver) -> None:
    destination = await resolve_destination(resolver, "implicit.test")
    assert destination.implicit
    assert destination.hosts == (MxHost("implicit.test", 0, ("127.0.0.20", "::20")),)
    assert destination.site == "implicit.test"


@pytest.mark.flow
async def test_null_mx_fails_with_5_1_10(resolver: Resolver) -> None:
    with pytest.raises(NullMx) as caught:
        await resolve_destination(resolver, "nullmx.test")
    assert caught.value.enhanced_status == "5.1.10" and caught.value.permanent


@pytest.mark.flow
@pytest.mark.parametrize("domain", ["gone.mx.test", "noaddr.test", "allbad.test", "a..test"])
async def test_no_such_domain_fails_with_5_1_2(resolver: Resolver, domain: str) -> None:
    with pytest.raises(NoSuchDomain) as caught:
        await resolve_destination(resolver, domain)
    assert caught.value.enhanced_status == "5.1.2" and caught.value.permanent


@pytest.mark.flow
async def test_unresolvable_and_ip_literal_mx_hosts_are_skipped(resolver: Resolver) -> None:
    destination = await resolve_destination(resolver, "skips.test")
    assert destination.hosts == (MxHost("ok.skips.test", 30, ("127.0.0.30",)),)


@pytest.mark.flow
async def test_mx_host_in_trouble_defers_with_4_4_3(resolver: Resolver) -> None:
    with pytest.raises(DestinationTemporaryError) as caught:
        await resolve_destination(resolver, "tempmx.test")
    assert caught.value.enhanced_status == "4.4.3" and not caught.value.permanent


@pytest.mark.flow
async def test_idna_domain(resolver: Resolver) -> None:
    assert await resolver.mx("Bücher.test") == [(5, "mail.xn--bcher-kva.test")]
    destination = await resolve_destination(resolver, "bücher.test")
    assert destination.domain == "xn--bcher-kva.test"
    assert destination.hosts == (MxHost("mail.xn--bcher-kva.test", 5, ("127.0.0.40",)),)


@pytest.mark.flow
async def test_silent_nameserver_is_a_temporary_error_within_the_timeout(
    silent_server: tuple[str, int],
) -> None:
    resolver = Resolver([silent_server], timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(DnsTemporaryError, match="timed out"):
        await resolver.mx("mx.test")
    # Within the 0.5 s asked for, not the default 5 s: the margin is for a busy machine.
    assert time.monotonic() - started < 4.5
    with pytest.raises(DestinationTemporaryError):
        await resolve_destination(resolver, "mx.test")


@pytest.mark.flow
async def test_domain_literal_needs_no_dns(silent_server: tuple[str, int]) -> None:
    resolver = Resolver([silent_server], timeout_s=0.5)
    destination = await resolve_destination(resolver, "[127.0.0.5]")
    assert destination == Destination(
        "[127.0.0.5]", (MxHost("127.0.0.5", 0, ("127.0.0.5",)),), implicit=True
    )
    assert destination.site == "[127.0.0.5]"


@pytest.mark.flow
async def test_reload_serves_new_zone_text() -> None:
    with NsdServer({"reload.test": make_zone("reload.test", ["@ IN A 127.0.0.50"])}) as server:
        assert await Resolver([(server.address, server.port)]).addresses("reload.test") == [
            "127.0.0.50"
        ]
        server.reload({"reload.test": make_zone("reload.test", ["@ IN A 127.0.0.51"], serial=2)})
        assert await Resolver([(server.address, server.port)]).addresses("reload.test") == [
            "127.0.0.51"
        ]


# -- pure helpers (no DNS) ---------------------------------------------------


def test_domain_literals() -> None:
    assert parse_domain_literal("[127.0.0.5]") == "127.0.0.5"
    assert parse_domain_literal("[IPv6:::1]") == "::1"
    assert parse_domain_literal("example.test") is None
    for bad in ("[300.0.0.1]", "[::1]", "[IPv6:127.0.0.1]"):
        with pytest.raises(NoSuchDomain):
            parse_domain_literal(bad)


def test_order_exchanges_drops_invalid_and_limits_count() -> None:
    records = [(10, "."), (5, "127.0.0.9"), *[(20, f"h{n}.test") for n in range(15)]]
    ordered = order_exchanges(records, rng=None, max_hosts=10)
    assert ordered == [(20, f"h{n}.test") for n in range(10)]


@pytest.mark.flow
def test_invalid_zone_is_refused_before_nsd_starts() -> None:
    broken = make_zone("broken.test", ["@ IN MX 10"])
    with pytest.raises(NsdError, match=r"named-checkzone refused zone broken\.test"):
        NsdServer({"broken.test": broken}).__enter__()
