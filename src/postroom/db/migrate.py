"""Applying Alembic migrations programmatically (`postroom db upgrade`, `serve`,
and every CLI command that opens the database).

The migration scripts ship inside the package, so an installed appliance
upgrades its schema without an alembic.ini on disk. Importing Alembic costs
more than most CLI commands take to run, so `ensure_current` first compares
the `alembic_version` row with `HEAD_REVISION` (one query, SQLAlchemy Core
only) and loads Alembic only when they differ. `HEAD_REVISION` must name the
newest migration; `tests/unit/db/test_migrations.py` fails when it does not.
Should it ever lag, the schema is still right: a mismatch always runs Alembic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
HEAD_REVISION = "0009"


def alembic_config(engine: Engine) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def ensure_current(engine: Engine) -> None:
    """Upgrade to head unless the database already is there."""
    if schema_revision(engine) != HEAD_REVISION:
        upgrade(engine)


def schema_revision(engine: Engine) -> str | None:
    """The one revision in `alembic_version`, or None (no table, no row, several heads,
    or the database cannot be read: Alembic then runs and reports any real failure)."""
    from sqlalchemy.exc import DBAPIError

    try:
        with engine.connect() as connection:
            return revision_read_by(lambda sql: connection.exec_driver_sql(sql).all())
    except DBAPIError:
        return None


def revision_read_by(rows: Callable[[str], Sequence[Sequence[Any]]]) -> str | None:
    """The one revision in `alembic_version` as `rows(sql)` reads it (any DB-API or
    SQLAlchemy reader), or None when there is no row or there are several heads."""
    found = rows("SELECT version_num FROM alembic_version")
    return str(found[0][0]) if len(found) == 1 else None


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
