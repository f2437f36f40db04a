"""Pool choice and source weighting; lane limits per destination; the rate window."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from postroom.config import parse_config
from postroom.config.schema import DeliveryConfig, DestinationLimits
from postroom.mta.delivery.mx import Destination, MxHost
from postroom.mta.lanes.lane import RateWindow, limits_for
from postroom.mta.lanes.pools import IMPLICIT_POOL, PoolTable, Source, UnknownPool

BASE = '[server]\nhostname = "mx.example.com"\n'

EGRESS = """
[[egress]]
name = "tx-1"
address = "192.0.2.10"
helo = "tx-1.example.com"

[[egress]]
name = "bulk-1"
address = "192.0.2.11"

[[egress]]
name = "bulk-2"
address = "192.0.2.12"
helo = "bulk-2.example.com"
"""

POOLS = """
[[pool]]
name = "transactional"
sources = ["tx-1"]

[[pool]]
name = "mailings"
sources = [{ name = "bulk-1", weight = 3 }, { name = "bulk-2", weight = 1 }]
"""


def table(extra: str = "", rng: random.Random | None = None) -> PoolTable:
    return PoolTable(parse_config(BASE + EGRESS + POOLS + extra), rng)


# -- pools ---------------------------------------------------------------------------


def test_no_egress_means_one_implicit_source_and_pool() -> None:
    pools = PoolTable(parse_config(BASE))
    assert pools.default_pool == IMPLICIT_POOL
    assert list(pools.pools) == [IMPLICIT_POOL]
    assert pools.pick_source(IMPLICIT_POOL) == Source("default", None, "mx.example.com")
    assert pools.choose_pool(requested=None, sender_domain="a.test", client_ip="127.0.0.1") == (
        IMPLICIT_POOL
    )


def test_egress_without_pools_makes_an_implicit_pool_of_all_sources() -> None:
    pools = PoolTable(parse_config(BASE + EGRESS), random.Random(1))
    assert pools.default_pool == IMPLICIT_POOL
    assert {s.name for s in pools.pools[IMPLICIT_POOL].sources} == {"tx-1", "bulk-1", "bulk-2"}
    picked = {pools.pick_source(IMPLICIT_POOL).name for _ in range(200)}
    assert picked == {"tx-1", "bulk-1", "bulk-2"}


def test_sources_carry_address_and_helo_defaulting_to_the_hostname() -> None:
    pools = table()
    assert pools.pick_source("transactional") == Source("tx-1", "192.0.2.10", "tx-1.example.com")
    bulk = {pools.pick_source("mailings") for _ in range(100)}
    assert Source("bulk-1", "192.0.2.11", "mx.example.com") in bulk


def test_weighted_choice_follows_the_weights() -> None:
    pools = table(rng=random.Random(12345))
    counts = Counter(pools.pick_source("mailings").name for _ in range(8000))
    assert set(counts) == {"bulk-1", "bulk-2"}
    share = counts["bulk-1"] / 8000
    assert 0.72 < share < 0.78  # weight 3 of 4


def test_weighted_choice_is_reproducible_with_a_seed() -> None:
    def picks(seed: int) -> list[str]:
        pools = table(rng=random.Random(seed))
        return [pools.pick_source("mailings").name for _ in range(50)]

    assert picks(9) == picks(9)
    assert picks(9) != picks(10)


def test_a_pool_that_vanished_from_the_config_falls_back_to_the_default() -> None:
    assert table().pick_source("gone").name == "tx-1"


def test_default_pool_is_the_first_pool_or_the_configured_one() -> None:
    assert table().default_pool == "transactional"
    configured = table('[delivery]\ndefault_pool = "mailings"\n')
    assert configured.default_pool == "mailings"
    assert configured.choose_pool(
        requested=None, sender_domain="x.test", client_ip="192.0.2.99"
    ) == ("mailings")


def test_a_requested_pool_wins_over_rules() -> None:
    pools = table('[[delivery.rule]]\npool = "transactional"\nsender_domain = "a.test"\n')
    assert pools.choose_pool(
        requested="mailings", sender_domain="a.test", client_ip="10.0.0.1"
    ) == ("mailings")


def test_an_unknown_requested_pool_raises() -> None:
    with pytest.raises(UnknownPool) as caught:
        table().choose_pool(requested="bulk", sender_domain="a.test", client_ip="127.0.0.1")
    assert caught.value.args == ("bulk",)
    with pytest.raises(UnknownPool):
        table().choose_pool(requested="", sender_domain="a.test", client_ip="127.0.0.1")


RULES = """
[[delivery.rule]]
pool = "mailings"
sender_domain = "News.Example.com"

