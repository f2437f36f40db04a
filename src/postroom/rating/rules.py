"""The client rating rules as pure functions (ARCHITECTURE.md, "Client rating").

A contact's state is its rating (1..10) and a blocked flag with its cause.
Each function takes the current state and an event and returns the new state,
or None when the event does not move the rating (a soft failure, a success):

- `created(manual)`: 10 by hand, 7 automatically (`[rating] manual`, `automatic`).
- `bounced(state, reason)`: a suspicious address (`[rating] suspicious`:
  nonexistent user or domain, disabled or moved mailbox, domain that takes no
  mail) → blocked_at and blocked; `mailboxfull` → minus `mailbox_full_step`,
  not below blocked_at; anything else → no change.
- `complained(state)`: an ARF complaint → blocked_at and blocked (cause complaint).
- `replied(state)`: mail from the contact → `reply` (10); lifts a block the
  rating caused, never one from a complaint or an operator.
- `set_by_operator(state, rating)`, `block`/`unblock` by an operator.
Reaching blocked_at always blocks: "at rating 1 the contact is blocked".
`gate(ratings)`: a campaign audience's average and whether it may launch.

Config keys: [rating] (all). No I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from postroom.config.schema import RatingConfig

MAX_RATING = 10


class BlockCause(StrEnum):
    NONE = ""
    RATING = "rating"
    COMPLAINT = "complaint"
    OPERATOR = "operator"


# Blocks that only an operator lifts (a reply lifts the others).
_STICKY = frozenset({BlockCause.COMPLAINT, BlockCause.OPERATOR})


@dataclass(frozen=True, slots=True)
class ContactState:
    rating: int
    blocked: bool = False
    cause: BlockCause = BlockCause.NONE


class Rules:
    def __init__(self, config: RatingConfig) -> None:
        self.config = config

    def created(self, *, manual: bool) -> ContactState:
        return self._settle(self.config.manual if manual else self.config.automatic, None)

    def bounced(self, state: ContactState, reason: str) -> ContactState | None:
        if reason in self.config.suspicious:
            return self._blocked(BlockCause.RATING, state)
        if reason == "mailboxfull" and self.config.mailbox_full_step:
            lowered = max(self.config.blocked_at, state.rating - self.config.mailbox_full_step)
            return self._settle(lowered, state) if lowered != state.rating else None
        return None

    def complained(self, state: ContactState) -> ContactState:
        return self._blocked(BlockCause.COMPLAINT)

    def replied(self, state: ContactState) -> ContactState | None:
        new = ContactState(self.config.reply, state.blocked, state.cause)
        if state.blocked and state.cause in (BlockCause.RATING, BlockCause.NONE):
            new = ContactState(self.config.reply)
        return new if new != state else None

    def set_by_operator(self, state: ContactState, rating: int) -> ContactState:
        if not self.config.blocked_at <= rating <= MAX_RATING:
            raise ValueError(f"rating {rating}: between {self.config.blocked_at} and {MAX_RATING}")
        if rating == self.config.blocked_at:
            return ContactState(rating, True, BlockCause.OPERATOR)
        if state.blocked and state.cause is not BlockCause.RATING:
            return ContactState(rating, True, state.cause)
        return ContactState(rating)

    def block(self, state: ContactState) -> ContactState:
        return ContactState(state.rating, True, BlockCause.OPERATOR)

    def unblock(self, state: ContactState) -> ContactState:
        # Unblocked at the floor would block again at once: lift it one step.
        return ContactState(max(state.rating, self.config.blocked_at + 1))

    def _blocked(self, cause: BlockCause, previous: ContactState | None = None) -> ContactState:
        # A complaint's or an operator's block outlives a later bounce: were its cause
        # turned into "rating", the next reply would lift it.
        if previous is not None and previous.blocked and previous.cause in _STICKY:
            cause = previous.cause
        return ContactState(self.config.blocked_at, True, cause)

    def _settle(self, rating: int, previous: ContactState | None) -> ContactState:
        if rating <= self.config.blocked_at:
            return self._blocked(BlockCause.RATING, previous)
        if previous is not None and previous.blocked:
            return ContactState(rating, True, previous.cause)
        return ContactState(rating)


@dataclass(frozen=True, slots=True)
class GateResult:
    allowed: bool
    average: float
    audience: int
    blocked: int
    low: int  # not blocked, but below the minimum
    message: str


def gate(states: Sequence[ContactState], config: RatingConfig) -> GateResult:
    """May a campaign to these contacts launch? Blocked contacts are skipped by the
    producers but still count here: an audience full of them is a bad audience."""
    minimum = config.campaign_minimum
    if not states:
        return GateResult(False, 0.0, 0, 0, 0, "the audience is empty")
    average = sum(state.rating for state in states) / len(states)
    blocked = sum(state.blocked for state in states)
    low = sum(not state.blocked and state.rating < minimum for state in states)
    size = len(states)
    share = (
        f"{blocked} blocked ({blocked / size:.0%}) and {low} rated below {minimum:g} "
        f"({low / size:.0%}) of {size}"
    )
    if average < minimum:
        return GateResult(
            False,
            average,
            len(states),
            blocked,
            low,
            f"average rating {average:.2f} is below {minimum:g}: {share} drag it down",
        )
    return GateResult(
        True, average, len(states), blocked, low, f"average rating {average:.2f}; {share}"
    )
