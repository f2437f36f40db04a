"""AUTH brute-force throttling: failures slow a client down, then lock it out for a while.

Contract. Before verifying a password the SMTP session asks `AuthThrottle.check(client_ip,
username)` and gets a `Verdict`: `locked` → answer 454 4.7.0 without looking at the password.
After the verification it reports `failed(...)` or `succeeded(...)`. `delay_s` is the pace for
the failures counted so far; the kinder use, which never slows a right password, is to call
`check` again after `failed` and sleep its `delay_s` (asyncio.sleep, never a blocking wait)
before answering the failure; sleeping the first verdict's `delay_s` before verifying works
too. Pure logic: no I/O, no threads (one asyncio event loop calls it), an injectable
monotonic clock, bounded memory.
Untrusted input: the client's IP text and the username it offered, both attacker-chosen.
Config: none read here; the session builds a `ThrottlePolicy` from its settings.

Two kinds of key are counted separately and the verdict is the stricter of the two:
- the client network: the IPv4 address (/32), or the IPv6 /64, because one host is usually
  given a whole /64 and an attacker rotates addresses inside it for free. An IPv4-mapped IPv6
  address (::ffff:192.0.2.1, from a dual-stack socket) counts as its IPv4 address. Text that
  is not an address is counted as it is;
- the account a username names: the canonical address AUTH looks up
  (`mailbox.names.login_address`: lower case, final dots dropped, the domain through UTS 46
  to A-labels), so that "ceo@b.test.", "ceo@b.test.." and "CEO@Ｂ.ｔｅｓｔ", which all log in
  to ceo@b.test, share its counter and its lock. A username that names no address (and so
  can never log in) is counted lower-cased and cut at 255 characters: a megabyte of
  username must not cost a megabyte of memory.

Per key, failures within the last `window_s` are counted. Up to `free_failures` of them cost
nothing; with each one more the delay is 1, 2, 4 ... seconds, capped at `max_delay_s` (so
even a real user behind an attacked username waits seconds, not a client timeout). The
failure that reaches `max_failures` locks the key for `lockout_s`; a locked key keeps the
delay of `max_failures` failures, so the failure that locks is answered slowly too.

Without locking the real user out forever:
- a lock lasts `lockout_s` from the failure that set it, and attempts during the lock are
  neither counted nor extend it: an attacker who keeps hammering cannot keep a username
  locked by its own momentum. A lock wipes the count, so after it the key starts afresh;
  a persistent attacker gets about `max_failures` guesses per `lockout_s` per key;
- the username and the network locks are independent: once the username lock expired, the
  user authenticates from their own network while the attacker's network stays locked;
- `succeeded` forgets every failure of that username (the user's own typos, and the guesses
  of others, which a correct password makes moot) and, on that network, the failures *against
  that username* only. Forgetting the network's whole count would let an attacker with one
  valid account launder its guesses: nine wrong passwords for other users, one right one for
  its own, forever.
A distributed attacker (many networks) can still keep a username locked by relocking it as
soon as a lock expires; exempting networks the user recently succeeded from would close that,
and is left to a later change.

Memory: each kind keeps at most `max_tracked` keys, each with at most `max_failures`
timestamps. Keys are kept in order of last failure; a key idle for longer than both the
window and the lockout is forgotten (it could not change a verdict), and past `max_tracked`
the longest-idle key is evicted first, even with failures left. Under a flood big enough to
evict, the keys being hammered are the most recently touched and so the last to go.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from postroom.mailbox.names import login_address

# No login is longer; a megabyte of username must not cost a megabyte of memory.
_KEY_MAX_CHARS = 255


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """How many failures are free, when delays start and locks fall, and for how long."""

    free_failures: int = 3
    """Failures in the window before any delay."""
    max_failures: int = 10
    """Failures in the window that lock the key."""
    window_s: float = 900.0
    """Failures older than this are forgotten."""
    lockout_s: float = 900.0
    """How long a lock lasts; it then expires by itself, whatever happened during it."""
    max_delay_s: float = 8.0
    """The cap of the delay, which doubles from 1 s with each failure past `free_failures`;
    a locked key keeps the delay of `max_failures` failures."""
    max_tracked: int = 100_000
    """Keys kept per kind (networks, usernames); the longest idle is evicted first."""

    def __post_init__(self) -> None:
        # free_failures >= max_failures is allowed: a key then locks before any delay.
        if self.free_failures < 0 or self.max_failures < 1:
            raise ValueError("free_failures must not be negative, max_failures at least 1")
        if self.window_s <= 0 or self.lockout_s < 0 or self.max_delay_s < 0:
            raise ValueError("window_s must be positive, lockout_s and max_delay_s not negative")
        if self.max_tracked < 1:
            raise ValueError("max_tracked must be at least 1")


@dataclass(frozen=True, slots=True)
class Verdict:
    """How the session treats an AUTH attempt: refuse it, or answer it after a delay."""

    locked: bool
    """Refuse with 454 4.7.0 without checking the password."""
    delay_s: float
    """Wait this long before answering (asyncio.sleep in the session); also set when locked,
    for a session that answers its refusals slowly too."""
    reason: str
    """For the log, "" when nothing applies: "ip 192.0.2.7: 5 failures, delayed 4 s"."""


_FREE = Verdict(locked=False, delay_s=0.0, reason="")
DEFAULT_POLICY = ThrottlePolicy()


@dataclass(slots=True)
class _Failures:
    """One key's recent failures as (time, username), oldest first, and its lock."""

    recent: deque[tuple[float, str]]
    last_failure_at: float
    locked_until: float = 0.0
    locked_after: int = 0


