"""The queue's events that move contacts: RatingObserver with real Contacts over
SQLite and the real bounce Classifier (shipped patterns)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, insert

from postroom.db.models import MessageOrigin, messages
from postroom.mailbox.directory import Directory, Project
from postroom.mta.bounce.classify import Classifier
from postroom.mta.queue.records import FailedDelivery, NewMessage
from postroom.rating.contacts import ContactError, Contacts
from postroom.rating.observer import RatingObserver, project_of_sender

RECIPIENT = "rcpt@remote.test"


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load([])


@pytest.fixture
def observer(contacts: Contacts, classifier: Classifier) -> RatingObserver:
    return RatingObserver(contacts, classifier.classify)


@pytest.fixture
def project(directory: Directory) -> Project:
    project = directory.add_project("shop")
    directory.add_domain("shop.test", "shop")
    directory.mark_verified("shop.test", [])
    return project


@pytest.fixture
def known(contacts: Contacts, engine: Engine, project: Project) -> None:
    """RECIPIENT is an automatic contact of the project, at 7."""
    with engine.begin() as conn:
        contacts.ensure_many(conn, [(project.id, RECIPIENT, "Q0")], "setup")


def _message(engine: Engine, queue_id: str, mail_from: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(messages).values(
                id=queue_id,
                created_at=time.time(),
                mail_from=mail_from,
                pool="default",
                origin=MessageOrigin.SUBMISSION.value,
                size_bytes=10,
            )
        )


def _failed(
    diagnostic: str, status: str, *, expired: bool = False, stage: str = "rcpt"
) -> FailedDelivery:
    return FailedDelivery(
        recipient=RECIPIENT,
        status=status,
        diagnostic=diagnostic,
        remote_mta="mx.remote.test",
        updated_at=time.time(),
        expired=expired,
        delivery_id=77,
        stage=stage,
    )


def _fail(
    observer: RatingObserver,
    engine: Engine,
    delivery: FailedDelivery,
    mail_from: str = "news@shop.test",
) -> None:
    _message(engine, "Q1", mail_from)
    with engine.begin() as conn:
        observer.deliveries_failed(conn, {"Q1": [delivery]})


# -- messages_queued ----------------------------------------------------------------


def test_messages_queued_creates_contacts_only_for_project_mail(
    observer: RatingObserver, contacts: Contacts, engine: Engine, project: Project
) -> None:
    def message(
        queue_id: str,
        recipient: str,
        project_id: int | None,
        origin: MessageOrigin = MessageOrigin.SUBMISSION,
    ) -> NewMessage:
        return NewMessage(
            queue_id=queue_id,
            mail_from="news@shop.test",
            recipients=(recipient, f"second-{recipient}"),
            body=b"x",
            pool="default",
            origin=origin,
            created_at=time.time(),
            project_id=project_id,
        )

    with engine.begin() as conn:
        observer.messages_queued(
            conn,
            [
                message("Q1", "a@remote.test", project.id),
                message("Q2", "b@remote.test", None),
                # A campaign's test copy to an address of no contact makes none.
                message("Q3", "c@remote.test", project.id, MessageOrigin.CAMPAIGN),
            ],
        )
    for address in ("a@remote.test", "second-a@remote.test"):
        created = contacts.contact("shop", address)
        assert (created.rating, created.source) == (7, "auto")
        [event] = contacts.events(created)
        assert (event.kind, event.message_id, event.detail) == (
            "created",
            "Q1",
            "mail sent to a new address",
        )
    for address in ("b@remote.test", "c@remote.test"):
        with pytest.raises(ContactError):
            contacts.contact("shop", address)


@pytest.mark.usefixtures("known")
@pytest.mark.parametrize("log_blocked_sends", [True, False])
def test_mail_queued_to_a_blocked_contact_is_logged_once_per_recipient(
    contacts: Contacts,
    classifier: Classifier,
    engine: Engine,
    project: Project,
    caplog: pytest.LogCaptureFixture,
    log_blocked_sends: bool,
) -> None:
    contacts.block("shop", RECIPIENT.upper())
    observer = RatingObserver(contacts, classifier.classify, log_blocked_sends=log_blocked_sends)
    message = NewMessage(
        queue_id="Q9",
        mail_from="news@shop.test",
        recipients=(RECIPIENT.upper(), "fine@remote.test"),
        body=b"x",
        pool="default",
        origin=MessageOrigin.SUBMISSION,
        created_at=time.time(),
        project_id=project.id,
    )
    with caplog.at_level("INFO", logger="postroom.rating"), engine.begin() as conn:
        observer.messages_queued(conn, [message])
    logged = [r.getMessage() for r in caplog.records if "blocked contact" in r.getMessage()]
    expected = [f"queue_id=Q9 rcpt=<{RECIPIENT.upper()}> is a blocked contact: send"]
    assert logged == (expected if log_blocked_sends else [])


# -- deliveries_failed --------------------------------------------------------------


@pytest.mark.usefixtures("known")
def test_a_user_unknown_blocks_the_contact_with_its_cause(
    observer: RatingObserver, contacts: Contacts, engine: Engine
) -> None:
    diagnostic = "smtp; 550 5.1.1 <rcpt@remote.test>: user unknown"
    _fail(observer, engine, _failed(diagnostic, "5.1.1"))
    contact = contacts.contact("shop", RECIPIENT)
    assert (contact.rating, contact.blocked, contact.blocked_cause) == (1, True, "rating")
    event = contacts.events(contact)[-1]
    assert (event.kind, event.reason, event.old_rating, event.new_rating) == (
        "bounced",
        "userunknown",
        7,
        1,
    )
    assert (event.message_id, event.delivery_id, event.detail) == ("Q1", 77, diagnostic)


@pytest.mark.usefixtures("known")
def test_a_full_mailbox_lowers_the_rating_by_one(
    observer: RatingObserver, contacts: Contacts, engine: Engine
) -> None:
    _fail(observer, engine, _failed("smtp; 552 5.2.2 mailbox full", "5.2.2"))
    contact = contacts.contact("shop", RECIPIENT)
    assert (contact.rating, contact.blocked) == (6, False)
    assert contacts.events(contact)[-1].reason == "mailboxfull"


@pytest.mark.usefixtures("known")
def test_an_expiry_whose_last_reply_was_mailbox_full_lowers_the_rating(
    observer: RatingObserver, contacts: Contacts, engine: Engine
) -> None:
    _fail(observer, engine, _failed("smtp; 452 4.2.2 mailbox full", "4.2.2", expired=True))
    assert contacts.contact("shop", RECIPIENT).rating == 6


@pytest.mark.usefixtures("known")
@pytest.mark.parametrize(
    ("diagnostic", "status"),
    [
        ("X-Postroom; connect refused", "4.4.1"),
        ("smtp; 421 4.7.0 try again later", "4.7.0"),
        # Even a "user unknown" counts only when it was final, not at expiry.
        ("smtp; 450 4.1.1 <rcpt@remote.test>: user unknown", "4.1.1"),
    ],
)
def test_an_expiry_for_another_reason_moves_nothing(
    observer: RatingObserver, contacts: Contacts, engine: Engine, diagnostic: str, status: str
) -> None:
    _fail(observer, engine, _failed(diagnostic, status, expired=True))
    contact = contacts.contact("shop", RECIPIENT)
    assert (contact.rating, contact.blocked) == (7, False)
    assert len(contacts.events(contact)) == 1


@pytest.mark.usefixtures("known")
def test_a_permanent_failure_not_about_the_recipient_moves_nothing(
    observer: RatingObserver, contacts: Contacts, engine: Engine
) -> None:
    _fail(observer, engine, _failed("smtp; 554 5.7.1 message rejected as spam", "5.7.1"))
    contact = contacts.contact("shop", RECIPIENT)
    assert contact.rating == 7
    assert len(contacts.events(contact)) == 1


@pytest.mark.usefixtures("known")
@pytest.mark.parametrize("mail_from", ["news@elsewhere.test", "", "news@unverified.test"])
def test_a_sender_not_on_a_verified_domain_of_the_project_moves_nothing(
    observer: RatingObserver,
    contacts: Contacts,
    directory: Directory,
    engine: Engine,
    mail_from: str,
) -> None:
    directory.add_domain("unverified.test", "shop")
    diagnostic = "smtp; 550 5.1.1 <rcpt@remote.test>: user unknown"
    _fail(observer, engine, _failed(diagnostic, "5.1.1"), mail_from=mail_from)
    assert not contacts.contact("shop", RECIPIENT).blocked


@pytest.mark.usefixtures("known")
def test_the_sender_domain_is_matched_case_insensitively(
    observer: RatingObserver, contacts: Contacts, engine: Engine
) -> None:
    diagnostic = "smtp; 550 5.1.1 <rcpt@remote.test>: user unknown"
    _fail(observer, engine, _failed(diagnostic, "5.1.1"), mail_from="News@Shop.TEST")
    assert contacts.contact("shop", RECIPIENT).blocked


def test_a_recipient_that_is_no_contact_is_left_alone(
    observer: RatingObserver, contacts: Contacts, engine: Engine, project: Project
) -> None:
    diagnostic = "smtp; 550 5.1.1 <rcpt@remote.test>: user unknown"
    _fail(observer, engine, _failed(diagnostic, "5.1.1"))
    with pytest.raises(ContactError):
        contacts.contact("shop", RECIPIENT)


def test_project_of_sender(engine: Engine, project: Project, directory: Directory) -> None:
    directory.add_domain("unverified.test", "shop")
    with engine.connect() as conn:
        assert project_of_sender(conn, "a@shop.test") == project.id
        assert project_of_sender(conn, "a@shop.test.") == project.id
        assert project_of_sender(conn, "a@unverified.test") is None
        assert project_of_sender(conn, "a@elsewhere.test") is None
        assert project_of_sender(conn, "") is None


# -- reason_of ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("diagnostic", "status", "reason"),
    [
        ("smtp; 550 5.1.1 <x@remote.test>: user unknown", "5.1.1", "userunknown"),
        # The enhanced code in the reply wins over the recorded status...
        ("smtp; 550 5.1.1 go away", "5.0.0", "userunknown"),
        ("smtp; 550-5.1.1 go away", "5.0.0", "userunknown"),
        # ... and without one, the recorded status is used.
        ("smtp; 550 go away", "5.1.1", "userunknown"),
        ("smtp; 550 go away", "", "undefined"),
        # The reply code is parsed out: 552 alone means a full mailbox.
        ("smtp; 552 sorry", "5.0.0", "mailboxfull"),
        ("smtp; 552 5.2.2 mailbox full", "5.2.2", "mailboxfull"),
        ("552 5.2.2 mailbox full", "", "mailboxfull"),
        ("  smtp; 452 4.2.2 mailbox full  ", "4.2.2", "mailboxfull"),
        # Our own errors carry no reply code: the status and the text decide.
        ("X-Postroom; connect refused", "4.4.1", "networkerror"),
        ("X-Postroom; connect refused", "", "undefined"),
        ("X-Postroom; no such domain", "5.1.2", "hostunknown"),
    ],
)
def test_reason_of(observer: RatingObserver, diagnostic: str, status: str, reason: str) -> None:
    assert observer.reason_of(_failed(diagnostic, status)) == reason


@pytest.mark.usefixtures("known")
def test_a_refusal_of_our_sender_or_connection_says_nothing_about_the_recipient(
    observer: RatingObserver, contacts: Contacts, engine: Engine
) -> None:
    _message(engine, "Q1", "news@shop.test")
    for stage in ("mail", "connect", "ehlo", "starttls"):
        failed = _failed("smtp; 553 5.1.8 sender domain not found", "5.1.8", stage=stage)
        with engine.begin() as conn:
            observer.deliveries_failed(conn, {"Q1": [failed]})
    contact = contacts.contact("shop", RECIPIENT)
    assert (contact.rating, contact.blocked) == (7, False)
