"""Migration 0009 on a database that already holds a launched campaign: its lease
columns start empty (NULL outside `launching`), and the migration goes down and up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text

from postroom.db.engine import make_engine
from postroom.db.migrate import alembic_config, upgrade

LEASE_COLUMNS = {"launch_owner", "launch_lease_until"}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path}/postroom.db")
    yield engine
    engine.dispose()


def campaign_columns(engine: Engine) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns("campaigns")}


def test_a_launched_campaign_has_no_lease_and_the_migration_goes_down_and_up(
    engine: Engine,
) -> None:
    upgrade(engine, "0008")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO projects (name, created_at) VALUES ('acme', 0)"))
        conn.execute(
            text(
                "INSERT INTO senders (project_id, address, display_name, state, created_at)"
                " VALUES (1, 'news@acme.test', 'Acme', 'confirmed', 0)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO campaigns (project_id, name, sender_id, state, created_at,"
                " updated_at, launched_at) VALUES (1, 'spring', 1, 'sending', 0, 0, 5)"
            )
        )
    assert not campaign_columns(engine) & LEASE_COLUMNS
    upgrade(engine)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM campaigns")).mappings().one()
    assert (row["state"], row["launched_at"]) == ("sending", 5)
    assert (row["launch_owner"], row["launch_lease_until"]) == (None, None)
    command.downgrade(alembic_config(engine), "0008")
    assert not campaign_columns(engine) & LEASE_COLUMNS
    upgrade(engine)
    assert campaign_columns(engine) >= LEASE_COLUMNS
