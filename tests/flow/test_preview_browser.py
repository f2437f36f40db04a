"""A person's browser opens a campaign's HTML: headless Chromium (Debian's `chromium`).

The rendered campaign HTML (two buttons, the unsubscribe footer, CSS inlined)
is written to a file; Chromium dumps the DOM it built and takes a screenshot
(kept in tmp_path as the artifact). The buttons' links and the footer's
unsubscribe link must be in the DOM as links, and the screenshot a real PNG.
"""

from __future__ import annotations

from pathlib import Path

from tests.fakes.campaign_mail import CHANNEL_URL, SHOP_URL, links, rendered
from tests.peers.chromium import open_page

from postroom.campaign.message import finished_content


def test_chromium_shows_the_buttons_and_the_unsubscribe_footer(tmp_path: Path) -> None:
    page = tmp_path / "preview.html"
    html = finished_content(rendered(), unsubscribe=links(), from_name="Acme Shop").html
    page.write_text(html, encoding="utf-8")
    dom = open_page(page, tmp_path / "preview.png")
    assert (SHOP_URL, "Visit the shop") in dom.links
    assert (CHANNEL_URL, "Join us on Telegram") in dom.links
    assert (links().https, "Unsubscribe") in dom.links
    assert {"postroom-button", "postroom-footer", "postroom-unsubscribe"} <= dom.classes
