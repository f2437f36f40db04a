"""Whether the text layout of a marked HTML template holds for every contact.

`text_template.py` marks each construct of an HTML template (`{{ }}`, `{% %}`) with a
placeholder, reads the marked HTML as text once and turns the placeholders back into
constructs. That text template is faithful if the layout (inscriptis over the
document lxml builds, `mailsafe.py`) writes any contact's HTML as it wrote the marked
one: each value where its placeholder was, each block's body once per copy, in place.
An expression's output is escaped text (autoescape), so a contact's HTML is the
marked one with text for the placeholders and bodies repeated or removed whole; the
layout writes a document in order, except where these rules refuse.

`check_marked_document(document, text, constructs, unmarked, environment)` raises
`Underivable` with the first rule broken:
- every placeholder is in lxml's document, shown at most once, and those shown as
  text appear in source order (the layout moves text out of tables); a button shows;
- no placeholder in an attribute's name; a value only in an attribute the layout does
  not read (not `style`, `align`, `value`...), and not as a link's whole `href` (an
  empty one shows no link);
- an expression that calls anything is shown where it stands (hidden, in `<head>` or
  a comment, its effects would be lost; in an `href`, shown after the link's text, it
  would run out of order);
- a block's tags (`if`, `elif`, `else`, `endif`) all show as text in one parent
  element (its bodies are runs of whole elements), which is no table's structure (text
  between rows is moved out) and no cell sharing its row (cells are laid out side by
  side: another cell's lines would fall inside the body); its bodies hold no items of
  an `<ol>` outside them (their numbers would be fixed) nor rows or cells of a table
  outside them. A block hidden whole (in `<style>`, under `display: none`) may not show
  if it holds no `set`, no button and nothing shown, within one run of hidden text or
  one parent element (then checked as above: hidden items still count);
- in a cell sharing its row, a value or `set` is not alone in its text nor
  preformatted (it would take a line of its own the contact's text may not have);
- no run of text the layout writes between affixes (`<span>`'s spaces, `<q>`'s quotes)
  starts with a tag closing a body or ends with one opening a body.
Past `MAX_BODY_ELEMENTS` elements looked at in bodies, the answer is no.

Untrusted input: the template (an operator's); work linear in the document, bounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from jinja2 import nodes
from lxml.etree import iterwalk
from lxml.html import HtmlElement

from postroom.campaign.mailsafe import AFFIXED_TAGS
from postroom.campaign.sandbox import BoundedEnvironment

__all__ = [
    "CLOSING_TAGS",
    "MIDDLE_TAGS",
    "OPENING_TAGS",
    "PLACEHOLDER",
    "Construct",
    "Underivable",
    "check_marked_document",
    "placeholder",
]

MAX_BODY_ELEMENTS = 100_000
PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")  # private-use characters around an index
OPENING_TAGS = frozenset({"if", "for", "with"})
MIDDLE_TAGS = frozenset({"elif", "else"})
CLOSING_TAGS = frozenset({"endif", "endfor", "endwith"})
# Attributes the layout does not read (with mailsafe's config), and `href`, which it shows.
_PLAIN_ATTRIBUTES = frozenset(
    {
        *("href", "src", "alt", "title", "class", "id", "name", "target", "rel", "lang"),
        *("dir", "width", "height", "bgcolor", "color", "border", "role"),
        *("cellpadding", "cellspacing"),
    }
)
_PLAIN_ATTRIBUTE_PREFIXES = ("data-", "aria-")
_TABLE_STRUCTURE = frozenset({"table", "thead", "tbody", "tfoot", "tr", "colgroup", "caption"})
_TABLE_PARTS = ("tr", "td", "th", "thead", "tbody", "tfoot", "caption", "colgroup", "col")
_CELLS = frozenset({"td", "th"})
_LISTS = ("ul", "ol")
_PREFORMATTED = frozenset({"pre", "xmp", "listing", "plaintext"})  # inscriptis's `pre` tags


class Underivable(Exception):
    """The HTML template's text cannot be derived once, faithfully; the reason."""


@dataclass(frozen=True, slots=True)
class Construct:
    index: int  # its rank in the template, which its placeholder carries
    kind: Literal["expression", "block", "button"]
    tag: str  # a block's keyword ("if", "endfor", "set"); "" otherwise
    group: int  # the index of the tag that opens its block (its own, for the others)
    jinja: str  # as the text template writes it: `{{ ... }}` or `{% ... %}`


def placeholder(index: int) -> str:
    return f"\ue000{index}\ue001"


@dataclass(frozen=True, slots=True)
class _Location:
    container: HtmlElement | None  # the element whose text holds it; None: hidden, attribute
    run: tuple[object, str]  # which string holds it: (node, "text" | "tail" | "@attribute")
    after: int = 0  # how many of the container's children come before it


