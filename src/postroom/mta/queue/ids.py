"""Queue ids: short, unique across nodes, sortable by arrival time.

48 bits of milliseconds since the epoch and 32 random bits, written in
Crockford base32 (no I, L, O, U): 16 characters such as `01JD6Z8K4M7Q2XRT`.
The id appears in the 250 reply, in Received headers and in every log line.
"""

from __future__ import annotations

import base64
import secrets
import time

# RFC 4648 base32 digits → Crockford's, so that ids sort like the numbers they encode.
_TO_CROCKFORD = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)


def new_queue_id(now_s: float | None = None) -> str:
    millis = int((time.time() if now_s is None else now_s) * 1000) & ((1 << 48) - 1)
    value = (millis << 32) | secrets.randbits(32)
    return base64.b32encode(value.to_bytes(10, "big")).translate(_TO_CROCKFORD).decode()
