"""A header field's text, its RFC 2047 encoded words decoded, in linear time and bounded.

Purpose: the readers test a few fields of a report (Subject, From,
Auto-Submitted, Precedence) against patterns, after decoding their encoded
words ("=?utf-8?q?Undelivered?="). The standard library's
`email.header.decode_header` takes time quadratic in the number of words (a
Subject of a few megabytes of them held a thread for a minute and a half), so
they are decoded here in one pass: at most `MAX_ENCODED_WORDS` words (later
ones stay as written), into at most `MAX_HEADER_TEXT_CHARS` characters. As
RFC 2047 section 6.2 says, white space between two encoded words is dropped.
A word whose charset is unknown or unusable decodes as UTF-8 with replacement
characters; one whose base64 or quoted-printable is broken stays as written.

Inputs: a parsed `Message` (its values already cut to limits.py's windows) and
a field name, or a field's raw text. Output: text; "" for an absent field.
Total: never raises.

RFCs: RFC 2047 (encoded words), RFC 2231 (a language after the charset),
RFC 5322 section 2.2.3 (unfolding).
"""

from __future__ import annotations

import binascii
import re
from email.message import Message

from postroom.mta.bounce.limits import MAX_ENCODED_WORDS, MAX_HEADER_TEXT_CHARS
from postroom.mta.bounce.textscan import decode_bytes

__all__ = ["decode_words", "decoded_header"]

# charset (with an optional *language), B or Q, the encoded text: no "?" and no white
# space inside (RFC 2047 section 2), each piece bounded so that a scan stays linear.
_ENCODED_WORD = re.compile(r"=\?([^?\s*]{1,64})(?:\*[^?\s]{0,64})?\?([bBqQ])\?([^?\s]{0,1000})\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def decoded_header(message: Message, name: str) -> str:
    """The field's text with encoded words decoded; "" when absent."""
    raw = message.get(name)
    return "" if raw is None else decode_words(str(raw))


def decode_words(value: str) -> str:
    """`value` unfolded, its first MAX_ENCODED_WORDS encoded words decoded, cut."""
    text = _FOLD.sub("", value)
    pieces: list[str] = []
    size = 0
    position = 0
    after_word = False
    for words, match in enumerate(_ENCODED_WORD.finditer(text), start=1):
        between = text[position : match.start()]
        if not (after_word and between.isspace()):
            pieces.append(between)
            size += len(between)
        decoded = _decode(match)
        pieces.append(decoded)
        size += len(decoded)
        position = match.end()
        after_word = True
        if words >= MAX_ENCODED_WORDS or size >= MAX_HEADER_TEXT_CHARS:
            break
    pieces.append(text[position : position + MAX_HEADER_TEXT_CHARS])
    return "".join(pieces)[:MAX_HEADER_TEXT_CHARS]


def _decode(match: re.Match[str]) -> str:
    charset, encoding, encoded = match.groups()
    try:
        if encoding in "bB":
            raw = binascii.a2b_base64(encoded + "=" * (-len(encoded) % 4))
        else:
            raw = binascii.a2b_qp(encoded, header=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII inside the word
        return match.group(0)
    return decode_bytes(raw, charset)
