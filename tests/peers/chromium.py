"""Debian's Chromium as a person's browser: headless, on files written by the tests.

`chromium(*args, cwd=...)` runs it with a throwaway profile under `cwd`
(`--no-sandbox`: the tests run as root). `page_links(html)` parses the DOM
Chromium dumped (`--dump-dom`) into its links and the classes around them.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

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


def open_page(page: Path, screenshot: Path) -> Links:
    """The links of `page` as Chromium built its DOM; a screenshot of it at `screenshot`
    (asserted to be a real PNG)."""
    dumped = chromium("--dump-dom", page.as_uri(), cwd=page.parent)
    shot = chromium(
        f"--screenshot={screenshot}", "--window-size=800,900", page.as_uri(), cwd=page.parent
    )
    assert dumped.returncode == 0, dumped.stderr.decode(errors="replace")[-2000:]
    assert shot.returncode == 0, shot.stderr.decode(errors="replace")[-2000:]
    image = screenshot.read_bytes()
    assert image.startswith(PNG_SIGNATURE) and len(image) > 1000
    dom = Links()
    dom.feed(dumped.stdout.decode("utf-8"))
    return dom