def check_marked_document(
    document: HtmlElement,
    text: str,
    constructs: list[Construct],
    unmarked: set[int],
    environment: BoundedEnvironment,
) -> None:
    """`document`: lxml's tree of the marked HTML; `text`: the layout's text of it;
    `constructs`: all the template's, by index; `unmarked`: those not in the HTML."""
    locations = _locations(document)
    _check_affixes(document, constructs)
    shown = [int(found.group(1)) for found in PLACEHOLDER.finditer(text)]
    in_text = [index for index in shown if _in_text(locations, index)]
    if len(set(shown)) != len(shown) or in_text != sorted(in_text):
        raise Underivable("the layout repeats or reorders the template's constructs")
    checks = _Checks(locations, _row_sizes(document), set(shown), environment)
    groups: dict[int, list[Construct]] = {}
    for construct in constructs:
        if construct.index in unmarked:
            continue
        if construct.kind == "block":
            groups.setdefault(construct.group, []).append(construct)
        else:
            checks.check_value(construct)
    for members in groups.values():
        checks.check_block(members, constructs)


@dataclass(slots=True)
class _Checks:
    locations: dict[int, _Location]
    row_sizes: dict[HtmlElement, int]
    shown: set[int]
    environment: BoundedEnvironment
    looked_at: int = 0

    def check_value(self, construct: Construct) -> None:
        """An expression or a button."""
        if construct.index not in self.locations:
            raise Underivable(f"lxml drops the construct {construct.jinja!r}")
        in_text = construct.index in self.shown and _in_text(self.locations, construct.index)
        if construct.kind == "button" and not in_text:
            raise Underivable(f"the button {construct.jinja!r} does not show as text")
        if not in_text:
            self._refuse_calls(construct)
        elif construct.kind == "expression":
            self._check_side_by_side(construct)

    def check_block(self, members: list[Construct], constructs: list[Construct]) -> None:
        """A block's tags (a `set` alone), `constructs` all the template's."""
        first = members[0]
        if any(member.index not in self.locations for member in members):
            raise Underivable(f"lxml drops a tag of {first.jinja!r}")
        locations = [self.locations[member.index] for member in members]
        if all(member.index not in self.shown for member in members):
            inside = constructs[first.index : members[-1].index + 1]
            if any(c.index in self.shown or c.tag == "set" or c.kind == "button" for c in inside):
                raise Underivable(f"{first.jinja!r} does not show (a set, or shown parts)")
            one_string = all(location.run == locations[0].run for location in locations)
            if one_string and locations[0].container is None:
                return  # all in one hidden string: raw text, a comment, an attribute
        elif any(member.index not in self.shown for member in members):
            raise Underivable(f"the tags of {first.jinja!r} do not all show")
        container = locations[0].container
        if container is None or any(other.container is not container for other in locations):
            raise Underivable(f"the body of {first.jinja!r} is not a run of whole elements")
        if len(members) == 1:  # a set
            self._check_side_by_side(first)
            return
        if container.tag in _TABLE_STRUCTURE:
            raise Underivable(f"{first.jinja!r} sits between table rows or cells")
        if _cell_sharing_its_row(container, self.row_sizes) is not None:
            raise Underivable(f"{first.jinja!r} sits in a table cell that shares its row")
        self._check_body(container, container[locations[0].after : locations[-1].after], first)

    def _refuse_calls(self, construct: Construct) -> None:
        """An expression the text leaves out or evaluates out of order has no effects."""
        parsed = self.environment.parse(construct.jinja)
        if any(True for _call in parsed.find_all(nodes.Call)):
            raise Underivable(f"{construct.jinja!r}, hidden or moved in the text, calls something")

    def _check_side_by_side(self, construct: Construct) -> None:
        """Cells sharing a row are laid out side by side, line by line: a construct alone
        in its text (a set, a value maybe empty) takes a line the contact's text may not
        have, which would put the other cells' lines beside other words. So does one
        where whitespace is kept (a value's line breaks are not)."""
        location = self.locations[construct.index]
        cell = _cell_sharing_its_row(location.container, self.row_sizes)
        if cell is None or location.container is None:
            return
        node, which = location.run
        run = getattr(node, which) or ""
        if not PLACEHOLDER.sub("", run).strip():
            raise Underivable(f"{construct.jinja!r} is alone in a table cell sharing its row")
        for element in (location.container, *location.container.iterancestors()):
            if element.tag in _PREFORMATTED or "white-space" in element.get("style", ""):
                raise Underivable(f"{construct.jinja!r} is preformatted in a shared table row")
            if element is cell:
                return

    def _check_body(
        self, container: HtmlElement, body: list[HtmlElement], block: Construct
    ) -> None:
        """Its list items and table parts belong to a list or table of its own."""
        outer_list = next(
            (
                tag
                for tag in (e.tag for e in (container, *container.iterancestors()))
                if tag in _LISTS
            ),
            None,
        )
        for top in body:
            if not isinstance(top.tag, str):
                continue
            for element in top.iter("li", *_TABLE_PARTS):
                self.looked_at += 1
                if self.looked_at > MAX_BODY_ELEMENTS:
                    raise Underivable(f"more than {MAX_BODY_ELEMENTS} elements in bodies")
                if element.tag == "li":
                    if outer_list == "ol" and _owner(element, _LISTS, container) is None:
                        raise Underivable(f"{block.jinja!r} holds items of a numbered list")
                elif _owner(element, ("table",), container) is None:
                    raise Underivable(f"{block.jinja!r} holds rows or cells of a table outside")


