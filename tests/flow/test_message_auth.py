"""Message authentication through `postroom serve`: DKIM-signed mail out, checked mail in.

One postroom with a linked domain (shop.test, RSA and Ed25519 keys) whose DNS
is exactly what `postroom domain dns --format bind` prints, served by a private
NSD together with the domains of outside senders:

* **Out.** A relay client sends From: orders@shop.test to far.test, whose MX is
  an aiosmtpd sink. The message arrives with two DKIM signatures (RSA and
  Ed25519) that verify against the published keys, and running our own inbound
  checks on what the sink received — from the egress address, as a receiver
  would — gives SPF pass (through the published include), DKIM pass and DMARC
  pass: the generated zone makes our mail authenticate.
* **In.** From outside the relay network: good.test (SPF lists the sender,
  p=reject) is stored with our Authentication-Results on top and a forged one
  claiming our authserv-id removed; the same From from an unlisted address is
  refused 550 5.7.1; p=quarantine and a bare SPF fail land in the Junk folder;
  a DKIM signature aligned with the From domain passes DMARC despite SPF
  failing; a domain whose DNS cannot be reached gets 451 4.7.24.
* `postroom auth check` prints the same verdicts for a saved message.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.flow.linking import (
    EGRESS,
    MAIL_HOST,
    MAIL_IP,
    ApplianceZones,
    link_domain,
    publish_generated,
)
from tests.peers.dns import NsdServer
from tests.peers.postroom import PostroomServer, flow_config, free_tcp_port
from tests.peers.sinks import AiosmtpdSink, ReceivedMessage

from postroom.core.dns import Resolver
from postroom.mailbox.dkim_keys import KeyAlgorithm, dkim_txt_value, generate_key
from postroom.mta.checks.dkim import DkimResult
from postroom.mta.checks.lookup import BlockingLookup
from postroom.mta.checks.pipeline import AuthVerdicts, run_checks
from postroom.mta.signing.dkim import SigningKey, load_private_key, parse_message, sign_headers

SINK_IP = "127.0.0.80"
LISTED_IP = "127.0.0.81"  # in the outside senders' SPF records
UNLISTED_IP = "127.0.0.82"
EGRESS_IP = "127.0.0.2"  # tests.flow.linking.EGRESS
PASSWORD = "velvet-lantern-orchard-17"
REMOTE_SELECTOR = "remote"


@dataclass
class World:
    postroom: PostroomServer
    nsd: NsdServer
    sink: AiosmtpdSink
    mail_root: Path
    remote_key: SigningKey


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    remote = generate_key(KeyAlgorithm.RSA)
    remote_key = SigningKey(
        "signer.test",
        REMOTE_SELECTOR,
        KeyAlgorithm.RSA,
        load_private_key(KeyAlgorithm.RSA, remote.private_pem),
    )
    remote_txt = dkim_txt_value(KeyAlgorithm.RSA, remote.public_b64)
    zones = ApplianceZones()
    spf = f'@ IN TXT "v=spf1 ip4:{LISTED_IP} -all"'
    zones.records.update(
        {
            "shop.test": [],
            "far.test": ["@ IN MX 10 mx.far.test.", f"mx IN A {SINK_IP}"],
            "good.test": [spf, '_dmarc IN TXT "v=DMARC1; p=reject"'],
            "quar.test": [spf, '_dmarc IN TXT "v=DMARC1; p=quarantine"'],
            "nodmarc.test": [spf],
            "signer.test": [
                '@ IN TXT "v=spf1 -all"',
                '_dmarc IN TXT "v=DMARC1; p=reject"',
                f"{REMOTE_SELECTOR}._domainkey IN TXT "
                + " ".join(f'"{remote_txt[i : i + 255]}"' for i in range(0, len(remote_txt), 255)),
            ],
        }
    )
    directory = tmp_path_factory.mktemp("auth")
    sink_port = free_tcp_port(SINK_IP)
    with (
        NsdServer(zones.texts()) as nsd,
        AiosmtpdSink(SINK_IP, sink_port, hostname="mx.far.test") as sink,
    ):
        port = free_tcp_port()
        text = flow_config(
            state_dir=directory / "state",
            smtp_port=port,
            nameserver=nsd.nameserver(),
            delivery_port=sink_port,
            relay_networks=("127.0.0.1/32",),
            hostname=MAIL_HOST,
            extra=EGRESS + '\n[dkim]\nalgorithms = ["rsa", "ed25519"]\n',
        ).replace('timeout = "2s"', 'timeout = "1s"\ncache_max_ttl = "0s"')
        with PostroomServer(directory, text, port) as postroom:
            postroom.cli("project", "add", "acme")
            link_domain(postroom, nsd, zones, "shop.test")
            publish_generated(postroom, nsd, zones, "shop.test")
            zones.publish(nsd, MAIL_HOST.partition(".")[2], self_records(postroom))
            postroom.cli("mailbox", "add", "alice@shop.test", "--password-stdin", stdin=PASSWORD)
            yield World(postroom, nsd, sink, directory / "state" / "mail", remote_key)


def self_records(postroom: PostroomServer) -> list[str]:
    """The appliance zone: its host, plus what `postroom dns self` says to publish."""
    printed = postroom.cli("dns", "self", "--format", "bind").stdout.splitlines()
    # PTR records belong to the reverse zone of the IP's provider, not to ours.
    return [f"mail IN A {MAIL_IP}", *(line for line in printed if ".in-addr.arpa." not in line)]


def message(sender: str, token: str, extra_headers: str = "") -> bytes:
    return (
        f"{extra_headers}From: Sender <{sender}>\r\nTo: alice@shop.test\r\n"
        f"Subject: {token}\r\nMessage-ID: <{token}@test>\r\n"
        f"Date: Fri, 27 Nov 2026 08:00:00 +0000\r\n\r\nhello {token}\r\n"
    ).encode()


def send(world: World, source: str, sender: str, rcpt: str, data: bytes) -> tuple[int, str]:
    with smtplib.SMTP(
        "127.0.0.1", world.postroom.smtp_port, source_address=(source, 0), timeout=15
    ) as client:
        client.ehlo("client.test")
        client.mail(sender)
        code, text = client.rcpt(rcpt)
        assert code == 250, text
        code, text = client.data(data)
    return code, text.decode()


def stored(world: World, token: str, folder: str = "") -> list[bytes]:
    new = world.mail_root / "shop.test" / "alice" / folder / "new"
    files = sorted(new.iterdir()) if new.is_dir() else []
    return [data for data in (f.read_bytes() for f in files) if token.encode() in data]


def verdicts_for(world: World, data: bytes, *, client_ip: str, helo: str, mail_from: str):  # type: ignore[no-untyped-def]
    async def run() -> AuthVerdicts:
        host, _, port = world.nsd.nameserver().rpartition(":")
        lookup = BlockingLookup(
            Resolver([(host, int(port))], timeout_s=2), asyncio.get_running_loop()
        )
        return await asyncio.to_thread(
            run_checks, lookup, data, client_ip=client_ip, helo=helo, mail_from=mail_from
        )

    return asyncio.run(run())


def wait_for(sink: AiosmtpdSink, token: str) -> ReceivedMessage:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for received in sink.messages():
            if token.encode() in received.data:
                return received
        time.sleep(0.1)
    raise AssertionError("the sink did not receive the message")


def test_outgoing_mail_is_signed_and_authenticates_at_the_receiver(world: World) -> None:
    token = uuid.uuid4().hex
    data = message("orders@shop.test", token).replace(b"To: alice@shop.test", b"To: c@far.test")
    with smtplib.SMTP("127.0.0.1", world.postroom.smtp_port, timeout=15) as client:
        client.sendmail("orders@shop.test", ["c@far.test"], data)
    received = wait_for(world.sink, token)
    assert received.peer_ip == EGRESS_IP
    verdicts = verdicts_for(
        world,
        received.data,
        client_ip=EGRESS_IP,
        helo=received.helo or "",
        mail_from=received.mail_from,
    )
    keys = world.postroom.cli_json("domain", "dkim", "list", "shop.test")
    active = {key["selector"] for key in keys if key["state"] == "active"}
    assert [(v.result, v.domain) for v in verdicts.dkim] == [
        (DkimResult.PASS, "shop.test"),
        (DkimResult.PASS, "shop.test"),
    ], verdicts.dkim
    assert {v.selector for v in verdicts.dkim} == active
    assert [v.algorithm for v in verdicts.dkim] == ["rsa-sha256", "ed25519-sha256"]
    assert verdicts.spf.mail_from.result.value == "pass", verdicts.spf
    assert (verdicts.dmarc.result.value, verdicts.dmarc.dkim_aligned) == ("pass", True)


def test_a_passing_message_is_stamped_and_forged_results_removed(world: World) -> None:
    token = uuid.uuid4().hex
    forged = (
        f"Authentication-Results: {MAIL_HOST.upper()}; dkim=pass header.d=good.test\r\n"
        "Authentication-Results: (comment) mail.appliance.test;\r\n dmarc=pass\r\n"
        "Authentication-Results: mx.elsewhere.test; spf=fail\r\n"
    )
    code, text = send(
        world,
        LISTED_IP,
        "news@good.test",
        "alice@shop.test",
        message("news@good.test", token, forged),
    )
    assert code == 250, text
    (data,) = stored(world, token)
    header = data.split(b"\r\n\r\n", 1)[0].decode()
    assert header.startswith(
        f"Return-Path: <news@good.test>\r\nAuthentication-Results: {MAIL_HOST};"
    ), header
    assert header.count(MAIL_HOST) == 2  # ours and our Received; the two forged ones are gone
    assert "mx.elsewhere.test; spf=fail" in header  # another host's results stay
    ours = header.split("Authentication-Results: ", 2)[1]
    assert "spf=pass" in ours and "dmarc=pass" in ours and "dkim=none" in ours


def test_dmarc_reject_refuses_a_forged_from(world: World) -> None:
    token = uuid.uuid4().hex
    code, text = send(
        world, UNLISTED_IP, "news@good.test", "alice@shop.test", message("news@good.test", token)
    )
    assert (code, text[:5]) == (550, "5.7.1"), text
    assert "DMARC" in text
    assert stored(world, token) == [] and stored(world, token, ".Junk") == []


@pytest.mark.parametrize("domain", ["quar.test", "nodmarc.test"])
def test_quarantine_and_bare_spf_fail_go_to_junk(world: World, domain: str) -> None:
    token = uuid.uuid4().hex
    code, text = send(
        world, UNLISTED_IP, f"news@{domain}", "alice@shop.test", message(f"news@{domain}", token)
    )
    assert code == 250, text
    assert stored(world, token) == []
    (data,) = stored(world, token, ".Junk")
    assert b"spf=fail" in data
    assert (world.mail_root / "shop.test" / "alice" / ".Junk" / "maildirfolder").exists()


def test_an_aligned_dkim_signature_passes_dmarc_despite_spf(world: World) -> None:
    token = uuid.uuid4().hex
    data = message("news@signer.test", token)
    headers, body = parse_message(data)
    signed = sign_headers(headers, body, [world.remote_key]) + data
    code, text = send(world, UNLISTED_IP, "news@signer.test", "alice@shop.test", signed)
    assert code == 250, text
    (stored_data,) = stored(world, token)
    header = stored_data.split(b"\r\n\r\n", 1)[0]
    assert b"spf=fail" in header and b"dkim=pass" in header and b"dmarc=pass" in header
    altered = signed.replace(f"hello {token}".encode(), f"hello {token}!".encode())
    code, text = send(world, UNLISTED_IP, "news@signer.test", "alice@shop.test", altered)
    assert (code, text[:5]) == (550, "5.7.1"), text


def test_dns_trouble_defers(world: World) -> None:
    # unserved.test is in no zone NSD serves: it answers REFUSED, a temporary failure.
    token = uuid.uuid4().hex
    code, text = send(
        world, LISTED_IP, "a@unserved.test", "alice@shop.test", message("a@unserved.test", token)
    )
    assert (code, text[:6]) == (451, "4.7.24"), text
    assert stored(world, token) == []


def test_auth_check_prints_the_verdicts(world: World, tmp_path: Path) -> None:
    eml = tmp_path / "saved.eml"
    # A saved file with LF line ends, as mail clients export them.
    eml.write_bytes(message("news@good.test", "cli").replace(b"\r\n", b"\n"))
    common = ("auth", "check", str(eml), "--helo", "client.test", "--mail-from", "news@good.test")
    refused = world.postroom.cli(*common, "--client-ip", UNLISTED_IP, "--json", check=False)
    assert refused.returncode == 1, refused.stderr
    found = json.loads(refused.stdout)
    assert (found["spf"]["mailfrom"]["result"], found["dmarc"]["result"]) == ("fail", "fail")
    assert (found["action"], found["reply"][:9]) == ("reject", "550 5.7.1")
    assert found["authentication_results"].startswith(f"Authentication-Results: {MAIL_HOST};")
    accepted = world.postroom.cli(*common, "--client-ip", LISTED_IP, check=False)
    assert accepted.returncode == 0, accepted.stderr
    table = accepted.stdout.split("Authentication-Results:")[0].splitlines()
    rows = {line.split()[0]: line.split()[1] for line in table}
    assert (rows["CHECK"], rows["dmarc"], rows["action"]) == ("RESULT", "pass", "accept")
    missing = world.postroom.cli(
        "auth",
        "check",
        str(tmp_path / "nope.eml"),
        "--client-ip",
        LISTED_IP,
        "--helo",
        "x",
        "--mail-from",
        "",
        check=False,
    )
    assert missing.returncode == 2
    assert missing.stderr.endswith("nope.eml: cannot read: No such file or directory\n")
