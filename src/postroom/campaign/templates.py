"""A project's templates in the database (`templates` table).

`Templates(engine)`:
- `add(project, name, source)` and `edit(project, name, subject=..., html=...,
  text=..., buttons=..., derive_text=...)` compile the template first
  (`render.compile_template`) and check that every channel its buttons name is
  one of the project's: a template that does not compile is refused
  (`TemplateError`, naming file and line) and nothing is stored;
- `get(project, name)`, `get_by_id(template_id, project_id=None)`, `list(project)`
  → `StoredTemplate(id, project_id, name, source, created_at, updated_at)`;
- `delete(project, name)`: refused while a draft campaign uses it (the
  campaigns are named); sent campaigns keep their own copy of the content
  (`source_snapshot` / `source_from_snapshot`: the `campaigns.content` JSON).
Other refusals and missing objects are `TemplateStoreError` (one line,
nothing changed). Every query is keyed by project. A name is 1 to
`MAX_TEMPLATE_NAME_CHARS` printable characters.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.engine import Row

from postroom.campaign.buttons import Button, buttons_from_json, buttons_to_json
from postroom.campaign.channels import missing_channels
from postroom.campaign.render import (
    CompiledTemplate,
    TemplateError,
    TemplateSource,
    compile_template,
)
from postroom.db.models import CampaignState, campaigns, templates
from postroom.rating.contacts import ContactError, project_id_of

__all__ = ["StoredTemplate", "TemplateError", "TemplateStoreError", "Templates"]

MAX_TEMPLATE_NAME_CHARS = 128  # templates.name


class TemplateStoreError(Exception):
    """A refused change or a missing object; nothing was changed."""


@dataclass(frozen=True, slots=True)
class StoredTemplate:
    id: int
    project_id: int
    name: str
    source: TemplateSource
    created_at: float
    updated_at: float

    def compiled(self) -> CompiledTemplate:
        """Compiled to be inspected (its variables), not rendered: no derived text part."""
        return compile_template(self.source, derive_text_once=False)


class Templates:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(
        self,
        project: str,
        name: str,
        source: TemplateSource,
        *,
        html_file: str = "html",
        text_file: str = "text",
    ) -> StoredTemplate:
        _check_name(name)
        # Checked only: deriving the text part is for rendering (compose.py).
        compile_template(source, html_file=html_file, text_file=text_file, derive_text_once=False)
        with self.engine.begin() as conn:
            project_id = _project_id(conn, project)
            if _row(conn, project_id, name) is not None:
                raise TemplateStoreError(f"template {name!r} already exists in project {project!r}")
            _check_channels(conn, project_id, source.buttons)
            now = time.time()
            conn.execute(
                insert(templates).values(
                    project_id=project_id, created_at=now, updated_at=now, **_columns(name, source)
                )
            )
            return _stored(_row(conn, project_id, name))

    def edit(
        self,
        project: str,
        name: str,
        *,
        subject: str | None = None,
        html: str | None = None,
        text: str | None = None,
        buttons: tuple[Button, ...] | None = None,
        derive_text: bool = False,
        html_file: str = "html",
        text_file: str = "text",
    ) -> StoredTemplate:
        """Replace the parts given (`derive_text`: drop the text template, derive the
        text part from the HTML); the whole result must compile."""
        if derive_text and text is not None:
            raise TemplateStoreError("give a text template or derive the text, not both")
        with self.engine.begin() as conn:
            project_id = _project_id(conn, project)
            current = _stored(_existing(conn, project_id, name, project))
            old = current.source
            source = TemplateSource(
                subject=old.subject if subject is None else subject,
                html=old.html if html is None else html,
                text=None if derive_text else (old.text if text is None else text),
                buttons=old.buttons if buttons is None else buttons,
            )
            compile_template(
                source,
                html_file=html_file if html is not None else f"{name} (stored html)",
                text_file=text_file if text is not None else f"{name} (stored text)",
                derive_text_once=False,
            )
            _check_channels(conn, project_id, source.buttons)
            conn.execute(
                update(templates)
                .where(templates.c.id == current.id)
                .values(updated_at=time.time(), **_columns(name, source))
            )
            return _stored(_row(conn, project_id, name))

    def get(self, project: str, name: str) -> StoredTemplate:
        with self.engine.connect() as conn:
            return _stored(_existing(conn, _project_id(conn, project), name, project))

    def get_by_id(self, template_id: int, project_id: int | None = None) -> StoredTemplate:
        """The template; with `project_id`, only when it belongs to that project."""
        query = select(templates).where(templates.c.id == template_id)
        if project_id is not None:
            query = query.where(templates.c.project_id == project_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise TemplateStoreError(f"no template with id {template_id}")
        return _stored(row)

    def list(self, project: str) -> list[StoredTemplate]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(templates)
                .where(templates.c.project_id == _project_id(conn, project))
                .order_by(templates.c.name)
            ).all()
        return [_stored(row) for row in rows]

    def delete(self, project: str, name: str) -> None:
        with self.engine.begin() as conn:
            project_id = _project_id(conn, project)
            row = _existing(conn, project_id, name, project)
            drafts = conn.execute(
                select(campaigns.c.id, campaigns.c.name)
                .where(
                    campaigns.c.project_id == project_id,
                    campaigns.c.template_id == row.id,
                    campaigns.c.state == CampaignState.DRAFT.value,
                )
                .order_by(campaigns.c.id)
            ).all()
            if drafts:
                named = ", ".join(f"{draft.id} ({draft.name})" for draft in drafts)
                raise TemplateStoreError(
                    f"template {name!r} is used by draft campaign(s) {named}: "
                    "delete them or give them another template first"
                )
            conn.execute(delete(templates).where(templates.c.id == row.id))


def source_snapshot(source: TemplateSource) -> str:
    """The content of a template as a campaign keeps it (JSON), for copies and resends."""
    columns = _columns("", source)
    del columns["name"]
    return json.dumps(columns, ensure_ascii=False)


def source_from_snapshot(text: str) -> TemplateSource:
    columns = json.loads(text)
    return TemplateSource(
        subject=columns["subject"],
        html=columns["html"],
        text=columns["text"],
        buttons=buttons_from_json(columns["buttons"]),
    )


def _columns(name: str, source: TemplateSource) -> dict[str, object]:
    return {
        "name": name,
        "subject": source.subject,
        "html": source.html,
        "text": source.text,
        "buttons": buttons_to_json(source.buttons),
    }


def _stored(row: Row | None) -> StoredTemplate:  # type: ignore[type-arg]
    assert row is not None
    return StoredTemplate(
        id=row.id,
        project_id=row.project_id,
        name=row.name,
        source=TemplateSource(
            subject=row.subject,
            html=row.html,
            text=row.text,
            buttons=buttons_from_json(row.buttons),
        ),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _row(conn: Connection, project_id: int, name: str) -> Row | None:  # type: ignore[type-arg]
    return conn.execute(
        select(templates).where(templates.c.project_id == project_id, templates.c.name == name)
    ).first()


def _existing(conn: Connection, project_id: int, name: str, project: str) -> Row:  # type: ignore[type-arg]
    row = _row(conn, project_id, name)
    if row is None:
        raise TemplateStoreError(f"no template {name!r} in project {project!r}")
    return row


def _check_channels(conn: Connection, project_id: int, buttons: tuple[Button, ...]) -> None:
    named = {button.channel for button in buttons if button.channel is not None}
    missing = missing_channels(conn, project_id, named)
    if missing:
        raise TemplateError(
            f"buttons: no channel {missing[0]!r} in this project "
            "(see `postroom channel list`, add it with `postroom channel add`)"
        )


def _project_id(conn: Connection, project: str) -> int:
    try:
        return project_id_of(conn, project)
    except ContactError as error:
        raise TemplateStoreError(str(error)) from None


def _check_name(name: str) -> None:
    if not name.strip() or len(name) > MAX_TEMPLATE_NAME_CHARS or not name.isprintable():
        raise TemplateStoreError(
            f"template name {name!r}: 1 to {MAX_TEMPLATE_NAME_CHARS} printable characters"
        )
