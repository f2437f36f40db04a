"""What one worker of `serve` may use of the limits the config sets for the whole node.

With `[server] workers` = N, every worker is a node of its own (lanes, connection
counters) on the same machine, its same sending IPs and the same remote sites, so the
lane limits are split between the workers, and their sum is the configured limit:
`[delivery] max_connections`, `max_per_minute`, `max_per_hour` and the same keys of
every `[[delivery.destination]]` (a site limited to 10 connections gets 5 from each of
2 workers). A share is `limit // N`, the remainder going one each to the first
workers. A limit smaller than N still gives every worker 1 (a lane that may never
open a connection would hold its mail forever): the node then allows up to N.
`limits_below_workers(config, N)` names those keys so that `serve` can say so at
start. 0 ("the default", "unlimited") stays 0. Port 25's connection caps are not
split but counted across the workers (mta/inbound/shared_limits.py): which worker
accepts a connection is the kernel's choice, so a share per worker would refuse at
random.
Each worker's node name is `<node name>/w<index>`: it owns its leases, and a worker
restarted under the same index takes back at once what the dead one held.
Submission (587/465) is served by worker 0 alone, whose per-mailbox rates and AUTH
throttle stay exact, so its session limits are not split.
Pure functions over a frozen `Config`; no I/O. Untrusted input: none.
"""

from __future__ import annotations

from dataclasses import replace

from postroom.config import Config

_LANE_KEYS = ("max_connections", "max_per_minute", "max_per_hour")


def share(limit: int, index: int, count: int) -> int:
    """Worker `index`'s part of `limit` (0 stays 0; never below 1 otherwise)."""
    if limit <= 0:
        return limit
    return max(1, limit // count + (1 if index < limit % count else 0))


def worker_config(config: Config, index: int, count: int) -> Config:
    """`config` as worker `index` of `count` applies it."""
    if count == 1:
        return config
    delivery = config.delivery
    split = {key: share(getattr(delivery, key), index, count) for key in _LANE_KEYS}
    destinations = tuple(
        replace(limits, **{key: share(getattr(limits, key), index, count) for key in _LANE_KEYS})
        for limits in delivery.destination
    )
    return replace(
        config,
        server=replace(config.server, node_name=worker_node_name(config.node_name, index)),
        delivery=replace(delivery, **split, destination=destinations),
    )


def worker_name_prefix(node_name: str) -> str:
    return f"{node_name}/w"


def worker_node_name(node_name: str, index: int) -> str:
    return f"{worker_name_prefix(node_name)}{index}"


def limits_below_workers(config: Config, count: int) -> list[str]:
    """The config keys whose limit is smaller than the worker count."""
    found = [
        f"delivery.{key} = {getattr(config.delivery, key)}"
        for key in _LANE_KEYS
        if 0 < getattr(config.delivery, key) < count
    ]
    for position, limits in enumerate(config.delivery.destination):
        found += [
            f"delivery.destination[{position}].{key} = {getattr(limits, key)}"
            for key in _LANE_KEYS
            if 0 < getattr(limits, key) < count
        ]
    return found
