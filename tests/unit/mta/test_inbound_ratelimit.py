"""Per-mailbox rate limits: minute and day windows, their boundaries, counts, memory."""

from __future__ import annotations

import pytest

from postroom.mta.inbound.ratelimit import DAY_BUCKET_S, DAY_S, RateLimiter

BOB = "bob@example.test"
# A whole day bucket and a whole second: boundaries below are exact.
START = 1_000 * DAY_BUCKET_S


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> RateLimiter:
    return RateLimiter(clock=clock)


# -- limits -------------------------------------------------------------------------------


def test_the_minute_limit(limiter: RateLimiter) -> None:
    for _ in range(100):
        assert limiter.allow(BOB, 1, per_minute=100, per_day=0) is None
    assert limiter.allow(BOB, 1, per_minute=100, per_day=0) == (
        "more than 100 messages in a minute"
    )
    assert limiter.usage(BOB) == (100, 100)


def test_the_day_limit(limiter: RateLimiter, clock: FakeClock) -> None:
    for _minute in range(3):
        for _ in range(10):
            limiter.allow(BOB, 1, per_minute=10, per_day=25)
        clock.advance(61)
    assert limiter.usage(BOB) == (0, 25)
    assert limiter.allow(BOB, 1, per_minute=10, per_day=25) == "more than 25 messages in a day"


def test_a_refusal_records_nothing(limiter: RateLimiter) -> None:
    assert limiter.allow(BOB, 3, per_minute=5, per_day=0) is None
    assert limiter.allow(BOB, 3, per_minute=5, per_day=0) is not None
    assert limiter.usage(BOB) == (3, 3)
    assert limiter.allow(BOB, 2, per_minute=5, per_day=0) is None  # the last two places


def test_zero_means_unlimited_and_usage_is_still_counted(limiter: RateLimiter) -> None:
    for _ in range(10_000):
        assert limiter.allow(BOB, 1, per_minute=0, per_day=0) is None
    assert limiter.usage(BOB) == (10_000, 10_000)
    # A limit applied later sees what was already sent.
    assert limiter.allow(BOB, 1, per_minute=0, per_day=10_000) == (
        "more than 10000 messages in a day"
    )


def test_keys_are_independent(limiter: RateLimiter) -> None:
    limiter.allow(BOB, 5, per_minute=5, per_day=0)
    assert limiter.allow("alice@example.test", 5, per_minute=5, per_day=0) is None
    assert limiter.usage("carol@example.test") == (0, 0)


def test_limits_are_given_per_call_so_overrides_apply_at_once(limiter: RateLimiter) -> None:
    limiter.allow(BOB, 50, per_minute=100, per_day=0)
    assert limiter.allow(BOB, 1, per_minute=50, per_day=0) is not None  # lowered
    assert limiter.allow(BOB, 1, per_minute=200, per_day=0) is None  # raised


# -- count --------------------------------------------------------------------------------


def test_count_is_what_the_caller_says_a_message_costs(limiter: RateLimiter) -> None:
    # E.g. one per recipient: a message to four recipients costs four.
    assert limiter.allow(BOB, 4, per_minute=10, per_day=0) is None
    assert limiter.allow(BOB, 4, per_minute=10, per_day=0) is None
    assert limiter.usage(BOB) == (8, 8)
    # All or nothing: three would not fit, so none of them is recorded.
    assert limiter.allow(BOB, 3, per_minute=10, per_day=0) == "more than 10 messages in a minute"
    assert limiter.usage(BOB) == (8, 8)
    assert limiter.allow(BOB, 2, per_minute=10, per_day=0) is None


def test_a_count_above_the_limit_itself_says_so(limiter: RateLimiter) -> None:
    assert limiter.allow(BOB, 12, per_minute=10, per_day=0) == (
        "12 messages at once: more than 10 messages in a minute"
    )
    assert limiter.allow(BOB, 12, per_minute=0, per_day=11) == (
        "12 messages at once: more than 11 messages in a day"
    )
    assert limiter.tracked() == 0


def test_count_zero_records_nothing(limiter: RateLimiter) -> None:
    assert limiter.allow(BOB, 0, per_minute=1, per_day=1) is None
    assert limiter.tracked() == 0


@pytest.mark.parametrize(("count", "per_minute", "per_day"), [(-1, 0, 0), (1, -1, 0), (1, 0, -1)])
def test_negative_numbers_are_refused(
    limiter: RateLimiter, count: int, per_minute: int, per_day: int
) -> None:
    with pytest.raises(ValueError):
        limiter.allow(BOB, count, per_minute, per_day)


# -- sliding windows ------------------------------------------------------------------------


