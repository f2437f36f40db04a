"""Reason classifier: (SMTP reply code, RFC 3463 status, diagnostic text) → Reason.

Purpose: one function for every place a remote server tells us why mail failed —
the synchronous reply our delivery gets (`550 5.1.1 <x>: Recipient address
rejected: User unknown`) and the Diagnostic-Code or prose of a bounce we
receive. The knowledge lives in data (STYLE.md #10): `vendor_codes.toml` (codes
providers document) and `patterns.toml`, shipped beside this module, and optional
operator files in the same format, whose rules are tried first so that an
operator can correct or refine any verdict.

Inputs: `Classifier.load(paths)` reads the operator files (in the order given)
and then the shipped files (vendor codes, then patterns); every rule is
validated at load — an unknown key, an unknown reason, a bad regular
expression, a malformed status or reply pattern, or a rule without
conditions raises `PatternError` naming the file, the rule's index (0-based,
in that file) and the field. `classify(reply_code,
status, text)` returns the reason of the first rule whose every condition
holds, else `Reason.UNDEFINED`. Pure, synchronous, no I/O after load.

RFCs: RFC 3463 / RFC 5248 (enhanced status codes and their registry),
RFC 5321 (reply codes), RFC 7505 (null MX), RFC 7372 and RFC 8601 (X.7.2x).

Untrusted input: `text` comes from remote servers. It is only searched with
the compiled patterns, and cut to `MAX_TEXT_CHARS` first so that the work per
call stays bounded whatever a remote sends.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from postroom.mta.bounce.prefilter import Needles, fold, needles_for
from postroom.mta.bounce.reasons import Reason

__all__ = [
    "MAX_TEXT_CHARS",
    "SHIPPED_RULE_FILES",
    "Classifier",
    "PatternError",
    "Rule",
    "shipped_patterns_text",
]

# Diagnostics longer than this are cut: real ones are a few hundred characters.
MAX_TEXT_CHARS = 4000

_ALLOWED_KEYS = frozenset({"reason", "status", "reply", "text", "unless", "note"})
_STATUS_PATTERN = re.compile(r"^([245*])\.([0-9?*]{1,3})\.([0-9?*]{1,3})$")
_REPLY_PATTERN = re.compile(r"^[245x][0-9x]{2}$")
_WHITESPACE = re.compile(r"\s+")


class PatternError(ValueError):
    """A rule file is invalid; the message names the file, the rule index and the field."""

    def __init__(self, source: str, index: int | None, field: str, problem: str) -> None:
        where = source if index is None else f"{source}: rule {index}"
        super().__init__(f"{where}: {field}: {problem}")
        self.source = source
        self.index = index
        self.field = field


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule; `None` conditions always hold."""

    reason: Reason
    status: re.Pattern[str] | None
    reply: re.Pattern[str] | None
    text: re.Pattern[str] | None
    unless: re.Pattern[str] | None
    source: str
    index: int
    # Literals every match of `text` contains (prefilter.py): a cheap "cannot match".
    needles: Needles | None = None

    def matches(self, reply_code: str, status: str, text: str) -> bool:
        if self.status is not None and not self.status.fullmatch(status):
            return False
        if self.reply is not None and not self.reply.fullmatch(reply_code):
            return False
        if self.text is not None and not self.text.search(text):
            return False
        return self.unless is None or not self.unless.search(text)


# Shipped rule files, in the order they are tried: documented vendor codes are exact,
# so they come before the generic phrases and status codes.
SHIPPED_RULE_FILES = ("vendor_codes.toml", "patterns.toml")


def shipped_patterns_text(name: str = "patterns.toml") -> str:
    """One shipped rule file, read from the installed package."""
    return resources.files("postroom.mta.bounce").joinpath(name).read_text("utf-8")


