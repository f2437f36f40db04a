"""A text template derived once from an HTML template, for templates without a text part.

Reading each contact's rendered HTML as text (`mailsafe.text_from_html`) costs an
HTML render and a layout per message. `derive_text_template(html, parsed, env)` does
the reading once, on the template: it gives the source of a Jinja text template whose
render for a contact is the text `text_from_html` reads out of that contact's HTML,
up to whitespace, or raises `Underivable` (the caller then reads it per message). The
template runs in `text_environment()`; its output is tidied (`mailsafe.tidy_text`).

How: Jinja's own lexer cuts the HTML template into literal HTML and constructs
(`{{ }}`, `{% %}`; comments dropped). Each construct becomes a placeholder of
private-use characters (a placed button, `{{ button("x") }}`, the paragraph the
per-message reading draws: `<p>PLACEHOLDER</p>`). That HTML is read as text once;
in the text, placeholders become their constructs again (whitespace control
dropped: the HTML's is already applied to the literal), the literal text around
them is escaped so that Jinja prints it as is, and a block whose tags each stand on
a line of their own loses those lines' breaks. `{% set %}` tags before any markup
open the text template (a placeholder before `<html>` would move `<head>` into the
body).

Refused here (`Underivable`, the reason), besides the layout's rules (`layout_checks.py`):
- markup from values or bodies placed elsewhere: the filters `safe`, `escape`,
  `forceescape`, `xmlattr`; any tag but `if`/`elif`/`else`, `for` (not recursive),
  `with`, `set` (no macros, call or filter blocks, `{% set %}...{% endset %}`,
  autoescape, include); a `button()` that is not a whole `{{ }}` of its own;
  private-use characters in the source (they would be taken for placeholders);
- markup completed by a construct: literal HTML before one ending in an open tag
  name (`<{{ tag }}`) or entity (`&{{ name }};`);
- placeholders that change the document lxml builds (text in `<head>` opens the body):
  the marked HTML and the HTML with every construct removed must give the same elements.

Differences from reading per message, by design: whitespace (a value's whitespace
runs become one space, `<pre>` included; blank lines where a body was removed or
repeated); a value is printed as written where inscriptis decodes entities a second
time (a contact named `AT&amp;T` reads `AT&amp;T`, not `AT&T`); table columns are as
wide as the placeholders were. Errors: the HTML renders first with the same
constructs and values, so a failure is reported there, naming the HTML file and line.

Untrusted input: the template (an operator's); linear work, at compile time only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Literal

from jinja2 import nodes
from lxml.html import HtmlElement

from postroom.campaign.layout_checks import (
    CLOSING_TAGS,
    MIDDLE_TAGS,
    OPENING_TAGS,
    PLACEHOLDER,
    Construct,
    Underivable,
    check_marked_document,
    placeholder,
)
from postroom.campaign.mailsafe import read_document, text_from_document
from postroom.campaign.sandbox import BoundedEnvironment

__all__ = ["Underivable", "derive_text_template", "text_environment"]

_MARKUP_FILTERS = frozenset({"safe", "escape", "e", "forceescape", "xmlattr", "urlize"})
# Literal HTML ending where a value would complete markup: a tag's name, an entity.
_OPEN_MARKUP = re.compile(r"(?:<[!/?]?[-\w:]*|&#?\w*)\Z")
_WHITESPACE_RUN = re.compile(r"\s+")


def text_environment() -> BoundedEnvironment:
    """Where a derived text template runs: no autoescape, and each printed value's
    whitespace runs made one space, as the layout makes them in flowing text."""
    environment = BoundedEnvironment(autoescape=False)
    printable = environment.finalize  # the sandbox's own check of printed values

    def flowing(value: Any) -> Any:
        value = printable(value)
        return _WHITESPACE_RUN.sub(" ", value) if isinstance(value, str) else value

    environment.finalize = flowing
    return environment


def derive_text_template(html: str, parsed: nodes.Template, environment: BoundedEnvironment) -> str:
    """The source of the text template derived from `html` (parsed as `parsed` by
    `environment`, before it is bounded); Underivable says why there is none."""
    if "\ue000" in html or "\ue001" in html:
        raise Underivable("the HTML holds private-use characters U+E000/U+E001")
    _refuse_markup_sources(parsed)
    pieces = _pieces(html, environment)
    constructs = [piece for piece in pieces if isinstance(piece, Construct)]
    buttons = sum(1 for call in parsed.find_all(nodes.Call) if _is_button(call.node))
    if buttons != sum(1 for construct in constructs if construct.kind == "button"):
        raise Underivable("button() is used inside an expression, not as a {{ }} of its own")
    prelude = _leading_sets(pieces)
    document = read_document(_joined(pieces, set(prelude), marked=True))
    bare = read_document(_joined(pieces, set(prelude), marked=False))
    if document is None or bare is None:
        raise Underivable("the HTML is not a document the layout reads as one")
    if _shape(document) != _shape(bare):
        raise Underivable("placeholders change the document (text in <head>, say)")
    text = text_from_document(document)
    check_marked_document(document, text, constructs, set(prelude), environment)
    return "".join(constructs[index].jinja for index in prelude) + _rebuilt(text, constructs)


def _refuse_markup_sources(parsed: nodes.Template) -> None:
    for node in parsed.find_all(nodes.Filter):
        if node.name in _MARKUP_FILTERS:
            raise Underivable(f"line {node.lineno}: the filter {node.name!r} makes markup")
    for loop in parsed.find_all(nodes.For):
        if loop.recursive:
            raise Underivable(f"line {loop.lineno}: a recursive loop")


def _is_button(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name == "button"


def _pieces(html: str, environment: BoundedEnvironment) -> list[str | Construct]:
    """Literal HTML and constructs, in source order; adjacent literal joined."""
    pieces: list[str | Construct] = []
    openers: list[int] = []  # the indexes of the blocks open
    index = 0
    tokens = iter(environment.lex(html))
    for _line, kind, value in tokens:
        if kind == "data":
            if pieces and isinstance(pieces[-1], str):
                pieces[-1] += value
            else:
                pieces.append(value)
        elif kind in ("variable_begin", "block_begin"):
            ending = "variable_end" if kind == "variable_begin" else "block_end"
            inner = _inner(tokens, ending)
            previous = pieces[-1] if pieces and isinstance(pieces[-1], str) else ""
            if _OPEN_MARKUP.search(previous):
                raise Underivable(f"a construct completes markup after {previous[-20:]!r}")
            if kind == "variable_begin":
                pieces.append(_expression(index, inner))
            else:
                pieces.append(_block(index, inner, openers))
            index += 1
        elif kind == "comment_begin":
            _inner(tokens, "comment_end")
        elif kind not in ("raw_begin", "raw_end"):  # the data between them is literal
            raise Underivable(f"unexpected {kind} in the template")
    return pieces


def _inner(tokens: Iterator[tuple[int, str, str]], ending: str) -> list[tuple[str, str]]:
    inner = []
    for _line, kind, value in tokens:
        if kind == ending:
            return inner
        inner.append((kind, value))
    raise Underivable("a construct left open")  # the parser refused it already


def _expression(index: int, inner: list[tuple[str, str]]) -> Construct:
    # Spaced inside its delimiters: `{{--1}}` without its whitespace control is not `{{-1}}`.
    source = "".join(value for _kind, value in inner)
    meaningful = [(kind, value) for kind, value in inner if kind != "whitespace"]
    is_button = (
        len(meaningful) == 4
        and meaningful[0] == ("name", "button")
        and meaningful[1] == ("operator", "(")
        and meaningful[2][0] == "string"
        and meaningful[3] == ("operator", ")")
    )
    kind: Literal["expression", "button"] = "button" if is_button else "expression"
    return Construct(index, kind, "", index, "{{ " + source.strip() + " }}")


def _block(index: int, inner: list[tuple[str, str]], openers: list[int]) -> Construct:
    source = "".join(value for _kind, value in inner)
    tag = next((value for kind, value in inner if kind != "whitespace"), "")
    if tag in OPENING_TAGS:
        openers.append(index)
        group = index
    elif tag in MIDDLE_TAGS and openers:
        group = openers[-1]
    elif tag in CLOSING_TAGS and openers:
        group = openers.pop()
    elif tag == "set":
        group = index
    else:
        raise Underivable(f"the tag {{% {tag} %}}")
    return Construct(index, "block", tag, group, "{% " + source.strip() + " %}")


def _leading_sets(pieces: list[str | Construct]) -> list[int]:
    """`{% set %}` tags before any markup: they open the text template, unmarked
    (a placeholder before `<html>` would move `<head>` into the body)."""
    prelude = []
    for piece in pieces:
        if isinstance(piece, str):
            if piece.strip():
                break
        elif piece.tag == "set":
            prelude.append(piece.index)
        else:
            break
    return prelude


def _joined(pieces: list[str | Construct], prelude: set[int], *, marked: bool) -> str:
    out = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
        elif piece.index in prelude:
            continue
        elif piece.kind == "button":  # as the per-message reading draws a placed button
            out.append(f"<p>{placeholder(piece.index) if marked else ''}</p>")
        elif marked:
            out.append(placeholder(piece.index))
    return "".join(out)


def _shape(document: HtmlElement) -> list[tuple[Any, int]]:
    """The document's elements: each tag in document order with its number of children."""
    return [(element.tag, len(element)) for element in document.iter()]


