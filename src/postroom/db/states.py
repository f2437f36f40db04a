"""The states of a delivery: the queue's vocabulary, without SQLAlchemy.

They live apart from the tables that store them (`postroom.db.models`) so that
what only reads the queue (`postroom queue stats` on its fast path) can name
them without importing SQLAlchemy.
"""

from __future__ import annotations

from enum import StrEnum


class DeliveryState(StrEnum):
    QUEUED = "queued"  # ready, never tried (or returned by an expired lease)
    INFLIGHT = "inflight"  # claimed by a node, lease_until bounds the claim
    DEFERRED = "deferred"  # temporary failure, waits for next_attempt_at
    HELD = "held"  # an operator holds it; never tried until released
    DELIVERED = "delivered"
    FAILED = "failed"  # permanent failure or expiry; a DSN went to the sender


FINAL_STATES = (DeliveryState.DELIVERED, DeliveryState.FAILED)
