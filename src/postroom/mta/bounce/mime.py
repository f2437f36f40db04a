"""Parse an untrusted message's MIME tree within the hard caps of limits.py.

Purpose: the standard library's FeedParser (policy compat32, what the bounce
readers were written against) builds the tree, with its work bounded:

- it reads the first `MAX_MESSAGE_BYTES` and `MAX_MESSAGE_LINES` (each line
  is tested against the boundary of every enclosing multipart), fed in chunks
  with the time budget checked between them;
- every part is a `CappedPart`. The parser descends into nested parts by
  recursion, so a multipart nested a thousand deep ended in RecursionError:
  `attach`, through which the parser links each new part to its parent,
  refuses a part deeper than `MAX_MIME_DEPTH` and more than `MAX_MIME_PARTS`
  parts in all (delivery-status groups included);
- `set_raw`, through which the parser stores each header field, counts each
  part's fields and header bytes (`MAX_HEADER_FIELDS`,
  `MAX_HEADER_SECTION_BYTES`) and cuts long values to `MAX_FIELD_CHARS`; the
  MIME fields whose parameters the library reads in time quadratic in their
  ";" (Content-Type, Content-Disposition) to `MAX_MIME_FIELD_CHARS` and
  `MAX_MIME_PARAMS` parameters.

A hard cap passed raises `CapExceeded` (the caller gives the `undefined`
verdict). `MimeReader(budget).read(data)` parses one message; the same reader
parses the header blocks found inside it, so the part count covers them too.

Inputs: the bytes of one message, or the text of a returned header block
(untrusted). Output: the root `email.message.Message`. The readers only read
the tree: `CappedPart` behaves as a `Message` in every other way.

RFCs: RFC 5322 (header section), RFC 2045-2046 (MIME), RFC 2231 (parameters).
"""

from __future__ import annotations

from email.feedparser import BytesFeedParser, FeedParser
from email.message import Message
from email.policy import Policy, compat32

from postroom.mta.bounce.limits import (
    MAX_FIELD_CHARS,
    MAX_HEADER_FIELDS,
    MAX_HEADER_SECTION_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_MESSAGE_LINES,
    MAX_MIME_DEPTH,
    MAX_MIME_FIELD_CHARS,
    MAX_MIME_PARAMS,
    MAX_MIME_PARTS,
    Budget,
    CapExceeded,
)

__all__ = ["CappedPart", "MimeReader"]

# Fed in pieces this big: the deadline is checked between them (the stdlib's own
# Parser feeds 8 KB at a time).
_CHUNK_CHARS = 64 * 1024
# Fields whose parameters email.message parses with _parseparam.
_PARAMETER_FIELDS = frozenset({"content-type", "content-disposition"})


class _Tally:
    """Parts created so far in one message (shared by every part of its trees)."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts = 0


class CappedPart(Message):
    """A Message whose parser-facing methods enforce the caps (module docstring)."""

    def __init__(self, policy: Policy = compat32, *, tally: _Tally | None = None) -> None:
        super().__init__(policy)
        self._tally = tally if tally is not None else _Tally()
        self._depth = 0
        self._header_bytes = 0

    def attach(self, payload: Message) -> None:  # type: ignore[override]
        depth = self._depth + 1
        if depth > MAX_MIME_DEPTH:
            raise CapExceeded("MIME depth", f"parts nested more than {MAX_MIME_DEPTH} deep")
        self._tally.parts += 1
        if self._tally.parts > MAX_MIME_PARTS:
            raise CapExceeded("MIME parts", f"more than {MAX_MIME_PARTS} parts")
        if isinstance(payload, CappedPart):
            payload._depth = depth
        super().attach(payload)

    def set_raw(self, name: str, value: str) -> None:  # type: ignore[override]
        if len(self) >= MAX_HEADER_FIELDS:
            raise CapExceeded("header fields", f"more than {MAX_HEADER_FIELDS} in one part")
        self._header_bytes += len(name) + len(value) + 2
        if self._header_bytes > MAX_HEADER_SECTION_BYTES:
            raise CapExceeded(
                "header section", f"over {MAX_HEADER_SECTION_BYTES} bytes in one part"
            )
        super().set_raw(name, _window(name, value))


class MimeReader:
    """Parses the messages of one report under one budget and one part count."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self._tally = _Tally()

    def read(self, data: bytes | str) -> Message:
        """The message's tree, from its first MAX_MESSAGE_BYTES and MAX_MESSAGE_LINES."""
        data = _first_lines(data[:MAX_MESSAGE_BYTES])
        parser: FeedParser = (
            BytesFeedParser(_factory=self._new_part, policy=compat32)
            if isinstance(data, bytes)
            else FeedParser(_factory=self._new_part, policy=compat32)
        )
        for start in range(0, len(data), _CHUNK_CHARS):
            self.budget.check()
            parser.feed(data[start : start + _CHUNK_CHARS])  # type: ignore[arg-type]
        return parser.close()

    def _new_part(self, policy: Policy = compat32) -> CappedPart:
        return CappedPart(policy, tally=self._tally)


def _first_lines(data: bytes | str) -> bytes | str:
    newline = b"\n" if isinstance(data, bytes) else "\n"
    if data.count(newline) <= MAX_MESSAGE_LINES:  # type: ignore[arg-type]
        return data
    cut = -1
    for _ in range(MAX_MESSAGE_LINES):
        cut = data.find(newline, cut + 1)  # type: ignore[arg-type]
    return data[: cut + 1]


def _window(name: str, value: str) -> str:
    """The value as kept: cut to its window, parameter fields after MAX_MIME_PARAMS."""
    if name.strip().lower() not in _PARAMETER_FIELDS:
        return value[:MAX_FIELD_CHARS]
    value = value[:MAX_MIME_FIELD_CHARS]
    cut = -1
    for _ in range(MAX_MIME_PARAMS + 1):
        cut = value.find(";", cut + 1)
        if cut < 0:
            return value
    return value[:cut]
