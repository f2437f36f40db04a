"""Fixtures of the rating unit tests: a real SQLite database migrated to head,
its project directory, and the contacts store with the default rules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from postroom.config.schema import RatingConfig
from postroom.db.engine import make_engine
from postroom.db.migrate import upgrade
from postroom.mailbox.directory import Directory
from postroom.rating.contacts import Contacts
from postroom.rating.rules import Rules


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path}/db.sqlite")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def directory(engine: Engine) -> Directory:
    return Directory(engine)


@pytest.fixture
def contacts(engine: Engine) -> Contacts:
    return Contacts(engine, Rules(RatingConfig()))
