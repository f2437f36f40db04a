"""DKIM-sign a message on its way into the outbound queue.

`OutboundSigner.sign(message)` returns the message with DKIM-Signature fields
prepended when its From domain (RFC 5322.From: what DMARC aligns with) is a
verified linked domain with an active key, else the message unchanged. It runs
once, before the message is queued, so every attempt and every recipient
carries the same signature and a retry costs no signing.

Left alone: a message with no From, several From fields or several addresses
in From (receivers reject those under DMARC anyway, RFC 7489 6.6.1), a header
section dkimpy cannot parse, and — unless `[dkim] sign_presigned` — a message
the sender already signed for that domain (its own signature is the one that
counts, and a second one for the same d= only adds bytes).

Untrusted input: the message bytes (From parsed by `checks.dmarc.from_domain`).
Config keys: [dkim] sign_presigned.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Container

import dkim.util

from postroom.mailbox.names import lookup_form
from postroom.mta.checks.dmarc import from_domain
from postroom.mta.signing.dkim import (
    Headers,
    SigningError,
    field_values,
    parse_message,
    sign_headers,
)
from postroom.mta.signing.keys import SigningKeys

log = logging.getLogger("postroom.dkim")


class OutboundSigner:
    def __init__(self, keys: SigningKeys, sign_presigned: bool = False) -> None:
        self.keys = keys
        self.sign_presigned = sign_presigned

    def sign(
        self, message: bytes, queue_id: str = "-", allowed: Container[str] | None = None
    ) -> bytes:
        """With `allowed` (lookup-form domains), a From domain outside it is not signed."""
        try:
            headers, body = parse_message(message)
        except SigningError as error:
            log.info("queue_id=%s not signed: %s", queue_id, error)
            return message
        domain = _signing_domain(headers)
        if allowed is not None and domain not in allowed:
            return message
        keys = self.keys.for_domain(domain) if domain else ()
        if not keys:
            return message
        if not self.sign_presigned and domain in _signed_domains(headers):
            log.info("queue_id=%s not signed: already signed for %s", queue_id, domain)
            return message
        return sign_headers(headers, body, keys) + message


def _signing_domain(headers: Headers) -> str | None:
    values = field_values(headers, b"from")
    if len(values) != 1:
        return None
    return _domain_of_from(values[0])


# An app sends thousands of messages with one From: parsing it (the strict address
# list parser, then IDNA) was a tenth of the signing cost. Bounded, so that varied
# From fields cost memory only up to the bound.
@functools.lru_cache(maxsize=4096)
def _domain_of_from(value: str) -> str | None:
    domain = from_domain(value)
    return lookup_form(domain) if domain else None


def _signed_domains(headers: Headers) -> set[str | None]:
    """The d= domains of the DKIM signatures present (lookup form)."""
    found: set[str | None] = set()
    for name, value in headers:
        if name.lower() != b"dkim-signature":
            continue
        try:
            tags = dkim.util.parse_tag_value(value)
        except dkim.util.InvalidTagValueList:
            continue
        found.add(lookup_form(tags.get(b"d", b"").decode("ascii", "replace")))
    return found
