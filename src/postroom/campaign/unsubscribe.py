"""Unsubscribe tokens and links, and unsubscribing a contact.

Every campaign message carries a per-contact token naming (project, contact,
campaign): in the footer's HTTPS link `{public_url}/u/TOKEN` (the page comes
with the web issue; the format is fixed here) and in `List-Unsubscribe`'s
mailto address `unsubscribe+TOKEN@<bounce domain>`, which port 25 accepts and
acts on at once (`mta/bounce/inbox.py`). The token is the three ids (4 bytes
each, big-endian) followed by the first 12 bytes of HMAC-SHA256 over them, in
lower-case base32 without padding: 39 characters, so the local part is 51 (at
most 64, RFC 5321) and survives servers that fold its case. The key is a
sub-key of the appliance secret (`SecretBox.derive(UNSUBSCRIBE_KEY_INFO)`):
nobody without it can make a token for another contact; a forged or altered
token reads as None (96-bit tag; only the canonical spelling is accepted, so
one claim has one token).

`unsubscribe(engine, claim, via)` sets `contacts.unsubscribed_at` (the first
time wins; again is a no-op) and writes a `contact_events` row of kind
`unsubscribed` (reason: how — mailto, https, one-click; detail: the campaign;
message id: the queue id of the campaign's latest message to the contact). An
unsubscribe is not a complaint: the rating does not move and the contact is not
blocked (transactional mail still reaches it); campaigns skip unsubscribed
contacts (the audience query), and in the same transaction the contact's mail
of the project's campaigns not sent yet stops (`lifecycle.withdraw_contact`:
pending rows skipped as `unsubscribed`, waiting deliveries deleted). The event
names the campaign (`contact_events.campaign_id`, when it is the project's).
One transaction; a project only touches its own contact (the claim's project id
must match the contact's).

Untrusted input: tokens (from a URL or an RCPT address); checked in constant time.
Config keys: [http] public_url, [bounce] domain (through `Config`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine, insert, select, update

from postroom.campaign.lifecycle import withdraw_contact
from postroom.db.models import campaign_sends, campaigns, contact_events, contacts
from postroom.rating.contacts import Cause, event_row
from postroom.rating.rules import BlockCause, ContactState

if TYPE_CHECKING:
    from postroom.config import Config

UNSUBSCRIBE_KEY_INFO = b"postroom unsubscribe"  # the SecretBox sub-key that signs tokens
MAILTO_PREFIX = "unsubscribe+"
HTTPS_PATH = "/u/"
VIAS = ("mailto", "https", "one-click")
_ID_BYTES = 4
_TAG_BYTES = 12
TOKEN_CHARS = 39  # base32 of 24 bytes, unpadded
_MAX_ID = 2 ** (8 * _ID_BYTES) - 1


@dataclass(frozen=True, slots=True)
class UnsubscribeClaim:
    """What a valid token names."""

    project_id: int
    contact_id: int
    campaign_id: int


@dataclass(frozen=True, slots=True)
class UnsubscribeLinks:
    https: str  # https://HOST/u/TOKEN
    mailto: str  # unsubscribe+TOKEN@bounce.domain (an address, without "mailto:")


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    address: str
    first_time: bool  # False: it had unsubscribed before, nothing changed


class UnsubscribeTokens:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def make(self, project_id: int, contact_id: int, campaign_id: int) -> str:
        ids = (project_id, contact_id, campaign_id)
        if not all(0 <= value <= _MAX_ID for value in ids):
            raise ValueError(f"ids out of range for a token: {ids}")
        payload = b"".join(value.to_bytes(_ID_BYTES, "big") for value in ids)
        raw = payload + self._tag(payload)
        return base64.b32encode(raw).decode("ascii").rstrip("=").lower()

    def read(self, token: str) -> UnsubscribeClaim | None:
        """The claim of a token of ours; None for anything else (forged, altered, junk)."""
        if len(token) != TOKEN_CHARS or not token.isascii():
            return None
        spelling = token.upper()
        try:
            raw = base64.b32decode(spelling + "=" * (-len(spelling) % 8))
        except ValueError:
            return None
        # The last character carries unused bits: only the canonical spelling is ours.
        if base64.b32encode(raw).decode("ascii").rstrip("=") != spelling:
            return None
        payload, tag = raw[: 3 * _ID_BYTES], raw[3 * _ID_BYTES :]
        if not hmac.compare_digest(tag, self._tag(payload)):
            return None
        project_id, contact_id, campaign_id = (
            int.from_bytes(payload[start : start + _ID_BYTES], "big")
            for start in range(0, 3 * _ID_BYTES, _ID_BYTES)
        )
        return UnsubscribeClaim(project_id, contact_id, campaign_id)

    def read_address(self, address: str, bounce_domain: str) -> UnsubscribeClaim | None:
        """The claim of `unsubscribe+TOKEN@<bounce domain>`; None for any other address."""
        local, _, domain = address.rpartition("@")
        if domain.lower().rstrip(".") != bounce_domain.lower() or not is_mailto_local(local):
            return None
        return self.read(local[len(MAILTO_PREFIX) :])

    def _tag(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_TAG_BYTES]


def is_mailto_local(local_part: str) -> bool:
    return local_part.lower().startswith(MAILTO_PREFIX)


def unsubscribe_links(config: Config, token: str) -> UnsubscribeLinks:
    return UnsubscribeLinks(
        https=f"{config.public_url}{HTTPS_PATH}{token}",
        mailto=f"{MAILTO_PREFIX}{token}@{config.bounce_domain}",
    )


def unsubscribe(
    engine: Engine, claim: UnsubscribeClaim, via: str, *, now: float | None = None
) -> Unsubscribed | None:
    """Unsubscribe the claim's contact from its project's campaigns; None when the
    contact no longer exists in that project."""
    if via not in VIAS:
        raise ValueError(f"via: one of {', '.join(VIAS)}")
    moment = time.time() if now is None else now
    with engine.begin() as conn:
        row = conn.execute(
            select(contacts).where(
                contacts.c.id == claim.contact_id, contacts.c.project_id == claim.project_id
            )
        ).first()
        if row is None:
            return None
        if row.unsubscribed_at is not None:
            return Unsubscribed(row.address, first_time=False)
        # Only the first unsubscribe of a contact changes anything, also when two
        # arrive at once (the mailto and the link): the update says who was first.
        changed = conn.execute(
            update(contacts)
            .where(contacts.c.id == row.id, contacts.c.unsubscribed_at.is_(None))
            .values(unsubscribed_at=moment, updated_at=moment)
        ).rowcount
        if not changed:
            return Unsubscribed(row.address, first_time=False)
        state = ContactState(row.rating, bool(row.blocked), BlockCause(row.blocked_cause))
        cause = Cause(
            "unsubscribed",
            reason=via,
            message_id=_latest_message(conn, claim),
            detail=_campaign_detail(conn, claim),
        )
        event = event_row(row.id, row.rating, state, cause, moment)
        conn.execute(
            insert(contact_events).values({**event, "campaign_id": _own_campaign(conn, claim)})
        )
        withdraw_contact(conn, claim.project_id, row.id, moment)
    return Unsubscribed(row.address, first_time=True)


def _latest_message(conn, claim: UnsubscribeClaim) -> str | None:  # type: ignore[no-untyped-def]
    return conn.execute(
        select(campaign_sends.c.message_id)
        .where(
            campaign_sends.c.campaign_id == claim.campaign_id,
            campaign_sends.c.contact_id == claim.contact_id,
        )
        .order_by(campaign_sends.c.created_at.desc(), campaign_sends.c.id.desc())
        .limit(1)
    ).scalar()


def _own_campaign(conn, claim: UnsubscribeClaim) -> int | None:  # type: ignore[no-untyped-def]
    """The claim's campaign when it is one of the contact's project (else None)."""
    return conn.execute(
        select(campaigns.c.id).where(
            campaigns.c.id == claim.campaign_id, campaigns.c.project_id == claim.project_id
        )
    ).scalar()


def _campaign_detail(conn, claim: UnsubscribeClaim) -> str:  # type: ignore[no-untyped-def]
    name = conn.execute(
        select(campaigns.c.name).where(
            campaigns.c.id == claim.campaign_id, campaigns.c.project_id == claim.project_id
        )
    ).scalar()
    return f"campaign {claim.campaign_id}" + (f" ({name})" if name is not None else "")
