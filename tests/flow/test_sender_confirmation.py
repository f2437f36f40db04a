"""Sender confirmation end to end: `postroom sender ...` against a real `postroom serve`.

A private NSD serves dest.test and strict.test (MX: the session's aiosmtpd sink
`world.dest`; strict.test publishes DMARC p=reject) and bots.test, which project
acme links and verifies here and whose MX is that sink as well. The CLI queues the
code mail; serve's delivery engine takes it to the sink from the transactional
pool's source. A wrong code is refused (exit 2) and counted, the right one
confirms; a code from a config whose `[campaign] code_lifetime` is one second is
refused once expired, until `resend-code`; a send-only domain with p=reject is
warned about at `add`; a two-way sender's code mail is DKIM-signed by its domain.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.flow.conftest import DEST_IP, World
from tests.flow.linking import MAIL_HOST, ApplianceZones, link_domain
from tests.flow.test_relay_flow import wait_token
from tests.peers.dns import NsdServer
from tests.peers.postroom import PostroomServer, flow_config, free_tcp_port
from tests.peers.sinks import ReceivedMessage

from postroom.core.dns import Resolver
from postroom.mta.checks.dkim import DkimResult, verify_dkim
from postroom.mta.checks.lookup import BlockingLookup

pytestmark = pytest.mark.flow

TRANSACTIONAL_IP = "127.0.0.2"
POOLS = f"""
[[egress]]
name = "tx-1"
address = "{TRANSACTIONAL_IP}"
helo = "tx-1.appliance.test"

