"""Migration 0005 on a database that already holds mailboxes: they start without SMTP
access, the migration goes down and up again, and a project's usage rows go with it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text

from postroom.db.engine import make_engine
from postroom.db.migrate import alembic_config, upgrade


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path}/postroom.db")
    yield engine
    engine.dispose()


def test_existing_mailboxes_start_without_smtp_access(engine: Engine) -> None:
    upgrade(engine, "0004")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO projects (name, created_at) VALUES ('acme', 0)"))
        conn.execute(
            text(
                "INSERT INTO domains (project_id, name, state, verification_token, created_at)"
                " VALUES (1, 'example.com', 'verified', 't', 0)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO mailboxes (domain_id, address, password_hash, quota_bytes,"
                " created_at, updated_at) VALUES (1, 'app@example.com', 'h', 0, 0, 0)"
            )
        )
    upgrade(engine)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM mailboxes")).mappings().one()
    assert {key: value for key, value in row.items() if key.startswith("smtp_")} == {
        "smtp_state": "none",
        "smtp_purpose": "",
        "smtp_volume": None,
        "smtp_reason": "",
        "smtp_requested_at": None,
        "smtp_decided_at": None,
        "smtp_domain_senders": 0,
        "smtp_per_minute": None,
        "smtp_per_day": None,
    }
    assert row["address"] == "app@example.com" and row["password_hash"] == "h"


def test_downgrade_removes_what_0005_added(engine: Engine) -> None:
    upgrade(engine)
    command.downgrade(alembic_config(engine), "0004")
    inspector = inspect(engine)
    assert "project_usage" not in inspector.get_table_names()
    assert not [c for c in inspector.get_columns("mailboxes") if c["name"].startswith("smtp_")]
    upgrade(engine)
    assert "project_usage" in inspect(engine).get_table_names()


def test_usage_rows_go_with_their_project(engine: Engine) -> None:
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO projects (name, created_at) VALUES ('acme', 0)"))
        conn.execute(
            text("INSERT INTO project_usage (project_id, period, used) VALUES (1, '2026-01', 3)")
        )
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM projects WHERE name = 'acme'"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM project_usage")).scalar() == 0
