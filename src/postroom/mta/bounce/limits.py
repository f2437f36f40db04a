"""The caps and the time budget of inbound bounce, complaint and auto-reply parsing.

Purpose: whoever can send mail to the bounce domain chooses the bytes the
bounce parser reads, so its cost must be linear in its input and bounded by the
numbers below — all of them here, in one place. They are of two kinds:

- hard caps (`CapExceeded` when passed): past one, the message is not a
  report anyone writes; its structure is hostile or broken. `parse_bounce`
  stops reading and gives the `undefined` verdict (a bounce, reason unknown:
  no rating changes), logged once naming the cap. Nothing raises further.
  `MAX_HEADER_SECTION_BYTES`, `MAX_HEADER_FIELDS`, `MAX_MIME_DEPTH`,
  `MAX_MIME_PARTS`, `MAX_JSON_DEPTH` and the time budget (`Budget`).
- windows: how much of a text a reader looks at. Reports put what matters
  first (the human-readable text, the delivery-status fields, the returned
  headers); what lies past a window is not read, and the verdict comes from
  what was. `MAX_INPUT_BYTES`, `MAX_MESSAGE_BYTES`, `MAX_MESSAGE_LINES`, `MAX_FIELD_CHARS`,
  `MAX_MIME_FIELD_CHARS`, `MAX_MIME_PARAMS`, `MAX_ENCODED_WORDS`,
  `MAX_HEADER_TEXT_CHARS`, `MAX_PART_CHARS`, `MAX_SCAN_CHARS`.

Every regular expression of the bounce package runs on a text cut to one of
these windows, and is written so that its work is linear in that text (no
nested or overlapping quantifiers that can backtrack over the same characters).

`Budget(deadline)` is the time limit of one parse: a `time.monotonic()`
instant, checked between chunks of the MIME parse, between parts, and between
recipients. Python threads cannot be stopped from outside, so the parse stops
itself. Pure; no I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = [
    "MAX_ENCODED_WORDS",
    "MAX_FIELD_CHARS",
    "MAX_HEADER_FIELDS",
    "MAX_HEADER_SECTION_BYTES",
    "MAX_HEADER_TEXT_CHARS",
    "MAX_INPUT_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_MESSAGE_BYTES",
    "MAX_MESSAGE_LINES",
    "MAX_MIME_DEPTH",
    "MAX_MIME_FIELD_CHARS",
    "MAX_MIME_PARAMS",
    "MAX_MIME_PARTS",
    "MAX_PART_CHARS",
    "MAX_SCAN_CHARS",
    "PARSE_TIME_LIMIT_S",
    "Budget",
    "CapExceeded",
]

# --- windows -------------------------------------------------------------------------
# The whole input of one parse: an mbox of several messages (`postroom bounce parse`).
MAX_INPUT_BYTES = 4 * 1024 * 1024
# One message. A report's own parts come first and are a few kilobytes; past this
# there is only the rest of a returned original, whose headers were already read.
MAX_MESSAGE_BYTES = 1024 * 1024
# Lines of one message (a returned megabyte of base64 is 14,000). The MIME parser
# tests every line against the boundary of each enclosing multipart, so its work
# is lines times depth: both are bounded.
MAX_MESSAGE_LINES = 50_000
# A header field's value as kept (a long To or References still fits; the rest is cut).
MAX_FIELD_CHARS = 16_000
# Content-Type, Content-Disposition, Content-Transfer-Encoding: the standard library
# reads their parameters in time quadratic in the number of ";" (email.message's
# _parseparam), so they are cut shorter, and after this many parameters.
MAX_MIME_FIELD_CHARS = 4_000
MAX_MIME_PARAMS = 32
# RFC 2047 encoded words decoded in one header field; later ones stay as they are.
MAX_ENCODED_WORDS = 64
# A decoded header field's text, as the readers test it (Subject, From...).
MAX_HEADER_TEXT_CHARS = 2_000
# A leaf part's text: a bounce's human-readable part is a few kilobytes.
MAX_PART_CHARS = 64_000
# Any text that a regular expression scans: the parts' texts joined, a JSON body.
MAX_SCAN_CHARS = 128_000

# --- hard caps -----------------------------------------------------------------------
# One part's header section. Real ones are a few kilobytes (a long Received chain,
# ARC and DKIM signatures: tens).
MAX_HEADER_SECTION_BYTES = 256 * 1024
# Header fields in one part (delivery-status groups count as parts of their own).
MAX_HEADER_FIELDS = 1_000
# Nesting of multiparts and message/* parts: a report, its returned original and
# that original's alternatives and attachments are a handful of levels.
MAX_MIME_DEPTH = 16
# Parts in one message, delivery-status groups included (dsn_in reads at most 500).
MAX_MIME_PARTS = 1_000
# Nesting of an Amazon SES JSON notification (a few levels in real ones).
MAX_JSON_DEPTH = 32

# The time one parse may take when the caller sets no deadline (the CLI); the
# feedback worker passes its own ([bounce] time_limit).
PARSE_TIME_LIMIT_S = 10.0


class CapExceeded(Exception):
    """A hard cap or the time budget was passed; `cap` names it for the log."""

    def __init__(self, cap: str, detail: str) -> None:
        super().__init__(f"{cap}: {detail}")
        self.cap = cap
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Budget:
    """The deadline of one parse, as a `time.monotonic()` instant."""

    deadline: float

    @classmethod
    def starting_now(cls, seconds: float) -> Budget:
        return cls(time.monotonic() + seconds)

    def check(self) -> None:
        """Raise CapExceeded when the deadline has passed."""
        if time.monotonic() > self.deadline:
            raise CapExceeded("time budget", "the parse took longer than its time limit")
