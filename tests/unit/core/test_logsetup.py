"""Process logging: one JSON object a line when [logging] format = "json"."""

from __future__ import annotations

import json
import logging

import pytest

from postroom.config.schema import LoggingConfig
from postroom.core.logsetup import escape_controls, setup_logging


def test_json_lines_and_quiet_aiosmtpd(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(LoggingConfig(level="info", format="json"))
    try:
        logging.getLogger("postroom.smtp").info("queued queue_id=%s", "ABC")
        logging.getLogger("mail.log").info("aiosmtpd chatter")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("postroom").exception("failed")
        lines = capsys.readouterr().err.strip().splitlines()
    finally:
        logging.getLogger().handlers.clear()
    entries = [json.loads(line) for line in lines]
    assert entries[0]["message"] == "queued queue_id=ABC"
    assert entries[0]["level"] == "info" and entries[0]["logger"] == "postroom.smtp"
    assert len(entries) == 2  # the aiosmtpd line is held back at WARNING
    assert "ValueError: boom" in entries[1]["exception"]


# -- one record, one line: what clients send is escaped -----------------------------

FORGED = "evil\r\n2024-01-01 00:00:00,000 ERROR postroom: forged"


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("plain text, left alone", "plain text, left alone"),
        ("a\r\nb", "a\\r\\nb"),
        ("tab\there", "tab\\there"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("nul\x00del\x7f", "nul\\x00del\\x7f"),
        ("c1\x85\x9b", "c1\\x85\\x9b"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("byte\udcc3(", "byte\\xc3("),  # surrogateescape: the original byte
        ("jos\u00e9 \u4e2d", "jos\u00e9 \u4e2d"),  # printable non-ASCII stays
    ],
)
def test_escape_controls(text: str, escaped: str) -> None:
    assert escape_controls(text) == escaped


def _log_lines(capsys: pytest.CaptureFixture[str], format_name: str) -> list[str]:
    setup_logging(LoggingConfig(level="info", format=format_name))
    try:
        logging.getLogger("postroom.submission").info("auth failed user=<%s>", FORGED)
        logging.getLogger("mail.log").warning("%r said %s", ("127.0.0.1", 1), "\x1b]0;title\x07")
        logging.getLogger("postroom.smtp").info("helo=<%s>", "a\u2028b\x85c")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("postroom").exception("client said %s", "x\ny")
        return capsys.readouterr().err.splitlines()
    finally:
        logging.getLogger().handlers.clear()


def test_text_lines_escape_every_logger_but_keep_tracebacks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = _log_lines(capsys, "text")
    # auth, aiosmtpd, helo, the exception's message, then its multi-line traceback.
    assert lines[0].endswith(
        "postroom.submission: auth failed user=<evil\\r\\n2024-01-01 "
        "00:00:00,000 ERROR postroom: forged>"
    )
    assert lines[1].endswith("mail.log: ('127.0.0.1', 1) said \\x1b]0;title\\x07")
    assert lines[2].endswith("postroom.smtp: helo=<a\\u2028b\\x85c>")
    assert lines[3].endswith("postroom: client said x\\ny")
    assert lines[4] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: boom"
    assert not any(line.startswith("2024-01-01") for line in lines)


def test_json_messages_are_escaped_the_same_way(capsys: pytest.CaptureFixture[str]) -> None:
    entries = [json.loads(line) for line in _log_lines(capsys, "json")]
    assert [entry["message"] for entry in entries] == [
        "auth failed user=<evil\\r\\n2024-01-01 00:00:00,000 ERROR postroom: forged>",
        "('127.0.0.1', 1) said \\x1b]0;title\\x07",
        "helo=<a\\u2028b\\x85c>",
        "client said x\\ny",
    ]
    assert "ValueError: boom" in entries[3]["exception"]
