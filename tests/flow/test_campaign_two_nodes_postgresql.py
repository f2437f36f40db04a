"""Two `serve` nodes on one PostgreSQL share a campaign: disjointly, and exactly once
through a kill -9 of one of them.

One fresh database on the session's PostgreSQL; a private NSD (news.test linked and
DKIM-published, dest.test's MX the session's sink); two `postroom serve` processes,
`[server] node_name` "node-a" and "node-b", each with its own state directory and
port but one appliance secret (the DKIM keys in the database are encrypted with
it). Each node's pool "mailings" is an egress source of its own (node-a 127.0.0.3,
node-b 127.0.0.4), as nodes on two machines have: a producing node stores its
deliveries leased to itself and hands them to its own delivery engine, so
`deliveries.source` (and the sink's peer address) says which node produced each
message. Campaigns are made and launched with the CLI, as an operator would.
- A campaign of SHARED_COUNT recipients: every recipient gets exactly one message at
  the sink, every recipient row is `queued` with one message, both nodes produced a
  share, and the campaign ends `sent`.
- kill -9 of node-b in the middle of a second campaign: node-a produces every row
  but those node-b held (a lease is LEASE_S = 300 s: they wait for their owner);
  node-b restarted returns its leases (rows and deliveries) and the campaign ends
  with exactly one queued message per recipient. At the sink each recipient has
  that one message: a delivery the kill cut may arrive twice, never a second one.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from email.parser import BytesHeaderParser
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from tests.flow.conftest import World, with_token
from tests.flow.linking import MAIL_HOST, ApplianceZones
from tests.flow.test_campaign_flow import (
    CAMPAIGN_CONFIG,
    LINKED,
    TO_SINK,
    add_hello_template,
    ready_to_send,
)
from tests.flow.test_campaign_send import _campaign, _launch, _status, _wait
from tests.peers.dns import NsdServer
from tests.peers.postgres import PostgresServer
from tests.peers.postroom import PostroomServer, flow_config, free_tcp_port

pytestmark = pytest.mark.flow

TOKEN = uuid.uuid4().hex[:12]
SOURCES = {"node-a": ("bulk-a", "127.0.0.3"), "node-b": ("bulk-b", "127.0.0.4")}
SHARED_COUNT = 2000
KILLED_COUNT = 2000
HTML = f"<p>Hello {{{{ contact.first_name }}}}!</p><p>{TOKEN}</p>"


def _extra(node: str, secret: Path) -> str:
    source, address = SOURCES[node]
    return (
        CAMPAIGN_CONFIG
        + f"""
[secrets]
key_file = "{secret}"

[campaign]
pool = "mailings"

[[egress]]
name = "{source}"
address = "{address}"
helo = "{source}.appliance.test"

[[pool]]
name = "mailings"
sources = ["{source}"]
"""
    )


@pytest.fixture(scope="module")
def zones() -> ApplianceZones:
    zones = ApplianceZones()
    zones.records.update({"dest.test": TO_SINK, LINKED: []})
    return zones


@pytest.fixture(scope="module")
def nsd(zones: ApplianceZones) -> Iterator[NsdServer]:
    with NsdServer(zones.texts()) as server:
        yield server


@pytest.fixture(scope="module")
def database_url(postgres_server: PostgresServer) -> str:
    return postgres_server.new_database("twonodes")


@pytest.fixture(scope="module")
def database(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def nodes(
    tmp_path_factory: pytest.TempPathFactory,
    nsd: NsdServer,
    zones: ApplianceZones,
    world: World,
    database_url: str,
) -> Iterator[dict[str, PostroomServer]]:
    """node-a and node-b serving from one database; acme ready to send, template "hello"."""
    directory = tmp_path_factory.mktemp("two-nodes")
    servers = {}
    for node in SOURCES:
        port = free_tcp_port()
        config = flow_config(
            state_dir=directory / node / "state",
            smtp_port=port,
            nameserver=nsd.nameserver(),
            delivery_port=world.sink_port,
            hostname=MAIL_HOST,
            database_url=database_url,
            node_name=node,
            extra=_extra(node, directory / "secret.key"),
        )
        servers[node] = PostroomServer(directory / node, config, port)
    first = servers["node-a"]
    try:
        first.start()  # alone: it migrates the database and makes the secret
        ready_to_send(first, nsd, zones, world)
        add_hello_template(first, HTML)
        servers["node-b"].start()
        yield servers
    finally:
        for server in servers.values():
            try:
                server.stop()
            finally:
                server.kill()


def _addresses(prefix: str, count: int) -> list[str]:
    # The form test_campaign_send's `_campaign` reads first names from: PREFIX<number>-...
    return [f"{prefix}{index:05d}-{TOKEN}@dest.test" for index in range(count)]


def _recipient_states(database: Engine, campaign_id: int) -> Counter[str]:
    with database.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT state, count(*) FROM campaign_recipients WHERE campaign_id = :id "
                "GROUP BY state"
            ),
            {"id": campaign_id},
        )
        return Counter({state: count for state, count in rows})


def _only_rows_of(database: Engine, campaign_id: int, node: str) -> bool:
    """Whether every pending row of the campaign is one `node` holds leased."""
    with database.connect() as conn:
        others = conn.execute(
            text(
                "SELECT count(*) FROM campaign_recipients WHERE campaign_id = :id "
                "AND state = 'pending' AND lease_owner IS DISTINCT FROM :node"
            ),
            {"id": campaign_id, "node": node},
        ).scalar_one()
    return others == 0


def _delivered_per_source(database: Engine, campaign_id: int) -> Counter[str]:
    """The campaign's deliveries done so far, by egress source (= the producing node)."""
    with database.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT d.source, count(*) FROM deliveries d JOIN campaign_recipients r "
                "ON r.message_id = d.message_id WHERE r.campaign_id = :id "
                "AND d.state = 'delivered' GROUP BY d.source"
            ),
            {"id": campaign_id},
        )
        return Counter({source: count for source, count in rows})


