"""Campaigns as drafts: create, edit, show, list, delete, copy.

A campaign is a confirmed sender + a template + an audience (a stored filter,
`postroom.campaign.audience`), owned by one project. `Campaigns(engine)`:
- `create(project, name, sender, template, audience, own_list=...)` checks
  everything first (the sender exists and is confirmed, the template exists,
  every list the filter names exists) and writes the campaign in one
  transaction; `own_list(conn, project_id, list_name)` (a CSV import into a
  list made for the campaign, named "campaign: NAME") runs inside that
  transaction, so a file that fails to import leaves neither a list nor a
  campaign behind. The campaign's own list joins the filter's lists.
- `edit(id, ...)` and `delete(id)` act on drafts only (a new audience keeps the
  campaign's own list; a deleted draft takes its own list along unless a copy
  uses it); `copy(id, name)` makes a
  new draft from any campaign (sent ones included): same sender, template (or,
  when the template is gone, the content snapshot taken at launch), audience
  and own list.
- `get(id)`, `list(project, state)`.
Every refusal is a `CampaignError` (one line) and changes nothing.

Config keys: none.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy import Connection, Engine, delete, insert, select, update

from postroom.campaign.audience import AudienceError, AudienceFilter, audience_query
from postroom.campaign.lists import find_list
from postroom.campaign.senders import SenderError, require_confirmed
from postroom.db.models import (
    CampaignState,
    campaigns,
    lists,
    projects,
    senders,
    templates,
)
from postroom.rating.contacts import ContactError, project_id_of

MAX_NAME_CHARS = 128

OwnList = Callable[[Connection, int, str], None]
"""(conn, project id, list name): fill the list made for the campaign (a CSV import)."""
_MAX_LIST_NAME_TRIES = 100


class CampaignError(Exception):
    """A refused campaign operation; nothing was changed."""


@dataclass(frozen=True, slots=True)
class Campaign:
    id: int
    project_id: int
    project: str
    name: str
    state: str
    sender_id: int
    sender: str
    sender_name: str
    template_id: int | None
    template: str | None
    audience: AudienceFilter
    list_id: int | None
    list_name: str | None
    content: str | None
    copied_from: int | None
    created_at: float
    updated_at: float

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "project": self.project,
            "name": self.name,
            "state": self.state,
            "sender": self.sender,
            "template": self.template,
            "audience": json.loads(self.audience.to_json()),
            "list": self.list_name,
            "copied_from": self.copied_from,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class Campaigns:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self,
        project: str,
        name: str,
        sender: str,
        template: str,
        audience: AudienceFilter,
        own_list: OwnList | None = None,
    ) -> int:
        name = _checked_name(name)
        with self.engine.begin() as conn:
            project_id = _project_id(conn, project)
            sender_id = _sender_id(conn, project_id, sender)
            template_id = _template_id(conn, project_id, project, template)
            list_id = None
            if own_list is not None:
                list_name = _fresh_list_name(conn, project_id, f"campaign: {name}")
                own_list(conn, project_id, list_name)
                list_id = _list_id(conn, project_id, list_name)
                audience = replace(audience, lists=(*audience.lists, list_name))
            _check_audience(conn, project_id, audience)
            now = time.time()
            return int(
                conn.execute(
                    insert(campaigns).values(
                        project_id=project_id,
                        name=name,
                        sender_id=sender_id,
                        template_id=template_id,
                        audience=audience.to_json(),
                        list_id=list_id,
                        state=CampaignState.DRAFT.value,
                        created_at=now,
                        updated_at=now,
                    )
                ).inserted_primary_key[0]
            )

    def edit(
        self,
        campaign_id: int,
        *,
        name: str | None = None,
        sender: str | None = None,
        template: str | None = None,
        audience: AudienceFilter | None = None,
    ) -> Campaign:
        with self.engine.begin() as conn:
            current = _draft(conn, campaign_id, "edit")
            values: dict[str, object] = {"updated_at": time.time()}
            if name is not None:
                values["name"] = _checked_name(name)
            if sender is not None:
                values["sender_id"] = _sender_id(conn, current.project_id, sender)
            if template is not None:
                values["template_id"] = _template_id(
                    conn, current.project_id, current.project, template
                )
            if audience is not None:
                if current.list_name and current.list_name not in audience.lists:
                    # The campaign's own list (its CSV recipients) stays in the audience.
                    audience = replace(audience, lists=(*audience.lists, current.list_name))
                _check_audience(conn, current.project_id, audience)
                values["audience"] = audience.to_json()
            conn.execute(update(campaigns).where(campaigns.c.id == campaign_id).values(**values))
        return self.get(campaign_id)

    def delete(self, campaign_id: int) -> None:
        """Delete a draft, and its own list when no other campaign (a copy) uses it."""
        with self.engine.begin() as conn:
            draft = _draft(conn, campaign_id, "delete")
            conn.execute(delete(campaigns).where(campaigns.c.id == campaign_id))
            if draft.list_id is not None:
                shared = conn.execute(
                    select(campaigns.c.id).where(campaigns.c.list_id == draft.list_id).limit(1)
                ).first()
                if shared is None:
                    conn.execute(delete(lists).where(lists.c.id == draft.list_id))

    def copy(self, campaign_id: int, name: str | None = None) -> int:
        with self.engine.begin() as conn:
            original = load(conn, campaign_id)
            now = time.time()
            return int(
                conn.execute(
                    insert(campaigns).values(
                        project_id=original.project_id,
                        name=_checked_name(name or f"Copy of {original.name}"[:MAX_NAME_CHARS]),
                        sender_id=original.sender_id,
                        template_id=original.template_id,
                        audience=original.audience.to_json(),
                        list_id=original.list_id,
                        state=CampaignState.DRAFT.value,
                        content=original.content if original.template_id is None else None,
                        copied_from=original.id,
                        created_at=now,
                        updated_at=now,
                    )
                ).inserted_primary_key[0]
            )

    def get(self, campaign_id: int) -> Campaign:
        with self.engine.connect() as conn:
            return load(conn, campaign_id)

    def list(self, project: str, state: str | None = None) -> list[Campaign]:
        with self.engine.connect() as conn:
            query = _joined().where(campaigns.c.project_id == _project_id(conn, project))
            if state is not None:
                if state not in {member.value for member in CampaignState}:
                    states = ", ".join(member.value for member in CampaignState)
                    raise CampaignError(f"unknown campaign state {state!r} (one of {states})")
                query = query.where(campaigns.c.state == state)
            return [_campaign(row) for row in conn.execute(query.order_by(campaigns.c.id))]


def load(conn: Connection, campaign_id: int) -> Campaign:
    row = conn.execute(_joined().where(campaigns.c.id == campaign_id)).first()
    if row is None:
        raise CampaignError(f"no campaign {campaign_id}")
    return _campaign(row)


def _joined():  # type: ignore[no-untyped-def]
    return select(
        campaigns,
        projects.c.name.label("project_name"),
        senders.c.address.label("sender_address"),
        senders.c.display_name.label("sender_name"),
        templates.c.name.label("template_name"),
        lists.c.name.label("list_name"),
    ).select_from(
        campaigns.join(projects, projects.c.id == campaigns.c.project_id)
        .join(senders, senders.c.id == campaigns.c.sender_id)
        .outerjoin(templates, templates.c.id == campaigns.c.template_id)
        .outerjoin(lists, lists.c.id == campaigns.c.list_id)
    )


def _campaign(row) -> Campaign:  # type: ignore[no-untyped-def]
    try:
        audience = AudienceFilter.from_json(row.audience)
    except AudienceError as error:
        raise CampaignError(f"campaign {row.id}: {error}") from None
    return Campaign(
        id=row.id,
        project_id=row.project_id,
        project=row.project_name,
        name=row.name,
        state=row.state,
        sender_id=row.sender_id,
        sender=row.sender_address,
        sender_name=row.sender_name,
        template_id=row.template_id,
        template=row.template_name,
        audience=audience,
        list_id=row.list_id,
        list_name=row.list_name,
        content=row.content,
        copied_from=row.copied_from,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _draft(conn: Connection, campaign_id: int, action: str) -> Campaign:
    campaign = load(conn, campaign_id)
    if campaign.state != CampaignState.DRAFT:
        raise CampaignError(
            f"campaign {campaign_id} is {campaign.state}: only a draft can be {action}ed"
            + (" (campaign copy makes a new draft from it)" if action == "edit" else "")
        )
    return campaign


def _checked_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise CampaignError("a campaign needs a name")
    if len(name) > MAX_NAME_CHARS:
        raise CampaignError(f"campaign name longer than {MAX_NAME_CHARS} characters")
    if not name.isprintable():
        raise CampaignError(f"campaign name {name!r}: no control characters")
    return name


def _project_id(conn: Connection, project: str) -> int:
    try:
        return project_id_of(conn, project)
    except ContactError as error:
        raise CampaignError(str(error)) from None


def _sender_id(conn: Connection, project_id: int, address: str) -> int:
    try:
        return require_confirmed(conn, project_id, address).id
    except SenderError as error:
        raise CampaignError(str(error)) from None


def _template_id(conn: Connection, project_id: int, project: str, name: str) -> int:
    found = conn.execute(
        select(templates.c.id).where(templates.c.project_id == project_id, templates.c.name == name)
    ).scalar()
    if found is None:
        raise CampaignError(f"no template {name!r} in project {project!r}")
    return int(found)


def _fresh_list_name(conn: Connection, project_id: int, base: str) -> str:
    """`base`, or `base (2)`, `base (3)`, ...: a name no list of the project has."""
    base = base[: MAX_NAME_CHARS - 8]
    for attempt in range(1, _MAX_LIST_NAME_TRIES + 1):
        name = base if attempt == 1 else f"{base} ({attempt})"
        if find_list(conn, project_id, name) is None:
            return name
    raise CampaignError(f"too many lists named like {base!r}: delete some")


def _list_id(conn: Connection, project_id: int, name: str) -> int:
    found = find_list(conn, project_id, name)
    if found is None:
        raise CampaignError(f"the campaign's list {name!r} was not created")
    return int(found.id)


def _check_audience(conn: Connection, project_id: int, audience: AudienceFilter) -> None:
    """Every list the filter names exists (the query refuses an unknown one)."""
    try:
        audience_query(conn, project_id, audience)
    except AudienceError as error:
        raise CampaignError(str(error)) from None
