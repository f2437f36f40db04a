"""Where in the file a config key path is written, for error messages.

`locate_key(text, "pool[1].sources[0].weight")` returns the 1-based line of
the key (here: the `sources` line of the second `[[pool]]` table), the line
of the nearest enclosing table header when the key itself is not written
there, or None. tomllib keeps no positions, so this reads the text again: a
best effort for the common layouts (table headers, arrays of tables, plain and
dotted keys), never a second parser that could disagree about meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PATH_PART = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")
_ARRAY_HEADER = re.compile(r"^\s*\[\[\s*([^\]]+?)\s*\]\]")
_TABLE_HEADER = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]")


@dataclass(frozen=True, slots=True)
class _Header:
    line: int
    names: tuple[str, ...]
    index: int | None  # position among the [[array]] tables of that name


def _path_parts(path: str) -> list[tuple[str, int | None]]:
    parts: list[tuple[str, int | None]] = []
    for name, indexes in _PATH_PART.findall(path):
        numbers = re.findall(r"\d+", indexes)
        parts.append((name, int(numbers[0]) if numbers else None))
    return parts


def _names(raw: str) -> tuple[str, ...]:
    return tuple(part.strip().strip('"') for part in raw.split("."))


def locate_key(text: str, path: str) -> int | None:
    lines = text.splitlines()
    headers: list[_Header] = []
    array_counts: dict[tuple[str, ...], int] = {}
    for number, line in enumerate(lines, 1):
        if match := _ARRAY_HEADER.match(line):
            names = _names(match.group(1))
            headers.append(_Header(number, names, array_counts.get(names, 0)))
            array_counts[names] = array_counts.get(names, 0) + 1
        elif match := _TABLE_HEADER.match(line):
            headers.append(_Header(number, _names(match.group(1)), None))
    parts = _path_parts(path)
    for depth in range(len(parts), -1, -1):
        names = tuple(name for name, _ in parts[:depth])
        index = parts[depth - 1][1] if depth else None
        if depth:
            found = [h for h in headers if h.names == names and h.index == index]
            if not found:
                continue
            header = found[0]
            start = header.line
        else:
            header, start = None, 0
        following = [h.line for h in headers if h.line > start]
        end = following[0] - 1 if following else len(lines)
        if depth == len(parts):
            return header.line if header else None
        key = parts[depth][0]
        key_line = re.compile(rf"^\s*{re.escape(key)}\s*(=|\.)")
        for number in range(start + 1, end + 1):
            if key_line.match(lines[number - 1]):
                return number
        return header.line if header else None
    return None