class _Counter:
    """Failures per key for one kind of key, in order of last failure."""

    def __init__(self, label: str, policy: ThrottlePolicy) -> None:
        self._label = label
        self._policy = policy
        self._keys: OrderedDict[str, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def verdict(self, key: str, now: float) -> Verdict:
        failures = self._keys.get(key)
        if failures is None:
            return _FREE
        policy = self._policy
        if now < failures.locked_until:
            return Verdict(
                locked=True,
                delay_s=self._delay_s(policy.max_failures),
                reason=f"{self._label} {key}: locked after {failures.locked_after} failures,"
                f" {failures.locked_until - now:.0f} s left",
            )
        count = self._count_recent(failures, now)
        delay_s = self._delay_s(count)
        if not delay_s:
            return _FREE
        return Verdict(
            locked=False,
            delay_s=delay_s,
            reason=f"{self._label} {key}: {count} failures, delayed {delay_s:g} s",
        )

    def failed(self, key: str, username: str, now: float) -> None:
        policy = self._policy
        self._forget_idle(now)
        failures = self._keys.get(key)
        if failures is None:
            failures = self._keys[key] = _Failures(deque(maxlen=policy.max_failures), now)
            if len(self._keys) > policy.max_tracked:
                self._keys.popitem(last=False)
        self._keys.move_to_end(key)
        failures.last_failure_at = now
        if now < failures.locked_until:
            return  # not counted, and the lock is not extended
        failures.recent.append((now, username))
        count = self._count_recent(failures, now)
        if count >= policy.max_failures:
            failures.recent.clear()
            failures.locked_until = now + policy.lockout_s
            failures.locked_after = count

    def forget(self, key: str, now: float, username: str | None = None) -> None:
        """Forget the key's failures: all of them, or only those against `username`."""
        failures = self._keys.get(key)
        if failures is None:
            return
        if username is None:
            failures.recent.clear()
        else:
            kept = [failure for failure in failures.recent if failure[1] != username]
            failures.recent = deque(kept, maxlen=self._policy.max_failures)
        if not failures.recent and now >= failures.locked_until:
            del self._keys[key]

    def _delay_s(self, count: int) -> float:
        past_free = count - self._policy.free_failures
        if past_free <= 0:
            return 0.0
        # The exponent is bounded so that a huge max_failures cannot overflow a float.
        return min(self._policy.max_delay_s, 2.0 ** min(past_free - 1, 64))

    def _count_recent(self, failures: _Failures, now: float) -> int:
        recent = failures.recent
        while recent and recent[0][0] <= now - self._policy.window_s:
            recent.popleft()
        return len(recent)

    def _forget_idle(self, now: float) -> None:
        # A key idle this long has no counted failure and no lock left: it cannot change a
        # verdict. Keys are in order of last failure, so the idle ones are at the front.
        idle_after_s = max(self._policy.window_s, self._policy.lockout_s)
        while self._keys:
            oldest = next(iter(self._keys.values()))
            if now - oldest.last_failure_at < idle_after_s:
                break
            self._keys.popitem(last=False)


class AuthThrottle:
    """Counts AUTH failures per client network and per username; see the module docstring."""

    def __init__(
        self,
        policy: ThrottlePolicy = DEFAULT_POLICY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._networks = _Counter("ip", policy)
        self._usernames = _Counter("user", policy)

    def check(self, client_ip: str, username: str | None) -> Verdict:
        """Before verifying a password: the stricter verdict of the network and the username.

        `username` may be None when it is not known yet; only the network then counts.
        A session that refuses a locked attempt may still report it as `failed`: the locked
        key ignores it, the other key (usually the attacker's network) counts it.
        """
        now = self._clock()
        verdicts = [self._networks.verdict(client_network(client_ip), now)]
        if username is not None:
            verdicts.append(self._usernames.verdict(normalise_username(username), now))
        locked = [verdict for verdict in verdicts if verdict.locked]
        if locked:
            return Verdict(
                True,
                max(verdict.delay_s for verdict in locked),
                "; ".join(verdict.reason for verdict in locked),
            )
        delayed = [verdict for verdict in verdicts if verdict.delay_s > 0]
        if not delayed:
            return _FREE
        return Verdict(
            False,
            max(verdict.delay_s for verdict in delayed),
            "; ".join(verdict.reason for verdict in delayed),
        )

    def failed(self, client_ip: str, username: str) -> None:
        """After a failed AUTH (wrong password, unknown user, malformed credentials)."""
        now = self._clock()
        name = normalise_username(username)
        self._networks.failed(client_network(client_ip), name, now)
        self._usernames.failed(name, name, now)

    def succeeded(self, client_ip: str, username: str) -> None:
        """After a successful AUTH: the user's failures are forgiven, and so are the network's
        failures against that username (not those against others)."""
        now = self._clock()
        name = normalise_username(username)
        self._usernames.forget(name, now)
        self._networks.forget(client_network(client_ip), now, username=name)

    def tracked(self) -> tuple[int, int]:
        """(networks, usernames) currently remembered: for metrics and the memory bound."""
        return len(self._networks), len(self._usernames)


def client_network(client_ip: str) -> str:
    """The key a client's failures count against: its IPv4 address or its IPv6 /64."""
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip[:_KEY_MAX_CHARS]  # a Unix socket peer, a test name: as it is
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def normalise_username(username: str) -> str:
    """The key a username's failures count against: the account it logs in to, or the
    name lower-cased and bounded in length when it names none."""
    return login_address(username) or username[:_KEY_MAX_CHARS].lower()
