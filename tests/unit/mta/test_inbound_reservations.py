"""Who gives back a transaction's message-limit reservations: the transaction until DATA,
the DATA's outcome after; a late reservation of an abandoned transaction goes back."""

from __future__ import annotations

from postroom.mailbox.usage import Reservation
from postroom.mta.inbound.reservations import TransactionReservations

ONE = Reservation(project_id=1, period="2026-01", count=1)


def books() -> tuple[TransactionReservations, list[list[Reservation]]]:
    given_back: list[list[Reservation]] = []
    return TransactionReservations(given_back.append), given_back


def test_abandoning_gives_back_what_is_held_once() -> None:
    reservations, given_back = books()
    reservations.add(ONE)
    reservations.add(ONE)
    reservations.abandon()
    reservations.abandon()
    assert given_back == [[ONE, ONE]]
    assert len(reservations) == 0


def test_a_refused_recipient_gives_back_its_own_only() -> None:
    reservations, given_back = books()
    reservations.add(ONE)
    reservations.add(ONE)
    reservations.refuse(ONE)
    assert (given_back, len(reservations)) == ([[ONE]], 1)


def test_once_data_began_abandoning_gives_nothing_back() -> None:
    reservations, given_back = books()
    reservations.add(ONE)
    assert reservations.hand_to_data() == [ONE]
    reservations.abandon()  # the client hung up during DATA: the message may still commit
    assert given_back == []


def test_a_reservation_that_commits_after_the_transaction_was_abandoned_goes_back() -> None:
    reservations, given_back = books()
    reservations.abandon()
    reservations.add(ONE)
    reservations.refuse(ONE)  # already given back: not twice
    assert given_back == [[ONE]]
