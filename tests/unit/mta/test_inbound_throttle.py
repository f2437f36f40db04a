"""AUTH throttling: delays, locks that expire, success, network and username keys, memory."""

from __future__ import annotations

import pytest

from postroom.mta.inbound.throttle import (
    AuthThrottle,
    ThrottlePolicy,
    Verdict,
    client_network,
    normalise_username,
)

POLICY = ThrottlePolicy(
    free_failures=3, max_failures=10, window_s=900, lockout_s=900, max_delay_s=8
)
ATTACKER = "198.51.100.66"
USER_IP = "192.0.2.10"


class FakeClock:
    def __init__(self, now: float = 10_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def throttle(clock: FakeClock) -> AuthThrottle:
    return AuthThrottle(POLICY, clock=clock)


def fail(throttle: AuthThrottle, times: int, client_ip: str, username: str) -> None:
    for _ in range(times):
        throttle.failed(client_ip, username)


def fail_as_many(throttle: AuthThrottle, client_ip: str, prefix: str, times: int) -> None:
    """Failures from one client against as many different usernames."""
    for number in range(times):
        throttle.failed(client_ip, f"{prefix}{number}@example.test")


# -- delays and locks ------------------------------------------------------------------------


def test_a_clean_client_is_neither_delayed_nor_locked(throttle: AuthThrottle) -> None:
    assert throttle.check(USER_IP, "bob@example.test") == Verdict(False, 0.0, "")
    assert throttle.check(USER_IP, None) == Verdict(False, 0.0, "")


def test_delays_start_after_the_free_failures_double_and_are_capped(
    throttle: AuthThrottle,
) -> None:
    delays = []  # as the session asks: after each failure, how slowly to answer it
    for _ in range(POLICY.max_failures - 1):
        throttle.failed(ATTACKER, "bob@example.test")
        verdict = throttle.check(ATTACKER, "bob@example.test")
        assert not verdict.locked
        delays.append(verdict.delay_s)
    assert delays == [0, 0, 0, 1, 2, 4, 8, 8, 8]
    assert "ip 198.51.100.66: 9 failures, delayed 8 s" in verdict.reason
    assert "user bob@example.test: 9 failures, delayed 8 s" in verdict.reason


def test_the_failure_that_locks_is_answered_slowly_too(clock: FakeClock) -> None:
    throttle = AuthThrottle(ThrottlePolicy(max_failures=4), clock=clock)
    delays = []
    for _ in range(4):
        throttle.failed(ATTACKER, "bob@example.test")
        delays.append(throttle.check(ATTACKER, "bob@example.test").delay_s)
    assert delays == [0, 0, 0, 1]
    assert throttle.check(ATTACKER, "bob@example.test").locked


def test_the_failure_that_reaches_max_failures_locks(throttle: AuthThrottle) -> None:
    fail(throttle, POLICY.max_failures, ATTACKER, "bob@example.test")
    verdict = throttle.check(ATTACKER, "bob@example.test")
    assert verdict.locked
    assert verdict.delay_s == 8
    assert "ip 198.51.100.66: locked after 10 failures, 900 s left" in verdict.reason
    assert "user bob@example.test: locked after 10 failures, 900 s left" in verdict.reason


def test_failures_older_than_the_window_are_forgotten(
    throttle: AuthThrottle, clock: FakeClock
) -> None:
    fail(throttle, 5, ATTACKER, "bob@example.test")
    clock.advance(POLICY.window_s / 2)
    fail(throttle, 1, ATTACKER, "bob@example.test")
    assert throttle.check(ATTACKER, "bob@example.test").delay_s == 4  # 6 failures
    clock.advance(POLICY.window_s / 2)
    assert throttle.check(ATTACKER, "bob@example.test").delay_s == 0  # 1 failure left
    fail(throttle, 8, ATTACKER, "bob@example.test")
    assert not throttle.check(ATTACKER, "bob@example.test").locked  # 9, not 14


def test_a_lock_expires_by_itself_and_attempts_during_it_neither_count_nor_extend_it(
    throttle: AuthThrottle, clock: FakeClock
) -> None:
    fail(throttle, POLICY.max_failures, ATTACKER, "bob@example.test")
    for _ in range(89):  # the attacker keeps hammering all through the lock
        clock.advance(10)
        throttle.failed(ATTACKER, "bob@example.test")
        assert throttle.check(ATTACKER, "bob@example.test").locked
    clock.advance(POLICY.lockout_s - 890)
    # Exactly lockout_s after it was set, the lock is gone, and so is the count.
    assert throttle.check(ATTACKER, "bob@example.test") == Verdict(False, 0.0, "")


def test_after_a_lock_the_key_starts_afresh(throttle: AuthThrottle, clock: FakeClock) -> None:
    fail(throttle, POLICY.max_failures, ATTACKER, "bob@example.test")
    clock.advance(POLICY.lockout_s)
    fail(throttle, POLICY.free_failures, ATTACKER, "bob@example.test")
    assert throttle.check(ATTACKER, "bob@example.test").delay_s == 0
    fail(throttle, 1, ATTACKER, "bob@example.test")
    assert throttle.check(ATTACKER, "bob@example.test").delay_s == 1
    fail(throttle, POLICY.max_failures - POLICY.free_failures - 2, ATTACKER, "bob@example.test")
    assert not throttle.check(ATTACKER, "bob@example.test").locked
    throttle.failed(ATTACKER, "bob@example.test")
    assert throttle.check(ATTACKER, "bob@example.test").locked


# -- network and username keys ----------------------------------------------------------------


def test_many_usernames_from_one_network_lock_the_network_only(throttle: AuthThrottle) -> None:
    fail_as_many(throttle, ATTACKER, "guess", POLICY.max_failures)
    assert throttle.check(ATTACKER, "guess0@example.test").locked
    assert throttle.check(ATTACKER, None).locked
    assert "user" not in throttle.check(ATTACKER, "somebody@example.test").reason
    # Each of those users, from their own network, is not bothered by one failure.
    assert throttle.check(USER_IP, "guess0@example.test") == Verdict(False, 0.0, "")


def test_one_username_from_many_networks_locks_the_username_only(
    throttle: AuthThrottle,
) -> None:
    for number in range(POLICY.max_failures):
        throttle.failed(f"203.0.113.{number}", "Bob@Example.test")
    verdict = throttle.check(USER_IP, "bob@example.test")
    assert verdict.locked
    assert verdict.reason.startswith("user bob@example.test: locked after 10 failures")
    assert not throttle.check("203.0.113.0", "alice@example.test").locked


def test_the_verdict_is_the_stricter_of_network_and_username(throttle: AuthThrottle) -> None:
    fail_as_many(throttle, ATTACKER, "guess", 4)  # network: 4 failures → 1 s
    fail(throttle, 6, "203.0.113.1", "bob@example.test")  # username: 6 failures → 4 s
    verdict = throttle.check(ATTACKER, "bob@example.test")
    assert verdict == Verdict(
        False,
        4.0,
        "ip 198.51.100.66: 4 failures, delayed 1 s; user bob@example.test: 6 failures, delayed 4 s",
    )
    fail_as_many(throttle, ATTACKER, "more", 6)  # network locked
    assert throttle.check(ATTACKER, "bob@example.test").locked


def test_the_real_user_gets_in_from_their_network_once_the_username_lock_expired(
    throttle: AuthThrottle, clock: FakeClock
) -> None:
    fail(throttle, 5, ATTACKER, "bob@example.test")
    for number in range(5):  # the rest of the botnet finishes bob's count
        throttle.failed(f"203.0.113.{number}", "bob@example.test")
    assert throttle.check(USER_IP, "bob@example.test").locked
    clock.advance(300)
    fail_as_many(throttle, ATTACKER, "guess", 5)  # the attacker's network locks later
    assert throttle.check(ATTACKER, None).locked
    clock.advance(POLICY.lockout_s - 300)
    assert throttle.check(USER_IP, "bob@example.test") == Verdict(False, 0.0, "")
    assert throttle.check(ATTACKER, "bob@example.test").locked
    throttle.succeeded(USER_IP, "bob@example.test")
    assert throttle.check(ATTACKER, "bob@example.test").locked


def test_a_refused_attempt_reported_as_failed_still_counts_against_the_other_key(
    throttle: AuthThrottle,
) -> None:
    for number in range(POLICY.max_failures):
        throttle.failed(f"203.0.113.{number}", "bob@example.test")
    fail(throttle, POLICY.max_failures, ATTACKER, "bob@example.test")  # bob is locked
    verdict = throttle.check(ATTACKER, "alice@example.test")
    assert verdict.locked and verdict.reason.startswith("ip 198.51.100.66")


# -- success --------------------------------------------------------------------------------


def test_success_forgives_the_users_own_typos(throttle: AuthThrottle) -> None:
    fail(throttle, 7, USER_IP, "bob@example.test")
    assert throttle.check(USER_IP, "bob@example.test").delay_s == 8
    throttle.succeeded(USER_IP, "BOB@example.test")
    assert throttle.check(USER_IP, "bob@example.test") == Verdict(False, 0.0, "")
    assert throttle.tracked() == (0, 0)


def test_success_clears_the_usernames_failures_from_every_network(
    throttle: AuthThrottle,
) -> None:
    for number in range(6):
        throttle.failed(f"203.0.113.{number}", "bob@example.test")
    throttle.succeeded(USER_IP, "bob@example.test")
    assert throttle.check(USER_IP, "bob@example.test") == Verdict(False, 0.0, "")
    # The guessers' networks keep their single failure each.
    assert throttle.tracked() == (6, 0)


def test_an_attacker_cannot_launder_its_failures_with_its_own_account(
    throttle: AuthThrottle,
) -> None:
    for round_number in range(3):
        fail_as_many(throttle, ATTACKER, f"victim{round_number}-", 3)
        throttle.succeeded(ATTACKER, "attacker@example.test")
    verdict = throttle.check(ATTACKER, "attacker@example.test")
    assert verdict.locked is False and verdict.delay_s == 8  # 9 failures kept
    fail_as_many(throttle, ATTACKER, "victim3-", 1)
    throttle.succeeded(ATTACKER, "attacker@example.test")
    assert throttle.check(ATTACKER, "attacker@example.test").locked


def test_success_on_a_shared_network_keeps_the_other_users_failures(
    throttle: AuthThrottle,
) -> None:
    fail(throttle, 3, USER_IP, "bob@example.test")
    fail(throttle, 2, USER_IP, "alice@example.test")
    throttle.succeeded(USER_IP, "bob@example.test")
    assert throttle.check(USER_IP, None) == Verdict(False, 0.0, "")  # 2 left
    fail(throttle, 2, USER_IP, "carol@example.test")
    assert throttle.check(USER_IP, None).delay_s == 1  # 4 failures: alice's and carol's


# -- networks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_ip", "network"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::1", "::/64"),
        ("unix:/run/postroom.sock", "unix:/run/postroom.sock"),
    ],
)
def test_client_networks(client_ip: str, network: str) -> None:
    assert client_network(client_ip) == network