[[delivery.rule]]
pool = "transactional"
client_network = "10.20.0.0/16"

[[delivery.rule]]
pool = "mailings"
client_network = "2001:db8:20::/48"

[[delivery.rule]]
pool = "mailings"
sender_domain = "both.example.com"
client_network = "10.30.0.0/16"

[delivery]
default_pool = "transactional"
"""


@pytest.mark.parametrize(
    ("sender_domain", "client_ip", "pool"),
    [
        ("news.example.com", "192.0.2.99", "mailings"),  # sender domain, any case
        ("NEWS.EXAMPLE.COM", "", "mailings"),
        ("sub.news.example.com", "192.0.2.99", "transactional"),  # exact domain only
        ("example.com", "10.20.1.1", "transactional"),  # client network
        ("example.com", "2001:db8:20::5", "mailings"),
        ("news.example.com", "10.20.1.1", "mailings"),  # first matching rule wins
        ("both.example.com", "10.30.0.1", "mailings"),  # both conditions hold
        ("both.example.com", "10.31.0.1", "transactional"),  # only one holds
        ("other.example.com", "10.30.0.1", "transactional"),
        ("example.com", "not an ip", "transactional"),  # network rules need an address
        ("", "", "transactional"),  # null sender
    ],
)
def test_rules_by_sender_domain_and_client_network(
    sender_domain: str, client_ip: str, pool: str
) -> None:
    pools = PoolTable(parse_config(BASE + EGRESS + POOLS + RULES))
    chosen = pools.choose_pool(requested=None, sender_domain=sender_domain, client_ip=client_ip)
    assert chosen == pool


def test_rules_reorder_changes_the_winner() -> None:
    rules = (
        '[[delivery.rule]]\npool = "transactional"\nclient_network = "10.20.0.0/16"\n'
        '[[delivery.rule]]\npool = "mailings"\nsender_domain = "news.example.com"\n'
    )
    pools = table(rules)
    chosen = pools.choose_pool(
        requested=None, sender_domain="news.example.com", client_ip="10.20.0.9"
    )
    assert chosen == "transactional"


# -- lane limits ------------------------------------------------------------------------


def destination(domain: str, *hosts: str, implicit: bool = False) -> Destination:
    return Destination(
        domain=domain,
        hosts=tuple(MxHost(name, 10, ("192.0.2.1",)) for name in hosts),
        implicit=implicit,
    )


GMAIL = destination("gmail.com", "gmail-smtp-in.l.google.com", "alt1.gmail-smtp-in.l.google.com")
WORKSPACE = destination("company.example", "aspmx.l.google.com")
ELSEWHERE = destination("example.org", "mx.example.org")

DELIVERY = DeliveryConfig(
    max_connections=20,
    max_messages_per_connection=100,
    max_per_minute=0,
    max_per_hour=0,
    idle_connection_timeout=5,  # type: ignore[arg-type]
    destination=(
        DestinationLimits(match=".google.com", max_connections=10, max_per_minute=600),
        DestinationLimits(match="company.example", max_per_hour=1000),
        DestinationLimits(match="example.org", max_messages_per_connection=5),
        DestinationLimits(match=".Example.ORG.", max_connections=2),
    ),
)


def test_defaults_without_overrides() -> None:
    limits = limits_for(ELSEWHERE, DeliveryConfig())
    assert (
        limits.max_connections,
        limits.max_messages_per_connection,
        limits.max_per_minute,
        limits.max_per_hour,
        limits.idle_connection_timeout_s,
    ) == (20, 100, 0, 0, 5.0)


def test_suffix_matches_mx_host_names() -> None:
    limits = limits_for(GMAIL, DELIVERY)
    assert (limits.max_connections, limits.max_per_minute) == (10, 600)
    assert (limits.max_messages_per_connection, limits.max_per_hour) == (100, 0)  # defaults kept


def test_several_overrides_combine() -> None:
    # company.example's MX is at Google: the suffix entry and the domain entry both apply.
    limits = limits_for(WORKSPACE, DELIVERY)
    assert (limits.max_connections, limits.max_per_minute, limits.max_per_hour) == (10, 600, 1000)


def test_domain_match_is_exact_and_suffix_match_is_case_insensitive() -> None:
    limits = limits_for(ELSEWHERE, DELIVERY)
    assert limits.max_messages_per_connection == 5  # "example.org"
    assert limits.max_connections == 2  # ".Example.ORG." against mx.example.org
    sub = limits_for(destination("sub.example.org", "mx.other.test"), DELIVERY)
    assert sub.max_messages_per_connection == 100  # not "example.org" exactly
    assert sub.max_connections == 2  # the domain itself ends in .example.org


def test_suffix_needs_a_label_boundary() -> None:
    lookalike = destination("evil.test", "mx.notgoogle.com")
    assert limits_for(lookalike, DELIVERY).max_connections == 20


def test_later_overrides_win_on_the_same_key() -> None:
    config = DeliveryConfig(
        destination=(
            DestinationLimits(match=".google.com", max_per_minute=600),
            DestinationLimits(match="gmail.com", max_per_minute=100),
        )
    )
    assert limits_for(GMAIL, config).max_per_minute == 100


def test_no_mx_hosts_and_implicit_destinations() -> None:
    implicit = destination("tiny.example", "tiny.example", implicit=True)
    config = DeliveryConfig(
        destination=(DestinationLimits(match="tiny.example", max_connections=1),)
    )
    assert limits_for(implicit, config).max_connections == 1
    assert limits_for(destination("x.test"), config).max_connections == 20


# -- rate window ---------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_unlimited_never_waits_and_keeps_no_history() -> None:
    clock = FakeClock()
    window = RateWindow(0, 0, clock)
    for _ in range(10_000):
        window.record()
    assert window.wait_s() == 0
    assert len(window._sent) == 0


def test_per_minute_limit() -> None:
    clock = FakeClock()
    window = RateWindow(3, 0, clock)
    for _ in range(3):
        assert window.wait_s() == 0
        window.record()
        clock.now += 10
    # Sends at 1000, 1010, 1020; now 1030: the oldest leaves the window at 1060.
    assert window.wait_s() == pytest.approx(30)
    clock.now = 1059.5
    assert window.wait_s() == pytest.approx(0.5)
    clock.now = 1060
    assert window.wait_s() == 0
    window.record()
    assert window.wait_s() == pytest.approx(10)  # now 1010 is the oldest of the last three


def test_per_hour_limit() -> None:
    clock = FakeClock()
    window = RateWindow(0, 2, clock)
    window.record()
    clock.now += 100
    window.record()
    assert window.wait_s() == pytest.approx(3500)
    clock.now = 1000 + 3600
    assert window.wait_s() == 0
    window.record()
    assert window.wait_s() == pytest.approx(100)  # until the send at 1100 ages out


def test_both_limits_the_longer_wait_wins() -> None:
    clock = FakeClock()
    window = RateWindow(2, 3, clock)
    window.record()
    window.record()
    assert window.wait_s() == pytest.approx(60)  # minute limit reached
    clock.now += 60
    window.record()
    assert window.wait_s() == pytest.approx(3540)  # hour limit reached: 3 in the hour


def test_old_sends_are_forgotten() -> None:
    clock = FakeClock()
    window = RateWindow(1000, 0, clock)
    for _ in range(500):
        window.record()
        clock.now += 10
    window.wait_s()
    assert len(window._sent) <= 361


def test_a_burst_over_the_hourly_limit_waits_for_enough_sends_to_age_out() -> None:
    clock = FakeClock()
    window = RateWindow(0, 2, clock)
    for _ in range(3):  # e.g. recorded before the limit was lowered to 2
        window.record()
        clock.now += 100
    # Sends at 1000, 1100, 1200; now 1300. Below the limit once 1100 leaves the hour.
    assert window.wait_s() == pytest.approx(1100 + 3600 - 1300)


async def test_a_new_lane_is_idle_and_a_lane_with_a_job_is_not() -> None:
    from postroom.mta.delivery.client import ConnectSettings
    from postroom.mta.delivery.mx import Destination, MxHost
    from postroom.mta.lanes.lane import Lane, LaneLimits
    from postroom.mta.lanes.pools import Source
    from postroom.mta.queue.records import ClaimedDelivery, Job

    reported = []

    class Host:
        async def body_for(self, job):  # type: ignore[no-untyped-def]
            return b"x"

        def report(self, job, results, source):  # type: ignore[no-untyped-def]
            reported.append(results)

    # Port 9 on 127.0.0.1: nothing listens, so the connection attempt fails fast.
    destination = Destination("d.test", (MxHost("mx.d.test", 10, ("127.0.0.1",)),), False)
    limits = LaneLimits(1, 10, 0, 0, 0.1)
    lane = Lane(
        Source("s", None, "h.test"),
        destination,
        limits,
        ConnectSettings(port=9),
        Host(),
        suspend_s=0.0,
    )
    assert lane.is_idle()
    lane.add(Job("Q", "a@s.test", "d.test", "p", 0.0, 1, [ClaimedDelivery(1, "u@d.test", 0)]))
    assert not lane.is_idle()
    await lane.wait_closed()
    assert reported and reported[0][0][1].stage.value == "connect"
    assert lane.is_idle()
