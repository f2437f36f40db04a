"""Process logging: plain text lines, or one JSON object a line (`[logging] format`).

Config keys: [logging] level, format. aiosmtpd logs every command at INFO;
its logger is held at WARNING so that a busy listener does not spend its time
formatting log lines (our own session log says what matters).
"""

from __future__ import annotations

import json
import logging
import sys

from postroom.config.schema import LoggingConfig


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(config: LoggingConfig) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level.upper())
    logging.getLogger("mail.log").setLevel(logging.WARNING)
