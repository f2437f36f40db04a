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
writes Markdown), links shown as `[text](url)` so no URL is lost, tidied
(`tidy_text`: no trailing spaces, no two blank lines in a row, one final
newline). `read_document` and `text_from_document` are the same reading in two
steps, for who inspects the document lxml built (`text_template.py`).

Untrusted input: the rendered HTML (bounded by the renderer's output cap).
"""

from __future__ import annotations

import re

import css_inline
from inscriptis import get_text
from inscriptis.html_engine import Inscriptis
from inscriptis.model.config import ParserConfig
from lxml.etree import ParserError
from lxml.html import HtmlElement, document_fromstring

_INLINER = css_inline.CSSInliner(
    load_remote_stylesheets=False,
    keep_style_tags=False,
    keep_link_tags=False,
    keep_at_rules=False,
)
_TEXT_CONFIG = ParserConfig(display_links=True)
# Tags whose every run of text the layout writes between affixes (spaces, quotes).
AFFIXED_TAGS = frozenset(
    tag for tag, style in _TEXT_CONFIG.css.items() if style.prefix or style.suffix
)
_BLANK_LINES = re.compile(r"\n{3,}")


class MailSafeError(ValueError):
    """HTML (its CSS) that the inliner cannot read."""


def inline_css(html: str) -> str:
    """The document with its CSS rules inlined and its style blocks removed."""
    try:
        return _INLINER.inline(html)
    except (css_inline.InlineError, ValueError) as error:
        raise MailSafeError(f"html: CSS cannot be inlined: {error}") from None


def text_from_html(html: str) -> str:
    return tidy_text(get_text(html, _TEXT_CONFIG))


def read_document(html: str) -> HtmlElement | None:
    """`html` parsed as `text_from_html` parses it (inscriptis's own steps), or None
    where inscriptis would read it otherwise: empty, an XML declaration, a document
    lxml refuses (read as `<pre>`)."""
    html = html.strip()
    if not html or html.startswith("<?xml "):
        return None
    try:
        return document_fromstring(html)
    except ParserError:
        return None


def text_from_document(document: HtmlElement) -> str:
    """`text_from_html` of the HTML `document` was read from (`read_document`)."""
    return tidy_text(Inscriptis(document, _TEXT_CONFIG).get_text())


def tidy_text(text: str) -> str:
    lines = "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")
    return _BLANK_LINES.sub("\n\n", lines) + "\n"
