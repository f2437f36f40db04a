"""The unsubscribe footer goes before the real `</body>`: never inside a comment the
template wrote, open or closed."""

from __future__ import annotations

import time
from html.parser import HTMLParser

import pytest
from tests.fakes.campaign_mail import links

from postroom.campaign.message import finished_content
from postroom.campaign.render import RenderedContent, insert_before_body_end

FOOTER = '<p><a class="postroom-unsubscribe" href="https://u.test/u/1">Unsubscribe</a></p>'


class _Links(HTMLParser):
    """The unsubscribe links a mail client shows, and those inside comments."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.visible = 0
        self.commented = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a" and ("class", "postroom-unsubscribe") in attrs:
            self.visible += 1

    def handle_comment(self, data: str) -> None:
        self.commented += data.count("postroom-unsubscribe")


def unsubscribe_links(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    parser.close()
    return parser


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        (
            "<html><body><p>hi</p></body></html><!-- </body> -->",
            f"<html><body><p>hi</p>{FOOTER}</body></html><!-- </body> -->",
        ),
        ("<p>hi</p><!-- </body> -->", f"<p>hi</p><!-- </body> -->{FOOTER}"),
        ("<p>hi</p><!-- left open </body>", f"<p>hi</p><!-- left open </body>-->{FOOTER}"),
        ("<body><p>hi</p></body><!-- left open", f"<body><p>hi</p>{FOOTER}</body><!-- left open"),
        (
            "<body><!--[if mso]><table><tr><td><![endif]--><p>x</p>"
            "<!--[if mso]></td></tr></table><![endif]--></BODY ></html>",
            "<body><!--[if mso]><table><tr><td><![endif]--><p>x</p>"
            f"<!--[if mso]></td></tr></table><![endif]-->{FOOTER}</BODY ></html>",
        ),
        ("<body><!--></body>", f"<body><!-->{FOOTER}</body>"),
        ("<p></bodyguard></p>", f"<p></bodyguard></p>{FOOTER}"),
    ],
)
def test_the_footer_goes_before_the_last_body_end_outside_comments(
    html: str, expected: str
) -> None:
    placed = insert_before_body_end(html, FOOTER)
    assert placed == expected
    links_seen = unsubscribe_links(placed)
    assert (links_seen.visible, links_seen.commented) == (1, 0)


def test_a_message_whose_template_hides_a_body_end_in_a_comment_shows_the_footer() -> None:
    rendered = RenderedContent("s", "<html><body><p>hi</p></body></html><!-- </body> -->", "hi")
    finished = finished_content(rendered, unsubscribe=links(), from_name="Acme")
    links_seen = unsubscribe_links(finished.html)
    assert (links_seen.visible, links_seen.commented) == (1, 0)
    assert finished.html.index("postroom-unsubscribe") < finished.html.index("</body>")


def test_the_scan_is_linear() -> None:
    started = time.monotonic()
    many = "<!---->" * 200_000 + "</body>" * 200_000 + "<!-- open"
    assert insert_before_body_end(many, FOOTER).endswith(FOOTER + "</body><!-- open")
    assert time.monotonic() - started < 1
