"""Text output people read: measured columns, sizes in binary units (the JSON keeps
bytes), the auth check's verdict table."""

from __future__ import annotations

import io
import json
from pathlib import Path

import dns.rdata
import pytest
from tests.unit.cli.conftest import Run

from postroom.cli import auth_cmd
from postroom.cli.common import human_size, open_database
from postroom.cli.table import table_lines
from postroom.config.loader import parse_size
from postroom.config.schema import ChecksConfig
from postroom.core.dns import DnsNotFound
from postroom.mailbox.directory import Directory
from postroom.mta.checks.pipeline import CheckOutcome, run_checks
from postroom.mta.checks.policy import decide
from postroom.mta.checks.results import authentication_results


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KiB"),
        (512 * 1024**2, "512 MiB"),
        (int(1.5 * 1024**3), "1.5 GiB"),
        (3 * 1024**4, "3072 GiB"),
    ],
)
def test_human_sizes_read_back_with_the_configs_size_parser(size: int, shown: str) -> None:
    assert human_size(size) == shown
    assert parse_size(shown, "quota") == size


def test_table_columns_are_as_wide_as_their_widest_cell() -> None:
    lines = table_lines(
        ("NAME", "SIZE", "NOTE"),
        [("a-rather-long-address@example.com", "1 KiB", "x"), ("b", "512 MiB", None)],
        right=(1,),
    )
    assert lines == [
        "NAME                                  SIZE  NOTE",
        "a-rather-long-address@example.com    1 KiB  x",
        "b                                  512 MiB  -",
    ]


def test_mailbox_list_shows_quota_and_usage_in_binary_units(
    run: Run, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for args in (["project", "add", "shop"], ["domain", "add", "shop.test", "--project", "shop"]):
        assert run(*args)[0] == 0
    Directory(open_database(str(config))).mark_verified("shop.test", [])
    monkeypatch.setattr("sys.stdin", io.StringIO("correct-horse-battery-staple-42\n"))
    status, _, err = run("mailbox", "add", "ann@shop.test", "--quota", "512MiB", "--password-stdin")
    assert status == 0, err
    status, out, _ = run("mailbox", "list")
    header, row = out.splitlines()
    assert header.split() == ["ADDRESS", "PROJECT", "USED", "QUOTA", "MESSAGES"]
    assert "512 MiB" in row and "0 B" in row and "536870912" not in row
    status, out, _ = run("mailbox", "list", "--json")
    assert json.loads(out)[0]["quota_bytes"] == 512 * 1024**2


def nothing_published(name: str, rdtype: str) -> list[dns.rdata.Rdata]:
    raise DnsNotFound(name, rdtype, "no such name")


def test_auth_check_text_columns_line_up(capsys: pytest.CaptureFixture[str]) -> None:
    message = b"From: Ann <ann@author.test>\r\nSubject: hi\r\n\r\nHello.\r\n"
    verdicts = run_checks(
        nothing_published,
        message,
        client_ip="192.0.2.7",
        helo="a-long-helo-name.author.test",
        mail_from="ann@author.test",
    )
    outcome = CheckOutcome(
        verdicts,
        decide(verdicts, ChecksConfig()),
        authentication_results("mx.example.test", verdicts),
    )
    auth_cmd._print(outcome)
    lines = capsys.readouterr().out.splitlines()
    table = lines[: lines.index(next(line for line in lines if line.startswith("action"))) + 1]
    assert [line.split()[0] for line in table] == [
        "CHECK",
        "spf",
        "spf",
        "dkim",
        "dmarc",
        "arc",
        "action",
    ]
    # The result column starts at one offset in every row, the header's.
    column = table[0].index("RESULT")
    assert all(line[column - 2 : column] == "  " and line[column] != " " for line in table)
    assert lines[len(table)].startswith("Authentication-Results: mx.example.test;")


def test_a_cell_with_control_characters_shows_escaped() -> None:
    # An imported name or a rendered subject could carry an escape sequence that
    # rewrites the operator's terminal: it shows as its repr instead.
    lines = table_lines(("NAME", "SUBJECT"), [("Ann\x1b[2J", "Hello\rBob"), ("Zoë", "ok")])
    assert "\x1b" not in "".join(lines) and "\r" not in "".join(lines)
    assert "'Ann\\x1b[2J'" in lines[1] and "'Hello\\rBob'" in lines[1]
    assert lines[2].startswith("Zoë")
