"""Submission's books on a real session and a real SQLite queue (issue 12, items 2 and 3):
the project's message limit when the client hangs up at the worst moments, and the
mailbox's rate counted per accepted recipient.

The worst moments are made exact by holding the group commit (`Gate`): the client hangs
up while its enqueue, or its RCPT's reservation, is submitted but not committed; then the
commit goes through. Afterwards `used` must equal the recipients queued, and every
queued delivery must have reached delivery (none left leased with nobody holding it).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.unit.mta.submission_rig import PASSWORD, message, poll, submission_rig

from postroom.db.models import MessageOrigin
from postroom.mailbox.directory import Directory
from postroom.mailbox.passwords import hash_password
from postroom.mta.queue.records import NewMessage

# The rig speaks AUTH without TLS, which aiosmtpd warns about (465 is TLS throughout).
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
RECIPIENTS = [f"user{n}@far.test" for n in range(5)]


@pytest.fixture(scope="module")
def password_hash() -> str:
    return hash_password(PASSWORD)  # a fifth of a second each: once per module


async def test_a_client_hanging_up_while_its_message_commits_keeps_the_books_exact(
    tmp_path: Path, password_hash: str
) -> None:
    async with submission_rig(tmp_path, message_limit=10, password_hash=password_hash) as rig:
        client = await rig.logged_in()
        replies = await client.transaction(RECIPIENTS)
        assert all(reply.startswith(b"250") for reply in replies), replies
        assert rig.used() == 5
        await rig.gate.close()
        assert (await client.command("DATA")).startswith(b"354")
        client.writer.write(message() + b".\r\n")
        await poll(lambda: "enqueue" in rig.store.pending, "the enqueue to be submitted")
        await rig.hang_up(client)
        await rig.gate.open()
        # The message committed: its deliveries reach delivery and its count stands.
        await poll(lambda: len(rig.handed.recipients()) == 5, "the jobs to reach delivery")
        await rig.settle()
        assert sorted(rig.handed.recipients()) == RECIPIENTS
        assert (rig.used(), rig.queued()) == (5, 5)


async def test_a_client_hanging_up_while_its_reservation_commits_gets_it_back(
    tmp_path: Path, password_hash: str
) -> None:
    async with submission_rig(tmp_path, message_limit=10, password_hash=password_hash) as rig:
        client = await rig.logged_in()
        assert (await client.command("MAIL FROM:<app@shop.test>")).startswith(b"250")
        await rig.gate.close()
        client.writer.write(b"RCPT TO:<user@far.test>\r\n")
        await poll(lambda: "reserve_batch" in rig.store.pending, "the reservation")
        await rig.hang_up(client)
        await rig.gate.open()
        await poll(lambda: "release_batch" in rig.store.pending, "the reservation's return")
        await rig.settle()
        assert (rig.used(), rig.queued()) == (0, 0)


async def test_a_client_hanging_up_before_data_gives_everything_back(
    tmp_path: Path, password_hash: str
) -> None:
    async with submission_rig(tmp_path, message_limit=10, password_hash=password_hash) as rig:
        client = await rig.logged_in()
        await client.transaction(RECIPIENTS)
        assert rig.used() == 5
        client.hang_up()
        await rig.settle()
        assert (rig.used(), rig.queued(), rig.handed.jobs) == (0, 0, [])


async def test_a_refused_data_gives_its_reservations_back(
    tmp_path: Path, password_hash: str
) -> None:
    async with submission_rig(tmp_path, message_limit=10, password_hash=password_hash) as rig:
        client = await rig.logged_in()
        await client.transaction(RECIPIENTS[:2])
        reply = await client.data(message(author="undisclosed-recipients:;"))
        assert reply.startswith(b"550 5.6.0"), reply
        await client.transaction(RECIPIENTS[2:])
        assert (await client.data(message())).startswith(b"250")
        client.hang_up()
        await rig.settle()
        assert (rig.used(), rig.queued()) == (3, 3)


async def test_a_data_the_session_refuses_gives_its_reservations_back(
    tmp_path: Path, password_hash: str
) -> None:
    """A message the session itself refuses (here a line over 998 octets: 500 before
    the handler hears of the DATA) ends the transaction like any other refusal."""
    async with submission_rig(tmp_path, message_limit=10, password_hash=password_hash) as rig:
        client = await rig.logged_in()
        await client.transaction(RECIPIENTS[:2])
        assert rig.used() == 2
        reply = await client.data(message() + b"x" * 5000 + b"\r\n")
        assert reply.startswith(b"500 5.5.2"), reply
        client.hang_up()
        await rig.settle()
        assert (rig.used(), rig.queued()) == (0, 0)


async def test_the_router_finishes_an_accept_whose_caller_was_cancelled(
    tmp_path: Path, password_hash: str
) -> None:
    """Port 25 and local mailboxes too: the router's accept is what runs to its end."""
    async with submission_rig(tmp_path, password_hash=password_hash) as rig:
        local = await asyncio.to_thread(rig.router.local.resolve, "app@shop.test")
        await rig.gate.close()
        accept = asyncio.create_task(
            rig.router.accept(
                NewMessage(
                    queue_id="Q1",
                    mail_from="sender@far.test",
                    recipients=("user@far.test",),
                    held=frozenset(),
                    project_id=None,
                    body=message(),
                    pool="default",
                    origin=MessageOrigin.RELAY,
                    created_at=0.0,
                    client_ip="192.0.2.1",
                ),
                local.targets,
            )
        )
        await poll(lambda: "enqueue" in rig.store.pending, "the enqueue to be submitted")
        accept.cancel()
        await rig.gate.open()
        await poll(lambda: rig.handed.recipients() == ["user@far.test"], "the hand-over")
        assert rig.queued() == 1
        assert list((tmp_path / "mail" / "shop.test" / "app" / "new").iterdir())