def test_an_ipv6_attacker_rotating_within_its_64_is_one_key(throttle: AuthThrottle) -> None:
    for number in range(POLICY.max_failures):
        throttle.failed(f"2001:db8:1:2::{number + 1:x}", f"guess{number}@example.test")
    assert throttle.check("2001:db8:1:2:abcd::1", None).locked
    assert throttle.check("2001:db8:1:3::1", None) == Verdict(False, 0.0, "")
    assert throttle.tracked() == (1, POLICY.max_failures)


def test_ipv4_mapped_ipv6_counts_as_the_ipv4_address(throttle: AuthThrottle) -> None:
    fail_as_many(throttle, "::ffff:198.51.100.66", "v6-", 5)
    fail_as_many(throttle, ATTACKER, "v4-", 5)
    assert throttle.check(ATTACKER, None).locked
    assert throttle.check("::ffff:198.51.100.66", None).locked
    assert throttle.check("::ffff:198.51.100.67", None) == Verdict(False, 0.0, "")


def test_usernames_are_compared_lower_cased_and_bounded(throttle: AuthThrottle) -> None:
    assert normalise_username("Bob@Example.TEST") == "bob@example.test"
    assert len(normalise_username("x" * 1_000_000)) == 255
    for number in range(POLICY.max_failures):
        throttle.failed(f"203.0.113.{number}", "BOB@example.test")
    assert throttle.check(USER_IP, "bob@EXAMPLE.test").locked


