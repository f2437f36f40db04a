"""Modes of what postroom creates for its state, whatever the caller's umask: the real CLI
(`config init`, `db upgrade`, `mailbox add`, `domain dkim rotate`) run with umask 022 leaves
nothing readable by others; SQLite's -wal and -shm follow the database file; a directory an
operator tightened stays as it is; an older postroom's 0644 database loses its bits for others."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from postroom.config import load_config
from postroom.core.statefiles import make_directories, prepare_sqlite_file
from postroom.db.engine import make_engine
from postroom.mailbox.directory import Directory
from postroom.mailbox.maildir import deliver

PASSWORD = "tulip-harbour-42-lantern"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def cli(config: Path, *args: str, umask: int = 0o022, stdin: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "postroom.cli.main", "-c", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        umask=umask,
    )
    assert result.returncode == 0, (args, result.stderr)
    return result.stdout


@pytest.fixture
def umask_022() -> Iterator[None]:
    """This process's own file creations (SQLite's -wal, a delivery) under umask 022 too."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_fresh_state_directory_through_the_real_cli(tmp_path: Path, umask_022: None) -> None:
    config, state = tmp_path / "postroom.toml", tmp_path / "state"
    cli(config, "config", "init", "--state-dir", str(state))
    config.write_text(config.read_text() + '\n[dkim]\nalgorithms = ["ed25519"]\n')
    cli(config, "db", "upgrade")
    assert mode(config) == 0o640
    assert mode(state) == 0o750
    assert mode(state / "postroom.db") == 0o640
    assert mode(state / "postroom.db-writers") == 0o640  # writers queue on it (flock)

    engine = make_engine(load_config(config).database_url)
    directory = Directory(engine)
    directory.add_project("acme")
    directory.add_domain("shop.test", "acme")
    directory.mark_verified("shop.test", [])
    with engine.connect() as conn:  # an open connection keeps -wal and -shm in place
        conn.execute(text("SELECT count(*) FROM domains")).scalar_one()
        for suffix in ("-wal", "-shm"):
            assert mode(state / f"postroom.db{suffix}") == 0o640, suffix

        cli(config, "mailbox", "add", "alice@shop.test", "--password-stdin", stdin=PASSWORD)
        cli(config, "domain", "dkim", "rotate", "shop.test")
    engine.dispose()

    maildir = state / "mail" / "shop.test" / "alice"
    for directory_path in (state / "mail", maildir.parent, maildir, maildir / "new"):
        assert mode(directory_path) == 0o700, directory_path
    stored = deliver(maildir, b"Subject: hi\r\n\r\nhello\r\n", hostname="mx.shop.test")
    assert mode(maildir / stored) == 0o600
    assert mode(state / "secret.key") == 0o600
    assert mode(state / "dovecot") == 0o750 and mode(state / "dovecot" / "passwd") == 0o640

    others = [p for p in (state, *state.rglob("*")) if p.stat().st_mode & 0o007]
    assert others == [], others


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_the_modes_do_not_depend_on_the_umask(tmp_path: Path, umask: int) -> None:
    config, state = tmp_path / "postroom.toml", tmp_path / "a" / "state"
    config.write_text(f'[state]\ndir = "{state}"\n')
    cli(config, "db", "upgrade", umask=umask)
    assert (mode(tmp_path / "a"), mode(state), mode(state / "postroom.db")) == (0o750, 0o750, 0o640)


def test_an_existing_directory_is_left_as_the_operator_made_it(tmp_path: Path) -> None:
    tightened, loose = tmp_path / "tightened", tmp_path / "loose"
    tightened.mkdir(mode=0o700)
    loose.mkdir()
    loose.chmod(0o775)
    make_directories(tightened)
    prepare_sqlite_file(loose / "postroom.db")
    assert (mode(tightened), mode(loose)) == (0o700, 0o775)


def test_an_older_database_loses_only_the_bits_of_others(tmp_path: Path) -> None:
    database = tmp_path / "postroom.db"
    database.touch()
    database.chmod(0o664)
    wal = tmp_path / "postroom.db-wal"
    wal.touch()
    wal.chmod(0o644)
    prepare_sqlite_file(database)
    # Group bits are the operator's choice (a backup group, say); others had no business.
    assert (mode(database), mode(wal)) == (0o660, 0o640)


def test_a_state_directory_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "postroom.toml"
    config.write_text('[state]\ndir = "/proc/postroom-state"\n')  # not even root may
    result = subprocess.run(
        [sys.executable, "-m", "postroom.cli.main", "-c", str(config), "db", "upgrade"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Bad input (the configured state directory), exit 2 like every bad input.
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(
        "postroom: cannot create the SQLite database /proc/postroom-state/postroom.db: "
        "/proc/postroom-state: "
    )
