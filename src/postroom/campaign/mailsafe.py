"""HTML made fit for mail clients, and a text part read out of it.

Mail clients ignore or strip `<style>` blocks (Gmail's web client keeps few,
Outlook's Word engine honours inline styles best), so every rule is moved into
the `style` attributes of the elements it matches (`inline_css`, by the
`css-inline` library: MIT, Rust-backed, fast enough to run per message). Its
parser (html5ever) also re-serialises the document whole: every element closed,
`<html>`, `<head>` and `<body>` present, so what is added after it (the
unsubscribe footer, `message.py`) sits outside anything the template left open.
It never fetches anything: remote stylesheets (`<link>`, `@import`) are dropped,
not loaded; at-rules (`@media`) are dropped too (they cannot be inlined, and
kept they could hide the footer).

`text_from_html` reads the text a reader would see (the `inscriptis` library:
Apache-2.0; it lays out tables and lists as text, where html2text is GPL and
writes Markdown), links shown as `[text](url)` so no URL is lost.

Untrusted input: the rendered HTML (bounded by the renderer's output cap).
"""

from __future__ import annotations

import css_inline
from inscriptis import get_text
from inscriptis.model.config import ParserConfig

_INLINER = css_inline.CSSInliner(
    load_remote_stylesheets=False,
    keep_style_tags=False,
    keep_link_tags=False,
    keep_at_rules=False,
)
_TEXT_CONFIG = ParserConfig(display_links=True)


class MailSafeError(ValueError):
    """HTML (its CSS) that the inliner cannot read."""


def inline_css(html: str) -> str:
    """The document with its CSS rules inlined and its style blocks removed."""
    try:
        return _INLINER.inline(html)
    except (css_inline.InlineError, ValueError) as error:
        raise MailSafeError(f"html: CSS cannot be inlined: {error}") from None


def text_from_html(html: str) -> str:
    text = get_text(html, _TEXT_CONFIG)
    lines = [line.rstrip() for line in text.strip("\n").splitlines()]
    return "\n".join(lines) + "\n"
