"""VERP return paths: `bounce+TOKEN@<bounce domain>`, one per delivery, signed.

The token is the delivery's row id (8 bytes, big-endian) followed by the first
10 bytes of HMAC-SHA256 over it, in lower-case base32 without padding (29
characters; case-insensitive, as some servers fold local parts). So a bounce
sent back to that address names exactly one message and recipient, and nobody
without the key can make an address that names another delivery: a forged or
altered token is simply not ours (80-bit tag). The key is derived from the
appliance secret (`SecretBox.derive(VERP_KEY_INFO)`).

`address(delivery_id)` builds one; `delivery_id(address)` checks one (None when
it is not a valid token of ours); `find(data)` collects the valid tokens named
anywhere in a message (a complaint report quotes the original Return-Path).
Untrusted input: addresses and message bytes (a linear regex scan of the first
`limits.MAX_MESSAGE_BYTES`, what the bounce parser reads too).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from postroom.mta.bounce.limits import MAX_MESSAGE_BYTES

PREFIX = "bounce+"
VERP_KEY_INFO = b"postroom verp"  # the SecretBox sub-key that signs tokens
_ID_BYTES = 8
_TAG_BYTES = 10
_TOKEN_CHARS = 29  # base32 of 18 bytes, unpadded
_TOKEN_IN_TEXT = re.compile(rb"bounce\+([a-z2-7]{29})@", re.I)
_MAX_FOUND = 20


class Verp:
    def __init__(self, key: bytes, domain: str) -> None:
        self._key = key
        self.domain = domain.lower()

    def address(self, delivery_id: int) -> str:
        payload = delivery_id.to_bytes(_ID_BYTES, "big")
        token = base64.b32encode(payload + self._tag(payload)).decode("ascii").rstrip("=")
        return f"{PREFIX}{token.lower()}@{self.domain}"

    def delivery_id(self, address: str) -> int | None:
        local, _, domain = address.rpartition("@")
        if domain.lower().rstrip(".") != self.domain or not local.lower().startswith(PREFIX):
            return None
        return self._check(local[len(PREFIX) :])

    def find(self, data: bytes) -> list[int]:
        """Valid delivery ids named in `data`, in order, without repeats."""
        found: list[int] = []
        for match in _TOKEN_IN_TEXT.finditer(data, 0, MAX_MESSAGE_BYTES):
            delivery_id = self._check(match.group(1).decode("ascii"))
            if delivery_id is not None and delivery_id not in found:
                found.append(delivery_id)
                if len(found) >= _MAX_FOUND:
                    break
        return found

    def _check(self, token: str) -> int | None:
        if len(token) != _TOKEN_CHARS:
            return None
        try:
            raw = base64.b32decode(token.upper() + "===")
        except ValueError:
            return None
        # The last character carries one unused bit: accept only the canonical spelling,
        # so that one delivery has exactly one address.
        if base64.b32encode(raw).decode("ascii").rstrip("=") != token.upper():
            return None
        payload, tag = raw[:_ID_BYTES], raw[_ID_BYTES:]
        if len(tag) != _TAG_BYTES or not hmac.compare_digest(tag, self._tag(payload)):
            return None
        return int.from_bytes(payload, "big")

    def _tag(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_TAG_BYTES]
