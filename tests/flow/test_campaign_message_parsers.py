"""A campaign .eml read by two parsers: Python's email package and Perl's Email::MIME.

Both must see multipart/alternative (text then HTML), the decoded non-ASCII
subject, and the buttons' links and the unsubscribe link in both parts.
"""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

from tests.fakes.campaign_mail import CHANNEL_URL, SHOP_URL, eml, links
from tests.peers.email_mime import email_mime_parse

SUBJECT = "Привет, Zoë: весна"


def expected_links(body: str) -> None:
    assert links().https in body
    assert CHANNEL_URL in body
    assert SHOP_URL in body or SHOP_URL.replace("&", "&amp;") in body


def test_python_and_perl_email_mime_read_the_same_message(tmp_path: Path) -> None:
    path = tmp_path / "campaign.eml"
    path.write_bytes(eml())

    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message.get_content_type() == "multipart/alternative"
    assert str(message["Subject"]) == SUBJECT
    python_parts = [(part.get_content_type(), part.get_content()) for part in message.iter_parts()]
    assert [kind for kind, _ in python_parts] == ["text/plain", "text/html"]

    perl = email_mime_parse(path)
    assert perl["type"].startswith("multipart/alternative")
    assert perl["subject"] == SUBJECT
    perl_parts = [(part["type"].split(";")[0], part["body"]) for part in perl["parts"]]
    assert [kind for kind, _ in perl_parts] == ["text/plain", "text/html"]

    for _, body in python_parts + perl_parts:
        expected_links(body)
    assert "Visit the shop: " + SHOP_URL in python_parts[0][1]
    assert python_parts[0][1].replace("\r\n", "\n") == perl_parts[0][1].replace("\r\n", "\n")
