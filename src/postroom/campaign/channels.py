"""A project's own channels (its Telegram bot, WhatsApp number, shop...) by name.

A template's button may point at a channel by name instead of a URL
(`channel = "telegram"`), so a changed channel URL reaches every template at
once. `Channels(engine)`: `add(project, name, url)`, `list(project)`,
`remove(project, name)` (refused while a template's button names it: the
templates are named). A name is what a button may name (letters, digits, `_`,
`-`); a URL is what a button may link to (`buttons.check_url`).
`project_view(conn, project_id)` is the project as a template sees it, with its
channels' URLs, for rendering. Every query is keyed by project.
Errors: `ChannelError`, one line, nothing changed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, insert, select

from postroom.campaign.buttons import ButtonError, buttons_from_json, check_url
from postroom.campaign.render import ProjectView
from postroom.db.models import channels, projects, templates
from postroom.rating.contacts import ContactError, project_id_of

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
MAX_CHANNEL_NAME_CHARS = 64


class ChannelError(Exception):
    """A refused change or a missing object; nothing was changed."""


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    url: str
    created_at: float


class Channels:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, project: str, name: str, url: str) -> Channel:
        _check_name(name)
        try:
            check_url(url, f"channel {name!r}: url")
        except ButtonError as error:
            raise ChannelError(str(error)) from None
        with self.engine.begin() as conn:
            project_id = _project_id(conn, project)
            if _channel_urls(conn, project_id).get(name) is not None:
                raise ChannelError(f"channel {name!r} already exists in project {project!r}")
            now = time.time()
            conn.execute(
                insert(channels).values(project_id=project_id, name=name, url=url, created_at=now)
            )
        return Channel(name, url, now)

    def list(self, project: str) -> list[Channel]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(channels.c.name, channels.c.url, channels.c.created_at)
                .where(channels.c.project_id == _project_id(conn, project))
                .order_by(channels.c.name)
            ).all()
        return [Channel(row.name, row.url, row.created_at) for row in rows]

    def remove(self, project: str, name: str) -> None:
        with self.engine.begin() as conn:
            project_id = _project_id(conn, project)
            users = templates_naming_channel(conn, project_id, name)
            if users:
                raise ChannelError(
                    f"channel {name!r} is used by template(s) {', '.join(users)}: "
                    "change their buttons first"
                )
            removed = conn.execute(
                delete(channels).where(channels.c.project_id == project_id, channels.c.name == name)
            ).rowcount
            if not removed:
                raise ChannelError(f"no channel {name!r} in project {project!r}")


def project_view(conn: Connection, project_id: int) -> ProjectView:
    """The project as templates see it: its name and its channels' URLs."""
    name = conn.execute(select(projects.c.name).where(projects.c.id == project_id)).scalar_one()
    return ProjectView(name=name, channels=_channel_urls(conn, project_id))


def missing_channels(conn: Connection, project_id: int, names: set[str]) -> list[str]:
    """The names among `names` that are not channels of the project."""
    return sorted(names - set(_channel_urls(conn, project_id)))


def templates_naming_channel(conn: Connection, project_id: int, name: str) -> list[str]:
    rows = conn.execute(
        select(templates.c.name, templates.c.buttons).where(templates.c.project_id == project_id)
    )
    return sorted(
        row.name
        for row in rows
        if any(button.channel == name for button in buttons_from_json(row.buttons))
    )


def _channel_urls(conn: Connection, project_id: int) -> dict[str, str]:
    rows = conn.execute(
        select(channels.c.name, channels.c.url).where(channels.c.project_id == project_id)
    )
    return {row.name: row.url for row in rows}


def _project_id(conn: Connection, project: str) -> int:
    try:
        return project_id_of(conn, project)
    except ContactError as error:
        raise ChannelError(str(error)) from None


def _check_name(name: str) -> None:
    if not 1 <= len(name) <= MAX_CHANNEL_NAME_CHARS or not set(name) <= _NAME_CHARS:
        raise ChannelError(
            f"channel name {name!r}: letters, digits, _ and - only, "
            f"1 to {MAX_CHANNEL_NAME_CHARS} characters"
        )
