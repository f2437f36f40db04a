"""The loopback world shared by flow tests: a real DNS server and real sinks.

One NSD instance serves the `.test` zones below for the whole session. Sinks
listen on one common port (the `[delivery] port` of every postroom under test)
on distinct loopback addresses, which the zones name as MX hosts:

  127.0.0.10  dest.test, implicit.test (no MX), multi.test's second MX  (aiosmtpd sink)
  127.0.0.12  sender.test: where DSNs to our test senders arrive         (aiosmtpd sink)
  127.0.0.13  script.test: scripted replies (451 / 550 ...)              (aiosmtpd sink)
  127.0.0.14  crash.test: the crash-safety test's own sink
  127.0.0.15  tls.test: a sink offering STARTTLS (self-signed)
  127.0.0.30  multi.test's first MX and dead.test: nothing listens (connection refused)
  nullmx.test publishes a null MX (RFC 7505).

Sinks accumulate messages across tests; each test marks its own with a unique
token and filters on it. Tests that change the scripted sink's replies restore
them (the `scripted_sink` fixture does).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.peers.dns import NsdServer, make_zone
from tests.peers.postgres import PostgresServer
from tests.peers.postroom import PostroomServer, flow_config, free_tcp_port
from tests.peers.sinks import AiosmtpdSink, ReceivedMessage

DEST_IP = "127.0.0.10"
DSN_IP = "127.0.0.12"
SCRIPT_IP = "127.0.0.13"
CRASH_IP = "127.0.0.14"
TLS_IP = "127.0.0.15"
DEAD_IP = "127.0.0.30"

ZONES = {
    "dest.test": make_zone("dest.test", ["@ IN MX 10 mx.dest.test.", f"mx IN A {DEST_IP}"]),
    "implicit.test": make_zone("implicit.test", [f"@ IN A {DEST_IP}"]),
    "multi.test": make_zone(
        "multi.test",
        [
            "@ IN MX 10 mx1.multi.test.",
            "@ IN MX 20 mx2.multi.test.",
            f"mx1 IN A {DEAD_IP}",
            f"mx2 IN A {DEST_IP}",
        ],
    ),
    "sender.test": make_zone("sender.test", ["@ IN MX 10 mx.sender.test.", f"mx IN A {DSN_IP}"]),
    "script.test": make_zone("script.test", ["@ IN MX 10 mx.script.test.", f"mx IN A {SCRIPT_IP}"]),
    "nullmx.test": make_zone("nullmx.test", ["@ IN MX 0 ."]),
    "tls.test": make_zone("tls.test", ["@ IN MX 10 mx.tls.test.", f"mx IN A {TLS_IP}"]),
    "crash.test": make_zone("crash.test", ["@ IN MX 10 mx.crash.test.", f"mx IN A {CRASH_IP}"]),
    "dead.test": make_zone("dead.test", ["@ IN MX 10 mx.dead.test.", f"mx IN A {DEAD_IP}"]),
}


@dataclass
class World:
    nameserver: str
    sink_port: int
    dest: AiosmtpdSink
    dsn: AiosmtpdSink
    script: AiosmtpdSink


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    port = free_tcp_port(DEST_IP)
    with (
        NsdServer(ZONES) as nsd,
        AiosmtpdSink(DEST_IP, port, hostname="mx.dest.test") as dest,
        AiosmtpdSink(DSN_IP, port, hostname="mx.sender.test") as dsn,
        AiosmtpdSink(SCRIPT_IP, port, hostname="mx.script.test") as script,
    ):
        yield World(nsd.nameserver(), port, dest, dsn, script)


@pytest.fixture
def scripted_sink(world: World) -> Iterator[AiosmtpdSink]:
    world.script.set_script({})
    yield world.script
    world.script.set_script({})


@pytest.fixture
def token() -> str:
    return uuid.uuid4().hex[:12]


def with_token(messages: list[ReceivedMessage], token: str) -> list[ReceivedMessage]:
    return [message for message in messages if token.encode() in message.data]


def start_postroom(
    directory: Path, world: World, env: dict[str, str] | None = None, **config: Any
) -> PostroomServer:
    port = free_tcp_port()
    text = flow_config(
        state_dir=directory / "state",
        smtp_port=port,
        nameserver=world.nameserver,
        delivery_port=world.sink_port,
        **config,
    )
    return PostroomServer(directory, text, port, env).start()


POOLS = """
[[egress]]
name = "tx-1"
address = "127.0.0.2"
helo = "tx-1.relay.postroom.test"

[[egress]]
name = "bulk-1"
address = "127.0.0.3"
helo = "bulk-1.relay.postroom.test"

[[egress]]
name = "bulk-2"
address = "127.0.0.4"
helo = "bulk-2.relay.postroom.test"

[[pool]]
name = "transactional"
sources = ["tx-1"]

[[pool]]
name = "mailings"
sources = ["bulk-1"]

[[pool]]
name = "mailings-2"
sources = ["bulk-2"]
"""


@pytest.fixture(scope="module")
def relay(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostroomServer]:
    """A postroom with three pools, shared by a module's tests."""
    server = start_postroom(
        tmp_path_factory.mktemp("relay"),
        world,
        extra=POOLS + '\n[[delivery.rule]]\nsender_domain = "bulk.test"\npool = "mailings-2"\n',
        delivery='default_pool = "transactional"',
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the session's tests that run the same code on SQLite and
    PostgreSQL; each keeps to its own projects (names unique to the test module)."""
    with PostgresServer() as server:
        yield server
