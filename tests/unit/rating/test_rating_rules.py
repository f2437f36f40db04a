"""The client rating rules (ARCHITECTURE.md, "Client rating") as pure functions:
the defaults the product brief fixes, each event, custom configuration, the gate."""

from __future__ import annotations

import pytest

from postroom.config.schema import RatingConfig
from postroom.mta.bounce.reasons import Reason
from postroom.rating.rules import BlockCause, ContactState, Rules, gate

DEFAULTS = RatingConfig()
RULES = Rules(DEFAULTS)
SUSPICIOUS = ("userunknown", "hostunknown", "suspend", "hasmoved", "notaccept")
BLOCKED_BY_RATING = ContactState(1, True, BlockCause.RATING)
BLOCKED_BY_COMPLAINT = ContactState(1, True, BlockCause.COMPLAINT)


def test_the_defaults_are_the_product_brief() -> None:
    assert DEFAULTS.automatic == 7
    assert DEFAULTS.manual == 10
    assert DEFAULTS.blocked_at == 1
    assert DEFAULTS.campaign_minimum == 6
    assert DEFAULTS.reply == 10
    assert DEFAULTS.mailbox_full_step == 1
    assert set(DEFAULTS.suspicious) == set(SUSPICIOUS)


# -- created --------------------------------------------------------------------


def test_a_contact_added_by_hand_starts_at_10() -> None:
    assert RULES.created(manual=True) == ContactState(10)


def test_a_contact_added_automatically_starts_at_7() -> None:
    assert RULES.created(manual=False) == ContactState(7)


# -- bounced ----------------------------------------------------------------------


@pytest.mark.parametrize("reason", SUSPICIOUS)
@pytest.mark.parametrize("rating", [10, 7, 2])
def test_a_suspicious_address_is_set_to_1_and_blocked(reason: str, rating: int) -> None:
    assert RULES.bounced(ContactState(rating), reason) == BLOCKED_BY_RATING


def test_mailbox_full_lowers_the_rating_by_one_each_time_down_to_1() -> None:
    state = ContactState(7)
    seen = []
    while (moved := RULES.bounced(state, "mailboxfull")) is not None:
        state = moved
        seen.append(state)
    assert [s.rating for s in seen] == [6, 5, 4, 3, 2, 1]
    assert all(not s.blocked for s in seen[:-1])


def test_reaching_1_by_mailbox_full_blocks_with_cause_rating() -> None:
    assert RULES.bounced(ContactState(2), "mailboxfull") == BLOCKED_BY_RATING


def test_mailbox_full_at_1_moves_nothing() -> None:
    assert RULES.bounced(BLOCKED_BY_RATING, "mailboxfull") is None


def test_mailbox_full_keeps_an_operator_block() -> None:
    state = ContactState(5, True, BlockCause.OPERATOR)
    assert RULES.bounced(state, "mailboxfull") == ContactState(4, True, BlockCause.OPERATOR)


@pytest.mark.parametrize(
    "reason",
    sorted(set(Reason) - set(SUSPICIOUS) - {Reason.MAILBOXFULL}),
)
def test_other_bounce_reasons_move_nothing(reason: Reason) -> None:
    assert RULES.bounced(ContactState(7), reason) is None


def test_an_unknown_reason_string_moves_nothing() -> None:
    assert RULES.bounced(ContactState(7), "not-a-reason") is None


def test_a_hard_bounce_keeps_the_cause_of_a_complaint_block() -> None:
    # Were the cause turned into "rating", the next reply would lift the complaint.
    after = RULES.bounced(BLOCKED_BY_COMPLAINT, "userunknown")
    assert after == BLOCKED_BY_COMPLAINT
    assert after is not None
    assert RULES.replied(after) == ContactState(10, True, BlockCause.COMPLAINT)


def test_mailbox_full_reaching_1_keeps_an_operator_block() -> None:
    state = ContactState(2, True, BlockCause.OPERATOR)
    assert RULES.bounced(state, "mailboxfull") == ContactState(1, True, BlockCause.OPERATOR)


# -- complained -----------------------------------------------------------------


@pytest.mark.parametrize("state", [ContactState(10), ContactState(3), BLOCKED_BY_RATING])
def test_a_complaint_sets_1_and_blocks_with_cause_complaint(state: ContactState) -> None:
    assert RULES.complained(state) == BLOCKED_BY_COMPLAINT


# -- replied ----------------------------------------------------------------------


@pytest.mark.parametrize("rating", [2, 5, 7, 9])
def test_a_reply_raises_the_rating_to_10(rating: int) -> None:
    assert RULES.replied(ContactState(rating)) == ContactState(10)


def test_a_reply_at_10_moves_nothing() -> None:
    assert RULES.replied(ContactState(10)) is None


def test_a_reply_lifts_a_block_the_rating_caused() -> None:
    assert RULES.replied(BLOCKED_BY_RATING) == ContactState(10)


@pytest.mark.parametrize(
    "state", [BLOCKED_BY_COMPLAINT, ContactState(6, True, BlockCause.OPERATOR)]
)
def test_a_reply_does_not_lift_a_complaint_or_operator_block(state: ContactState) -> None:
    after = RULES.replied(state)
    assert after is not None
    assert after.blocked
    assert after.cause is state.cause


# -- operator ---------------------------------------------------------------------


@pytest.mark.parametrize("rating", [2, 6, 10])
def test_the_operator_sets_a_rating(rating: int) -> None:
    assert RULES.set_by_operator(ContactState(7), rating) == ContactState(rating)


