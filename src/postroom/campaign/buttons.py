"""Buttons of a template: definitions, validation, and how they look in mail.

A template's buttons come from a TOML file of `[[button]]` tables (`template
add ... --buttons FILE.toml`):

    [[button]]
    name = "shop"                       # how the template places it: {{ button("shop") }}
    text = "Visit the shop"
    url = "https://shop.example.com/"   # or: channel = "telegram" (the project's channel)
    colour = "#1a73e8"                  # optional, a CSS hex colour

`parse_buttons(data, file)` reads and validates such a file; every error is a
`ButtonError` of one line naming the file, the line of the button's table and
the field. A URL is http, https, mailto or tel only (no `javascript:`, no
`data:`); a button has a URL or a channel, not both; names are unique. Whether
a channel exists is the store's question (`templates.py`), not this module's.

`button_html(button, url)` draws a "bulletproof" button: a one-cell table with
the colour as the cell's background and the link as a padded block, every
style inline (what Outlook's Word engine, Gmail and Apple Mail all render), and
`button_text(button, url)` its text-part line, "Text: URL".
`buttons_to_json` / `buttons_from_json` are the `templates.buttons` column.

Untrusted input: the TOML file (bounded by the caller's read cap; at most
`MAX_BUTTONS` buttons, each field capped). No I/O.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from html import escape
from urllib.parse import urlsplit

MAX_BUTTONS = 20
MAX_NAME_CHARS = 64
MAX_TEXT_CHARS = 200
MAX_URL_CHARS = 2000
DEFAULT_COLOUR = "#1a73e8"
URL_SCHEMES = ("http", "https", "mailto", "tel")

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
_BUTTON_TABLE = re.compile(r"^[ \t]*\[\[[ \t]*button[ \t]*\]\]", re.M)
_FIELDS = ("name", "text", "url", "channel", "colour")


class ButtonError(ValueError):
    """A button definition that cannot be used; one line naming file, line and field."""


@dataclass(frozen=True, slots=True)
class Button:
    name: str
    text: str
    url: str | None = None
    channel: str | None = None  # the name of one of the project's channels
    colour: str | None = None  # a CSS hex colour; None: DEFAULT_COLOUR


def parse_buttons(data: bytes, file: str) -> tuple[Button, ...]:
    """The buttons of a TOML file, validated; ButtonError names what is wrong."""
    try:
        text = data.decode("utf-8")
        document = tomllib.loads(text)
    except UnicodeDecodeError as error:
        raise ButtonError(f"{file}: not UTF-8 (byte {error.start})") from None
    except tomllib.TOMLDecodeError as error:
        raise ButtonError(f"{file}: {error}") from None
    unknown = sorted(set(document) - {"button"})
    if unknown:
        raise ButtonError(f"{file}: unknown table or key {unknown[0]!r} (expected [[button]])")
    tables = document.get("button", [])
    if not isinstance(tables, list):
        raise ButtonError(f"{file}: `button` must be [[button]] tables")
    lines = [text.count("\n", 0, match.start()) + 1 for match in _BUTTON_TABLE.finditer(text)]
    buttons = []
    for index, table in enumerate(tables):
        where = f"{file}: line {lines[index]}" if index < len(lines) else f"{file}"
        where += f": button {index + 1}"
        if not isinstance(table, dict):
            raise ButtonError(f"{where}: must be a table")
        buttons.append(_button_from_table(table, where))
    return validate_buttons(buttons, file)


def validate_buttons(buttons: Iterable[Button], where: str) -> tuple[Button, ...]:
    """The buttons as a tuple when each is valid and the names are unique."""
    result = tuple(buttons)
    if len(result) > MAX_BUTTONS:
        raise ButtonError(f"{where}: at most {MAX_BUTTONS} buttons, got {len(result)}")
    seen: set[str] = set()
    for button in result:
        check_button(button, f"{where}: button {button.name!r}")
        if button.name in seen:
            raise ButtonError(f"{where}: two buttons named {button.name!r}")
        seen.add(button.name)
    return result


def check_button(button: Button, where: str) -> None:
    if not _NAME.fullmatch(button.name):
        raise ButtonError(f"{where}: name: letters, digits, _ and - only, 1 to {MAX_NAME_CHARS}")
    if not button.text.strip() or len(button.text) > MAX_TEXT_CHARS:
        raise ButtonError(f"{where}: text: 1 to {MAX_TEXT_CHARS} characters")
    if not button.text.isprintable():
        raise ButtonError(f"{where}: text: no control characters")
    if (button.url is None) == (button.channel is None):
        raise ButtonError(f"{where}: give url or channel (one of them)")
    if button.url is not None:
        check_url(button.url, f"{where}: url")
    if button.channel is not None and not _NAME.fullmatch(button.channel):
        raise ButtonError(f"{where}: channel: a channel name (letters, digits, _ and -)")
    if button.colour is not None and not _COLOUR.fullmatch(button.colour):
        raise ButtonError(f"{where}: colour: a CSS hex colour like #1a73e8, got {button.colour!r}")


def check_url(url: str, where: str) -> str:
    """`url` when a button (or a channel) may link to it: http(s) with a host, mailto, tel."""
    if len(url) > MAX_URL_CHARS or not url.isprintable() or any(c.isspace() for c in url):
        raise ButtonError(f"{where}: at most {MAX_URL_CHARS} characters, no spaces or controls")
    try:
        parts = urlsplit(url)
    except ValueError as error:
        raise ButtonError(f"{where}: {error}") from None
    if parts.scheme.lower() not in URL_SCHEMES:
        raise ButtonError(f"{where}: {url!r}: only {', '.join(URL_SCHEMES)} URLs")
    if parts.scheme.lower() in ("http", "https") and not parts.hostname:
        raise ButtonError(f"{where}: {url!r}: no host")
    if parts.scheme.lower() in ("mailto", "tel") and not parts.path:
        raise ButtonError(f"{where}: {url!r}: empty")
    return url


def button_html(button: Button, url: str) -> str:
    """A table-based button with inline styles (escaped: text and URL are the operator's)."""
    colour = button.colour or DEFAULT_COLOUR
    link_style = (
        f"display:inline-block;padding:12px 24px;font-family:Arial,Helvetica,sans-serif;"
        f"font-size:16px;font-weight:bold;line-height:20px;color:#ffffff;"
        f"text-decoration:none;border-radius:4px;background-color:{colour};"
        f"border:1px solid {colour}"
    )
    return (
        '<table role="presentation" border="0" cellpadding="0" cellspacing="0" '
        f'class="postroom-button" data-button="{escape(button.name)}" '
        'style="border-collapse:separate;margin:16px 0"><tr>'
        f'<td align="center" bgcolor="{colour}" '
        f'style="border-radius:4px;background-color:{colour}">'
        f'<a href="{escape(url)}" target="_blank" style="{link_style}">{escape(button.text)}</a>'
        "</td></tr></table>"
    )


def button_text(button: Button, url: str) -> str:
    return f"{button.text}: {url}"


def buttons_to_json(buttons: Iterable[Button]) -> str:
    return json.dumps([button_fields(button) for button in buttons], ensure_ascii=False)


def button_fields(button: Button) -> dict[str, str]:
    """The button as stored and shown (`--json`): only the fields it has."""
    fields = {"name": button.name, "text": button.text}
    for key in ("url", "channel", "colour"):
        value = getattr(button, key)
        if value is not None:
            fields[key] = value
    return fields


def buttons_from_json(text: str) -> tuple[Button, ...]:
    return tuple(Button(**item) for item in json.loads(text or "[]"))


def _button_from_table(table: dict[str, object], where: str) -> Button:
    unknown = sorted(set(table) - set(_FIELDS))
    if unknown:
        raise ButtonError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(_FIELDS)})")
    for key in ("name", "text"):
        if key not in table:
            raise ButtonError(f"{where}: {key} is missing")
    for key, value in table.items():
        if not isinstance(value, str):
            raise ButtonError(f"{where}: {key}: expected a string")
    fields = {key: str(value) for key, value in table.items()}
    button = Button(**fields)  # type: ignore[arg-type]
    check_button(button, f"{where} ({button.name!r})")
    return button
