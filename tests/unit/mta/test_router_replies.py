"""A reply's rating update runs on the feedback worker, and never fails the mail.

`Router.accept` with local targets stores the copy (a fake store) and then
tells the contacts that the sender is alive (`Contacts.received`, a fake that
records the thread it ran on): on a feedback thread; skipped and logged when
that worker is full; the mail is stored either way.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from postroom.db.models import MessageOrigin
from postroom.mailbox.accounts import LocalTarget
from postroom.mta.bounce.worker import FeedbackWorker
from postroom.mta.queue.records import NewMessage
from postroom.mta.router import Router

TARGET = LocalTarget("alice@shop.test", Path("/nonexistent"), quota_bytes=0, project_id=3)


class FakeLocal:
    def __init__(self) -> None:
        self.stored: list[bytes] = []

    def store(self, copy: bytes, targets: object, folder: str) -> None:
        self.stored.append(copy)


class FakeContacts:
    def __init__(self) -> None:
        self.calls: list[tuple[list[int], str, str]] = []
        self.release = threading.Event()
        self.release.set()

    def received(self, projects: list[int], sender: str, message_id: str) -> None:
        self.release.wait(10)
        self.calls.append((projects, sender, threading.current_thread().name))


def _router(worker: FeedbackWorker) -> tuple[Router, FakeLocal, FakeContacts]:
    local, contacts = FakeLocal(), FakeContacts()
    router = Router(
        store=None,  # type: ignore[arg-type]  # no remote recipient: never used
        delivery=None,  # type: ignore[arg-type]
        local=local,  # type: ignore[arg-type]
        contacts=contacts,  # type: ignore[arg-type]
        feedback=worker,
    )
    return router, local, contacts


def _reply(queue_id: str = "Q1") -> NewMessage:
    return NewMessage(
        queue_id=queue_id,
        mail_from="friend@far.test",
        recipients=(),
        body=b"Subject: re: news\r\n\r\nthanks\r\n",
        pool="default",
        origin=MessageOrigin.RELAY,
        created_at=time.time(),
    )


async def test_a_reply_rates_its_sender_on_a_feedback_thread() -> None:
    router, local, contacts = _router(FeedbackWorker(threads=1, backlog=0, time_limit_s=5))
    await router.accept(_reply(), [TARGET])
    assert len(local.stored) == 1
    [(projects, sender, thread)] = contacts.calls
    assert (projects, sender) == ([3], "friend@far.test") and thread.startswith("feedback")


async def test_a_full_worker_skips_the_rating_update_not_the_mail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router, local, contacts = _router(FeedbackWorker(threads=1, backlog=0, time_limit_s=5))
    contacts.release.clear()
    try:
        first = asyncio.create_task(router.accept(_reply("Q1"), [TARGET]))
        for _ in range(500):  # until the first holds the only slot
            if router.feedback is not None and router.feedback.admitted == 1:
                break
            await asyncio.sleep(0.01)
        await asyncio.wait_for(router.accept(_reply("Q2"), [TARGET]), 5)
        assert len(local.stored) == 2
        assert "rating update skipped queue_id=Q2: feedback worker full" in caplog.text
    finally:
        contacts.release.set()
    await first
    assert [call[1] for call in contacts.calls] == ["friend@far.test"]


def test_a_router_that_rates_contacts_needs_the_worker() -> None:
    with pytest.raises(ValueError, match="feedback worker"):
        Router(None, None, FakeLocal(), FakeContacts())  # type: ignore[arg-type]