def _assert_queued_once_each(database: Engine, campaign_id: int, addresses: list[str]) -> None:
    """Every recipient row holds one message of one delivery to its address, and no
    other delivery went to these addresses (no message of a rolled-back row)."""
    with database.connect() as conn:
        per_row = conn.execute(
            text(
                "SELECT r.address, count(d.id) FROM campaign_recipients r "
                "LEFT JOIN deliveries d ON d.message_id = r.message_id "
                "AND d.recipient = r.address WHERE r.campaign_id = :id GROUP BY r.id, r.address"
            ),
            {"id": campaign_id},
        ).all()
        to_these = conn.execute(
            text("SELECT count(*) FROM deliveries WHERE recipient = ANY(:addresses)"),
            {"addresses": addresses},
        ).scalar_one()
    assert sorted(tuple(row) for row in per_row) == [(address, 1) for address in sorted(addresses)]
    assert to_these == len(addresses)


def _at_sink(world: World, prefix: str) -> list:  # type: ignore[type-arg]
    return [
        message
        for message in with_token(world.dest.messages(), TOKEN)
        if message.rcpt_tos and message.rcpt_tos[0].startswith(prefix)
    ]


def _message_ids_by_recipient(world: World, prefix: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for message in _at_sink(world, prefix):
        headers = BytesHeaderParser().parsebytes(message.data)
        found.setdefault(message.rcpt_tos[0], set()).add(str(headers["Message-ID"]))
    return found


def _sent_and_delivered(server: PostroomServer, campaign_id: int, count: int) -> bool:
    status = _status(server, campaign_id)
    return status["state"] == "sent" and status["delivered"] == count


def test_two_nodes_share_a_campaign_each_recipient_once(
    nodes: dict[str, PostroomServer], database: Engine, world: World
) -> None:
    addresses = _addresses("n", SHARED_COUNT)
    campaign_id = _campaign(nodes["node-a"], "shared", addresses)
    assert _launch(nodes["node-a"], campaign_id)["audience"] == SHARED_COUNT
    _wait(
        lambda: _sent_and_delivered(nodes["node-b"], campaign_id, SHARED_COUNT),
        60,
        "the campaign sent and delivered",
    )
    assert _recipient_states(database, campaign_id) == {"queued": SHARED_COUNT}
    _assert_queued_once_each(database, campaign_id, addresses)
    received = _at_sink(world, "n")
    assert Counter(message.rcpt_tos[0] for message in received) == Counter(addresses)
    # Both produced a share, each delivered from its own source what it produced.
    per_source = _delivered_per_source(database, campaign_id)
    share_a, share_b = (per_source[source] for source, _ in SOURCES.values())
    assert share_a > 0 and share_b > 0 and share_a + share_b == SHARED_COUNT, per_source
    from_address = Counter(message.peer_ip for message in received)
    assert from_address == {address: per_source[source] for source, address in SOURCES.values()}


def test_kill_9_of_one_node_mid_campaign_the_other_and_its_restart_finish_it_once(
    nodes: dict[str, PostroomServer], database: Engine, world: World
) -> None:
    survivor, killed = nodes["node-a"], nodes["node-b"]
    addresses = _addresses("k", KILLED_COUNT)
    campaign_id = _campaign(survivor, "killed", addresses)
    _launch(survivor, campaign_id)
    _wait(
        lambda: len(_delivered_per_source(database, campaign_id)) == len(SOURCES),
        60,
        "both nodes producing",
    )
    killed.kill()  # SIGKILL: its claimed rows and in-flight deliveries stay leased to it
    assert _recipient_states(database, campaign_id)["pending"] > 0, "finished before the kill"
    _wait(
        lambda: _only_rows_of(database, campaign_id, "node-b"),
        60,
        "node-a to produce every row but those node-b held",
    )
    killed.start()  # it returns its leases: rows to claim again, deliveries to send again
    _wait(
        lambda: _sent_and_delivered(survivor, campaign_id, KILLED_COUNT),
        60,
        "the campaign sent and delivered",
    )
    assert _recipient_states(database, campaign_id) == {"queued": KILLED_COUNT}
    _assert_queued_once_each(database, campaign_id, addresses)
    copies = _message_ids_by_recipient(world, "k")
    assert {address: len(ids) for address, ids in copies.items()} == dict.fromkeys(addresses, 1)