# Spellings that AUTH accepts for the one account ceo@b.test (issue 12, item 4).
CEO_SPELLINGS = ["ceo@b.test.", "ceo@b.test..", "CEO@Ｂ.ｔｅｓｔ"]


@pytest.mark.parametrize("spelling", [*CEO_SPELLINGS, "Ceo@B.Test", "ceo@b.test"])
def test_every_spelling_of_an_account_is_the_account(spelling: str) -> None:
    assert normalise_username(spelling) == "ceo@b.test"


def test_the_spellings_of_one_account_share_its_counter_and_lock_together(
    clock: FakeClock,
) -> None:
    throttle = AuthThrottle(ThrottlePolicy(max_failures=3), clock=clock)
    for number, spelling in enumerate(CEO_SPELLINGS):  # from three networks
        assert not throttle.check(f"203.0.113.{number}", spelling).locked
        throttle.failed(f"203.0.113.{number}", spelling)
    # Locked for the account, whatever spelling comes next, from a clean network.
    for spelling in ["ceo@b.test", *CEO_SPELLINGS, "CEO@b.TEST."]:
        verdict = throttle.check(USER_IP, spelling)
        assert verdict.locked and "user ceo@b.test: locked" in verdict.reason


@pytest.mark.parametrize(
    ("username", "key"),
    [
        ("Not An Address", "not an address"),
        ("@B.TEST", "@b.test"),
        ("CEO@", "ceo@"),
        ("CEO@xn--broken.\udcff", "ceo@xn--broken.\udcff"),
        ("X" * 400 + "@b.test", "x" * 255),  # no login is longer than 320: not an address
    ],
)
def test_names_that_name_no_account_are_counted_lower_cased_and_bounded(
    username: str, key: str
) -> None:
    assert normalise_username(username) == key


