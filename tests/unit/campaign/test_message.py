"""The campaign message: headers, footer, encodings, line lengths."""

from __future__ import annotations

import email
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage

from tests.fakes.campaign_mail import SHOP_URL, eml, links, rendered

from postroom.campaign.message import build_campaign_message, finished_content
from postroom.campaign.render import RenderedContent
from postroom.campaign.unsubscribe import UnsubscribeLinks


def parsed(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def build(content: RenderedContent, **overrides: object) -> bytes:
    arguments: dict[str, object] = {
        "from_name": "Acme",
        "from_address": "news@shop.test",
        "to_address": "zoe@dest.test",
        "message_id": "<m1@shop.test>",
        "date": 0.0,
        "unsubscribe": links(),
        "list_id": "c42.acme.relay.postroom.test",
        "feedback_id": "c42:p1:campaign:postroom",
    }
    arguments.update(overrides)
    return build_campaign_message(content, **arguments)  # type: ignore[arg-type]


def test_the_headers_of_a_campaign_message() -> None:
    message = parsed(eml())
    unsubscribe = links()
    # Folded at 78 characters like every long field: compare unfolded.
    unfolded = " ".join(str(message["List-Unsubscribe"]).split())
    assert unfolded == f"<{unsubscribe.https}>, <mailto:{unsubscribe.mailto}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Id"] == "<c42.acme.relay.postroom.test>"
    assert message["Feedback-ID"] == "c42:p1:campaign:postroom"
    assert message["Precedence"] == "bulk"
    assert message["Message-ID"] == "<c42.2@shop.test>"
    assert message["MIME-Version"] == "1.0"
    assert message["Date"] == "Thu, 01 Jan 2026 00:00:00 +0000"
    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]


def test_list_unsubscribe_carries_its_uris_as_written_even_on_a_long_host() -> None:
    # A mailto: longer than a folded line stays a URI on the wire: a receiver reads
    # RFC 2369's <URI> list literally, it never decodes an RFC 2047 word there.
    token = "a" * 39
    long_links = UnsubscribeLinks(
        https=f"https://links.a-rather-long-public-host-name.example.test/u/{token}",
        mailto=f"unsubscribe+{token}@bounces.a-rather-long-appliance-host-name.example.test",
    )
    data = build(rendered(), unsubscribe=long_links)
    assert (
        f"\r\nList-Unsubscribe: <{long_links.https}>,\r\n <mailto:{long_links.mailto}>\r\n".encode()
        in data
    )
    header_block = data.partition(b"\r\n\r\n")[0]
    unsubscribe_field = header_block.partition(b"\r\nList-Unsubscribe:")[2]
    assert b"=?" not in unsubscribe_field


def test_non_ascii_subject_and_display_name_are_rfc_2047_words() -> None:
    data = build(rendered(), from_name="Магазин «Акме»")
    head = data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert b"=?utf-8?" in head
    message = parsed(data)
    assert str(message["Subject"]) == "Привет, Zoë: весна"
    assert message["From"].addresses[0].display_name == "Магазин «Акме»"
    assert message["To"].addresses[0].addr_spec == "zoe@dest.test"


def test_an_idn_recipient_domain_is_written_in_a_labels() -> None:
    message = parsed(build(rendered(), to_address="zoe@bücher.test"))
    assert message["To"].addresses[0].domain == "xn--bcher-kva.test"


def test_test_copies_are_marked_in_the_subject() -> None:
    assert str(parsed(eml(test=True))["Subject"]).startswith("[TEST] Привет")


def test_lines_end_in_crlf_and_stay_within_998_octets() -> None:
    long_line = "word " * 2000 + "x" * 3000
    content = RenderedContent("s", f"<p>{long_line}</p>", long_line)
    data = build(content)
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def test_quoted_printable_for_mostly_ascii_base64_for_mostly_not() -> None:
    latin = RenderedContent("s", "<p>Hello there, a café</p>", "Hello there, a café")
    cyrillic = RenderedContent("s", "<p>" + "Привет мир " * 50 + "</p>", "Привет мир " * 50)
    for content, expected in ((latin, "quoted-printable"), (cyrillic, "base64")):
        message = parsed(build(content))
        encodings = {part["Content-Transfer-Encoding"] for part in message.iter_parts()}
        assert encodings == {expected}
        text = message.get_body(("plain",))
        assert text is not None and content.text.strip() in text.get_content()


