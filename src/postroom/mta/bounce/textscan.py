"""Text helpers for inbound bounces: addresses, SMTP codes, part text, the original's cut.

Purpose: the small, shared pieces every bounce reader needs — find e-mail
addresses in prose, find the SMTP reply code and RFC 3463 status in a
diagnostic, decode a MIME part to text whatever its declared charset, and cut
a plain-text bounce where the returned copy of the original message begins.

Inputs: `email.message.Message` parts and strings from an untrusted bounce.
Outputs: plain strings and tuples. Every function is total: malformed input
gives an empty result, never an exception. Work is linear in the text, which
the callers cut to limits.py's windows (a part's text to `MAX_PART_CHARS`):
no pattern here can backtrack over the same characters twice, tags are
stripped in one pass, and the search for an address before a returned header
block is made once, not once per block.

RFCs: RFC 3463 (status codes), RFC 5321 (reply codes), RFC 2045-2047 (MIME).
"""

from __future__ import annotations

import html
import re
from email.message import Message

from postroom.mta.bounce.limits import MAX_PART_CHARS

__all__ = [
    "ADDRESS",
    "addresses_in",
    "cut_original",
    "decode_bytes",
    "dequote",
    "find_codes",
    "normalise_address",
    "part_text",
    "split_original",
    "structured_text",
]

# Deliberately looser than RFC 5322: bounces quote addresses as they met them. A local
# part may not open with an apostrophe: prose quotes addresses in single quotes far
# more often than a mailbox name begins with one.
ADDRESS = re.compile(
    r"(?<![\w.+=\-/])([\w.!#$%&*+/=?^`{|}~\-][\w.!#$%&'*+/=?^`{|}~\-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9\-]{1,62})",
)
_PAIR = re.compile(r"(?<![\w.])([245]\d\d)[ \-]#?([245]\.\d{1,3}\.\d{1,3})(?![\w.]*\d)")
_STATUS = re.compile(r"(?<![\w.])#?([245]\.\d{1,3}\.\d{1,3})(?![.\d]*\d)")
_REPLY = re.compile(r"(?:^|[\s:;(\[<>\"'])([245][0-5]\d)(?=[ \-][^\d]|[ \-]?$|\])", re.MULTILINE)
_QUOTE = re.compile(r"^> ?")
_LINE_BREAK_TAGS = re.compile(r"(?i)<br\s*/?>|</p>|</div>|</tr>")
_SCRIPT_OPEN = re.compile(r"<(?:script|style)\b", re.I)
_SCRIPT_CLOSE = re.compile(r"</(?:script|style)>", re.I)
# A "<" opens a tag when a ">" follows within this many characters.
_MAX_TAG_CHARS = 2000
# Mislabelled Japanese and Windows text is common in bounces; the superset decodes both.
_CHARSET_ALIASES = {"iso-2022-jp": "iso2022_jp_ext", "shift_jis": "cp932", "us-ascii": "utf-8"}

_ORIGINAL_MARKERS = re.compile(
    r"^[ \t>]*+(?:-{2,}+|={2,}+|\*{2,}+)?[ \t]*+(?:"
    r"below this line is a copy of the message"
    r"|this is a copy of the (?:original )?message"
    r"|(?:the )?original message (?:follows|headers|was)?[ \t]*+(?:-|=|:|$)"
    r"|original message (?:header|text)s?"
    r"|(?:returned|undelivered|unsent|original|bounced) (?:mail|message|e-?mail)\b"
    r"|message (?:text|headers?) follows"
    r"|(?:header|headers) of (?:the )?(?:original|returned) message"
    r"|start of (?:returned|original) message"
    r"|content-type: message/rfc822"
    r"|the headers of your message"
    r")",
    re.IGNORECASE | re.MULTILINE,
)
_HEADER_LINE = re.compile(
    r"^(?:Received|Return-Path|Message-I[Dd]|DKIM-Signature|MIME-Version|"
    r"Delivered-To|X-[\w\-]+|From|To|Subject|Date|Content-Type):[ \t]"
)


def normalise_address(raw: str) -> str:
    """Strip the wrappers bounces put around addresses (<>, quotes, mailto:, rfc822;)."""
    text = raw.strip().strip("<>\"'()[],;.").strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    found = ADDRESS.search(text)
    return found.group(1).strip(".") if found else ""


def addresses_in(text: str) -> list[tuple[int, str]]:
    """Every address in text with its offset, in order (duplicates kept)."""
    return [(match.start(1), match.group(1).rstrip(".")) for match in ADDRESS.finditer(text)]


def find_codes(text: str) -> tuple[str, str]:
    """(reply code, RFC 3463 status) found in a diagnostic; "" for what is absent.

    A reply followed by its enhanced code ("550 5.1.1", "550-5.1.1") is the best
    evidence; otherwise the first standalone of each, the reply preferring the
    status's class so that an unrelated number does not disagree with it.
    """
    pair = _PAIR.search(text)
    if pair:
        return pair.group(1), pair.group(2)
    status_match = _STATUS.search(text)
    status = status_match.group(1) if status_match else ""
    replies = [match.group(1) for match in _REPLY.finditer(text)]
    if status:
        replies = [code for code in replies if code[0] == status[0]] or []
    return (replies[0] if replies else ""), status


