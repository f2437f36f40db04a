"""A person's browser opens a campaign's HTML: headless Chromium (Debian's `chromium`).

The rendered campaign HTML (two buttons, the unsubscribe footer, CSS inlined)
is written to a file; Chromium dumps the DOM it built and takes a screenshot
(kept in tmp_path as the artifact). The buttons' links and the footer's
unsubscribe link must be in the DOM as links, and the screenshot a real PNG.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

from tests.fakes.campaign_mail import CHANNEL_URL, SHOP_URL, links, rendered

from postroom.campaign.message import finished_content

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHROMIUM_TIMEOUT_S = 90


class Links(HTMLParser):
    """(href, text) of every link, and the classes of the elements around them."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.classes: set[str] = set()
        self._href: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.classes.update((values.get("class") or "").split())
        if tag == "a":
            self._href, self._text = values.get("href") or "", ""

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, self._text.strip()))
            self._href = None


def chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    binary = shutil.which("chromium")
    assert binary, "Debian's chromium is a test peer (make test-debs installs it)"
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",  # the tests run as root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={cwd / 'profile'}",
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        timeout=CHROMIUM_TIMEOUT_S,
        check=False,
    )


def test_chromium_shows_the_buttons_and_the_unsubscribe_footer(tmp_path: Path) -> None:
    page = tmp_path / "preview.html"
    html = finished_content(rendered(), unsubscribe=links(), from_name="Acme Shop").html
    page.write_text(html, encoding="utf-8")
    screenshot = tmp_path / "preview.png"

    dumped = chromium("--dump-dom", page.as_uri(), cwd=tmp_path)
    shot = chromium(
        f"--screenshot={screenshot}", "--window-size=800,900", page.as_uri(), cwd=tmp_path
    )

    assert dumped.returncode == 0, dumped.stderr.decode(errors="replace")[-2000:]
    dom = Links()
    dom.feed(dumped.stdout.decode("utf-8"))
    assert (SHOP_URL, "Visit the shop") in dom.links
    assert (CHANNEL_URL, "Join us on Telegram") in dom.links
    assert (links().https, "Unsubscribe") in dom.links
    assert {"postroom-button", "postroom-footer", "postroom-unsubscribe"} <= dom.classes
    assert shot.returncode == 0, shot.stderr.decode(errors="replace")[-2000:]
    image = screenshot.read_bytes()
    assert image.startswith(PNG_SIGNATURE) and len(image) > 1000
