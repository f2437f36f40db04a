"""Literal text that every match of a rule's regular expression must contain.

Purpose: the classifier tries up to a hundred rules, each with a
case-insensitive regular expression, several times per bounce; searching
them one by one was most of the bounce parser's time. Most rules cannot
match most texts, and a plain substring test says so far more cheaply than
a regex search. `needles_for(pattern)` reads a compiled pattern's syntax tree
and returns `Needles`: an and/or tree of lowercase ASCII literals (and "some
non-ASCII character") that any match satisfies — "user(name)? unknown|no such
(user|mailbox)" needs " unknown" and "user", or "no such " and one of "user",
"mailbox". A flat "one of these literals" form is tested first, the tree only
when that passes. The classifier (and stage.py) runs a regex only when its
needles admit the text, so verdicts are exactly those of trying every rule —
a prefilter can only skip a search that would have failed. Other callers:
stage.py's stage phrases.

Why it is safe: needles are taken only from what a match must contain —
literal runs of a sequence, every branch of an alternation, the body of a
repetition of at least one — never from optional parts, character classes or
lookarounds. The text is compared after `fold`, which maps every character
that `re.IGNORECASE` equates with an ASCII character onto that character's
lowercase form (see `_ASCII_LOOKALIKES`). A pattern the analysis cannot read
gets no needles and is always searched.

Inputs: compiled patterns from the operator's and the shipped rule files (the
trusted side) and texts from remote servers (untrusted, only tested with
`in`). Pure; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

# The regex parser is private; it is only read here, and any surprise in it (a
# future Python changing its tree) falls back to "no needles", never to a skipped match.
from re import _constants as sre
from re import _parser as sre_parser

__all__ = ["Needles", "fold", "needles_for"]

# The only non-ASCII characters that re.IGNORECASE equates with ASCII ones (found
# by trying every code point against every ASCII character, both ways, on Python
# 3.11; tests/unit/mta/test_bounce_prefilter.py checks it on the running Python).
_ASCII_LOOKALIKES = {0x130: "i", 0x131: "i", 0x17F: "s", 0x212A: "k"}
_REPEATS = frozenset(
    op
    for op in (
        sre.MAX_REPEAT,
        sre.MIN_REPEAT,
        getattr(sre, "POSSESSIVE_REPEAT", None),
    )
    if op is not None
)

# What a match needs, as a tree: a literal that must occur in the folded text; _NON_ASCII
# (some non-ASCII character must occur); or (_ALL | _ANY, parts). None means "unknown".
_NON_ASCII = object()
_ALL = "all"
_ANY = "any"
_Condition = object


@dataclass(frozen=True, slots=True)
class Needles:
    """A necessary condition on the text for a pattern to match; see `admit`."""

    condition: _Condition
    # A weaker, flat form of `condition` (one of these literals, or a non-ASCII
    # character when `any_non_ascii`), tried first because it is far cheaper.
    literals: tuple[str, ...]
    any_non_ascii: bool
    _test: Callable[[str, bool], bool] = field(repr=False, compare=False)

    def admit(self, folded: str, is_ascii: bool) -> bool:
        """False only when no match of the pattern can exist in the text `folded` came from."""
        if not (self.any_non_ascii and not is_ascii) and not any(
            literal in folded for literal in self.literals
        ):
            return False
        return self._test(folded, is_ascii)


def fold(text: str) -> str:
    """The text as needles are compared with: lowercase, ASCII look-alikes made ASCII."""
    if text.isascii():
        return text.lower()
    # Translate first: "İ".lower() is two characters, and "ı", "ſ" do not lower to ASCII.
    return text.translate(_ASCII_LOOKALIKES).lower()


def needles_for(pattern: re.Pattern[str]) -> Needles | None:
    """What every match of `pattern` contains; None when nothing certain is known."""
    try:
        tree = sre_parser.parse(pattern.pattern, pattern.flags)
        condition = _sequence(list(tree))
    except Exception:  # an unreadable tree only costs speed: the rule is always searched
        return None
    if condition is None:
        return None
    literals, any_non_ascii = _flat(condition)
    return Needles(condition, _minimal(literals), any_non_ascii, _compile(condition))


def _sequence(items: list[tuple[object, object]]) -> _Condition | None:
    """All that a sequence's consecutive literals and parts need."""
    needs: list[_Condition] = []
    run: list[str] = []

    def end_run() -> None:
        if run:
            needs.append("".join(run))
            run.clear()

    for op, argument in items:
        if op is sre.LITERAL:
            char = chr(argument)  # type: ignore[arg-type]
            if char.isascii():
                run.append(char.lower())
                continue
            end_run()
            if ord(char) not in _ASCII_LOOKALIKES:
                # A non-ASCII literal matches only non-ASCII text, in any case.
                needs.append(_NON_ASCII)
            continue
        end_run()
        inner = _node(op, argument)
        if inner is not None:
            needs.append(inner)
    end_run()
    return _all_of(needs)