def test_the_minute_window_slides_with_one_second_buckets(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    clock.now = START + 0.5
    assert limiter.allow(BOB, 60, per_minute=60, per_day=0) is None
    clock.now = START + 30
    assert limiter.usage(BOB) == (60, 60)
    clock.now = START + 60.9  # exact sliding window: allowed from 60.5; buckets: 61
    assert limiter.allow(BOB, 1, per_minute=60, per_day=0) is not None
    clock.now = START + 61
    assert limiter.usage(BOB) == (0, 60)
    assert limiter.allow(BOB, 1, per_minute=60, per_day=0) is None


def test_a_steady_sender_is_held_to_the_limit_over_every_minute(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    accepted: list[float] = []
    for second in range(610):  # an attempt every second, 60 a minute allowed
        clock.now = START + second
        if limiter.allow(BOB, 1, per_minute=60, per_day=0) is None:
            accepted.append(clock.now)
    for index, sent_at in enumerate(accepted):
        assert len([t for t in accepted[index:] if t < sent_at + 60]) <= 60
    # The window errs by one bucket on the strict side: 60 messages every 61 s.
    assert len(accepted) == 600
    assert START + 60 not in accepted and START + 121 not in accepted


def test_the_day_window_slides_with_fifteen_minute_buckets(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    assert limiter.allow(BOB, 10, per_minute=0, per_day=10) is None  # at a bucket's start
    clock.advance(DAY_BUCKET_S - 1)
    assert limiter.allow(BOB, 1, per_minute=0, per_day=20) is None  # at its end
    clock.now = START + DAY_S + DAY_BUCKET_S - 1
    assert limiter.usage(BOB) == (0, 11)
    assert limiter.allow(BOB, 1, per_minute=0, per_day=10) is not None
    clock.now = START + DAY_S + DAY_BUCKET_S
    assert limiter.usage(BOB) == (0, 0)
    assert limiter.allow(BOB, 10, per_minute=0, per_day=10) is None


def test_the_day_limit_is_never_exceeded_over_any_true_day(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    accepted: list[float] = []
    for step in range(3 * 24 * 60):  # three days, one attempt a minute, 100 a day allowed
        clock.now = START + 7 + step * 60
        if limiter.allow(BOB, 1, per_minute=0, per_day=100) is None:
            accepted.append(clock.now)
    for index, sent_at in enumerate(accepted):
        within_a_day = [t for t in accepted[index:] if t < sent_at + DAY_S]
        assert len(within_a_day) <= 100
    assert len(accepted) == 300  # and each day's quota is available again the next


def test_a_clock_stepping_back_forgets_nothing_early(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    limiter.allow(BOB, 30, per_minute=60, per_day=0)
    clock.advance(-3_600)
    assert limiter.allow(BOB, 30, per_minute=60, per_day=0) is None
    assert limiter.allow(BOB, 1, per_minute=60, per_day=0) is not None
    assert len(limiter._usage[BOB].minute) == 1


# -- memory ---------------------------------------------------------------------------------


def test_buckets_do_not_grow_with_messages(limiter: RateLimiter, clock: FakeClock) -> None:
    most_minute_buckets = most_day_buckets = 0
    for _ in range(2 * 24 * 60 * 6):  # two days, a message every 10 s ...
        clock.advance(10)
        limiter.allow(BOB, 1, per_minute=0, per_day=0)
        usage = limiter._usage[BOB]
        most_minute_buckets = max(most_minute_buckets, len(usage.minute))
        most_day_buckets = max(most_day_buckets, len(usage.day))
    for _ in range(100_000):  # ... then a burst within one second
        limiter.allow(BOB, 1, per_minute=0, per_day=0)
    usage = limiter._usage[BOB]
    assert most_minute_buckets <= 61 and len(usage.minute) <= 61
    assert most_day_buckets <= 97 and len(usage.day) <= 97
    # The windows hold the current bucket and the whole ones before it: in the minute the
    # messages of the last 60 s and the burst; in the day 96 buckets of 90 and the current one.
    assert limiter.usage(BOB) == (6 + 1 + 100_000, 96 * 90 + 1 + 100_000)


def test_least_recently_used_keys_are_evicted_past_max_tracked(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock, max_tracked=3)
    for number in range(10):
        limiter.allow(f"user{number}@example.test", 1, per_minute=0, per_day=0)
        limiter.allow(BOB, 1, per_minute=0, per_day=0)  # bob stays recently used
        assert limiter.tracked() <= 3
    assert limiter.usage(BOB) == (10, 10)
    assert limiter.usage("user9@example.test") == (1, 1)
    assert limiter.usage("user0@example.test") == (0, 0)


def test_keys_not_seen_for_a_day_are_forgotten(limiter: RateLimiter, clock: FakeClock) -> None:
    for number in range(1_000):
        limiter.allow(f"user{number}@example.test", 1, per_minute=0, per_day=0)
    clock.advance(DAY_S + DAY_BUCKET_S)
    limiter.allow(BOB, 1, per_minute=0, per_day=0)
    assert limiter.tracked() == 1


def test_max_tracked_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RateLimiter(max_tracked=0)


def test_check_answers_as_allow_would_and_records_nothing(limiter: RateLimiter) -> None:
    assert limiter.allow(BOB, 4, 5, 0) is None
    assert limiter.check(BOB, 1, 5, 0) is None
    assert limiter.check(BOB, 1, 5, 0) is None  # still room: checking took none of it
    assert limiter.check(BOB, 2, 5, 0) == "more than 5 messages in a minute"
    assert limiter.usage(BOB) == (4, 4)
    assert limiter.check("nobody@example.test", 1, 5, 0) is None
    assert limiter.tracked() == 1  # a check alone does not start tracking a key
