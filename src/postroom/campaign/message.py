"""The campaign message: a rendered template made into the exact bytes a contact gets.

`finished_content(rendered, unsubscribe=..., from_name=...)` is what the
contact reads: the HTML with its CSS inlined (`mailsafe.py`) and the
unsubscribe footer appended inside `<body>`, the text with its footer. The
footer is added here, after the template ran, so no template can leave it out
(the preview's HTML and text are these parts too).

`build_campaign_message(rendered, from_name=..., from_address=..., to_address=...,
message_id=..., date=..., unsubscribe=..., list_id=..., feedback_id=..., test=False)`
gives the complete RFC 5322 message (CRLF line ends; header lines folded at 78,
body lines at 76: every line far below 998 octets, RFC 5322 2.1.1), written
directly with the email package's encoders (`email.header.Header` for RFC 2047
words, `binascii.b2a_qp`/`base64mime` for the parts): its `EmailMessage` API spent
2 ms a message on header objects, the largest cost of a campaign message:
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

import binascii
import functools
import re
import secrets
from datetime import UTC, datetime
from email import base64mime
from email.header import Header
from email.utils import format_datetime, formataddr
from html import escape

import idna

from postroom.campaign.mailsafe import inline_css
from postroom.campaign.render import RenderedContent, insert_before_body_end
from postroom.campaign.unsubscribe import UnsubscribeLinks

TEST_MARK = "[TEST] "
LINE_OCTETS = 76  # encoded body lines (RFC 2045 6.7, 6.8)
MAX_FIELD_CHARS = 78  # a folded header line (RFC 5322 2.1.1 "SHOULD")
MAX_HEADER_VALUE_CHARS = 900  # our own identifiers; folded fields stay far from 998
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]+")
# QP spells an octet outside printable ASCII as "=XX"; past this share base64 is smaller.
_BASE64_FROM_SHARE = 1 / 6
_QP_LITERAL = bytes(range(0x20, 0x7F)) + b"\t\n"  # the octets QP writes as themselves


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
    boundary = f"=_postroom_{secrets.token_hex(12)}"  # "=_" occurs in no QP or base64 text
    fields = [
        ("From", _mailbox(from_address, from_name)),
        ("To", _mailbox(to_address, "")),
        ("Subject", _text_field("Subject", (TEST_MARK if test else "") + content.subject)),
        ("Date", format_datetime(datetime.fromtimestamp(date, UTC))),
        ("Message-ID", _bracketed(_identifier(message_id, "message_id"))),
        ("MIME-Version", "1.0"),
        ("List-Unsubscribe", _list_unsubscribe(unsubscribe)),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("List-Id", _bracketed(_identifier(list_id, "list_id"))),
        ("Feedback-ID", _identifier(feedback_id, "feedback_id")),
        ("Precedence", "bulk"),
        ("Content-Type", f'multipart/alternative;\r\n boundary="{boundary}"'),
    ]
    out = [f"{name}: {value}\r\n" for name, value in fields]
    out.append("\r\n")
    for text, subtype in ((content.text, "plain"), (content.html, "html")):
        encoding, body = _encoded_body(text)
        out.append(
            f"--{boundary}\r\n"
            f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            f"Content-Transfer-Encoding: {encoding}\r\n\r\n{body}"
        )
    out.append(f"--{boundary}--\r\n")
    # UTF-8 only in an SMTPUTF8 address's local part; everything else is ASCII by now.
    return "".join(out).encode("utf-8")


def _list_unsubscribe(unsubscribe: UnsubscribeLinks) -> str:
    """The List-Unsubscribe value, folded between its two URIs: never an RFC 2047 word
    (RFC 2369: a list of URIs in angle brackets, which no receiver decodes)."""
    uris = (unsubscribe.https, f"mailto:{unsubscribe.mailto}")
    for uri in uris:
        if not uri.isascii() or any(char in uri for char in "<>\r\n \t"):
            raise ValueError(f"not a URI for List-Unsubscribe: {uri!r}")
    return f"<{uris[0]}>,\r\n <{uris[1]}>"


def campaign_list_id(project_name: str, campaign_id: int, domain: str) -> str:
    """`c42.project-name.<domain>`: an RFC 2919 list id, unique per campaign."""
    label = re.sub(r"[^a-z0-9-]+", "-", project_name.lower()).strip("-")[:40] or "project"
    return f"c{campaign_id}.{label}.{domain.lower().rstrip('.')}"


def campaign_feedback_id(project_id: int, campaign_id: int) -> str:
    """Google's Feedback-ID `a:b:c:SenderId`: campaign, project, kind, and us."""
    return f"c{campaign_id}:p{project_id}:campaign:postroom"


def _encoded_body(text: str) -> tuple[str, str]:
    """(Content-Transfer-Encoding, the encoded body with CRLF line ends): quoted-printable
    for mostly ASCII text, base64 when most octets would need escaping."""
    data = "\n".join(text.splitlines()).encode("utf-8") + b"\n"
    escaped = len(data.translate(None, _QP_LITERAL))
    if escaped > len(data) * _BASE64_FROM_SHARE:
        return "base64", base64mime.body_encode(data, LINE_OCTETS, "\r\n")
    # binascii's C encoder: a third of the email package's pure-Python one's time on a
    # campaign's HTML. CRLF in, CRLF out (soft breaks included); lines of at most 76.
    return "quoted-printable", binascii.b2a_qp(data.replace(b"\n", b"\r\n"), istext=True).decode(
        "ascii"
    )


def _mailbox(address: str, display_name: str) -> str:
    """`Name <local@a-labels>`: the domain as A-labels (header fields are ASCII but for an
    SMTPUTF8 local part), the name quoted or in RFC 2047 words, one line of it."""
    local, _, domain = address.rpartition("@")
    if not local or not domain or _CONTROLS.search(address) or any(c in address for c in "<> "):
        raise ValueError(f"not an address: {address!r}")
    try:
        domain = _a_labels(domain)
    except idna.IDNAError as error:
        raise ValueError(f"{address!r}: {error}") from None
    name = _one_line(display_name)
    addr_spec = f"{local}@{domain}"
    if not name:
        return addr_spec
    if not name.isascii():
        encoded = Header(name, "utf-8", MAX_FIELD_CHARS, "From").encode(linesep="\r\n")
        last_line = encoded.rpartition("\r\n")[2]
        room = MAX_FIELD_CHARS - (0 if "\r\n" in encoded else len("From: "))
        fold = "\r\n" if len(last_line) + len(addr_spec) + 3 > room else ""
        return f"{encoded}{fold} <{addr_spec}>"
    return formataddr((name, addr_spec))


@functools.lru_cache(maxsize=4096)
def _a_labels(domain: str) -> str:
    """The domain in A-labels. Cached: a campaign's audience shares a few domains, and
    the IDNA checks (pure Python, 15 µs a domain) were repeated for every message."""
    return idna.encode(domain, uts46=True).decode("ascii")


def _text_field(field_name: str, text: str) -> str:
    """An unstructured field: one line of text, folded at 78, RFC 2047 words when not ASCII."""
    charset = "us-ascii" if text.isascii() else "utf-8"
    return Header(_one_line(text), charset, MAX_FIELD_CHARS, field_name).encode(linesep="\r\n")


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
