"""The CLI starts without the heavy modules it does not need (a deterministic guard
of startup time; bench/cli_startup.py measures it). Each command runs in a fresh
interpreter with `-X importtime`, whose report names every module imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.unit.cli.running import write_config

from postroom.cli.main import main

# What costs tens to hundreds of milliseconds to import, and what `--help` never needs.
HEAVY = (
    "sqlalchemy",
    "alembic",
    "aiosmtpd",
    "aiosmtplib",
    "dns",
    "dkim",
    "spf",
    "authres",
    "cryptography",
    "nacl",
    "argon2",
    "idna",
    "publicsuffixlist",
    "email_validator",
    "psycopg",
    "uvloop",
    "email.parser",
    "email.feedparser",
    "asyncio",
    "tomllib",
)
# A migrated database needs neither Alembic nor SQLAlchemy, nor any part of the mail flow.
NOT_FOR_QUEUE_STATS = (
    "alembic",
    "sqlalchemy.orm",
    "aiosmtpd",
    "aiosmtplib",
    "dns",
    "dkim",
    "cryptography",
    "idna",
    "email_validator",
    "psycopg",
    "email.parser",
)
TIMEOUT_S = 120


def imported_modules(*args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "postroom.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return {
        line.split("|")[2].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def loaded(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


def test_help_imports_nothing_heavy_and_no_postroom_package_but_the_cli() -> None:
    modules = imported_modules("--help")
    assert "postroom.cli.queue_cmd" in modules  # (main itself runs as __main__)
    assert loaded(modules, HEAVY) == []
    beyond_the_cli = [
        m
        for m in loaded(modules, ("postroom",))
        if not m.startswith("postroom.cli") and m not in ("postroom", "postroom.core")
    ]
    assert beyond_the_cli == ["postroom.core.errors"]


@pytest.mark.parametrize("verb", ["queue", "domain", "mailbox", "smtp", "contact", "auth"])
def test_help_of_a_verb_imports_nothing_heavy(verb: str) -> None:
    assert loaded(imported_modules(verb, "--help"), HEAVY) == []


def test_queue_stats_on_a_migrated_sqlite_database_needs_no_sqlalchemy(tmp_path: Path) -> None:
    config = str(write_config(tmp_path))
    assert main(["-c", config, "db", "upgrade"]) == 0
    modules = imported_modules("-c", config, "queue", "stats")
    assert "sqlite3" in modules  # the guard below is not vacuous
    assert loaded(modules, ("sqlalchemy", *NOT_FOR_QUEUE_STATS)) == []


def test_queue_stats_before_the_first_migration_takes_the_full_path(tmp_path: Path) -> None:
    # No database yet: the read-only path declines, SQLAlchemy and Alembic create it.
    modules = imported_modules("-c", str(write_config(tmp_path)), "queue", "stats")
    assert "sqlalchemy.engine" in modules and "alembic" in modules


def test_config_check_needs_no_database(tmp_path: Path) -> None:
    modules = imported_modules("-c", str(write_config(tmp_path)), "config", "check")
    assert "postroom.config.schema" in modules
    assert loaded(modules, ("sqlalchemy", "alembic", "dns", "cryptography")) == []
