"""The pieces that bound the bounce parser's work: the MIME reader's caps and windows, the
linear RFC 2047 decoder, the one-pass HTML tag stripper (limits.py, mime.py, headers.py,
textscan.py). The attacks they answer are in test_bounce_hostile.py.
"""

from __future__ import annotations

import html
import random
import re
import time
from email.header import decode_header, make_header

import pytest

from postroom.mta.bounce.headers import decode_words
from postroom.mta.bounce.limits import (
    MAX_ENCODED_WORDS,
    MAX_FIELD_CHARS,
    MAX_HEADER_TEXT_CHARS,
    MAX_MIME_DEPTH,
    MAX_MIME_PARAMS,
    Budget,
    CapExceeded,
)
from postroom.mta.bounce.mime import MimeReader
from postroom.mta.bounce.textscan import part_text

CPU_BUDGET_S = 1.0


def test_mime_depth_up_to_the_cap_is_read() -> None:
    def nested(depth: int) -> bytes:
        wrapper = b"".join(
            b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i)
            for i in range(depth)
        )
        return wrapper + b"Content-Type: text/plain\n\nhello\n"

    deepest = MimeReader(Budget.starting_now(10)).read(nested(MAX_MIME_DEPTH))
    leaf = deepest
    for _ in range(MAX_MIME_DEPTH):
        leaf = leaf.get_payload()[0]
    assert part_text(leaf) == "hello"
    with pytest.raises(CapExceeded, match="MIME depth"):
        MimeReader(Budget.starting_now(10)).read(nested(MAX_MIME_DEPTH + 1))


def test_long_fields_are_cut_and_mime_parameters_bounded() -> None:
    message = MimeReader(Budget.starting_now(10)).read(
        b"Subject: "
        + b"a" * 100_000
        + b"\nContent-Type: text/plain; charset=utf-8"
        + b"; x=1" * 1000
        + b"\n\nhi\n"
    )
    assert len(message["Subject"]) == MAX_FIELD_CHARS
    assert message.get_content_charset() == "utf-8"
    assert message["Content-Type"].count(";") == MAX_MIME_PARAMS


# --- RFC 2047 words, decoded here in linear time ---------------------------------------


def _stdlib_decoded(value: str) -> str:
    return str(make_header(decode_header(value)))


@pytest.mark.parametrize(
    "value",
    [
        "Undelivered Mail Returned to Sender",
        "=?utf-8?q?Undelivered_Mail?= Returned",
        "=?UTF-8?B?VW56dXN0ZWxsYmFy?= =?UTF-8?Q?=3A_R=C3=BCckmeldung?=",
        "=?iso-8859-1?q?Abwesenheitsnotiz?= : Urlaub",
        "Re: =?iso-2022-jp?b?GyRCSVQ6XxsoQg==?=",
    ],
)
def test_encoded_words_decode_as_the_standard_library_does(value: str) -> None:
    assert decode_words(value) == _stdlib_decoded(value)


def test_encoded_words_are_decoded_in_linear_time_within_the_caps() -> None:
    value = "=?utf-8?q?abc?= " * 200_000  # 3.2 MB: the standard library takes minutes
    started = time.thread_time()
    decoded = decode_words(value)
    assert time.thread_time() - started < CPU_BUDGET_S
    assert len(decoded) <= MAX_HEADER_TEXT_CHARS
    assert decoded.startswith("abc" * MAX_ENCODED_WORDS + " =?utf-8?q?abc?=")


def test_words_the_standard_library_cannot_decode() -> None:
    assert decode_words("=?utf-8?b?QUJDR?= ok") == "=?utf-8?b?QUJDR?= ok"  # broken base64
    assert decode_words("=?no-such-charset?q?caf=C3=A9?=") == "café"  # read as UTF-8
    assert decode_words("=?utf-8*en?q?Out_of_office?=") == "Out of office"  # RFC 2231 language


# --- The HTML tag stripper gives what the regular expression it replaced gave -----------

_OLD_TAGS = re.compile(r"<(?:script|style)\b.*?</(?:script|style)>|<[^>]{0,2000}>", re.S | re.I)


@pytest.mark.parametrize("seed", range(40))
def test_tags_are_stripped_as_before(seed: int) -> None:
    rng = random.Random(seed)
    pieces = ["<", ">", "<b>", "<script>", "</script>", "<STYLE x=1>", "</style>", "text ", "\n"]
    text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 60)))
    if seed % 5 == 0:
        text += "<" + "x" * 2100 + ">"  # a "tag" longer than 2000: not a tag
    message = MimeReader(Budget.starting_now(10)).read(
        b"Content-Type: text/html\n\n" + text.encode()
    )
    assert part_text(message) == html.unescape(_OLD_TAGS.sub(" ", text))