# -- memory -------------------------------------------------------------------------------


def test_keys_past_max_tracked_are_evicted_longest_idle_first(clock: FakeClock) -> None:
    throttle = AuthThrottle(ThrottlePolicy(max_tracked=50), clock=clock)
    fail(throttle, 5, ATTACKER, "bob@example.test")
    for number in range(10_000):
        clock.advance(0.001)
        throttle.failed(f"10.{number // 256}.{number % 256}.1", f"user{number}@example.test")
        if number % 40 == 0:  # the attacker keeps at it, so it stays among the recent
            throttle.failed(ATTACKER, "bob@example.test")
        assert max(throttle.tracked()) <= 50
    assert throttle.check(ATTACKER, None).locked
    assert throttle.check("10.0.0.1", "user0@example.test") == Verdict(False, 0.0, "")


def test_idle_keys_are_forgotten(throttle: AuthThrottle, clock: FakeClock) -> None:
    fail_as_many(throttle, ATTACKER, "guess", 50)
    assert throttle.tracked() == (1, 50)
    clock.advance(max(POLICY.window_s, POLICY.lockout_s))
    throttle.failed(USER_IP, "bob@example.test")
    assert throttle.tracked() == (1, 1)


def test_per_key_memory_is_bounded_by_max_failures(throttle: AuthThrottle) -> None:
    fail_as_many(throttle, ATTACKER, "guess", 10_000)
    record = throttle._networks._keys[client_network(ATTACKER)]
    assert len(record.recent) <= POLICY.max_failures


# -- policy --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"max_failures": 0},
        {"free_failures": -1},
        {"window_s": 0},
        {"lockout_s": -1},
        {"max_delay_s": -1},
        {"max_tracked": 0},
    ],
)
def test_policy_refuses_nonsense(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ThrottlePolicy(**changes)  # type: ignore[arg-type]


def test_free_failures_may_reach_max_failures_a_key_then_locks_without_delays(
    clock: FakeClock,
) -> None:
    throttle = AuthThrottle(ThrottlePolicy(max_failures=2), clock=clock)
    throttle.failed(ATTACKER, "bob@example.test")
    assert throttle.check(ATTACKER, "bob@example.test") == Verdict(False, 0.0, "")
    throttle.failed(ATTACKER, "bob@example.test")
    verdict = throttle.check(ATTACKER, "bob@example.test")
    assert verdict.locked and verdict.delay_s == 0


def test_a_huge_max_failures_does_not_overflow_the_delay(clock: FakeClock) -> None:
    throttle = AuthThrottle(ThrottlePolicy(max_failures=5_000), clock=clock)
    fail(throttle, 4_000, ATTACKER, "bob@example.test")
    assert throttle.check(ATTACKER, "bob@example.test").delay_s == 8
