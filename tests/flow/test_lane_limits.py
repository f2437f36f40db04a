"""Lane limits with per-destination overrides, observed at real sinks: a rate of
3 messages a minute to one site, and 2 messages per connection to another."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from tests.flow.conftest import World, start_postroom, with_token
from tests.flow.test_relay_flow import message, send, wait_token
from tests.peers.postroom import PostroomServer
from tests.peers.sinks import AiosmtpdSink

pytestmark = pytest.mark.flow

OVERRIDES = """
[[delivery.destination]]
match = "script.test"
max_per_minute = 3

[[delivery.destination]]
match = ".dest.test"
max_messages_per_connection = 2
"""


@pytest.fixture(scope="module")
def limited(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostroomServer]:
    server = start_postroom(tmp_path_factory.mktemp("limits"), world, extra=OVERRIDES)
    yield server
    server.stop()


def test_rate_limit_holds_messages_without_deferring_them(
    limited: PostroomServer, scripted_sink: AiosmtpdSink, token: str
) -> None:
    queue_ids = [
        send(
            limited,
            "app@src.test",
            ["user@script.test"],
            message(f"{token}{i}", to="user@script.test"),
        )
        for i in range(5)
    ]
    assert len(wait_token(scripted_sink, token, count=3)) == 3
    time.sleep(3)
    assert len(with_token(scripted_sink.messages(), token)) == 3  # the lane waits for the minute
    states = [limited.cli_json("queue", "show", q)["deliveries"][0] for q in queue_ids]
    waiting = [d for d in states if d["state"] != "delivered"]
    assert len(waiting) == 2
    assert all(d["state"] == "inflight" and d["attempts"] == 0 for d in waiting)


def test_messages_per_connection_limit_opens_new_connections(
    limited: PostroomServer, world: World, token: str
) -> None:
    # ".dest.test" matches the site by its MX host name, mx.dest.test.
    for index in range(6):
        send(limited, "app@src.test", ["user@dest.test"], message(f"{token}{index}"))
    got = wait_token(world.dest, token, count=6)
    assert len(got) == 6
    per_connection: dict[int | None, int] = {}
    for received in got:
        per_connection[received.peer_port] = per_connection.get(received.peer_port, 0) + 1
    assert max(per_connection.values()) <= 2
    assert len(per_connection) >= 3