@dataclass(frozen=True, slots=True)
class Classifier:
    """An ordered rule list: operator rules first, then the shipped ones."""

    rules: tuple[Rule, ...]
    # The rules a text_only lookup tries, picked once rather than on every call.
    text_rules: tuple[Rule, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        text_rules = tuple(
            rule
            for rule in self.rules
            if rule.text is not None and not rule.status and not rule.reply
        )
        object.__setattr__(self, "text_rules", text_rules)

    @classmethod
    def load(cls, paths: Sequence[Path] = ()) -> Classifier:
        """Read operator rule files (tried first, in order) plus the shipped file."""
        rules: list[Rule] = []
        for path in paths:
            try:
                text = path.read_text("utf-8")
            except OSError as error:  # the CLI's one wording: "PATH: cannot read: REASON"
                raise PatternError(
                    str(path), None, "cannot read", error.strerror or str(error)
                ) from None
            except UnicodeDecodeError:
                raise PatternError(str(path), None, "file", "not UTF-8 text") from None
            rules.extend(parse_rules(text, str(path)))
        for name in SHIPPED_RULE_FILES:
            rules.extend(parse_rules(shipped_patterns_text(name), f"{name} (shipped)"))
        return cls(tuple(rules))

    def classify(self, reply_code: int | str | None, status: str | None, text: str) -> Reason:
        """The reason of the first matching rule; UNDEFINED when none matches."""
        rule = self.first_match(reply_code, status, text)
        return rule.reason if rule is not None else Reason.UNDEFINED

    def first_match(
        self,
        reply_code: int | str | None,
        status: str | None,
        text: str,
        *,
        text_only: bool = False,
    ) -> Rule | None:
        """The first matching rule (None when none does).

        With text_only, only rules that judge by text alone are tried: the
        bounce parser uses it on the prose around a diagnostic, where a code
        seen in passing must not decide.
        """
        reply = str(reply_code) if reply_code else ""
        status = status or ""
        text = _WHITESPACE.sub(" ", text[:MAX_TEXT_CHARS])
        # Folded once per call; a rule whose needles are absent cannot match and its
        # regex is not run — the result is the same as trying every rule in order.
        folded, is_ascii = fold(text), text.isascii()
        for rule in self.text_rules if text_only else self.rules:
            if rule.needles is not None and not rule.needles.admit(folded, is_ascii):
                continue
            if rule.matches(reply, status, text):
                return rule
        return None


def parse_rules(document: str, source: str) -> list[Rule]:
    """Validate and compile one rule file's text; `source` names it in errors."""
    try:
        data = tomllib.loads(document)
    except tomllib.TOMLDecodeError as error:
        raise PatternError(source, None, "toml", str(error)) from None
    unknown_top = set(data) - {"rule"}
    if unknown_top:
        raise PatternError(source, None, sorted(unknown_top)[0], "unknown key (expected [[rule]])")
    entries = data.get("rule", [])
    if not isinstance(entries, list):
        raise PatternError(source, None, "rule", "must be an array of tables ([[rule]])")
    return [_compile_rule(entry, source, index) for index, entry in enumerate(entries)]


def _compile_rule(entry: Any, source: str, index: int) -> Rule:
    if not isinstance(entry, dict):
        raise PatternError(source, index, "rule", "must be a table")
    for key in entry:
        if key not in _ALLOWED_KEYS:
            raise PatternError(source, index, key, "unknown key")
    raw_reason = entry.get("reason")
    if not isinstance(raw_reason, str):
        raise PatternError(source, index, "reason", "missing or not a string")
    try:
        reason = Reason(raw_reason)
    except ValueError:
        raise PatternError(source, index, "reason", f"unknown reason {raw_reason!r}") from None
    if not any(key in entry for key in ("status", "reply", "text")):
        raise PatternError(source, index, "rule", "needs at least one of status, reply, text")
    text = _regex(entry.get("text"), source, index, "text")
    return Rule(
        reason=reason,
        status=_status_alternatives(entry.get("status"), source, index),
        reply=_reply_alternatives(entry.get("reply"), source, index),
        text=text,
        unless=_regex(entry.get("unless"), source, index, "unless"),
        source=source,
        index=index,
        needles=needles_for(text) if text is not None else None,
    )


def _as_list(value: Any, source: str, index: int, field: str) -> list[str] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    if not items:
        raise PatternError(source, index, field, "empty list")
    return [str(item) for item in items]


def _status_alternatives(value: Any, source: str, index: int) -> re.Pattern[str] | None:
    items = _as_list(value, source, index, "status")
    if items is None:
        return None
    parts: list[str] = []
    for item in items:
        match = _STATUS_PATTERN.match(item)
        if not match:
            raise PatternError(source, index, "status", f"{item!r} is not like 5.1.1 or *.7.26")
        components = [
            r"\d{1,3}" if group == "*" else group.replace("?", r"\d") for group in match.groups()
        ]
        parts.append(r"\.".join(components))
    return re.compile("|".join(f"(?:{part})" for part in parts))


def _reply_alternatives(value: Any, source: str, index: int) -> re.Pattern[str] | None:
    items = _as_list(value, source, index, "reply")
    if items is None:
        return None
    for item in items:
        if not _REPLY_PATTERN.match(item):
            raise PatternError(source, index, "reply", f"{item!r} is not like 550 or 5xx")
    return re.compile("|".join(item.replace("x", r"\d") for item in items))


def _regex(value: Any, source: str, index: int, field: str) -> re.Pattern[str] | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise PatternError(source, index, field, "must be a non-empty string")
    try:
        return re.compile(value, re.IGNORECASE)
    except re.error as error:
        raise PatternError(source, index, field, f"bad regular expression: {error}") from None