def _rebuilt(text: str, constructs: list[Construct]) -> str:
    """The text as a template. A line holding only block tags loses its line break
    when every block with a tag on it has each of its tags on such a line: its bodies
    then start and end at line starts, so dropping those breaks joins no two lines'
    words whichever bodies render (a loop's lines are not spaced by blank ones)."""
    lines = [PLACEHOLDER.split(line) for line in text.splitlines()]  # literal, index, ...
    tag_only = [
        any(parts[1::2])
        and all(constructs[int(index)].kind == "block" for index in parts[1::2])
        and not "".join(parts[0::2]).strip()
        for parts in lines
    ]
    not_own_lines = {
        constructs[int(index)].group
        for parts, only_tags in zip(lines, tag_only, strict=True)
        for index in parts[1::2]
        if not only_tags
    }
    out = []
    for parts, only_tags in zip(lines, tag_only, strict=True):
        groups = {constructs[int(index)].group for index in parts[1::2]}
        for position, part in enumerate(parts):
            if position % 2:
                out.append(constructs[int(part)].jinja)
            elif position or not only_tags:  # a tags' line's indent separates nothing
                out.append(part.replace("{", '{{ "{" }}'))  # printed as is, never read as Jinja
        if not (only_tags and groups.isdisjoint(not_own_lines)):
            out.append("\n")
    return "".join(out)
