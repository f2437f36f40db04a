"""Worker shares: the workers' limits add up to the node's, never below one each."""

from __future__ import annotations

import pytest

from postroom.config import Config
from postroom.config.schema import DeliveryConfig, DestinationLimits, InboundConfig, SmtpConfig
from postroom.workers.shares import limits_below_workers, share, worker_config


@pytest.mark.parametrize(
    ("limit", "count", "shares"),
    [(20, 2, [10, 10]), (7, 3, [3, 2, 2]), (0, 4, [0, 0, 0, 0]), (1, 2, [1, 1]), (5, 1, [5])],
)
def test_shares_add_up_and_never_drop_to_zero(limit: int, count: int, shares: list[int]) -> None:
    assert [share(limit, index, count) for index in range(count)] == shares


def node() -> Config:
    return Config(
        delivery=DeliveryConfig(
            max_connections=20,
            max_per_minute=601,
            destination=(DestinationLimits(match=".google.test", max_connections=1),),
        ),
        smtp=SmtpConfig(inbound=InboundConfig(max_connections=1000, max_connections_per_ip=51)),
    )


def test_worker_config_splits_lanes_and_names_the_node() -> None:
    config = node()
    first, second = (worker_config(config, index, 2) for index in range(2))
    assert (first.delivery.max_connections, second.delivery.max_connections) == (10, 10)
    assert (first.delivery.max_per_minute, second.delivery.max_per_minute) == (301, 300)
    assert first.delivery.max_per_hour == 0  # unlimited stays unlimited
    assert first.delivery.destination[0].max_connections == 1
    assert first.delivery.destination[0].match == ".google.test"
    assert first.smtp == config.smtp  # port 25 caps are counted across workers instead
    assert (first.node_name, second.node_name) == (
        f"{config.node_name}/w0",
        f"{config.node_name}/w1",
    )
    assert worker_config(config, 0, 1) is config


def test_limits_below_the_worker_count_are_named() -> None:
    assert limits_below_workers(node(), 2) == ["delivery.destination[0].max_connections = 1"]
    assert limits_below_workers(node(), 1) == []


def test_workers_get_a_cpu_each_only_when_there_is_one_for_each() -> None:
    import os
    from dataclasses import replace

    from postroom.workers.supervisor import worker_cpus

    cpus = sorted(os.sched_getaffinity(0))
    config = Config()
    assert worker_cpus(config, len(cpus)) == cpus
    assert worker_cpus(config, len(cpus) + 1) == []
    unpinned = replace(config, server=replace(config.server, pin_workers=False))
    assert worker_cpus(unpinned, 1) == []
