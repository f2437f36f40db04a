"""`postroom mailbox ...` through `main` over a real SQLite database and Maildirs: a name
the naming rule refuses is one line, exit 2, nothing written (no row, no Maildir, the
passwd-file untouched); a stored row the passwd-file cannot hold (an older version's,
or written by hand) is left out with a warning and never stops the other mailboxes'
changes from reaching it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.fakes.mailbox_rows import insert_mailbox_row

from postroom.cli.main import main
from postroom.config import load_config
from postroom.db.engine import make_engine
from postroom.db.models import mailboxes
from postroom.mailbox.directory import Directory

PASSWORD = "tulip-harbour-42-lantern"
NEW_PASSWORD = "copper-meadow-17-lantern"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "postroom.toml"
    path.write_text(f'[server]\nhostname = "mx.shop.test"\n[state]\ndir = "{tmp_path}/state"\n')
    directory = Directory(make_engine(load_config(path).database_url))
    assert main(["-c", str(path), "db", "upgrade"]) == 0
    directory.add_project("acme")
    directory.add_domain("shop.test", "acme")
    directory.mark_verified("shop.test", [])
    return path


def run(
    config: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
    stdin: str = "",
) -> tuple[int, str, str]:
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    status = main(["-c", str(config), *args])
    out, err = capsys.readouterr()
    return status, out, err


def add(config: Path, capsys, monkeypatch, address: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    return run(
        config, capsys, monkeypatch, "mailbox", "add", address, "--password-stdin", stdin=PASSWORD
    )


def store_row(config: Path, address: str) -> None:
    engine = make_engine(load_config(config).database_url)
    insert_mailbox_row(engine, address)
    engine.dispose()


def passwd_users(config: Path) -> dict[str, str]:
    """login → password hash, from the passwd-file."""
    text = (config.parent / "state" / "dovecot" / "passwd").read_text()
    return {
        line.split(":", 1)[0]: line.split(":")[1].removeprefix("{ARGON2ID}")
        for line in text.splitlines()
    }


@pytest.mark.parametrize(
    ("address", "char"),
    [
        ("a%d@shop.test", "'%'"),
        ("#x@shop.test", "'#'"),
        ("a+tag@shop.test", "'+'"),
        ("a/b@shop.test", "'/'"),
        ("a:b@shop.test", "':'"),
        ("a b@shop.test", "' '"),
        ("a\tb@shop.test", "'\\t'"),
        ("o'neil@shop.test", '"\'"'),
        ("_x@shop.test", "'_'"),
        ("a..b@shop.test", "'.'"),
    ],
)
def test_a_name_the_rule_refuses_is_one_line_exit_2_and_nothing_is_written(
    config: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    address: str,
    char: str,
) -> None:
    assert add(config, capsys, monkeypatch, "alice@shop.test")[0] == 0
    passwd = config.parent / "state" / "dovecot" / "passwd"
    before = passwd.read_bytes()
    status, out, err = add(config, capsys, monkeypatch, address)
    assert (status, out) == (2, "")
    assert err.count("\n") == 1 and repr(address.strip()) in err and char in err, err
    status, out, _ = run(config, capsys, monkeypatch, "mailbox", "list", "--json")
    assert status == 0 and '"alice@shop.test"' in out and out.count('"address"') == 1
    assert sorted(p.name for p in (config.parent / "state/mail/shop.test").iterdir()) == ["alice"]
    assert passwd.read_bytes() == before


def test_an_alias_source_follows_the_same_rule(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    add(config, capsys, monkeypatch, "alice@shop.test")
    status, _, err = run(
        config, capsys, monkeypatch, "alias", "add", "x%y@shop.test", "alice@shop.test"
    )
    assert status == 2 and "alias 'x%y@shop.test'" in err and "'%'" in err
    assert (
        run(config, capsys, monkeypatch, "alias", "add", "Sales.Team@shop.test", "alice@shop.test")[
            0
        ]
        == 0
    )
    assert run(config, capsys, monkeypatch, "alias", "add", "@shop.test", "alice@shop.test")[0] == 0


def test_a_stored_row_the_file_cannot_hold_never_stops_other_changes(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("alice", "bob"):
        assert add(config, capsys, monkeypatch, f"{name}@shop.test")[0] == 0
    old_alice = passwd_users(config)["alice@shop.test"]
    store_row(config, "a%d@shop.test")
    store_row(config, "#x@shop.test")

    status, _, err = run(config, capsys, monkeypatch, "mailbox", "delete", "bob@shop.test", "--yes")
    assert status == 0, err
    assert "mailbox 'a%d@shop.test' is not in" in err and "mailbox '#x@shop.test' is not in" in err
    assert "Traceback" not in err
    status, _, err = run(
        config,
        capsys,
        monkeypatch,
        "mailbox",
        "passwd",
        "alice@shop.test",
        "--password-stdin",
        stdin=NEW_PASSWORD,
    )
    assert status == 0, err
    users = passwd_users(config)
    assert list(users) == ["alice@shop.test"]  # bob gone, the bad rows left out
    assert users["alice@shop.test"] != old_alice

    # The operator can remove the bad rows with the command the warning names.
    for address in ("a%d@shop.test", "#x@shop.test"):
        status, _, err = run(config, capsys, monkeypatch, "mailbox", "delete", address, "--yes")
        assert status == 0, err
    status, _, err = run(config, capsys, monkeypatch, "dovecot", "passwd")
    assert (status, err) == (0, "")


def test_a_hand_written_row_outside_address_syntax_can_still_be_deleted(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store_row(config, "a b@shop.test")
    status, out, err = run(
        config, capsys, monkeypatch, "mailbox", "delete", "a b@shop.test", "--yes"
    )
    assert status == 0, err
    assert "mailbox a b@shop.test deleted" in out
    status, _, err = run(config, capsys, monkeypatch, "mailbox", "delete", "c d@shop.test", "--yes")
    assert status == 2 and err.count("\n") == 1 and "no mailbox 'c d@shop.test'" in err


def test_a_mail_root_the_passwd_file_cannot_hold_refuses_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "postroom.toml"
    path.write_text(
        f'[server]\nhostname = "mx.shop.test"\n[state]\ndir = "{tmp_path}/state"\n'
        f'[mailbox]\nroot = "{tmp_path}/my mail"\n'
    )
    directory = Directory(make_engine(load_config(path).database_url))
    assert main(["-c", str(path), "db", "upgrade"]) == 0
    directory.add_project("acme")
    directory.add_domain("shop.test", "acme")
    directory.mark_verified("shop.test", [])
    status, _, err = add(path, capsys, monkeypatch, "alice@shop.test")
    assert status == 2 and err.count("\n") == 1
    assert "contains ' '" in err and "[mailbox] root" in err and "nothing changed" in err
    assert not (tmp_path / "my mail").exists()
    with directory.engine.connect() as conn:
        assert conn.execute(select(mailboxes.c.id)).first() is None
