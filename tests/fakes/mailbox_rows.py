"""Mailbox rows written past `Accounts`, as an older version or a hand-written INSERT left
them: `insert_mailbox_row(engine, address)` stores `address` as it is, on the linked domain
after its last "@", with no name rule applied (the tests of what such a row must not break)."""

from __future__ import annotations

from sqlalchemy import Engine, select

from postroom.db.models import domains, mailboxes

# A syntactically valid argon2id PHC string (its password is of no use to anyone).
ANY_HASH = "$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"


def insert_mailbox_row(engine: Engine, address: str, password_hash: str = ANY_HASH) -> None:
    with engine.begin() as conn:
        domain_id = conn.execute(
            select(domains.c.id).where(domains.c.name == address.rpartition("@")[2])
        ).scalar_one()
        conn.execute(
            mailboxes.insert().values(
                domain_id=domain_id,
                address=address,
                password_hash=password_hash,
                quota_bytes=0,
                created_at=0.0,
                updated_at=0.0,
            )
        )
