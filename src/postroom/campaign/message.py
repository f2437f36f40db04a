"""The campaign message: a rendered template made into the exact bytes a contact gets.

`finished_content(rendered, unsubscribe=..., from_name=...)` is what the
contact reads: the HTML with its CSS inlined (`mailsafe.py`) and the
unsubscribe footer appended inside `<body>`, the text with its footer. The
footer is added here, after the template ran, so no template can leave it out
(the preview's HTML and text are these parts too).

`build_campaign_message(rendered, from_name=..., from_address=..., to_address=...,
message_id=..., date=..., unsubscribe=..., list_id=..., feedback_id=..., test=False)`
gives the complete RFC 5322 message (CRLF line ends; every line at most 998
octets, RFC 5322 2.1.1), built by the standard library's email package
(`policy.SMTP`, or `SMTPUTF8` when an address needs it):
  From (the display name in RFC 2047 words when not ASCII), To, Subject (RFC 2047),
  Date, Message-ID, MIME-Version; List-Unsubscribe `<https://...>, <mailto:...>`,
  List-Unsubscribe-Post `List-Unsubscribe=One-Click` (RFC 8058), List-Id (RFC 2919),
  Feedback-ID (Google's `a:b:c:SenderId`), Precedence: bulk;
  a multipart/alternative body: text/plain then text/html, UTF-8, each part
  quoted-printable when it is mostly ASCII and base64 otherwise (whichever is
  smaller: QP writes a non-ASCII octet as three characters, base64 every three
  octets as four).
`test=True` puts "[TEST] " before the subject. `campaign_list_id` and
`campaign_feedback_id` make the two identifiers from ids.

Time is linear in the content. Untrusted input: the rendered content and the
display name (a CR or LF in either header is turned into a space: no header
injection). No I/O.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime
from html import escape

import idna

from postroom.campaign.mailsafe import inline_css
from postroom.campaign.render import RenderedContent, insert_before_body_end
from postroom.campaign.unsubscribe import UnsubscribeLinks

TEST_MARK = "[TEST] "
MAX_HEADER_VALUE_CHARS = 900  # our own identifiers; folded fields stay far from 998
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]+")
# QP spells an octet outside printable ASCII as "=XX"; past this share base64 is smaller.
_BASE64_FROM_SHARE = 1 / 6


def finished_content(
    rendered: RenderedContent, *, unsubscribe: UnsubscribeLinks, from_name: str
) -> RenderedContent:
    """The parts as sent: CSS inlined, the unsubscribe footer in both."""
    sender = escape(_one_line(from_name) or "us")
    link = escape(unsubscribe.https)
    footer_html = (
        '<table role="presentation" class="postroom-footer" width="100%" border="0" '
        'cellpadding="0" cellspacing="0" style="margin-top:24px;border-top:1px solid #dddddd">'
        '<tr><td align="center" style="padding:16px;font-family:Arial,Helvetica,sans-serif;'
        'font-size:12px;line-height:18px;color:#666666">'
        f"You receive this mail from {sender}. "
        f'<a href="{link}" class="postroom-unsubscribe" target="_blank" '
        'style="color:#666666;text-decoration:underline">Unsubscribe</a>'
        "</td></tr></table>"
    )
    footer_text = (
        f"\n\n--\nYou receive this mail from {_one_line(from_name) or 'us'}.\n"
        f"Unsubscribe: {unsubscribe.https}\n"
    )
    return RenderedContent(
        subject=rendered.subject,
        html=insert_before_body_end(inline_css(rendered.html), footer_html),
        text=rendered.text.rstrip() + footer_text,
    )


def build_campaign_message(
    rendered: RenderedContent,
    *,
    from_name: str,
    from_address: str,
    to_address: str,
    message_id: str,
    date: float,
    unsubscribe: UnsubscribeLinks,
    list_id: str,
    feedback_id: str,
    test: bool = False,
) -> bytes:
    """The complete message, CRLF line ends (see the module's docstring)."""
    content = finished_content(rendered, unsubscribe=unsubscribe, from_name=from_name)
    sender, recipient = _address(from_address, from_name), _address(to_address, "")
    ascii_only = all(part.isascii() for part in (sender.username, recipient.username))
    message = EmailMessage(policy=policy.SMTP if ascii_only else policy.SMTPUTF8)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = (TEST_MARK if test else "") + _one_line(content.subject)
    message["Date"] = format_datetime(datetime.fromtimestamp(date, UTC))
    message["Message-ID"] = _bracketed(_identifier(message_id, "message_id"))
    message["MIME-Version"] = "1.0"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["List-Id"] = _bracketed(_identifier(list_id, "list_id"))
    message["Feedback-ID"] = _identifier(feedback_id, "feedback_id")
    message["Precedence"] = "bulk"
    message.make_alternative()
    for text, subtype in ((content.text, "plain"), (content.html, "html")):
        part = MIMEPart(policy=message.policy)  # a part has no MIME-Version of its own
        part.set_content(text, subtype=subtype, cte=_transfer_encoding(text))
        message.attach(part)
    head, blank_line, body = message.as_bytes().partition(b"\r\n\r\n")
    return head + _list_unsubscribe(unsubscribe) + blank_line + body


def _list_unsubscribe(unsubscribe: UnsubscribeLinks) -> bytes:
    """The List-Unsubscribe field, folded between its two URIs by hand. The email
    package's folder turns a URI longer than a line (a mailto: on a long host name)
    into an RFC 2047 encoded word, which no receiver decodes in this field (RFC 2369:
    a list of URIs in angle brackets)."""
    uris = (unsubscribe.https, f"mailto:{unsubscribe.mailto}")
    for uri in uris:
        if not uri.isascii() or any(char in uri for char in "<>\r\n \t"):
            raise ValueError(f"not a URI for List-Unsubscribe: {uri!r}")
    return f"\r\nList-Unsubscribe: <{uris[0]}>,\r\n <{uris[1]}>".encode("ascii")


def campaign_list_id(project_name: str, campaign_id: int, domain: str) -> str:
    """`c42.project-name.<domain>`: an RFC 2919 list id, unique per campaign."""
    label = re.sub(r"[^a-z0-9-]+", "-", project_name.lower()).strip("-")[:40] or "project"
    return f"c{campaign_id}.{label}.{domain.lower().rstrip('.')}"


def campaign_feedback_id(project_id: int, campaign_id: int) -> str:
    """Google's Feedback-ID `a:b:c:SenderId`: campaign, project, kind, and us."""
    return f"c{campaign_id}:p{project_id}:campaign:postroom"


def _transfer_encoding(text: str) -> str:
    data = text.encode("utf-8")
    escaped = sum(1 for octet in data if octet > 0x7E or (octet < 0x20 and octet not in (9, 10)))
    return "base64" if escaped > len(data) * _BASE64_FROM_SHARE else "quoted-printable"


def _address(address: str, display_name: str) -> Address:
    """An Address with the domain as A-labels (header fields are ASCII outside SMTPUTF8)."""
    local, _, domain = address.rpartition("@")
    if not local or not domain:
        raise ValueError(f"not an address: {address!r}")
    try:
        domain = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as error:
        raise ValueError(f"{address!r}: {error}") from None
    return Address(display_name=_one_line(display_name), username=local, domain=domain)


def _one_line(text: str) -> str:
    return _CONTROLS.sub(" ", text).strip()


def _identifier(value: str, what: str) -> str:
    value = value.strip().removeprefix("<").removesuffix(">")
    if not value or len(value) > MAX_HEADER_VALUE_CHARS or not value.isascii():
        raise ValueError(f"{what}: 1 to {MAX_HEADER_VALUE_CHARS} ASCII characters")
    if _CONTROLS.search(value) or any(char in value for char in " <>"):
        raise ValueError(f"{what}: no spaces, angle brackets or control characters")
    return value


def _bracketed(value: str) -> str:
    return f"<{value}>"
