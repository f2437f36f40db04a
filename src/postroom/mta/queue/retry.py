"""The retry schedule: when a deferred delivery is tried again, and when we give up.

Pure functions. Defaults follow Postfix (`[delivery] min_backoff` = 300 s,
doubling per attempt up to `max_backoff` = 4000 s, `max_queue_lifetime` = 5 days).
A small random spread (up to 10 %) keeps deliveries deferred together by one
failed connection from all coming back in the same second.
"""

from __future__ import annotations

import random


def next_attempt_at(
    now_s: float,
    attempts: int,
    *,
    min_backoff_s: float,
    max_backoff_s: float,
    jitter: random.Random | None = None,
) -> float:
    """Time of the next attempt after `attempts` failed ones (attempts >= 1)."""
    delay = min(max_backoff_s, min_backoff_s * (2 ** max(0, attempts - 1)))
    spread = (jitter or random).random() * 0.1 * delay
    return now_s + delay + spread


def is_expired(created_at_s: float, now_s: float, *, max_queue_lifetime_s: float) -> bool:
    """True once a message has waited longer than the queue lifetime."""
    return now_s - created_at_s >= max_queue_lifetime_s
