"""Process logging: plain text lines, or one JSON object a line (`[logging] format`).

One log record is one line, whoever logged it and whatever it quotes: both
formats pass the formatted message through `escape_controls`, so text a
remote client chose (an AUTH user name with CR LF in it, an EHLO name with
terminal escapes, an address) cannot forge a second line or drive the
operator's terminal. This is done here, once for every logger (ours,
aiosmtpd's, asyncio's), instead of at each log call. A traceback appended to
an ERROR record stays multi-line: it is our own code's text, not the client's.

Config keys: [logging] level, format. aiosmtpd logs every command at INFO;
its logger is held at WARNING so that a busy listener does not spend its time
formatting log lines (our own session log says what matters).
Untrusted input: the arguments of log calls, which may quote what clients sent.
"""

from __future__ import annotations

import json
import logging
import re
import sys

from postroom.config.schema import LoggingConfig

# C0 controls, DEL, C1 controls, lone surrogates (bytes that were not UTF-8, kept by
# surrogateescape), and the Unicode line and paragraph separators some viewers break on.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")
_NAMED = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the original byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """`text` with every control character written as an escape: `\\r`, `\\n`, `\\x1b`."""
    if _CONTROL.search(text) is None:  # the common case costs one scan
        return text
    return _CONTROL.sub(_escaped, text)


class TextFormatter(logging.Formatter):
    """`TIME LEVEL LOGGER: message`, the message on one line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))


class JsonFormatter(logging.Formatter):
    def __init__(self, worker: str = "") -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            # json.dumps escapes C0 only; escaped first, the text reads as in the text format.
            "message": escape_controls(record.getMessage()),
        }
        if self.worker:
            entry["worker"] = self.worker
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(config: LoggingConfig, worker: str = "") -> None:
    """Log to stderr; `worker` (a worker process of `serve`, "w1") tags every line."""
    handler = logging.StreamHandler(sys.stderr)
    if config.format == "json":
        handler.setFormatter(JsonFormatter(worker))
    else:
        tag = f"[{worker}]" if worker else ""
        handler.setFormatter(TextFormatter(f"%(asctime)s %(levelname)s %(name)s{tag}: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level.upper())
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    # Alembic announces each of its plugins at INFO whenever it loads; its migration
    # steps ("Running upgrade 0004 -> 0005") come from another logger and stay.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
