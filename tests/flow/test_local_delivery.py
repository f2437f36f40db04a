"""Mail for linked domains lands in Maildirs that a real Dovecot serves over IMAP.

One postroom (`serve`) and one private Dovecot share a mail root and the
passwd-file postroom keeps; a private NSD serves the domains' proofs. Clients
connect from 127.0.0.50, outside the relay network (127.0.0.1/32), as the
internet would: mail for mailboxes, aliases and catch-alls is accepted, unknown
local users get 550 5.1.1, everything else 554 5.7.1, quotas 452 4.2.2 / 552 5.2.2.
"""

from __future__ import annotations

import imaplib
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
    ApplianceZones,
    link_domain,
    publish_generated,
)
from tests.peers.dns import NsdServer, make_zone
from tests.peers.dovecot import DovecotServer
from tests.peers.postroom import PostroomServer, flow_config, free_tcp_port

OUTSIDE_IP = "127.0.0.50"
PASSWORD = "tulip-harbour-42-lantern"
QUOTA_BYTES = 8192


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    with DovecotServer() as server:
        yield server


@dataclass
class Appliance:
    postroom: PostroomServer
    nsd: NsdServer
    zones: ApplianceZones


@pytest.fixture(scope="module")
def appliance(
    tmp_path_factory: pytest.TempPathFactory, dovecot: DovecotServer
) -> Iterator[Appliance]:
    zones = ApplianceZones()
    texts = {
        **zones.texts(),
        **{name: make_zone(name, []) for name in ("shop.test", "catchall.test")},
    }
    zones.records.update({"shop.test": [], "catchall.test": []})
    # The senders' domain: its mail comes from OUTSIDE_IP, which its SPF lists.
    zones.records["customer.test"] = [f'@ IN TXT "v=spf1 ip4:{OUTSIDE_IP} -all"']
    texts.update(zones.texts())
    directory = tmp_path_factory.mktemp("local")
    with NsdServer(texts) as nsd:
        port = free_tcp_port()
        text = flow_config(
            state_dir=directory / "state",
            smtp_port=port,
            nameserver=nsd.nameserver(),
            delivery_port=25,
            relay_networks=("127.0.0.1/32",),
            hostname=MAIL_HOST,
            extra=EGRESS
            + f'\n[mailbox]\nroot = "{dovecot.mail_root}"\n'
            + f'dovecot_passwd_file = "{dovecot.passwd_file}"\n'
            # The rotation worker runs every second; the resolver must not keep
            # the "no such selector" answer for the zone's 60 s negative TTL.
            + '\n[dkim]\ncheck_interval = "1s"\n',
        ).replace('timeout = "2s"', 'timeout = "2s"\ncache_max_ttl = "0s"')
        with PostroomServer(directory, text, port) as postroom:
            postroom.cli("project", "add", "acme")
            link_domain(postroom, nsd, zones, "shop.test")
            link_domain(postroom, nsd, zones, "catchall.test")
            for address, quota in (("alice@shop.test", "0"), ("bob@shop.test", "8KiB")):
                postroom.cli(
                    "mailbox", "add", address, "--quota", quota, "--password-stdin", stdin=PASSWORD
                )
            postroom.cli("alias", "add", "Sales@Shop.test", "alice@shop.test")
            postroom.cli("alias", "add", "@catchall.test", "alice@shop.test")
            yield Appliance(postroom, nsd, zones)


@pytest.fixture(scope="module")
def server(appliance: Appliance) -> PostroomServer:
    return appliance.postroom


