"""The text read out of campaign HTML: tidied, and the same in one step or two."""

from __future__ import annotations

import pytest

from postroom.campaign.mailsafe import (
    read_document,
    text_from_document,
    text_from_html,
    tidy_text,
)

PAGES = [
    "<html><head><style>p { color: red }</style><title>T</title></head>"
    "<body><h1>Hi &amp; welcome</h1><p>One<br><br><br><br>two</p>"
    '<ul><li>a</li><li><a href="https://a.test/?x=1&amp;y=2">link</a></li></ul>'
    "<table><tr><td>cell</td><td>other</td></tr></table><pre>  kept\n   as is</pre></body></html>",
    "just text, no markup",
    "<p>a</p>\n\n\n<p>b</p>",
]


@pytest.mark.parametrize("html", PAGES)
def test_reading_a_document_in_two_steps_gives_the_same_text(html: str) -> None:
    document = read_document(html)
    assert document is not None
    assert text_from_document(document) == text_from_html(html)


def test_the_text_has_no_trailing_spaces_no_two_blank_lines_and_one_final_newline() -> None:
    text = text_from_html(PAGES[0])
    assert text.startswith("Hi & welcome\n\nOne\n\ntwo\n")
    assert "[link](https://a.test/?x=1&y=2)" in text and "  kept\n   as is" in text
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert all(line == line.rstrip() for line in text.splitlines())
    assert tidy_text("\n\n a  \n\n\n\n\tb\t\n\n") == " a\n\n\tb\n"
    assert text_from_html("") == tidy_text("") == "\n"


@pytest.mark.parametrize("html", ["", "  \n ", '<?xml version="1.0"?><p>x</p>'])
def test_what_the_layout_would_read_otherwise_is_not_read_as_a_document(html: str) -> None:
    assert read_document(html) is None
