"""Lookalike names: labels that mix scripts, and other scripts posing as Latin.

Purpose: "gmаil.com" with a Cyrillic а displays as gmail.com but is another
domain. Two checks, after UTS 39 in spirit (a short table, not its data):

- `mixes_scripts(text)`: the letters of `text` come from two or more of the
  alphabets that look alike — Latin, Cyrillic, Greek, Armenian. Latin with
  Han, Kana or Hangul is normal (Japanese and Korean names) and is not flagged;
- `latin_reading(text, lookalikes)`: how `text` reads to a Latin reader, each
  letter in lookalikes.toml replaced by the Latin letter it imitates. When a
  non-ASCII domain reads as a provider's domain, it is a lookalike.

Inputs: Unicode text (a domain label, a local part). Outputs: booleans and
strings. Pure; no I/O; reads lookalikes.toml through `Catalog`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

__all__ = ["LOOKALIKE_SCRIPTS", "latin_reading", "mixes_scripts", "scripts_of"]

# Alphabets whose letters are easily taken for one another.
LOOKALIKE_SCRIPTS = frozenset({"LATIN", "CYRILLIC", "GREEK", "ARMENIAN"})


def scripts_of(text: str) -> frozenset[str]:
    """The scripts of the letters of `text`, by the first word of each letter's name."""
    found: set[str] = set()
    for char in text:
        if char.isalpha():
            name = unicodedata.name(char, "")
            found.add(name.split(" ", 1)[0] if name else "UNKNOWN")
    return frozenset(found)


def mixes_scripts(text: str) -> bool:
    """True when `text` has letters of two or more lookalike alphabets."""
    if text.isascii():
        return False
    return len(scripts_of(text) & LOOKALIKE_SCRIPTS) >= 2


def latin_reading(text: str, lookalikes: Mapping[str, str]) -> str:
    """`text` as a Latin reader sees it (letters from lookalikes.toml replaced)."""
    if text.isascii():
        return text
    return "".join(lookalikes.get(char, char) for char in text.lower())