def test_quoted_printable_parts_decode_to_the_text_in_lines_of_at_most_76() -> None:
    # What QP must escape or break: "=", trailing spaces and tabs, long lines, a lone
    # dot, "From " at a line start, a few UTF-8 letters among ASCII.
    text = "a=b  \n\t tab\t\n.\nFrom here\n" + "x" * 75 + "\n" + "y" * 200 + " café=é\n"
    message = parsed(build(RenderedContent("s", "<p>hi</p>", text)))
    plain = message.get_body(("plain",))
    assert plain is not None and plain["Content-Transfer-Encoding"] == "quoted-printable"
    raw = plain.get_payload(decode=False)
    assert max(len(line) for line in raw.split("\r\n")) <= 76
    decoded = plain.get_payload(decode=True).decode("utf-8").replace("\r\n", "\n")
    assert decoded.startswith(text.rstrip("\n"))


def test_the_footer_is_always_there_and_outside_what_the_template_left_open() -> None:
    unclosed = RenderedContent("s", '<div style="display:none"><p>hidden', "body")
    finished = finished_content(unclosed, unsubscribe=links(), from_name="Acme")
    footer = finished.html.index('class="postroom-footer"')
    assert finished.html.index("</div>") < footer < finished.html.index("</body>")
    assert links().https in finished.html
    assert finished.text.endswith(f"Unsubscribe: {links().https}\n")


def test_css_is_inlined_and_style_blocks_and_remote_sheets_are_gone() -> None:
    content = RenderedContent(
        "s",
        '<html><head><link rel="stylesheet" href="https://evil.test/x.css"><style>'
        "p { color: #ff0000 } @media (max-width: 600px) { .f { display: none } }</style>"
        "</head><body><p>hi</p></body></html>",
        "hi",
    )
    html = finished_content(content, unsubscribe=links(), from_name="A").html
    assert '<p style="color: #ff0000;">hi</p>' in html
    assert "<style" not in html and "evil.test" not in html and "@media" not in html


def test_buttons_and_the_unsubscribe_link_are_in_both_parts() -> None:
    message = parsed(eml())
    for subtype in ("plain", "html"):
        body = message.get_body((subtype,))
        assert body is not None
        text = body.get_content()
        assert links().https in text
        assert (SHOP_URL if subtype == "plain" else SHOP_URL.replace("&", "&amp;")) in text


def test_a_line_break_in_the_display_name_cannot_add_a_header() -> None:
    data = build(rendered(), from_name="Acme\r\nBcc: victim@evil.test")
    assert b"\r\nBcc:" not in data
    assert parsed(data)["From"].addresses[0].display_name == "Acme Bcc: victim@evil.test"


def test_long_subjects_and_names_fold_and_read_back_whole() -> None:
    subject = "Весенняя распродажа: " + "скидки до 50 % " * 12 + "and plain words " * 8
    content = RenderedContent(subject=subject, html="<p>x</p>", text="x")
    data = build(content, from_name="Ünal und Söhne, Großhandel für Gärten " * 3)
    header_block = data.partition(b"\r\n\r\n")[0]
    folded = [line for line in header_block.split(b"\r\n") if b"://" not in line]
    assert all(len(line) <= 78 for line in folded if b"mailto:" not in line)  # URIs are atoms
    message = parsed(data)
    assert str(message["Subject"]) == " ".join(subject.split())
    # RFC 2047 decoding of the raw field (the email package's address parser puts a
    # space between adjacent encoded words of a phrase, with its own output too).
    raw_from = header_block.split(b"\r\nTo:")[0].removeprefix(b"From: ").decode("ascii")
    decoded = str(make_header(decode_header(raw_from.replace("\r\n", ""))))
    expected = " ".join(("Ünal und Söhne, Großhandel für Gärten " * 3).split())
    assert decoded == f"{expected} <news@shop.test>"


def test_an_ascii_name_with_specials_is_quoted() -> None:
    message = parsed(build(rendered(), from_name='Smith, "Ann" & Co <sales>'))
    assert message["From"].addresses[0].display_name == 'Smith, "Ann" & Co <sales>'
    assert message["From"].addresses[0].addr_spec == "news@shop.test"
