"""Migrations to head produce exactly `postroom.db.models.metadata`, and SQLite
runs with the durability the queue's 250 relies on (WAL, synchronous=FULL).
`ensure_current` (every CLI command that opens the database) upgrades only when
the database is behind, and knows the head without importing Alembic:
`HEAD_REVISION` must be Alembic's own head, or the shortcut would skip a migration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Column, Engine, Integer, MetaData, Table, inspect, text

from postroom.db import migrate
from postroom.db.engine import make_engine
from postroom.db.migrate import (
    HEAD_REVISION,
    alembic_config,
    current_revision,
    ensure_current,
    schema_revision,
    upgrade,
)
from postroom.db.models import metadata


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path}/state/postroom.db")
    yield engine
    engine.dispose()


def schema_diff(engine: Engine, target: MetaData) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return compare_metadata(context, target)


def test_head_matches_the_models(engine: Engine) -> None:
    upgrade(engine)
    assert schema_diff(engine, metadata) == []


def test_the_comparison_notices_a_difference(engine: Engine) -> None:
    # The check above can fail: a model with one more table or column shows up in the diff.
    upgrade(engine)
    extended = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(extended)
    Table("extra", extended, Column("id", Integer, primary_key=True))
    extended.tables["messages"].append_column(Column("added", Integer, nullable=True))
    kinds = sorted(diff[0] for diff in schema_diff(engine, extended))  # type: ignore[index]
    assert kinds == ["add_column", "add_table"]


def test_tables_columns_and_indexes(engine: Engine) -> None:
    upgrade(engine)
    inspector = inspect(engine)
    assert set(inspector.get_table_names()) == {"alembic_version", *metadata.tables}
    for name, table in metadata.tables.items():
        assert [c["name"] for c in inspector.get_columns(name)] == [c.name for c in table.columns]
        expected = {(index.name, tuple(c.name for c in index.columns)) for index in table.indexes}
        found = {(ix["name"], tuple(ix["column_names"])) for ix in inspector.get_indexes(name)}
        assert found == expected, name
    (foreign_key,) = inspector.get_foreign_keys("deliveries")
    assert foreign_key["referred_table"] == "messages"
    assert foreign_key["options"].get("ondelete") == "CASCADE"


def test_upgrade_reaches_head_and_is_idempotent(engine: Engine) -> None:
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head
    upgrade(engine)  # nothing pending: no error, no change
    assert current_revision(engine) == head
    assert schema_diff(engine, metadata) == []


def test_the_database_directory_is_created(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/a/b/postroom.db")
    try:
        upgrade(engine)
        assert (tmp_path / "a" / "b" / "postroom.db").is_file()
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode_with_full_sync(engine: Engine) -> None:
    upgrade(engine)
    engine.dispose()  # a fresh connection, as after a restart
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000


def test_every_pooled_connection_gets_the_pragmas(engine: Engine) -> None:
    upgrade(engine)
    first, second = engine.connect(), engine.connect()
    try:
        for conn in (first, second):
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 2
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        first.close()
        second.close()


def test_deleting_a_message_cascades_to_its_deliveries(engine: Engine) -> None:
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO messages (id, created_at, mail_from, pool, origin, client_ip,"
                " size_bytes, envelope_id) VALUES ('M1', 0, '', 'p', 'relay', '', 0, '')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO deliveries (message_id, recipient, domain, state, attempts,"
                " next_attempt_at, updated_at, last_status, last_reply, last_stage,"
                " remote_mta, source) VALUES ('M1', 'a@b.test', 'b.test', 'queued', 0, 0, 0,"
                " '', '', '', '', '')"
            )
        )
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM messages WHERE id = 'M1'"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM deliveries")).scalar() == 0


def test_the_head_revision_constant_is_alembics_head(engine: Engine) -> None:
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert head == HEAD_REVISION, "update HEAD_REVISION in postroom/db/migrate.py"


def test_a_new_database_is_migrated_to_head(engine: Engine) -> None:
    assert schema_revision(engine) is None  # no alembic_version table yet
    ensure_current(engine)
    assert current_revision(engine) == schema_revision(engine) == HEAD_REVISION


def test_a_database_behind_head_is_upgraded(engine: Engine) -> None:
    upgrade(engine, "0001")
    assert schema_revision(engine) == "0001"
    ensure_current(engine)
    assert current_revision(engine) == HEAD_REVISION


def test_a_current_database_is_not_handed_to_alembic(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(engine)

    def no_upgrade(*args: object) -> None:
        raise AssertionError("Alembic ran for a database at head")

    monkeypatch.setattr(migrate, "upgrade", no_upgrade)
    ensure_current(engine)


def test_an_unknown_revision_goes_to_alembic(engine: Engine) -> None:
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    with pytest.raises(CommandError, match="ffff"):
        ensure_current(engine)  # Alembic, not the shortcut, says what is wrong
