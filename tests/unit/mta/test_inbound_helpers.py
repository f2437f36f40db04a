"""Pure helpers of the port 25 session: bare line endings, the pool header,
the Received header, and enhanced codes on aiosmtpd's own replies."""

from __future__ import annotations

import email.utils

import pytest

from postroom.mta.inbound.handler import (
    has_bare_line_ending,
    received_header,
    take_pool_header,
)
from postroom.mta.inbound.wire import add_enhanced_code

# -- bare CR / LF ------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"", b"Subject: x\r\n\r\nbody\r\n", b"a\r\nb\r\n\r\n", b"no line ending at all"],
)
def test_crlf_only_content_is_clean(content: bytes) -> None:
    assert not has_bare_line_ending(content)


@pytest.mark.parametrize(
    "content",
    [
        b"Subject: x\r\n\r\nbody\n",  # bare LF
        b"Subject: x\r\n\r\nbody\rmore\r\n",  # bare CR
        b"Subject: x\r\n\r\nbody\n.\r\n",  # the SMTP smuggling sequence <LF>.<CR><LF>
        b"Subject: x\r\n\r\nbody\r\n.\n",
        b"\n\r",  # LF then CR: counts could balance, pairs do not
        b"a\r\r\n",
        b"a\r\n\n",
    ],
)
def test_bare_cr_or_lf_is_found(content: bytes) -> None:
    assert has_bare_line_ending(content)


# -- X-Postroom-Pool ------------------------------------------------------------------


def test_no_pool_header_leaves_the_headers_alone() -> None:
    headers = b"From: a@b.test\r\nSubject: hi\r\n"
    assert take_pool_header(headers) == (None, headers)


def test_pool_header_is_taken_and_removed() -> None:
    headers = b"From: a@b.test\r\nX-Postroom-Pool: mailings\r\nSubject: hi\r\n"
    assert take_pool_header(headers) == ("mailings", b"From: a@b.test\r\nSubject: hi\r\n")


def test_pool_header_as_first_and_last_header() -> None:
    assert take_pool_header(b"X-Postroom-Pool: a\r\nSubject: s\r\n") == ("a", b"Subject: s\r\n")
    assert take_pool_header(b"Subject: s\r\nX-Postroom-Pool: a\r\n") == ("a", b"Subject: s\r\n")


def test_pool_header_name_is_case_insensitive_and_value_trimmed() -> None:
    headers = b"x-postroom-pool:\t  transactional \t\r\nSubject: hi\r\n"
    assert take_pool_header(headers) == ("transactional", b"Subject: hi\r\n")
    assert take_pool_header(b"X-POSTROOM-POOL:bulk\r\n") == ("bulk", b"")


def test_folded_pool_header_is_removed_whole() -> None:
    headers = b"From: a@b.test\r\nX-Postroom-Pool:\r\n mailings\r\nSubject: hi\r\n"
    value, rest = take_pool_header(headers)
    assert value == "mailings"
    assert rest == b"From: a@b.test\r\nSubject: hi\r\n"


def test_several_pool_headers_first_wins_all_are_removed() -> None:
    headers = (
        b"X-Postroom-Pool: first\r\nFrom: a@b.test\r\n"
        b"X-Postroom-Pool: second\r\nx-postroom-pool: third\r\nSubject: hi\r\n"
    )
    value, rest = take_pool_header(headers)
    assert value == "first"
    assert rest == b"From: a@b.test\r\nSubject: hi\r\n"


@pytest.mark.parametrize(
    "headers",
    [
        b"X-Postroom-Pools: a\r\n",
        b"Old-X-Postroom-Pool: a\r\n",
        b"Subject: about X-Postroom-Pool: a\r\n",
        b"Subject: folded\r\n X-Postroom-Pool: a\r\n",
    ],
)
def test_only_a_header_of_that_exact_name_counts(headers: bytes) -> None:
    assert take_pool_header(headers) == (None, headers)


def test_the_header_is_only_looked_for_in_the_header_block() -> None:
    # The session splits the message at the blank line and passes only the headers;
    # a pool header in the body is message text and stays.
    from postroom.mta.inbound.handler import _header_end

    content = b"Subject: hi\r\n\r\nX-Postroom-Pool: mailings\r\n"
    end = _header_end(content)
    headers, body = content[:end], content[end:]
    assert take_pool_header(headers) == (None, b"Subject: hi\r\n")
    assert body == b"\r\nX-Postroom-Pool: mailings\r\n"
    # A message without a body, and one without headers.
    assert _header_end(b"Subject: hi\r\n") == len(b"Subject: hi\r\n")
    assert _header_end(b"\r\nX-Postroom-Pool: a\r\n") == 0


# -- Received --------------------------------------------------------------------------


