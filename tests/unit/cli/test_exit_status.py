"""One exit-status convention for every command, run for real on a small state:
0 ok; 1 the answer is no (a failed check, a refused gate); 2 bad input, not found,
or trouble that left the question open. Each error is one line on stderr."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from tests.unit.cli.running import NOWHERE_DNS, write_config

from postroom.cli.main import main

NO_SUCH_ID = "0000000000000000"

CASES = [
    # (what, the arguments as a shell would split them, exit status)
    ("queue stats", "queue stats", 0),
    ("queue show of an unknown id", "queue show {id}", 2),
    ("queue hold of an unknown id", "queue hold {id}", 2),
    ("queue delete of an unknown id", "queue delete {id}", 2),
    ("queue retry with neither id nor --all", "queue retry", 2),
    ("queue retry with both an id and --all", "queue retry {id} --all", 2),
    ("queue list", "queue list --limit 5", 0),
    ("queue list with a limit below 1", "queue list --limit -1", 2),
    ("project list", "project list", 0),
    ("project limit of an unknown project", "project limit nope 5", 2),
    ("project limit that is not a number", "project limit shop many", 2),
    ("domain list", "domain list", 0),
    ("domain verify of an unlinked domain", "domain verify other.test", 2),
    ("domain dns of an unlinked domain", "domain dns other.test", 2),
    ("domain check of an unlinked domain", "domain check other.test", 2),
    ("domain dkim list of an unlinked domain", "domain dkim list other.test", 2),
    ("domain dns with --json and --format bind", "domain dns shop.test --json --format bind", 2),
    ("dns self with --json and --format table", "dns self --json --format table", 2),
    ("dns self with --json and --format json", "dns self --json --format json", 0),
    ("mailbox list", "mailbox list", 0),
    ("mailbox passwd of an unknown mailbox", "mailbox passwd zed@shop.test --password-stdin", 2),
    ("mailbox delete of an unknown mailbox", "mailbox delete zed@shop.test --yes", 2),
    ("alias add to an unknown mailbox", "alias add a@shop.test zed@shop.test", 2),
    ("smtp info of an unknown mailbox", "smtp info zed@shop.test", 2),
    ("smtp list with an unknown state", "smtp list --state maybe", 2),
    ("contact show", "contact show ann@example.com --project shop", 0),
    ("contact show of an unknown contact", "contact show zed@example.com --project shop", 2),
    ("contact show in an unknown project", "contact show ann@example.com --project nope", 2),
    ("rating gate that allows", "rating gate --project shop", 0),
    ("rating gate of an unknown project", "rating gate --project nope", 2),
    ("address check of a valid address", "address check ann@example.com --no-dns", 0),
    ("address check of a risky address", "address check postmaster@example.com --no-dns", 0),
    (
        "address check with an invalid address",
        "address check ann@example.com ann@@example.com --no-dns",
        1,
    ),
    (
        "address check --json with an invalid address",
        "address check x@gmial.com --no-dns --json",
        1,
    ),
    ("address check of nothing", "address check --no-dns", 2),
    ("address check of a missing file", "address check --file {dir}/missing.txt --no-dns", 2),
    ("bounce parse of a missing file", "bounce parse {dir}/missing.eml", 2),
    (
        "auth check of a missing file",
        "auth check {dir}/missing.eml --client-ip 192.0.2.1 --helo mx.example.test --mail-from ''",
        2,
    ),
    ("contact import of a missing file", "contact import {dir}/missing.csv --project shop", 2),
    ("config check", "config check", 0),
]


def make_state(directory: Path) -> Path:
    """A project with a linked domain and a contact rated 10; DNS goes nowhere (no
    test may reach a real name server). Returns the config file."""
    config = write_config(directory, extra=NOWHERE_DNS)
    for args in (
        ["project", "add", "shop"],
        ["domain", "add", "shop.test", "--project", "shop"],
        ["contact", "add", "ann@example.com", "--project", "shop", "--no-dns"],
    ):
        assert main(["-c", str(config), *args]) == 0, args
    return config


@pytest.fixture(scope="module")
def shared_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One state for the cases below, none of which changes it."""
    return make_state(tmp_path_factory.mktemp("state"))


@pytest.mark.parametrize(("what", "args", "expected"), CASES, ids=[case[0] for case in CASES])
def test_exit_status(
    shared_state: Path,
    capsys: pytest.CaptureFixture[str],
    what: str,
    args: str,
    expected: int,
) -> None:
    capsys.readouterr()
    arguments = shlex.split(args.format(id=NO_SUCH_ID, dir=shared_state.parent))
    status = main(["-c", str(shared_state), *arguments])
    out, err = capsys.readouterr()
    assert status == expected, (what, out, err)
    if expected == 2:
        assert err.startswith("postroom: ") and err.count("\n") == 1, err
        assert "Traceback" not in err


def test_a_refused_rating_gate_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(make_state(tmp_path))
    assert (
        main(["-c", config, "contact", "set-rating", "ann@example.com", "2", "--project", "shop"])
        == 0
    )
    capsys.readouterr()
    assert main(["-c", config, "rating", "gate", "--project", "shop"]) == 1
    assert capsys.readouterr().out.startswith("launch refused: ")


def test_an_invalid_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, extra='[smtp.inbound]\nrelay_netwroks = ["127.0.0.0/8"]\n')
    assert main(["-c", str(path), "config", "check"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:7: smtp.inbound.relay_netwroks: unknown key" in err


def test_a_database_that_cannot_be_reached_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens on port 9 of the loopback: the connection is refused at once.
    url = "postgresql+psycopg://postroom@127.0.0.1:9/postroom"
    path = write_config(tmp_path, extra=f'\n[database]\nurl = "{url}"\n')
    assert main(["-c", str(path), "queue", "stats"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("postroom: database error: ") and err.count("\n") == 1
