"""The submission flow tests' world: one postroom with a linked domain, real TLS and a sink.

`submission_world(directory, workers=1)` starts, for one test module: a private NSD serving
shop.test (its DNS what `domain dns` prints) and far.test (MX → an aiosmtpd sink
on 127.0.0.90), a certificate from a throwaway CA (trustme), and a postroom with
two pools — bulk (default, 127.0.0.2) and transactional (submission, 127.0.0.3) —
587 (STARTTLS) and 465 (implicit TLS), AUTH lockout after 4 failures for
`LOCKOUT_S`. Project acme (message limit 1000) owns shop.test; its mailboxes:
app@ (SMTP access approved), wide@ (approved, may send as any address of
shop.test), rate@ (approved, `RATE_PER_DAY` recipients a day), pending@ (requested,
under moderation), rejected@ (refused with a reason). The helpers speak SMTP
to it as an app would.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import trustme
from tests.flow.linking import MAIL_HOST, ApplianceZones, link_domain, publish_generated
from tests.peers.dns import NsdServer
from tests.peers.postroom import PostroomServer, flow_config, free_tcp_port
from tests.peers.sinks import AiosmtpdSink

SINK_IP = "127.0.0.90"
TRANSACTIONAL_IP = "127.0.0.3"
PASSWORD = "copper-meadow-lantern-61"
# Long enough that two connections surely fit inside the lock on a loaded machine.
LOCKOUT_S = 15
# rate@'s limit: per day, so that no window slides away while a slow machine runs the test.
RATE_PER_DAY = 5
POOLS = """
[[egress]]
name = "bulk-1"
address = "127.0.0.2"
helo = "bulk-1.appliance.test"

[[egress]]
name = "tx-1"
address = "127.0.0.3"
helo = "tx-1.appliance.test"

[[pool]]
name = "bulk"
sources = ["bulk-1"]

[[pool]]
name = "transactional"
sources = ["tx-1"]
"""


@dataclass
class World:
    postroom: PostroomServer
    nsd: NsdServer
    sink: AiosmtpdSink
    ca: trustme.CA
    starttls_port: int
    tls_port: int

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@contextmanager
def submission_world(directory: Path, workers: int = 1) -> Iterator[World]:
    ca = trustme.CA()
    certificate = ca.issue_cert(MAIL_HOST, "127.0.0.1")
    cert, key = directory / "cert.pem", directory / "key.pem"
    certificate.private_key_and_cert_chain_pem.write_to_path(str(cert))
    certificate.private_key_pem.write_to_path(str(key))
    zones = ApplianceZones()
    zones.records.update(
        {"shop.test": [], "far.test": ["@ IN MX 10 mx.far.test.", f"mx IN A {SINK_IP}"]}
    )
    sink_port = free_tcp_port(SINK_IP)
    with (
        NsdServer(zones.texts()) as nsd,
        AiosmtpdSink(SINK_IP, sink_port, hostname="mx.far.test") as sink,
    ):
        port, starttls_port, tls_port = free_tcp_port(), free_tcp_port(), free_tcp_port()
        text = flow_config(
            state_dir=directory / "state",
            smtp_port=port,
            nameserver=nsd.nameserver(),
            delivery_port=sink_port,
            relay_networks=("127.0.0.1/32",),
            hostname=MAIL_HOST,
            delivery='default_pool = "bulk"',
            workers=workers,
            extra=POOLS
            + f'\n[tls]\ncert = "{cert}"\nkey = "{key}"\n'
            + "\n[smtp.submission]\n"
            + f'listen = ["127.0.0.1:{starttls_port}"]\n'
            + f'tls_listen = ["127.0.0.1:{tls_port}"]\n'
            + 'pool = "transactional"\n'
            + f'auth_max_failures = 4\nauth_lockout = "{LOCKOUT_S}s"\n',
        )
        with PostroomServer(directory, text, port) as postroom:
            postroom.cli("project", "add", "acme", "--message-limit", "1000")
            link_domain(postroom, nsd, zones, "shop.test")
            publish_generated(postroom, nsd, zones, "shop.test")
            for name in ("app", "wide", "pending", "rejected", "rate"):
                address = f"{name}@shop.test"
                postroom.cli("mailbox", "add", address, "--password-stdin", stdin=PASSWORD)
                postroom.cli("smtp", "request", address, "--purpose", "receipts", "--volume", "500")
            for name in ("app", "wide", "rate"):
                postroom.cli("smtp", "approve", f"{name}@shop.test")
            postroom.cli("smtp", "limits", "rate@shop.test", "--per-day", str(RATE_PER_DAY))
            postroom.cli("smtp", "senders", "wide@shop.test", "--domain")
            postroom.cli("smtp", "reject", "rejected@shop.test", "--reason", "no volume plan")
            yield World(postroom, nsd, sink, ca, starttls_port, tls_port)


def message(sender: str, token: str, to: str = "user@far.test") -> bytes:
    # No Date and no Message-ID: submission adds them (RFC 6409 8.2, 8.3).
    return (
        f"From: App <{sender}>\r\nTo: {to}\r\nSubject: {token}\r\n\r\nreceipt {token}\r\n".encode()
    )


def starttls_client(world: World, source: str = "127.0.0.1") -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", world.starttls_port, timeout=15, source_address=(source, 0))
    client.ehlo("app.client.test")
    client.starttls(context=world.client_context())
    client.ehlo("app.client.test")
    return client


def auth_plain(client: smtplib.SMTP, user: str, password: str) -> None:
    """One AUTH PLAIN (login() would try LOGIN too after a refusal: two failures)."""
    client.user, client.password = user, password
    client.auth("PLAIN", client.auth_plain)


def used(world: World) -> int:
    (project,) = [p for p in world.postroom.cli_json("project", "list") if p["name"] == "acme"]
    return int(project["used"])
