"""The bounce inbox at port 25 when it shares a domain with mailboxes: a name that
is not a token of ours is left to the mailbox lookup, and a quota refusal comes
before a bounce is processed (so a retried bounce is not counted twice). Its mail
is processed on the feedback worker: 451 4.3.2 when that is full, 451 4.4.5 past
its time limit, 250 once processed. The hooks are called directly, with fakes for
the inbox and the local mailboxes and a real feedback worker."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiosmtpd.smtp import Envelope
from aiosmtpd.smtp import Session as SmtpSession
from tests.fakes.bounce_intake import DOMAIN, MAILBOX, FakeIntake, inbound_handler

from postroom.mta.bounce.worker import FeedbackWorker
from postroom.mta.inbound.handler import InboundHandler


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
    handler = inbound_handler(FakeIntake())
    session = _session()
    envelope = await _envelope(handler, session)
    reply = await handler.handle_RCPT(None, session, envelope, f"bounce+news@{DOMAIN}", [])  # type: ignore[arg-type]
    assert reply.startswith("250 "), reply
    assert envelope.local_targets == {f"bounce+news@{DOMAIN}": (MAILBOX,)}
    assert envelope.bounce_targets == {}


async def test_a_valid_token_still_reaches_the_inbox() -> None:
    handler = inbound_handler(FakeIntake())
    envelope = await _envelope(handler, _session(), f"bounce+good@{DOMAIN}")
    assert envelope.bounce_targets == {f"bounce+good@{DOMAIN}": 7}


async def test_a_forged_token_off_the_linked_domains_is_still_refused() -> None:
    handler = inbound_handler(FakeIntake())
    session = _session()
    envelope = await _envelope(handler, session)
    reply = await handler.handle_RCPT(None, session, envelope, "bounce+x@elsewhere.test", [])  # type: ignore[arg-type]
    assert reply.startswith("550 5.1.1"), reply


async def test_a_full_mailbox_refuses_before_the_bounce_is_processed() -> None:
    intake = FakeIntake()
    handler = inbound_handler(intake)
    session = _session()
    envelope = await _envelope(handler, session, f"bounce+good@{DOMAIN}", f"bounce@{DOMAIN}")
    envelope.original_content = b"Subject: a bounce\r\n\r\nmore than ten bytes of report\r\n"
    reply = await handler.handle_DATA(None, session, envelope)  # type: ignore[arg-type]
    assert reply.startswith("452 4.2.2"), reply
    # The client will send it again: processed now, it would count twice.
    assert intake.inbox.processed == []


async def _bounce_data(handler: InboundHandler) -> str:
    session = _session()
    envelope = await _envelope(handler, session, f"bounce+good@{DOMAIN}")
    envelope.original_content = b"Subject: a bounce\r\n\r\nreport\r\n"
    return await handler.handle_DATA(None, session, envelope)  # type: ignore[arg-type]


async def test_a_processed_bounce_is_acknowledged() -> None:
    intake = FakeIntake()
    reply = await _bounce_data(inbound_handler(intake))
    assert reply.startswith("250 2.0.0 Ok: processed as "), reply
    assert len(intake.inbox.processed) == 1


async def test_a_full_feedback_worker_defers_with_451_4_3_2(
    caplog: pytest.LogCaptureFixture,
) -> None:
    intake = FakeIntake(FeedbackWorker(threads=1, backlog=1, time_limit_s=5))
    intake.inbox.release.clear()
    handler = inbound_handler(intake)
    try:
        held = [asyncio.create_task(_bounce_data(handler)) for _ in range(2)]
        for _ in range(200):  # until both are admitted: one running, one waiting
            if intake.worker.admitted == 2:
                break
            await asyncio.sleep(0.01)
        reply = await asyncio.wait_for(_bounce_data(handler), 2)
        assert reply.startswith("451 4.3.2 "), reply
        assert "feedback worker is full" in caplog.text
    finally:
        intake.inbox.release.set()
    assert [(await task)[:3] for task in held] == ["250", "250"]


async def test_a_bounce_past_its_time_limit_defers_with_451_4_4_5(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("postroom.mta.bounce.worker.DATABASE_GRACE_S", 0.0)
    intake = FakeIntake(FeedbackWorker(threads=1, backlog=0, time_limit_s=0.2))
    intake.inbox.release.clear()
    try:
        started = time.monotonic()
        reply = await asyncio.wait_for(_bounce_data(inbound_handler(intake)), 5)
        assert reply.startswith("451 4.4.5 "), reply
        assert time.monotonic() - started < 4  # the session did not wait for the job
    finally:
        intake.inbox.release.set()
