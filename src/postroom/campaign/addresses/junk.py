"""Trim the junk that surrounds addresses in imported lists.

Purpose: addresses pasted from spreadsheets, web pages and mail headers arrive
wrapped in things that are not part of them. `clean(text)` removes, repeatedly
until nothing changes:

- invisible characters anywhere (byte-order mark U+FEFF, zero-width space
  U+200B, word joiner U+2060, soft hyphen U+00AD): no address contains them;
- at the edges only: whitespace of any kind (space, tab, newline, no-break
  spaces U+00A0/U+202F, ...), zero-width joiners and direction marks (inside a
  word of some scripts those are meaningful, so they stay there);
- a `mailto:` prefix, with any `?subject=...` query after the address;
- a display name and angle brackets: `"Ann" <ann@example.com>`, `<ann@example.com>`;
- quotes around the whole address (`"ann@example.com"`, typographic quotes);
- trailing dots, commas, semicolons and colons (also full-width and ideographic
  full stops), and leading commas or semicolons (list separators).

Bidirectional overrides (U+202A-U+202E, U+2066-U+2069) are never removed: they
change how an address displays, so the syntax step refuses the address instead.
Nothing inside the address is repaired (`<a@b.com>>` stays broken).

Inputs: one untrusted string. Outputs: `Cleaned(text, trimmed, display_name)`.
Pure; no I/O; reads no configuration. Work is linear in the input length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["Cleaned", "clean"]

# Never part of an address, wherever they appear.
_INVISIBLE_ANYWHERE = MappingProxyType(str.maketrans("", "", "\ufeff\u200b\u2060\u00ad"))
# Invisible, but meaningful inside words of some scripts: removed at the edges only.
_INVISIBLE_AT_EDGES = "\u200c\u200d\u200e\u200f\u180e"
_TRAILING_PUNCTUATION = ".,;:\uff0e\u3002\uff61\uff0c\uff1b"
_LEADING_PUNCTUATION = ",;"
_QUOTE_PAIRS = (
    ('"', '"'),
    ("'", "'"),
    ("\u201c", "\u201d"),
    ("\u2018", "\u2019"),
    ("\u00ab", "\u00bb"),
)
_MAILTO = re.compile(r"mailto:", re.IGNORECASE)
# A display-name form: anything, then a last <...> group that ends the text.
_BRACKETED = re.compile(r"(?P<name>.*?)\s*<(?P<address>[^<>]*)>", re.DOTALL)
# Rounds of trimming before giving up; real inputs need two or three.
_MAX_ROUNDS = 8


@dataclass(frozen=True, slots=True)
class Cleaned:
    """The input without surrounding junk; what was found on the way."""

    text: str
    trimmed: bool
    display_name: bool


def clean(text: str) -> Cleaned:
    """`text` with surrounding junk removed (see module docstring)."""
    current = text.translate(_INVISIBLE_ANYWHERE)
    trimmed = current != text
    display_name = False
    for _ in range(_MAX_ROUNDS):
        stripped = _strip_edges(current)
        unwrapped, had_name = _unwrap(stripped)
        if stripped != current or (unwrapped != stripped and not had_name):
            trimmed = True
        display_name = display_name or had_name
        if unwrapped == current:
            break
        current = unwrapped
    return Cleaned(current, trimmed, display_name)


def _strip_edges(text: str) -> str:
    text = text.strip().strip(_INVISIBLE_AT_EDGES).strip()
    return text.rstrip(_TRAILING_PUNCTUATION).lstrip(_LEADING_PUNCTUATION)


def _unwrap(text: str) -> tuple[str, bool]:
    """One layer of wrapping removed (mailto:, brackets, quotes); whether a name went."""
    if _MAILTO.match(text):
        return text[len("mailto:") :].split("?", 1)[0], False
    if text.endswith(">"):
        match = _BRACKETED.fullmatch(text)
        if match is not None:
            return match.group("address"), bool(match.group("name").strip())
    for opening, closing in _QUOTE_PAIRS:
        if len(text) > 2 and text[0] == opening and text[-1] == closing:
            inner = text[1:-1]
            # `"a@b"@example.com` ends with the domain, so it never gets here;
            # a quote inside means the quotes belong to a quoted local part.
            if "@" in inner and opening not in inner and closing not in inner:
                return inner, False
    return text, False