def message(token: str, size: int = 0) -> bytes:
    head = (
        f"From: Carol <carol@customer.test>\r\nTo: someone\r\nSubject: {token}\r\n"
        f"Message-ID: <{token}@customer.test>\r\n\r\nhello {token}\r\n"
    ).encode()
    padding = b"".join(b"x" * 70 + b"\r\n" for _ in range(max(0, size - len(head)) // 72))
    return head + padding


def send(server: PostroomServer, rcpts: list[str], body: bytes, *, source: str = OUTSIDE_IP):
    """(code, text) of each RCPT and of DATA; DATA only when a RCPT was accepted."""
    results = []
    with smtplib.SMTP("127.0.0.1", server.smtp_port, source_address=(source, 0), timeout=10) as c:
        c.ehlo("customer.test")
        c.mail("carol@customer.test")
        accepted = 0
        for rcpt in rcpts:
            code, text = c.rcpt(rcpt)
            results.append((code, text.decode()))
            accepted += code == 250
        if accepted:
            code, text = c.data(body)
            results.append((code, text.decode()))
    return results


def maildir_files(root: Path, address: str) -> list[Path]:
    local, _, domain = address.partition("@")
    new = root / domain / local / "new"
    return sorted(new.iterdir()) if new.is_dir() else []


def with_token(files: list[Path], token: str) -> list[bytes]:
    return [data for data in (f.read_bytes() for f in files) if token.encode() in data]


def test_mail_for_a_mailbox_is_stored_and_served_by_dovecot(
    server: PostroomServer, dovecot: DovecotServer
) -> None:
    token = uuid.uuid4().hex
    replies = send(server, ["Alice@SHOP.test"], message(token))
    assert replies[0][0] == 250 and replies[-1][0] == 250, replies
    (stored,) = with_token(maildir_files(dovecot.mail_root, "alice@shop.test"), token)
    assert stored.startswith(
        b"Return-Path: <carol@customer.test>\r\n"
        b"Authentication-Results: mail.appliance.test;\r\n\tspf=pass"
    ), stored[:300]
    assert b"\r\nReceived: from customer.test" in stored
    name = maildir_files(dovecot.mail_root, "alice@shop.test")[-1].name
    assert f",S={len(stored)}" in name  # the Maildir++ size Dovecot trusts

    dovecot.hand_over(dovecot.mail_root / "shop.test")
    imap = imaplib.IMAP4(dovecot.address, dovecot.port, timeout=5)
    try:
        assert imap.login("alice@shop.test", PASSWORD)[0] == "OK", dovecot.log()
        assert imap.select("INBOX")[0] == "OK"
        _, data = imap.search(None, "SUBJECT", token)
        (number,) = data[0].split()
        _, fetched = imap.fetch(number, "(BODY.PEEK[])")
        assert fetched[0][1] == stored
    finally:
        imap.logout()
    imap = imaplib.IMAP4(dovecot.address, dovecot.port, timeout=5)
    try:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap.login("alice@shop.test", "not-the-password-at-all")
    finally:
        imap.shutdown()


def test_aliases_and_catch_all_reach_the_mailbox(
    server: PostroomServer, dovecot: DovecotServer
) -> None:
    token = uuid.uuid4().hex
    replies = send(server, ["sales@shop.test", "anything@catchall.test"], message(token))
    assert [code for code, _ in replies] == [250, 250, 250], replies
    # Two recipients, one mailbox: one copy.
    assert len(with_token(maildir_files(dovecot.mail_root, "alice@shop.test"), token)) == 1


def test_refusals_name_the_reason(server: PostroomServer) -> None:
    token = uuid.uuid4().hex
    replies = send(server, ["nobody@shop.test", "someone@elsewhere.test"], message(token))
    assert replies[0][0] == 550 and replies[0][1].startswith("5.1.1"), replies
    assert replies[1][0] == 554 and replies[1][1].startswith("5.7.1"), replies


def test_a_relay_client_to_a_local_mailbox_is_delivered_locally(
    server: PostroomServer, dovecot: DovecotServer
) -> None:
    token = uuid.uuid4().hex
    replies = send(server, ["alice@shop.test"], message(token), source="127.0.0.1")
    assert replies[-1][0] == 250, replies
    assert with_token(maildir_files(dovecot.mail_root, "alice@shop.test"), token)
    assert server.cli_json("queue", "list") == []


def test_quota(server: PostroomServer, dovecot: DovecotServer) -> None:
    token = uuid.uuid4().hex
    # A message larger than the whole quota: 552 5.2.2 at DATA ...
    replies = send(server, ["bob@shop.test"], message(token, QUOTA_BYTES + 1000))
    assert replies[-1][0] == 552 and replies[-1][1].startswith("5.2.2"), replies
    # ... and at RCPT when MAIL FROM declared its size (RFC 1870).
    with smtplib.SMTP("127.0.0.1", server.smtp_port, source_address=(OUTSIDE_IP, 0)) as client:
        client.ehlo("customer.test")
        client.mail("carol@customer.test", [f"SIZE={QUOTA_BYTES + 1000}"])
        code, text = client.rcpt("bob@shop.test")
        assert (code, text[:5]) == (552, b"5.2.2")
    # Fill it (a message that fits), then the next one does not fit: 452 4.2.2.
    assert send(server, ["bob@shop.test"], message(token, QUOTA_BYTES - 2000))[-1][0] == 250
    replies = send(server, ["bob@shop.test"], message(token, 3000))
    assert replies[-1][0] == 452 and replies[-1][1].startswith("4.2.2"), replies
    # Once the mailbox is at its quota, RCPT itself is deferred.
    bob = dovecot.mail_root / "shop.test" / "bob"
    (bob / "cur" / f"1.M1P1Q1.elsewhere,S={3000}").write_bytes(b"x" * 3000)
    (bob / "maildirsize").unlink()  # as after an IMAP APPEND: recalculated
    replies = send(server, ["bob@shop.test"], message(token, 100))
    assert replies[0][0] == 452 and replies[0][1].startswith("4.2.2"), replies
    assert len(with_token(maildir_files(dovecot.mail_root, "bob@shop.test"), token)) == 1


def test_serve_activates_a_published_key_by_itself(appliance: Appliance) -> None:
    postroom = appliance.postroom
    (new,) = postroom.cli_json("domain", "dkim", "rotate", "shop.test")
    publish_generated(postroom, appliance.nsd, appliance.zones, "shop.test")
    deadline = time.monotonic() + 60
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        keys = postroom.cli_json("domain", "dkim", "list", "shop.test")
        states = {key["selector"]: key["state"] for key in keys}
        if states[new["selector"]] == "active":
            break
        time.sleep(0.3)
    assert states[new["selector"]] == "active", postroom.log()
    assert sorted(states.values()) == ["active", "retiring"]
    assert f"DKIM selector {new['selector']} of shop.test: pending -> active" in postroom.log()


def test_mailbox_bad_input_changes_nothing(appliance: Appliance) -> None:
    postroom = appliance.postroom
    postroom.cli("domain", "add", "pending.test", "--project", "acme")
    before = postroom.cli_json("mailbox", "list")
    cases = [
        (("mailbox", "add", "a@pending.test"), PASSWORD, "not verified yet"),
        (("mailbox", "add", "a@unlinked.test"), PASSWORD, "is not linked"),
        (("mailbox", "add", "alice@shop.test"), PASSWORD, "already exists"),
        (("mailbox", "add", "new@shop.test"), "short", "shorter than 10"),
        (("mailbox", "add", "new@shop.test"), "", "empty"),
        (("mailbox", "add", "new@shop.test"), "password1234", "commonly used"),
        (("mailbox", "add", "new@shop.test", "--quota", "lots"), PASSWORD, "not a size"),
        (("mailbox", "add", "not an address"), PASSWORD, "not an address"),
        (("mailbox", "delete", "alice@shop.test"), None, "add --yes"),
        (("alias", "add", "x@shop.test", "nobody@shop.test"), None, "not a mailbox"),
    ]
    for args, password, message in cases:
        if password is not None:
            args = (*args, "--password-stdin")
        result = postroom.cli(*args, check=False, stdin=password)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert postroom.cli_json("mailbox", "list") == before


def test_mailbox_delete_keeps_or_removes_the_maildir(
    appliance: Appliance, dovecot: DovecotServer
) -> None:
    postroom = appliance.postroom
    root = dovecot.mail_root / "shop.test"
    for name in ("keep", "drop"):
        postroom.cli("mailbox", "add", f"{name}@shop.test", "--password-stdin", stdin=PASSWORD)
        assert (root / name / "new").is_dir()
    postroom.cli("alias", "add", "info@shop.test", "drop@shop.test")
    postroom.cli("mailbox", "delete", "keep@shop.test", "--yes")
    removed = postroom.cli("mailbox", "delete", "drop@shop.test", "--yes", "--remove-maildir")
    assert "alias info@shop.test → drop@shop.test removed" in removed.stdout
    assert (root / "keep" / "new").is_dir() and not (root / "drop").exists()
    addresses = {m["address"] for m in postroom.cli_json("mailbox", "list")}
    assert not addresses & {"keep@shop.test", "drop@shop.test"}
    assert "drop@shop.test" not in dovecot.passwd_file.read_text()
    replies = send(postroom, ["info@shop.test"], message(uuid.uuid4().hex))
    assert replies[0][0] == 550, replies