def _node(op: object, argument: object) -> _Condition | None:
    if op is sre.BRANCH:
        _, branches = argument  # type: ignore[misc]
        options = [_sequence(list(branch)) for branch in branches]
        if any(option is None for option in options):
            return None  # one branch can match without anything known
        return _any_of(options)
    if op is sre.SUBPATTERN:
        return _sequence(list(argument[-1]))  # type: ignore[index]
    if op in _REPEATS:
        minimum, _, body = argument  # type: ignore[misc]
        if minimum < 1:
            return None
        inner = _sequence(list(body))
        if isinstance(inner, str) and all(op is sre.LITERAL for op, _ in body):
            return inner * min(minimum, 8)  # "<{3,4}" needs "<<<"
        return inner
    if op is getattr(sre, "ATOMIC_GROUP", None):
        return _sequence(list(argument))  # type: ignore[call-overload]
    # Classes, ANY, lookarounds, anchors, back-references: nothing certain.
    return None


def _all_of(needs: list[_Condition]) -> _Condition | None:
    parts: list[_Condition] = []
    for need in needs:
        parts.extend(need[1] if isinstance(need, tuple) and need[0] == _ALL else [need])
    unique = list(dict.fromkeys(parts))
    if not unique:
        return None
    # Longest literals first: they are the likeliest to be absent and end the test early.
    unique.sort(key=lambda part: -len(part) if isinstance(part, str) else 0)
    return unique[0] if len(unique) == 1 else (_ALL, tuple(unique))


def _any_of(options: list[_Condition]) -> _Condition:
    parts: list[_Condition] = []
    for option in options:
        parts.extend(option[1] if isinstance(option, tuple) and option[0] == _ANY else [option])
    unique = list(dict.fromkeys(parts))
    # A literal containing another adds nothing: finding it implies finding the shorter one.
    kept = _minimal(frozenset(part for part in unique if isinstance(part, str)))
    # An "all" that includes a kept literal is implied by that literal alone.
    others = [
        part
        for part in unique
        if not isinstance(part, str)
        and not (part is not _NON_ASCII and part[0] == _ALL and set(part[1]) & set(kept))
    ]
    parts = [*kept, *others]
    return parts[0] if len(parts) == 1 else (_ANY, tuple(parts))


def _flat(condition: _Condition) -> tuple[frozenset[str], bool]:
    """(literals, non-ASCII) one of which any text the condition admits contains."""
    if isinstance(condition, str):
        return frozenset({condition}), False
    if condition is _NON_ASCII:
        return frozenset(), True
    kind, parts = condition  # type: ignore[misc]
    flats = [_flat(part) for part in parts]
    if kind == _ANY:
        return frozenset().union(*(f[0] for f in flats)), any(f[1] for f in flats)
    # Of an "all", one part's needs suffice: the one whose shortest literal is longest.
    return max(flats, key=lambda f: min([len(lit) for lit in f[0]] + ([2] if f[1] else [])))


def _minimal(literals: frozenset[str]) -> tuple[str, ...]:
    """The literals without those containing another: finding the longer implies the shorter."""
    ordered = sorted(literals, key=lambda literal: (len(literal), literal))
    return tuple(lit for i, lit in enumerate(ordered) if not any(s in lit for s in ordered[:i]))


def _compile(condition: _Condition) -> Callable[[str, bool], bool]:
    """The condition as a function of (folded text, text is ASCII)."""
    if isinstance(condition, str):
        return lambda folded, is_ascii: condition in folded
    if condition is _NON_ASCII:
        return lambda folded, is_ascii: not is_ascii
    kind, parts = condition  # type: ignore[misc]
    literals = tuple(part for part in parts if isinstance(part, str))
    tests = tuple(_compile(part) for part in parts if not isinstance(part, str))
    if kind == _ALL:
        return lambda folded, is_ascii: (
            all(lit in folded for lit in literals) and all(test(folded, is_ascii) for test in tests)
        )
    return lambda folded, is_ascii: (
        any(lit in folded for lit in literals) or any(test(folded, is_ascii) for test in tests)
    )
