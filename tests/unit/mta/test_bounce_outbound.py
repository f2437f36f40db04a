"""Which failed originals get a DSN back (BounceFactory): a relayed message does, one
from the null sender, a DSN and a campaign's message do not."""

from __future__ import annotations

import time

import pytest

from postroom.db.models import MessageOrigin
from postroom.mta.bounce.outbound import BounceFactory
from postroom.mta.queue.records import FailedDelivery, OriginalMessage

BODY = b"From: a@sender.test\r\nSubject: hi\r\n\r\nhello\r\n"


def _original(origin: MessageOrigin, mail_from: str = "a@sender.test") -> OriginalMessage:
    return OriginalMessage("Q1", mail_from, origin.value, time.time(), "", BODY)


def _failed() -> list[FailedDelivery]:
    return [
        FailedDelivery(
            recipient="gone@dest.test",
            status="5.1.1",
            diagnostic="smtp; 550 5.1.1 no such user",
            remote_mta="mx.dest.test",
            updated_at=time.time(),
            expired=False,
        )
    ]


def test_a_relayed_message_that_failed_gets_a_dsn_to_its_sender() -> None:
    dsn = BounceFactory("mx.appliance.test", "transactional")(
        _original(MessageOrigin.RELAY), _failed()
    )
    assert dsn is not None
    assert (dsn.mail_from, dsn.recipients, dsn.origin) == ("", ("a@sender.test",), "dsn")
    assert b"gone@dest.test" in dsn.body


@pytest.mark.parametrize(
    ("origin", "mail_from"),
    [
        (MessageOrigin.RELAY, ""),  # the null sender: a bounce of it would loop
        (MessageOrigin.DSN, "a@sender.test"),
        (MessageOrigin.CAMPAIGN, "news@sender.test"),  # recorded on the contact instead
    ],
)
def test_no_dsn_for(origin: MessageOrigin, mail_from: str) -> None:
    factory = BounceFactory("mx.appliance.test", "transactional")
    assert factory(_original(origin, mail_from), _failed()) is None