def _locations(document: HtmlElement) -> dict[int, _Location]:
    locations: dict[int, _Location] = {}
    for top in (*document.itersiblings(preceding=True), *document.itersiblings()):
        _locate(locations, top, "text", None)  # comments around <html>: hidden
        _locate(locations, top, "tail", None)
    for node in document.iter():
        if not isinstance(node.tag, str):  # a comment or processing instruction: hidden
            _locate(locations, node, "text", None)
            continue
        for name, value in node.attrib.items():
            if PLACEHOLDER.search(name):
                raise Underivable(f"a construct in the name of an attribute of <{node.tag}>")
            if PLACEHOLDER.search(value):
                _check_attribute(node, name, value)
                _locate(locations, node, f"@{name}", None)
        _locate(locations, node, "text", node)
        for position, child in enumerate(node):
            _locate(locations, child, "tail", node, position + 1)
    return locations


def _locate(
    locations: dict[int, _Location],
    node: HtmlElement,
    which: str,
    container: HtmlElement | None,
    after: int = 0,
) -> None:
    string = node.get(which[1:]) if which.startswith("@") else getattr(node, which)
    for found in PLACEHOLDER.finditer(string or ""):
        locations[int(found.group(1))] = _Location(container, (node, which), after)


def _check_attribute(element: HtmlElement, name: str, value: str) -> None:
    if name not in _PLAIN_ATTRIBUTES and not name.startswith(_PLAIN_ATTRIBUTE_PREFIXES):
        raise Underivable(
            f"a value in the attribute {name!r} of <{element.tag}>, read by the layout"
        )
    if element.tag == "a" and name == "href" and not PLACEHOLDER.sub("", value).strip():
        raise Underivable("a link whose whole href is a value (an empty one shows no link)")


def _in_text(locations: dict[int, _Location], index: int) -> bool:
    """Shown where it stands, not from an attribute (a link's href follows its text)."""
    location = locations.get(index)
    return location is not None and location.container is not None


def _check_affixes(document: HtmlElement, constructs: list[Construct]) -> None:
    """The layout writes each run of text directly in some elements between affixes: a
    run starting with a tag that closes a body, or ending with one that opens a body,
    would put an affix inside that body (lost with it)."""
    for element in document.iter(*AFFIXED_TAGS):
        for run in (element.text, *(child.tail for child in element if isinstance(child.tag, str))):
            parts = PLACEHOLDER.split((run or "").strip())  # literal, index, ..., literal
            if len(parts) < 3:
                continue
            first, last = constructs[int(parts[1])], constructs[int(parts[-2])]
            if not parts[0] and first.tag in MIDDLE_TAGS | CLOSING_TAGS:
                raise Underivable(f"{first.jinja!r} starts the text of a <{element.tag}>")
            if not parts[-1] and last.tag in OPENING_TAGS | MIDDLE_TAGS:
                raise Underivable(f"{last.jinja!r} ends the text of a <{element.tag}>")


def _row_sizes(document: HtmlElement) -> dict[HtmlElement, int]:
    """Each table cell's number of cells in its row as the layout counts them: a cell
    joins the last row begun in its nearest table, wherever it sits in that table."""
    tables: list[list[list[HtmlElement]]] = []  # the open tables' rows of cells
    sizes: dict[HtmlElement, int] = {}
    for event, element in iterwalk(document, events=("start", "end")):
        if element.tag == "table" and event == "start":
            tables.append([])
        elif element.tag == "table":
            sizes.update((cell, len(row)) for row in tables.pop() for cell in row)
        elif event == "start" and tables and element.tag == "tr":
            tables[-1].append([])
        elif event == "start" and tables and element.tag in _CELLS:
            if not tables[-1]:
                tables[-1].append([])
            tables[-1][-1].append(element)
    return sizes


def _cell_sharing_its_row(
    element: HtmlElement | None, row_sizes: dict[HtmlElement, int]
) -> HtmlElement | None:
    for ancestor in () if element is None else (element, *element.iterancestors()):
        if row_sizes.get(ancestor, 1) > 1:
            return ancestor
    return None


def _owner(
    element: HtmlElement, tags: tuple[str, ...], container: HtmlElement
) -> HtmlElement | None:
    """The nearest ancestor of `element` tagged one of `tags`, below `container`."""
    for ancestor in element.iterancestors():
        if ancestor is container:
            return None
        if ancestor.tag in tags:
            return ancestor
    return None
