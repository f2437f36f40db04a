"""The bounce inbox at port 25 when it shares a domain with mailboxes: a name that
is not a token of ours is left to the mailbox lookup, and a quota refusal comes
before a bounce is processed (so a retried bounce is not counted twice). The
hooks are called directly, with fakes for the inbox and the local mailboxes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiosmtpd.smtp import Envelope
from aiosmtpd.smtp import Session as SmtpSession

from postroom.config.schema import Config
from postroom.core.reply import Reply
from postroom.mailbox.accounts import NOT_LOCAL, LocalTarget, RecipientKind, Resolution
from postroom.mta.inbound.handler import InboundHandler, InboundPolicy
from postroom.mta.inbound.policy import RelayNetworks
from postroom.mta.lanes.pools import PoolTable

DOMAIN = "example.test"  # linked domain and bounce domain at once
MAILBOX = LocalTarget(f"bounce@{DOMAIN}", Path("/nonexistent"), quota_bytes=10, project_id=1)


class FakeInbox:
    def __init__(self) -> None:
        self.processed: list[bytes] = []

    def process(self, content: bytes, ids: list[int], *, feedback: bool) -> list[object]:
        self.processed.append(content)
        return []


class FakeIntake:
    """Delivery 7 is the one valid token; any other bounce+ name is refused."""

    def __init__(self) -> None:
        self.inbox = FakeInbox()

    def target(self, address: str) -> int | Reply | None:
        if not address.startswith("bounce+"):
            return None
        if address == f"bounce+good@{DOMAIN}":
            return 7
        return Reply(550, "5.1.1", f"<{address}>: not a bounce address of ours")


class FakeLocal:
    """Every address at DOMAIN is the one `bounce` mailbox (plus-addressing), quota 10 bytes."""

    def is_local_domain(self, address: str) -> bool:
        return address.endswith(f"@{DOMAIN}")

    def project_of(self, address: str) -> int | None:
        return 1 if self.is_local_domain(address) else None

    def resolve(self, address: str) -> Resolution:
        if not self.is_local_domain(address):
            return NOT_LOCAL
        return Resolution(RecipientKind.LOCAL, (MAILBOX,))

    def quota_refusal(self, targets: object, size_bytes: int = 0) -> Reply | None:
        return Reply(452, "4.2.2", "mailbox full") if size_bytes > 10 else None


def _handler(intake: FakeIntake) -> InboundHandler:
    return InboundHandler(
        InboundPolicy("mx.test", RelayNetworks([]), max_recipients=10, max_hops=30),
        router=None,  # type: ignore[arg-type]  # never reached in these tests
        pools=PoolTable(Config()),
        local=FakeLocal(),  # type: ignore[arg-type]
        bounces=intake,  # type: ignore[arg-type]
    )


def _session() -> SmtpSession:
    session = SmtpSession(asyncio.get_running_loop())
    session.peer = ("192.0.2.1", 25)
    session.host_name = "client.test"
    return session


async def _envelope(handler: InboundHandler, session: SmtpSession, *rcpts: str) -> Envelope:
    envelope = Envelope()
    assert (await handler.handle_MAIL(None, session, envelope, "", [])).startswith("250")  # type: ignore[arg-type]
    for rcpt in rcpts:
        reply = await handler.handle_RCPT(None, session, envelope, rcpt, [])  # type: ignore[arg-type]
        assert reply.startswith("250"), reply
    return envelope


async def test_a_name_that_is_no_token_goes_to_the_mailbox_of_a_linked_bounce_domain() -> None:
    handler = _handler(FakeIntake())
    session = _session()
    envelope = await _envelope(handler, session)
    reply = await handler.handle_RCPT(None, session, envelope, f"bounce+news@{DOMAIN}", [])  # type: ignore[arg-type]
    assert reply.startswith("250 "), reply
    assert envelope.local_targets == {f"bounce+news@{DOMAIN}": (MAILBOX,)}
    assert envelope.bounce_targets == {}


async def test_a_valid_token_still_reaches_the_inbox() -> None:
    handler = _handler(FakeIntake())
    envelope = await _envelope(handler, _session(), f"bounce+good@{DOMAIN}")
    assert envelope.bounce_targets == {f"bounce+good@{DOMAIN}": 7}


async def test_a_forged_token_off_the_linked_domains_is_still_refused() -> None:
    handler = _handler(FakeIntake())
    session = _session()
    envelope = await _envelope(handler, session)
    reply = await handler.handle_RCPT(None, session, envelope, "bounce+x@elsewhere.test", [])  # type: ignore[arg-type]
    assert reply.startswith("550 5.1.1"), reply


async def test_a_full_mailbox_refuses_before_the_bounce_is_processed() -> None:
    intake = FakeIntake()
    handler = _handler(intake)
    session = _session()
    envelope = await _envelope(handler, session, f"bounce+good@{DOMAIN}", f"bounce@{DOMAIN}")
    envelope.original_content = b"Subject: a bounce\r\n\r\nmore than ten bytes of report\r\n"
    reply = await handler.handle_DATA(None, session, envelope)  # type: ignore[arg-type]
    assert reply.startswith("452 4.2.2"), reply
    # The client will send it again: processed now, it would count twice.
    assert intake.inbox.processed == []