def _received(**overrides: object) -> str:
    arguments: dict[str, object] = {
        "helo": "client.example.test",
        "client_ip": "192.0.2.7",
        "hostname": "mx.example.com",
        "queue_id": "01JD6Z8K4M7Q2XRT",
        "recipient": "rcpt@example.com",
        "esmtp": True,
    }
    arguments.update(overrides)
    return received_header(**arguments).decode()  # type: ignore[arg-type]


def test_received_header_shape() -> None:
    text = _received()
    assert text.startswith(
        "Received: from client.example.test ([192.0.2.7])\r\n"
        "\tby mx.example.com (postroom) with ESMTP id 01JD6Z8K4M7Q2XRT\r\n"
        "\tfor <rcpt@example.com>;\r\n\t"
    )
    assert text.endswith("\r\n")
    date = text.rsplit("\t", 1)[1].strip()
    assert email.utils.parsedate_to_datetime(date).utcoffset() is not None


def test_received_header_ipv6_client_is_an_ipv6_literal() -> None:
    text = _received(client_ip="2001:db8::7")
    assert text.startswith("Received: from client.example.test ([IPv6:2001:db8::7])\r\n")


def test_received_header_plain_smtp() -> None:
    assert " with SMTP id " in _received(esmtp=False)


def test_received_header_names_the_recipient_only_when_there_is_one() -> None:
    assert "for <" not in _received(recipient=None)
    assert _received(recipient=None).count("\r\n") == 3  # from, by, date


def test_received_header_sanitises_the_helo() -> None:
    text = _received(helo="evil)\r\nX-Injected: yes (\\x\x00\x7f")
    lines = text.split("\r\n")
    assert not any(line.startswith("X-Injected") for line in lines)
    assert all(line.startswith("\t") for line in lines[1:-1])
    assert lines[0] == "Received: from evilX-Injected: yes x ([192.0.2.7])"


def test_received_header_truncates_a_long_helo() -> None:
    text = _received(helo="h" * 1000)
    assert "h" * 255 + " (" in text
    assert "h" * 256 not in text


# -- enhanced codes on aiosmtpd's replies ------------------------------------------------


@pytest.mark.parametrize(
    ("bare", "coded"),
    [
        (b"503 Error: need MAIL command", b"503 5.5.1 Error: need MAIL command"),
        (b"500 Error: bad syntax", b"500 5.5.2 Error: bad syntax"),
        (b"501 Syntax: MAIL FROM: <address>", b"501 5.5.4 Syntax: MAIL FROM: <address>"),
        (b"502 Command not implemented", b"502 5.5.1 Command not implemented"),
        (b"250 OK", b"250 2.0.0 OK"),
        (b"221 Bye", b"221 2.0.0 Bye"),
        (b"252 Cannot VRFY user", b"252 2.5.0 Cannot VRFY user"),
        (b"421 Too many errors", b"421 4.3.0 Too many errors"),
        (
            b"530 Must issue a STARTTLS command first",
            b"530 5.7.0 Must issue a STARTTLS command first",
        ),
        (b"554 Transaction failed", b"554 5.0.0 Transaction failed"),
        (b"214-Help text", b"214-2.0.0 Help text"),
        (b"250", b"250 2.0.0 "),
    ],
)
def test_bare_replies_gain_an_enhanced_code(bare: bytes, coded: bytes) -> None:
    assert add_enhanced_code(bare) == coded


@pytest.mark.parametrize(
    "reply",
    [
        b"250 2.1.0 Ok",
        b"550 5.1.1 <a@b.test>: no such user",
        b"451 4.3.0 Queue write failed",
        b"250-2.0.0 first line",
        b"553 5.7.1 refused",
    ],
)
def test_replies_with_codes_are_untouched(reply: bytes) -> None:
    assert add_enhanced_code(reply) == reply


@pytest.mark.parametrize(
    "reply", [b"354 End data with <CR><LF>.<CR><LF>", b"334 VXNlcm5hbWU6", b"334 ", b"", b"25"]
)
def test_3xx_and_short_replies_are_untouched(reply: bytes) -> None:
    assert add_enhanced_code(reply) == reply


def test_unknown_codes_are_left_as_they_are() -> None:
    assert add_enhanced_code(b"599 Something new") == b"599 Something new"


def test_rewrites_replace_texts_that_say_too_little() -> None:
    assert add_enhanced_code(b"552 Error: Too much mail data") == (
        b"552 5.3.4 Message size exceeds fixed maximum message size"
    )
    assert add_enhanced_code(b"500 Line too long (see RFC5321 4.5.3.1.6)") == (
        b"500 5.5.2 Line too long (RFC 5321 4.5.3.1.6 allows 1000 octets)"
    )


def test_text_that_merely_starts_like_a_code_still_gets_one() -> None:
    # "2.0" is not an enhanced code: the reply still needs one.
    assert add_enhanced_code(b"250 2.0 ready") == b"250 2.0.0 2.0 ready"
