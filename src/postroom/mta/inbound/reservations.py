"""Who owns the message-limit reservations of one submission transaction.

At RCPT each accepted recipient reserves one message of its project's monthly
limit (`ProjectUsage`, committed through the queue's group commit). Whether a
reservation is given back depends on who owns it when the transaction ends:

- the transaction, from RCPT until DATA begins: RSET, a new EHLO or a dropped
  connection abandons it, and everything it holds is given back;
- from DATA on, the DATA's outcome: the message's queue insert either committed
  (the count stands) or did not (given back) — the caller of `hand_to_data`
  decides. A transaction abandoned while its DATA is in flight gives nothing
  back itself: the client may be gone while the message still commits, and
  counting what was queued is the whole point of the limit;
- a reservation that commits after its transaction was abandoned (the client
  hung up while it was in the group commit) is given back as it arrives.

`TransactionReservations(give_back)` is that bookkeeping, nothing else: pure
logic on one event loop; `give_back(reservations)` must start the release (a
database write) and return at once. Untrusted input: none. Config keys: none.
"""

from __future__ import annotations

from collections.abc import Callable

from postroom.mailbox.usage import Reservation


class TransactionReservations:
    """The reservations one MAIL ... DATA transaction holds; see the module docstring."""

    def __init__(self, give_back: Callable[[list[Reservation]], None]) -> None:
        self._give_back = give_back
        self._held: list[Reservation] = []
        self._abandoned = False

    def __len__(self) -> int:
        return len(self._held)

    def add(self, reservation: Reservation) -> None:
        """A reservation committed for this transaction (given back at once when the
        transaction was abandoned while it was being made)."""
        if self._abandoned:
            self._give_back([reservation])
        else:
            self._held.append(reservation)

    def refuse(self, reservation: Reservation) -> None:
        """The recipient it was made for was refused after all: give it back."""
        if reservation in self._held:
            self._held.remove(reservation)
            self._give_back([reservation])

    def hand_to_data(self) -> list[Reservation]:
        """DATA begins: what is held now belongs to its outcome, which the caller
        settles (kept if the message committed, else given back)."""
        held, self._held = self._held, []
        return held

    def abandon(self) -> None:
        """RSET, EHLO or a dropped connection: give back what is held."""
        self._abandoned = True
        held, self._held = self._held, []
        if held:
            self._give_back(held)