# -- rates count accepted recipients (item 3) ------------------------------------------------


async def test_five_transactions_of_many_recipients_pass_no_more_than_the_rate(
    tmp_path: Path, password_hash: str
) -> None:
    async with submission_rig(tmp_path, per_minute=5, password_hash=password_hash) as rig:
        client = await rig.logged_in()
        accepted = 0
        for number in range(5):
            replies = await client.transaction([f"r{number}-{n}@far.test" for n in range(100)])
            if replies[0].startswith(b"250"):
                accepted += sum(reply.startswith(b"250") for reply in replies[1:])
                refused = [reply for reply in replies[1:] if not reply.startswith(b"250")]
                assert all(reply.startswith(b"451 4.7.1") for reply in refused), refused
            else:  # already at the rate: the whole transaction is deferred at MAIL
                assert replies[0].startswith(b"451 4.7.1 Sending rate exceeded"), replies[0]
            await client.command("RSET")
        assert accepted == 5
        client.hang_up()
        await rig.settle()


async def test_the_rate_boundary_is_exact_and_refused_recipients_cost_nothing(
    tmp_path: Path, password_hash: str
) -> None:
    async with submission_rig(
        tmp_path, per_day=5, message_limit=3, password_hash=password_hash
    ) as rig:
        client = await rig.logged_in()
        first = await client.transaction(["not-an-address", "a@far.test", "b@far.test"])
        assert [reply[:3] for reply in first] == [b"250", b"501", b"250", b"250"], first
        # c@ fills the project's limit of 3; d@ is refused by it and costs no rate either.
        assert [r[:3] for r in await client.transaction(["c@far.test", "d@far.test"])][1:] == [
            b"250",
            b"452",
        ]
        await client.command("RSET")
        Directory(rig.engine).set_message_limit("acme", 100)
        # An abandoned transaction's recipients stay counted (the rate paces work done):
        # a, b, c are 3 of 5; e and f are the 4th and 5th; g is the 6th.
        replies = await client.transaction(["e@far.test", "f@far.test", "g@far.test"])
        assert [reply[:9] for reply in replies] == [
            b"250 2.1.0",
            b"250 2.1.5",
            b"250 2.1.5",
            b"451 4.7.1",
        ]
        assert (await client.data(message())).startswith(b"250")
        assert (await client.command("MAIL FROM:<app@shop.test>")).startswith(b"451 4.7.1")
        client.hang_up()
        await rig.settle()
        assert (rig.used(), rig.queued()) == (2, 2)
