"""The retry schedule (backoff, cap, jitter, expiry) and queue ids."""

from __future__ import annotations

import random
import re

import pytest

from postroom.mta.queue.ids import new_queue_id
from postroom.mta.queue.retry import is_expired, next_attempt_at

NOW = 1_700_000_000.0


class NoJitter(random.Random):
    """random() == 0: the schedule without its spread."""

    def random(self) -> float:
        return 0.0


class MostJitter(random.Random):
    def random(self) -> float:
        return 0.999999


def delay(attempts: int, rng: random.Random, *, min_s: float = 300, max_s: float = 4000) -> float:
    return (
        next_attempt_at(NOW, attempts, min_backoff_s=min_s, max_backoff_s=max_s, jitter=rng) - NOW
    )


def test_first_retry_waits_the_minimal_backoff() -> None:
    assert delay(1, NoJitter()) == 300


def test_delay_doubles_per_attempt() -> None:
    assert [delay(n, NoJitter()) for n in range(1, 5)] == [300, 600, 1200, 2400]


def test_delay_is_capped() -> None:
    assert delay(5, NoJitter()) == 4000  # 4800 capped
    assert delay(50, NoJitter()) == 4000
    assert delay(10_000, NoJitter(), min_s=1, max_s=60) == 60  # no overflow on huge counts


def test_zero_attempts_is_treated_as_the_first() -> None:
    assert delay(0, NoJitter()) == 300


def test_other_backoff_settings() -> None:
    assert [delay(n, NoJitter(), min_s=10, max_s=35) for n in (1, 2, 3, 4)] == [10, 20, 35, 35]


@pytest.mark.parametrize("attempts", [1, 2, 3, 4, 5, 9])
def test_jitter_adds_at_most_ten_percent(attempts: int) -> None:
    base = delay(attempts, NoJitter())
    rng = random.Random(attempts)
    delays = [delay(attempts, rng) for _ in range(2000)]
    assert all(base <= d <= base * 1.1 for d in delays)
    # The spread is used: not every retry lands on the same second.
    assert max(delays) - min(delays) > base * 0.05
    assert delay(attempts, MostJitter()) == pytest.approx(base * 1.1, rel=1e-5)


def test_jitter_without_an_rng_stays_in_bounds() -> None:
    for _ in range(200):
        d = next_attempt_at(NOW, 1, min_backoff_s=300, max_backoff_s=4000) - NOW
        assert 300 <= d <= 330


def test_jitter_is_deterministic_with_a_seeded_rng() -> None:
    first = [delay(2, random.Random(7)) for _ in range(3)]
    assert first == [delay(2, random.Random(7)) for _ in range(3)]


def test_expiry() -> None:
    lifetime = 5 * 86400
    created = NOW - lifetime
    assert not is_expired(created + 1, NOW, max_queue_lifetime_s=lifetime)
    assert is_expired(created, NOW, max_queue_lifetime_s=lifetime)
    assert is_expired(created - 1, NOW, max_queue_lifetime_s=lifetime)
    assert not is_expired(NOW, NOW, max_queue_lifetime_s=lifetime)
    assert is_expired(NOW, NOW, max_queue_lifetime_s=0)


# -- queue ids ------------------------------------------------------------------

CROCKFORD = re.compile(r"^[0-9A-HJKMNP-TV-Z]{16}$")


def test_ids_are_16_crockford_characters() -> None:
    for _ in range(500):
        queue_id = new_queue_id()
        assert len(queue_id) == 16
        assert CROCKFORD.match(queue_id), queue_id
        assert not set(queue_id) & set("ILOU")


def test_ids_sort_by_time() -> None:
    times = [NOW + step * 0.001 for step in range(0, 5000, 7)] + [NOW + 86400 * 365]
    ids = [new_queue_id(t) for t in times]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_the_time_prefix_is_the_milliseconds() -> None:
    # 80 bits: the first 48 are milliseconds; 16 chars * 5 bits = 80.
    queue_id = new_queue_id(NOW)
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = 0
    for char in queue_id:
        value = value * 32 + alphabet.index(char)
    assert value >> 32 == int(NOW * 1000)


def test_ids_in_the_same_millisecond_differ() -> None:
    ids = {new_queue_id(NOW) for _ in range(1000)}
    assert len(ids) == 1000
    assert len({queue_id[:9] for queue_id in ids}) == 1  # same time prefix (45 bits)


def test_ids_are_unique_over_10k() -> None:
    ids = [new_queue_id() for _ in range(10_000)]
    assert len(set(ids)) == 10_000


def test_ids_from_the_clock_never_go_backwards() -> None:
    ids = [new_queue_id() for _ in range(2000)]
    prefixes = [queue_id[:9] for queue_id in ids]
    assert prefixes == sorted(prefixes)


def test_split_job_keeps_every_delivery_in_order_in_bounded_transactions() -> None:
    from postroom.mta.queue.records import ClaimedDelivery, Job, split_job

    deliveries = [ClaimedDelivery(i, f"u{i}@d.test", 0) for i in range(7)]
    job = Job("Q", "a@s.test", "d.test", "p", 0.0, 10, deliveries, body=b"x")
    parts = split_job(job, 3)
    assert [[d.delivery_id for d in part.deliveries] for part in parts] == [
        [0, 1, 2],
        [3, 4, 5],
        [6],
    ]
    assert all(part.body == b"x" and part.message_id == "Q" for part in parts)
    assert split_job(job, 7) == [job]