[[pool]]
name = "transactional"
sources = ["tx-1"]
"""
TO_SINK = ["@ IN MX 10 mx", f"mx IN A {DEST_IP}"]
LINKED = "bots.test"


@pytest.fixture(scope="module")
def zones() -> ApplianceZones:
    zones = ApplianceZones()
    zones.records.update(
        {
            "dest.test": TO_SINK,
            "strict.test": [*TO_SINK, '_dmarc IN TXT "v=DMARC1; p=reject"'],
            LINKED: [],
        }
    )
    return zones


@pytest.fixture(scope="module")
def nsd(zones: ApplianceZones) -> Iterator[NsdServer]:
    with NsdServer(zones.texts()) as server:
        yield server


def config_text(
    directory: Path, nsd: NsdServer, world: World, smtp_port: int, campaign: str
) -> str:
    return flow_config(
        state_dir=directory / "state",
        smtp_port=smtp_port,
        nameserver=nsd.nameserver(),
        delivery_port=world.sink_port,
        hostname=MAIL_HOST,
        delivery='default_pool = "transactional"',
        extra=POOLS + f"\n[campaign]\n{campaign}\n",
    )


@pytest.fixture(scope="module")
def postroom(
    tmp_path_factory: pytest.TempPathFactory, nsd: NsdServer, world: World
) -> Iterator[PostroomServer]:
    directory = tmp_path_factory.mktemp("senders")
    port = free_tcp_port()
    text = config_text(directory, nsd, world, port, 'code_lifetime = "24h"')
    with PostroomServer(directory, text, port) as server:
        server.cli("project", "add", "acme")
        yield server


@pytest.fixture(scope="module")
def short_lived(postroom: PostroomServer, nsd: NsdServer, world: World) -> PostroomServer:
    """The same state and database, with codes that live one second (CLI use only)."""
    directory = postroom.directory / "short"
    text = config_text(postroom.directory, nsd, world, postroom.smtp_port, 'code_lifetime = "1s"')
    return PostroomServer(directory, text, 0)


def code_mail(world: World, address: str, count: int = 1) -> ReceivedMessage:
    """The latest of `count` code mails to `address` at the sink."""
    received = [m for m in wait_token(world.dest, address, count) if address in m.rcpt_tos]
    assert len(received) >= count, f"no code mail to {address} arrived"
    return received[-1]


def subject_code(message: ReceivedMessage) -> tuple[str, email.message.EmailMessage]:
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    found = re.fullmatch(r"(\d{6}) is your sender confirmation code", str(parsed["Subject"]))
    assert found is not None, parsed["Subject"]
    return found.group(1), parsed  # type: ignore[return-value]


def code_mail_delivered(server: PostroomServer, address: str, timeout_s: float = 30) -> dict:
    """`sender show --json` once the code mail is delivered (serve records the outcome
    just after the sink has the message)."""
    deadline = time.monotonic() + timeout_s
    while True:
        shown = server.cli_json("sender", "show", address, "--project", "acme")
        if shown["code_mail"]["state"] == "delivered" or time.monotonic() > deadline:
            assert shown["code_mail"]["state"] == "delivered", shown["code_mail"]
            return shown
        time.sleep(0.2)


def sender_json(server: PostroomServer, address: str) -> dict:
    [found] = [
        s for s in server.cli_json("sender", "list", "--project", "acme") if s["address"] == address
    ]
    return found


def test_the_mailed_code_confirms_and_a_wrong_one_is_refused_and_counted(
    postroom: PostroomServer, world: World
) -> None:
    address = f"bot-{uuid.uuid4().hex[:10]}@dest.test"
    added = postroom.cli("sender", "add", address, "--project", "acme", "--name", "Bot")
    assert "unconfirmed" in added.stdout
    received = code_mail(world, address)
    assert received.mail_from == "<>" and received.peer_ip == TRANSACTIONAL_IP
    code, parsed = subject_code(received)
    assert parsed["From"].addresses[0].addr_spec == f"postmaster@{MAIL_HOST}"
    assert code in parsed.get_body(("plain",)).get_content()

    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    refused = postroom.cli("sender", "confirm", address, wrong, check=False)
    assert refused.returncode == 2
    assert refused.stderr == f"postroom: wrong code for {address}: 4 tries left\n"
    shown = code_mail_delivered(postroom, address)
    assert shown["state"] == "unconfirmed" and shown["code"]["failures"] == 1
    assert "250 2.0.0" in shown["code_mail"]["last_reply"]

    postroom.cli("sender", "confirm", address, code)
    listed = sender_json(postroom, address)
    assert (listed["state"], listed["mode"], listed["name"]) == ("confirmed", "send-only", "Bot")
    assert listed["confirmed_at"] >= listed["created_at"]


def test_an_expired_code_is_refused_until_a_new_one_is_sent(
    postroom: PostroomServer, short_lived: PostroomServer, world: World
) -> None:
    address = f"late-{uuid.uuid4().hex[:10]}@dest.test"
    short_lived.cli("sender", "add", address, "--project", "acme")
    added_at = time.time()
    code, _ = subject_code(code_mail(world, address))
    time.sleep(max(0.0, added_at + 1.5 - time.time()))
    expired = postroom.cli("sender", "confirm", address, code, check=False)
    assert expired.returncode == 2
    assert "has expired: request a new one with `postroom sender resend-code" in expired.stderr
    assert sender_json(postroom, address)["state"] == "unconfirmed"

    postroom.cli("sender", "resend-code", address, "--project", "acme")
    new_code, _ = subject_code(code_mail(world, address, count=2))
    postroom.cli("sender", "confirm", address, new_code, "--project", "acme")
    assert sender_json(postroom, address)["state"] == "confirmed"


def test_a_send_only_domain_publishing_p_reject_is_warned_about(
    postroom: PostroomServer, world: World
) -> None:
    address = f"promo-{uuid.uuid4().hex[:10]}@strict.test"
    added = postroom.cli("sender", "add", address, "--project", "acme")
    assert added.stderr == (
        "postroom: warning: strict.test publishes DMARC policy reject (_dmarc.strict.test) "
        "and postroom cannot sign for it: receivers will reject its mail\n"
    )
    shown = postroom.cli_json("sender", "show", address, "--project", "acme")
    assert shown["mode"] == "send-only" and "reject its mail" in shown["dmarc"]["risk"]
    assert code_mail(world, address)  # the code still goes out: the warning is no refusal


def test_a_two_way_senders_code_mail_is_signed_by_its_domain(
    postroom: PostroomServer, nsd: NsdServer, zones: ApplianceZones, world: World
) -> None:
    proof = link_domain(postroom, nsd, zones, LINKED)
    generated = postroom.cli("domain", "dns", LINKED, "--format", "bind").stdout.splitlines()
    # The domain's own records (DKIM key, SPF, DMARC), but its MX is the sink, not us.
    kept = [line for line in generated if " MX " not in line]
    zones.publish(nsd, LINKED, [*kept, f'@ IN TXT "{proof}"', *TO_SINK])
    address = f"news-{uuid.uuid4().hex[:10]}@{LINKED}"
    postroom.cli("mailbox", "add", address, "--password-stdin", stdin="copper-meadow-lantern-61")

    postroom.cli("sender", "add", address, "--project", "acme", "--name", "Bots News")
    received = code_mail(world, address)
    _, parsed = subject_code(received)
    assert str(parsed["From"]) == f"Bots News <{address}>"

    async def verify() -> list:
        host, _, port = nsd.nameserver().rpartition(":")
        lookup = BlockingLookup(Resolver([(host, int(port))]), asyncio.get_running_loop())
        return await asyncio.to_thread(verify_dkim, lookup, received.data)

    verdicts = asyncio.run(verify())
    assert [(v.result, v.domain) for v in verdicts] == [(DkimResult.PASS, LINKED)]
    shown = postroom.cli_json("sender", "show", address, "--project", "acme")
    assert shown["mode"] == "two-way" and shown["dmarc"] is None
    assert shown["replies"] == f"replies land in the mailbox {address}"