def test_the_operator_setting_1_blocks_with_cause_operator() -> None:
    assert RULES.set_by_operator(ContactState(7), 1) == ContactState(1, True, BlockCause.OPERATOR)


def test_the_operator_raising_a_rating_block_unblocks() -> None:
    assert RULES.set_by_operator(BLOCKED_BY_RATING, 8) == ContactState(8)


def test_the_operator_setting_a_rating_keeps_a_complaint_block() -> None:
    assert RULES.set_by_operator(BLOCKED_BY_COMPLAINT, 8) == ContactState(
        8, True, BlockCause.COMPLAINT
    )


@pytest.mark.parametrize("rating", [0, -1, 11, 100])
def test_the_operator_cannot_set_a_rating_out_of_range(rating: int) -> None:
    with pytest.raises(ValueError, match=f"rating {rating}: between 1 and 10"):
        RULES.set_by_operator(ContactState(7), rating)


def test_the_operator_blocks_keeping_the_rating() -> None:
    assert RULES.block(ContactState(8)) == ContactState(8, True, BlockCause.OPERATOR)


def test_the_operator_unblocks_keeping_the_rating() -> None:
    assert RULES.unblock(ContactState(8, True, BlockCause.OPERATOR)) == ContactState(8)


@pytest.mark.parametrize("state", [BLOCKED_BY_RATING, BLOCKED_BY_COMPLAINT])
def test_unblocking_at_1_lifts_the_rating_one_step(state: ContactState) -> None:
    assert RULES.unblock(state) == ContactState(2)


# -- custom configuration ---------------------------------------------------------

CUSTOM = RatingConfig(
    automatic=5,
    manual=8,
    blocked_at=2,
    campaign_minimum=7.5,
    reply=9,
    mailbox_full_step=2,
    suspicious=("userunknown",),
)
CUSTOM_RULES = Rules(CUSTOM)


def test_custom_starting_ratings() -> None:
    assert CUSTOM_RULES.created(manual=True) == ContactState(8)
    assert CUSTOM_RULES.created(manual=False) == ContactState(5)


def test_custom_suspicious_list_and_floor() -> None:
    assert CUSTOM_RULES.bounced(ContactState(8), "userunknown") == ContactState(
        2, True, BlockCause.RATING
    )
    assert CUSTOM_RULES.bounced(ContactState(8), "hostunknown") is None


def test_custom_mailbox_full_step_stops_at_the_floor_and_blocks() -> None:
    assert CUSTOM_RULES.bounced(ContactState(8), "mailboxfull") == ContactState(6)
    assert CUSTOM_RULES.bounced(ContactState(3), "mailboxfull") == ContactState(
        2, True, BlockCause.RATING
    )


def test_a_mailbox_full_step_of_0_turns_the_rule_off() -> None:
    rules = Rules(RatingConfig(mailbox_full_step=0))
    assert rules.bounced(ContactState(7), "mailboxfull") is None


def test_custom_reply_and_complaint() -> None:
    assert CUSTOM_RULES.replied(ContactState(3)) == ContactState(9)
    assert CUSTOM_RULES.complained(ContactState(8)) == ContactState(2, True, BlockCause.COMPLAINT)


def test_custom_operator_range_and_unblock() -> None:
    with pytest.raises(ValueError, match="between 2 and 10"):
        CUSTOM_RULES.set_by_operator(ContactState(5), 1)
    assert CUSTOM_RULES.set_by_operator(ContactState(5), 2) == ContactState(
        2, True, BlockCause.OPERATOR
    )
    assert CUSTOM_RULES.unblock(ContactState(2, True, BlockCause.OPERATOR)) == ContactState(3)


def test_custom_campaign_minimum() -> None:
    assert not gate([ContactState(7)], CUSTOM).allowed
    assert gate([ContactState(7), ContactState(8)], CUSTOM).allowed


# -- gate -------------------------------------------------------------------------


def test_an_empty_audience_is_refused() -> None:
    result = gate([], DEFAULTS)
    assert not result.allowed
    assert result.audience == 0
    assert "empty" in result.message


def test_an_average_of_exactly_6_launches() -> None:
    result = gate([ContactState(7), ContactState(5), ContactState(6)], DEFAULTS)
    assert result.allowed
    assert result.average == 6
    assert result.low == 1


def test_an_average_below_6_is_refused_naming_blocked_and_low_shares() -> None:
    states = [
        ContactState(10),
        ContactState(10),
        ContactState(7),
        ContactState(5),  # low
        ContactState(3),  # low
        BLOCKED_BY_RATING,
        BLOCKED_BY_COMPLAINT,
        ContactState(4, True, BlockCause.OPERATOR),  # blocked, not counted as low
    ]
    result = gate(states, DEFAULTS)
    assert not result.allowed
    assert result.average == pytest.approx(41 / 8)
    assert (result.audience, result.blocked, result.low) == (8, 3, 2)
    assert "5.12 is below 6" in result.message
    assert "3 blocked (38%)" in result.message
    assert "2 rated below 6 (25%)" in result.message
    assert "of 8" in result.message


def test_a_single_low_contact_is_refused() -> None:
    result = gate([ContactState(5)], DEFAULTS)
    assert not result.allowed
    assert "1 rated below 6 (100%)" in result.message


def test_an_allowed_gate_still_reports_the_shares() -> None:
    result = gate([ContactState(10), BLOCKED_BY_RATING, ContactState(8)], DEFAULTS)
    assert result.allowed
    assert result.blocked == 1
    assert "average rating 6.33" in result.message
    assert "1 blocked (33%)" in result.message
