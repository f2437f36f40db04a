"""Process logging: one JSON object a line when [logging] format = "json"."""

from __future__ import annotations

import json
import logging

import pytest

from postroom.config.schema import LoggingConfig
from postroom.core.logsetup import setup_logging


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
