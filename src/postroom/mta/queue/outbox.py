"""Queueing a message from outside `serve`: the CLI's own mail.

Sender confirmation codes, campaign test copies and resends are made by a CLI
command while `serve` runs in another process (or later). `Outbox(engine,
config).send(...)` DKIM-signs the message exactly as submitted mail is signed
(`OutboundSigner`, keys of verified linked domains) and stores it with one
`queued` delivery per recipient, due now, in one transaction: when `send`
returns, the message is durable, and the delivery engine of any node claims it
within its claim interval (a second). Nothing is sent from the CLI process.

Config keys: [secrets] key_file, [dkim] sign_presigned (through the signer).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Connection, Engine, insert, select

from postroom.config import Config
from postroom.db.models import DomainState, MessageOrigin, deliveries, domains, messages
from postroom.db.states import DeliveryState
from postroom.mailbox.directory import Directory
from postroom.mta.queue.ids import new_queue_id
from postroom.mta.queue.records import recipient_domain
from postroom.mta.signing.keys import SigningKeys
from postroom.mta.signing.outbound import OutboundSigner


class Outbox:
    def __init__(
        self, engine: Engine, config: Config, signer: OutboundSigner | None = None
    ) -> None:
        """`signer`: a running node's own (its keys kept fresh); None loads the keys once."""
        self.engine = engine
        if signer is None:
            keys = SigningKeys(Directory(engine), Path(config.secret_key_file))
            keys.load()
            signer = OutboundSigner(keys, config.dkim.sign_presigned)
        self.signer = signer
        self._own_domains: dict[int, frozenset[str]] = {}  # one command's (or campaign's) worth

    def sign(self, body: bytes, project_id: int | None) -> bytes:
        """`body` as it will be queued: signed when its From domain has a key and, with
        `project_id`, is a verified domain of that project (None: the appliance's own
        mail, signed for whichever linked domain its From names)."""
        if project_id is None:
            return self.signer.sign(body)
        own = self._own_domains.get(project_id)
        if own is None:
            with self.engine.connect() as conn:
                own = self._own_domains[project_id] = frozenset(
                    conn.execute(
                        select(domains.c.name).where(
                            domains.c.project_id == project_id,
                            domains.c.state == DomainState.VERIFIED.value,
                        )
                    ).scalars()
                )
        return self.signer.sign(body, allowed=own)

    def send(
        self,
        *,
        mail_from: str,
        recipients: Sequence[str],
        body: bytes,
        pool: str,
        origin: MessageOrigin,
        project_id: int | None,
        conn: Connection | None = None,
        already_signed: bool = False,
    ) -> str:
        """Sign (unless `already_signed` by `sign`) and queue `body`; the queue id. With
        `conn`, the rows join the caller's transaction (so a confirmation code and the
        mail carrying it commit together)."""
        signed = body if already_signed else self.sign(body, project_id)
        if conn is not None:
            return store_queued(conn, mail_from, recipients, signed, pool, origin)
        with self.engine.begin() as own:
            return store_queued(own, mail_from, recipients, signed, pool, origin)


def store_queued(
    conn: Connection,
    mail_from: str,
    recipients: Sequence[str],
    body: bytes,
    pool: str,
    origin: MessageOrigin,
) -> str:
    if not recipients:
        raise ValueError("a message needs at least one recipient")
    now = time.time()
    queue_id = new_queue_id(now)
    conn.execute(
        insert(messages).values(
            id=queue_id,
            created_at=now,
            mail_from=mail_from,
            pool=pool,
            origin=origin.value,
            client_ip="",
            size_bytes=len(body),
            envelope_id="",
            body=body,
        )
    )
    conn.execute(
        insert(deliveries),
        [
            {
                "message_id": queue_id,
                "recipient": recipient,
                "domain": recipient_domain(recipient),
                "state": DeliveryState.QUEUED.value,
                "attempts": 0,
                "next_attempt_at": now,
                "updated_at": now,
            }
            for recipient in recipients
        ],
    )
    return queue_id