def part_text(part: Message) -> str:
    """A leaf part's text, decoded (transfer encoding and charset), tags stripped from HTML."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # a broken part must not stop the rest; noqa-free on purpose
        payload = None
    if payload is None:
        raw = part.get_payload()
        text = raw if isinstance(raw, str) else ""
    else:
        text = decode_bytes(payload[: MAX_PART_CHARS * 4], _part_charset(part))
    text = text[:MAX_PART_CHARS].replace("\r\n", "\n").replace("\r", "\n")
    if part.get_content_type() == "text/html":
        text = _html_text(text)
    return text


def decode_bytes(raw: bytes, charset: str) -> str:
    """`raw` in its declared charset, else as UTF-8; bad bytes become U+FFFD."""
    name = _CHARSET_ALIASES.get(charset.lower(), charset)
    try:
        return raw.decode(name, errors="replace")
    except (LookupError, ValueError):  # unknown, not a text codec, or refusing "replace"
        return raw.decode("utf-8", errors="replace")


def _html_text(text: str) -> str:
    """The text of an HTML part: line-breaking tags as newlines, tags and scripts dropped."""
    stripped = _strip_tags(_LINE_BREAK_TAGS.sub("\n", text))
    try:
        return html.unescape(stripped)
    except ValueError:  # a decimal character reference too long for int(): keep the text
        return stripped


def _strip_tags(text: str) -> str:
    """Each script or style element, and each tag, replaced by a space, in one pass.

    A `<script` or `<style` runs to the next `</script>` or `</style>`; any other
    `<` opens a tag when a `>` follows within _MAX_TAG_CHARS, and is kept when none
    does. Both "next" positions only move forward, so the work is linear (a
    regular expression with a lazy `.*?` rescanned the rest of the text for every
    unclosed `<script`).
    """
    closes = [(found.start(), found.end()) for found in _SCRIPT_CLOSE.finditer(text)]
    next_close = 0
    next_gt = text.find(">")
    pieces: list[str] = []
    kept_from = cursor = 0
    while (lt := text.find("<", cursor)) >= 0:
        end = -1
        opening = _SCRIPT_OPEN.match(text, lt)
        if opening is not None:
            while next_close < len(closes) and closes[next_close][0] < opening.end():
                next_close += 1
            if next_close < len(closes):
                end = closes[next_close][1]
        if end < 0:
            if 0 <= next_gt < lt:
                next_gt = text.find(">", lt)
            if next_gt >= 0 and next_gt - lt - 1 <= _MAX_TAG_CHARS:
                end = next_gt + 1
        if end < 0:
            cursor = lt + 1
            continue
        pieces.append(text[kept_from:lt])
        pieces.append(" ")
        kept_from = cursor = end
    pieces.append(text[kept_from:])
    return "".join(pieces)


def structured_text(part: Message) -> str:
    """The field text of a message/delivery-status or message/feedback-report part.

    The email package parses such bodies as header blocks (a list of Message
    objects); they are written back as "Name: value" lines, groups separated by
    a blank line, so that one reader handles both shapes.
    """
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = []
        for block in payload[:1000]:
            if isinstance(block, Message):
                blocks.append("\n".join(f"{name}: {value}" for name, value in block.items()))
                inner = block.get_payload()
                if isinstance(inner, str) and inner.strip():
                    blocks.append(inner)
        return "\n\n".join(blocks)[:MAX_PART_CHARS]
    return part_text(part)


def _part_charset(part: Message) -> str:
    try:
        return part.get_content_charset() or "utf-8"
    except Exception:  # a malformed RFC 2231 charset parameter: read the part as UTF-8
        return "utf-8"


def cut_original(text: str) -> str:
    """The part of a plain-text bounce before its returned copy of the original message."""
    return split_original(text)[0]


def split_original(text: str) -> tuple[str, str]:
    """(report, returned copy) of a plain-text bounce; the copy is "" when none is found."""
    marker = _ORIGINAL_MARKERS.search(text)
    end = marker.start() if marker else len(text)
    # A header block (three header lines in a row after a blank line) is the copy too.
    # Only after an address: a forwarded bounce opens with the forwarded message's headers.
    # The first address is searched for once, where the first header block begins (an
    # address cannot span the line break before a block, so "one starts before the
    # block" is "one lies before it").
    lines = text[:end].split("\n")
    offset = 0
    first_address: int | None = None
    for index, line in enumerate(lines):
        if (
            index > 0
            and not lines[index - 1].strip()
            and _HEADER_LINE.match(line)
            and sum(1 for following in lines[index : index + 3] if _looks_header(following)) == 3
        ):
            if first_address is None:
                found = ADDRESS.search(text, 0, end)
                first_address = found.start() if found else end
            if first_address < offset:
                return text[:offset], text[offset:]
        offset += len(line) + 1
    if not marker:
        return text, ""
    # Skip the marker line itself: the copy starts on the next one.
    rest_start = text.find("\n", marker.start())
    return text[:end], text[rest_start + 1 :] if rest_start >= 0 else ""


def dequote(text: str) -> str:
    """Remove "> " quoting when most lines carry it (a bounce forwarded inline)."""
    lines = text.split("\n")
    filled = [line for line in lines if line.strip()]
    if not filled or sum(line.startswith(">") for line in filled) * 2 < len(filled):
        return text
    return "\n".join(_QUOTE.sub("", line, count=1) for line in lines)


def _looks_header(line: str) -> bool:
    return bool(re.match(r"^[A-Za-z][\w\-]{0,40}:[ \t]|^[ \t]+\S", line))
