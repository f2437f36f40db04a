"""Bulk import of contacts (CSV): one transaction, multi-row statements.

`import_contacts(contacts, project, rows, list_name=..., detail=..., dry_run=...)`
creates the addresses the project does not know yet at the automatic rating
(`[rating] automatic`), with their name, template variables (both forms, see
`postroom.campaign.contact_fields`), stage, state, channels and registration
date (the import's time when the row has none) and a `created` event naming the
file line; existing contacts keep their rating, name, fields and history.
With `list_name`, every row's contact joins that list. The
whole run is one transaction — a failure (or a crash) half-way imports nothing —
and `dry_run` rolls it back after counting; `import_rows` does the same inside
the caller's transaction. Statements carry at most
`INSERT_CHUNK_ROWS` rows, run as executemany of one compiled statement (which
SQLAlchemy sends as multi-row INSERTs), so 100,000 rows are a few hundred
round trips, not 100,000.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Connection

from postroom.db.models import contacts
from postroom.rating.contacts import (
    INSERT_CHUNK_ROWS,
    Cause,
    Contacts,
    NewContact,
    insert_new,
    join_list_many,
    project_id_of,
)


@dataclass(frozen=True, slots=True)
class ImportedContact:
    address: str
    name: str
    variables: dict[str, str]
    line: int
    stage: str = ""
    state: str = ""
    channels: tuple[str, ...] = ()
    registered_at: float | None = None  # None: when it is imported


def import_contacts(
    store: Contacts,
    project: str,
    rows: Sequence[ImportedContact],
    *,
    list_name: str | None,
    detail: str,
    dry_run: bool = False,
) -> tuple[int, int]:
    """(created, already contacts) — see the module docstring."""
    with store.engine.connect() as conn:
        transaction = conn.begin()
        try:
            project_id = project_id_of(conn, project)
            counts = import_rows(store, conn, project_id, rows, list_name=list_name, detail=detail)
        except BaseException:
            transaction.rollback()
            raise
        if dry_run:
            transaction.rollback()
        else:
            transaction.commit()
    return counts


def import_rows(
    store: Contacts,
    conn: Connection,
    project_id: int,
    rows: Sequence[ImportedContact],
    *,
    list_name: str | None,
    detail: str,
) -> tuple[int, int]:
    """`import_contacts` inside the caller's transaction (a campaign made from a CSV
    file imports its recipients with the campaign)."""
    created = _insert_new(store, conn, project_id, rows, detail)
    if list_name is not None:
        ids = _contact_ids(conn, project_id, [row.address for row in rows])
        join_list_many(conn, project_id, list_name, ids)
    return created, len({row.address.lower() for row in rows}) - created


def _insert_new(
    store: Contacts,
    conn: Connection,
    project_id: int,
    rows: Sequence[ImportedContact],
    detail: str,
) -> int:
    by_address: dict[str, ImportedContact] = {}
    for row in rows:  # the first row wins; contacts are created in file order
        by_address.setdefault(row.address.lower(), row)
    new = [
        NewContact(
            project_id,
            address,
            Cause("created", detail=f"{detail} line {row.line}"),
            name=row.name,
            variables=row.variables,
            stage=row.stage,
            state=row.state,
            registered_at=row.registered_at,
            channels=row.channels,
        )
        for address, row in by_address.items()
    ]
    return insert_new(conn, new, store.rules.created(manual=False), "import")


def _contact_ids(conn: Connection, project_id: int, addresses: Sequence[str]) -> list[int]:
    ids: list[int] = []
    wanted = sorted({address.lower() for address in addresses})
    for start in range(0, len(wanted), INSERT_CHUNK_ROWS):
        ids += conn.execute(
            select(contacts.c.id).where(
                contacts.c.project_id == project_id,
                contacts.c.address.in_(wanted[start : start + INSERT_CHUNK_ROWS]),
            )
        ).scalars()
    return ids
