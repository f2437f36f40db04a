"""`postroom sender ...` in-process: exit statuses, one-line errors, the `list --json` contract.
DNS goes nowhere (a DMARC lookup fails at once), so `add` of a send-only sender warns
that the policy is unknown and still succeeds."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from tests.unit.cli.conftest import Run
from tests.unit.cli.running import NOWHERE_DNS, run_cli, write_config

LIST_KEYS = {"address", "name", "state", "project", "mode", "created_at", "confirmed_at"}


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    config = write_config(tmp_path, extra=NOWHERE_DNS)
    status, _, err = run_cli(config, capsys, "project", "add", "acme")
    assert status == 0, err
    return lambda *args: run_cli(config, capsys, *args)


def mailed_code(tmp_path: Path, address: str) -> str:
    with sqlite3.connect(tmp_path / "state" / "postroom.db") as db:
        body = db.execute(
            "SELECT m.body FROM messages m JOIN deliveries d ON d.message_id = m.id "
            "WHERE d.recipient = ? ORDER BY m.created_at DESC LIMIT 1",
            (address,),
        ).fetchone()[0]
    found = re.search(rb"^Subject: (\d{6}) ", body, re.MULTILINE)
    assert found is not None
    return found.group(1).decode()


def test_add_confirm_list_show_remove(run: Run, tmp_path: Path) -> None:
    status, out, err = run("sender", "add", "Bot@Far.test", "--project", "acme", "--name", "Bot")
    assert status == 0
    assert err.startswith("postroom: warning: the DMARC policy of far.test is unknown")
    assert "added sender bot@far.test of project acme: unconfirmed" in out
    assert "code mail: queued" in out

    status, out, _ = run("sender", "list", "--project", "acme", "--json")
    [listed] = json.loads(out)
    assert status == 0 and set(listed) >= LIST_KEYS
    assert (listed["state"], listed["mode"], listed["name"]) == ("unconfirmed", "send-only", "Bot")

    code = mailed_code(tmp_path, "bot@far.test")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    status, _, err = run("sender", "confirm", "bot@far.test", wrong)
    assert status == 2 and err == "postroom: wrong code for bot@far.test: 4 tries left\n"
    status, out, _ = run("sender", "confirm", "bot@far.test", code, "--json")
    assert status == 0 and json.loads(out)["state"] == "confirmed"

    status, out, _ = run("sender", "show", "bot@far.test", "--project", "acme", "--json")
    shown = json.loads(out)
    assert status == 0 and shown["state"] == "confirmed" and shown["code"] is None
    assert shown["code_mail"]["state"] == "queued"
    assert shown["dmarc"]["risk"].startswith("the DMARC policy of far.test is unknown")
    assert shown["replies"].startswith("send-only: far.test is not a verified domain")

    status, out, _ = run("sender", "remove", "bot@far.test", "--project", "acme")
    assert status == 0 and out == "removed sender bot@far.test of project acme\n"
    assert run("sender", "list", "--project", "acme", "--json")[1] == "[]\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("sender", "add", "nobody", "--project", "acme"), "'nobody' is not an address"),
        (("sender", "add", "a@far.test", "--project", "nope"), "no project named 'nope'"),
        (("sender", "confirm", "a@far.test", "12"), "'12' is not a confirmation code"),
        (("sender", "confirm", "a@far.test", "123456"), "no sender a@far.test"),
        (("sender", "resend-code", "a@far.test", "--project", "acme"), "no sender a@far.test"),
        (("sender", "show", "a@far.test", "--project", "acme"), "no sender a@far.test"),
    ],
)
def test_bad_input_exits_2_with_one_line(run: Run, args: tuple[str, ...], message: str) -> None:
    status, out, err = run(*args)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
