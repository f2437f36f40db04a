"""Per-mailbox sending rate limits: messages in the last minute and the last day.

Contract. The submission session calls `RateLimiter.allow(key, count, per_minute, per_day)`
when messages are about to be accepted: `key` names the sender (the authenticated mailbox),
`count` is what they cost (the submission session counts one per accepted recipient: each
leaves as a message of its own), the limits come from config with per-mailbox overrides
already applied (0 = unlimited). If adding `count` keeps the key within both limits, the
messages are recorded and the answer is None; otherwise nothing is recorded and the answer is
a one-line reason for the log and the 451 4.7.1 text ("more than 100 messages in a minute").
Check and record are one step, so two messages cannot both squeeze into the last free place.
`check(...)` gives the same answer and records nothing: for refusing early (at MAIL, before
a recipient's other checks) what `allow` would refuse later. Pure logic: no I/O, no threads
(one asyncio event loop calls it), an injectable clock. Untrusted input: none (keys come from
authentication, limits from config). Config: none read here.

Usage is always recorded, limited or not, so a limit set or lowered later applies at once to
what the mailbox already sent today.

Memory is bounded whatever the rate: messages are not remembered one timestamp each but
counted in fixed buckets, 1 s wide for the minute window (at most 61 per key) and 15 min wide
for the day window (at most 97 per key). The approximation errs on the strict side: a window
is the current bucket plus the 60 (resp. 96) before it, so a message is remembered between
60 and 61 s (resp. between 24 h and 24 h 15 min). Over any true sliding window the limit is
never exceeded; a sender may be refused up to one bucket (1 s, resp. 15 min) before the exact
sliding window would have let them through. A clock that steps back (NTP on `time.time`)
adds to the newest bucket instead, which again never forgets early.

A key not seen for a day (and one day-bucket, after which it holds no count) is forgotten;
past `max_tracked` keys the least recently used is evicted, losing its counts, which only
happens with more than `max_tracked` mailboxes sending within a day.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

MINUTE_S = 60
DAY_S = 86_400
MINUTE_BUCKET_S = 1
DAY_BUCKET_S = 900


class _Window:
    """Counts in fixed buckets covering the current bucket and the `length_s` before it."""

    __slots__ = ("_bucket_s", "_buckets", "_buckets_before", "total")

    def __init__(self, length_s: int, bucket_s: int) -> None:
        self._bucket_s = bucket_s
        self._buckets_before = length_s // bucket_s
        # [bucket index, count], indexes strictly increasing; mutable to add to the newest.
        self._buckets: deque[list[int]] = deque()
        self.total = 0

    def expire(self, now: float) -> None:
        oldest_kept = int(now // self._bucket_s) - self._buckets_before
        buckets = self._buckets
        while buckets and buckets[0][0] < oldest_kept:
            self.total -= buckets.popleft()[1]

    def add(self, now: float, count: int) -> None:
        index = int(now // self._bucket_s)
        buckets = self._buckets
        if buckets and buckets[-1][0] >= index:
            buckets[-1][1] += count  # same bucket, or the clock stepped back
        else:
            buckets.append([index, count])
        self.total += count

    def __len__(self) -> int:
        return len(self._buckets)


class _Usage:
    __slots__ = ("day", "last_seen", "minute")

    def __init__(self, now: float) -> None:
        self.minute = _Window(MINUTE_S, MINUTE_BUCKET_S)
        self.day = _Window(DAY_S, DAY_BUCKET_S)
        self.last_seen = now

    def expire(self, now: float) -> None:
        self.minute.expire(now)
        self.day.expire(now)


class RateLimiter:
    """Messages per minute and per day for each key; see the module docstring."""

    def __init__(self, clock: Callable[[], float] = time.time, max_tracked: int = 100_000) -> None:
        if max_tracked < 1:
            raise ValueError("max_tracked must be at least 1")
        self._clock = clock
        self._max_tracked = max_tracked
        self._usage: OrderedDict[str, _Usage] = OrderedDict()  # least recently used first

    def allow(self, key: str, count: int, per_minute: int, per_day: int) -> str | None:
        """Record `count` messages for `key` and answer None, or record nothing and answer
        why not, when they would take it past `per_minute` or `per_day` (0 = unlimited)."""
        now = self._clock()
        refusal = self._refusal(key, count, per_minute, per_day, now)
        if refusal is not None or count == 0:
            return refusal
        usage = self._usage.get(key)
        if usage is None:
            usage = self._usage[key] = _Usage(now)
            if len(self._usage) > self._max_tracked:
                self._usage.popitem(last=False)
        usage.minute.add(now, count)
        usage.day.add(now, count)
        return None

    def check(self, key: str, count: int, per_minute: int, per_day: int) -> str | None:
        """What `allow` would answer now, recording nothing."""
        return self._refusal(key, count, per_minute, per_day, self._clock())

    def _refusal(
        self, key: str, count: int, per_minute: int, per_day: int, now: float
    ) -> str | None:
        if count < 0 or per_minute < 0 or per_day < 0:
            raise ValueError("count and limits must not be negative")
        self._forget_idle(now)
        usage = self._usage.get(key)
        if usage is not None:
            usage.expire(now)
            usage.last_seen = now
            self._usage.move_to_end(key)
        sent_minute, sent_day = (usage.minute.total, usage.day.total) if usage else (0, 0)
        for limit, sent, period in (
            (per_minute, sent_minute, "minute"),
            (per_day, sent_day, "day"),
        ):
            if limit and sent + count > limit:
                # Said apart because waiting will not help: the caller may prefer a 5xx.
                at_once = f"{count} messages at once: " if count > limit else ""
                return f"{at_once}more than {limit} messages in a {period}"
        return None

    def usage(self, key: str) -> tuple[int, int]:
        """(messages in the last minute, messages in the last day) recorded for `key`."""
        usage = self._usage.get(key)
        if usage is None:
            return 0, 0
        usage.expire(self._clock())
        return usage.minute.total, usage.day.total

    def tracked(self) -> int:
        """Keys currently remembered: for metrics and the memory bound."""
        return len(self._usage)

    def _forget_idle(self, now: float) -> None:
        # Idle this long, every bucket of a key has expired: forgetting it loses no count.
        idle_after_s = DAY_S + DAY_BUCKET_S
        while self._usage:
            oldest = next(iter(self._usage.values()))
            if now - oldest.last_seen < idle_after_s:
                break
            self._usage.popitem(last=False)
