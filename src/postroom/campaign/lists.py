"""A project's contact lists: named sets of contacts that audiences include or exclude.

Each function is one transaction and raises `ContactError` (one line, nothing
changed) for a missing project, list or contact or a refused change:
- `create_list(engine, project, name)`; a name is checked by
  `rating.contacts.check_list_name` and may exist once per project;
- `delete_list(engine, project, name)`: the list goes, its contacts stay;
  refused while a campaign that has not finished (draft, scheduled, sending,
  paused) uses it, as its own list (`campaigns.list_id`) or in its audience
  (`campaigns.audience`, `AudienceFilter.list_names`);
- `list_info`, `all_lists`: name, member count, creation time;
- `members_of(engine, project, name)`: the members, by address;
- `add_members(engine, project, name, addresses, state)`: addresses already
  validated by the caller; those that are not contacts yet are created (with
  `state`, source `manual`, a `created` event naming the list), then all join;
- `remove_members(engine, project, name, addresses)`: every address must be a
  member, or nothing is removed.
A project never sees another's lists: every query is keyed by project.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, delete, func, insert, select
from sqlalchemy.engine import Connection, Row

from postroom.db.models import CampaignState, campaigns, contacts, list_members, lists
from postroom.rating.contacts import (
    Cause,
    ContactError,
    NewContact,
    check_list_name,
    contact_id_of,
    insert_new,
    join_list_many,
    project_id_of,
)
from postroom.rating.rules import ContactState

# Campaigns that still read their audience: a list they name cannot go.
_UNFINISHED = (
    CampaignState.DRAFT,
    CampaignState.LAUNCHING,
    CampaignState.SCHEDULED,
    CampaignState.SENDING,
    CampaignState.PAUSED,
)


@dataclass(frozen=True, slots=True)
class ListInfo:
    name: str
    members: int
    created_at: float


@dataclass(frozen=True, slots=True)
class Member:
    address: str
    name: str
    rating: int
    blocked: bool


def create_list(engine: Engine, project: str, name: str) -> ListInfo:
    check_list_name(name)
    with engine.begin() as conn:
        project_id = project_id_of(conn, project)
        if find_list(conn, project_id, name) is not None:
            raise ContactError(f"list {name!r} already exists in project {project!r}")
        now = time.time()
        conn.execute(insert(lists).values(project_id=project_id, name=name, created_at=now))
    return ListInfo(name, 0, now)


def delete_list(engine: Engine, project: str, name: str) -> ListInfo:
    """The deleted list as it was (its member count)."""
    from postroom.campaign.audience import AudienceError, AudienceFilter

    with engine.begin() as conn:
        project_id = project_id_of(conn, project)
        list_id, info = _list_row(conn, project_id, name)
        users = conn.execute(
            select(campaigns.c.id, campaigns.c.name, campaigns.c.list_id, campaigns.c.audience)
            .where(campaigns.c.project_id == project_id, campaigns.c.state.in_(_UNFINISHED))
            .order_by(campaigns.c.id)
        ).all()
        for campaign in users:
            try:
                named = AudienceFilter.from_json(campaign.audience).list_names()
            except AudienceError:
                named = frozenset()  # an unreadable audience cannot name the list
            if campaign.list_id == list_id or name in named:
                raise ContactError(
                    f"list {name!r} is used by campaign {campaign.id} ({campaign.name!r}), "
                    "which has not finished: edit or delete the campaign first"
                )
        conn.execute(delete(list_members).where(list_members.c.list_id == list_id))
        conn.execute(delete(lists).where(lists.c.id == list_id))
    return info


def list_info(engine: Engine, project: str, name: str) -> ListInfo:
    with engine.connect() as conn:
        return _list_row(conn, project_id_of(conn, project), name)[1]


def all_lists(engine: Engine, project: str) -> list[ListInfo]:
    with engine.connect() as conn:
        project_id = project_id_of(conn, project)
        rows = conn.execute(
            select(lists.c.name, lists.c.created_at, func.count(list_members.c.contact_id))
            .select_from(lists.outerjoin(list_members, list_members.c.list_id == lists.c.id))
            .where(lists.c.project_id == project_id)
            .group_by(lists.c.id, lists.c.name, lists.c.created_at)
            .order_by(lists.c.name)
        ).all()
    return [ListInfo(row.name, int(row[2]), row.created_at) for row in rows]


def members_of(engine: Engine, project: str, name: str) -> list[Member]:
    with engine.connect() as conn:
        project_id = project_id_of(conn, project)
        list_id, _ = _list_row(conn, project_id, name)
        rows = conn.execute(
            select(contacts.c.address, contacts.c.name, contacts.c.rating, contacts.c.blocked)
            .join(list_members, list_members.c.contact_id == contacts.c.id)
            .where(list_members.c.list_id == list_id, contacts.c.project_id == project_id)
            .order_by(contacts.c.address)
        ).all()
    return [Member(row.address, row.name, row.rating, bool(row.blocked)) for row in rows]


def add_members(
    engine: Engine, project: str, name: str, addresses: Sequence[str], state: ContactState
) -> tuple[int, int]:
    """(members added, contacts created)."""
    with engine.begin() as conn:
        project_id = project_id_of(conn, project)
        list_id, before = _list_row(conn, project_id, name)
        cause = Cause("created", detail=f"added by hand to list {name}")
        wanted = [address.lower() for address in addresses]
        created = insert_new(
            conn, [NewContact(project_id, address, cause) for address in wanted], state, "manual"
        )
        ids = [contact_id_of(conn, project_id, address) for address in wanted]
        join_list_many(conn, project_id, name, ids)
        after = _member_count(conn, list_id)
    return after - before.members, created


def remove_members(engine: Engine, project: str, name: str, addresses: Sequence[str]) -> int:
    """How many left the list."""
    with engine.begin() as conn:
        project_id = project_id_of(conn, project)
        list_id, _ = _list_row(conn, project_id, name)
        ids = []
        for address in addresses:
            contact_id = contact_id_of(conn, project_id, address)
            member = conn.execute(
                select(list_members.c.contact_id).where(
                    list_members.c.list_id == list_id, list_members.c.contact_id == contact_id
                )
            ).first()
            if member is None:
                raise ContactError(f"{address.lower()} is not on list {name!r}")
            ids.append(contact_id)
        unique = sorted(set(ids))
        conn.execute(
            delete(list_members).where(
                list_members.c.list_id == list_id, list_members.c.contact_id.in_(unique)
            )
        )
    return len(unique)


def find_list(conn: Connection, project_id: int, name: str) -> Row | None:  # type: ignore[type-arg]
    """(id, created_at) of the project's list `name`, or None."""
    return conn.execute(
        select(lists.c.id, lists.c.created_at).where(
            lists.c.project_id == project_id, lists.c.name == name
        )
    ).first()


def _list_row(conn: Connection, project_id: int, name: str) -> tuple[int, ListInfo]:
    """(id, info) of the project's list `name`; ContactError when there is none."""
    row = find_list(conn, project_id, name)
    if row is None:
        raise ContactError(f"no list named {name!r} in this project (see `postroom list list`)")
    return row.id, ListInfo(name, _member_count(conn, row.id), row.created_at)


def _member_count(conn: Connection, list_id: int) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(list_members).where(list_members.c.list_id == list_id)
        ).scalar_one()
    )
