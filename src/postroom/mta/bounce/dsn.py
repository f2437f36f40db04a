"""Delivery status notifications (DSNs) to the sender of a message: bytes out.

`build_dsn(request)` renders one RFC 3464 report: a multipart/report
(RFC 6522) with report-type=delivery-status and three parts:

1. text/plain, for people: what happened to each recipient, with the remote reply;
2. message/delivery-status: the per-message fields (Original-Envelope-Id,
   Reporting-MTA, Arrival-Date, X-Postroom-Queue-ID) then one group per
   recipient (Original-Recipient, Final-Recipient, Action, Status, Remote-MTA,
   Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until);
3. the original message: its headers as text/rfc822-headers (RET=HDRS, the
   default), or the whole of it as message/rfc822 when the sender asked for
   RET=FULL and the message is small and 7-bit clean (RFC 3461 section 4.3
   lets us return headers only).

The DSN carries `Auto-Submitted: auto-replied` (RFC 3834) so that automatic
responders do not answer it, and goes To: the original envelope sender; a DSN
to the null sender is a bug, refused with ValueError.

The output uses CRLF line endings, no line longer than 998 octets (long field
values are folded at spaces, and split where a word alone is too long) and is
7-bit: text that is not ASCII is escaped in delivery-status fields (RFC 6533
`\\x{HEX}`, and the "utf-8" address type for non-ASCII addresses), and the
original headers are quoted-printable when they hold 8-bit bytes or overlong
lines. The one exception is the To: header when the sender's own address is
not ASCII (RFC 6532): such a DSN can only travel over SMTPUTF8 anyway.

Untrusted input: the original message and the remote diagnostics come from
outside. They are never interpreted; control characters are folded out of
every field so that a remote reply cannot inject fields or MIME structure.
"""

from __future__ import annotations

import binascii
import re
import secrets
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

__all__ = [
    "ACTIONS",
    "DEFAULT_FULL_RETURN_LIMIT_BYTES",
    "DsnRequest",
    "RecipientStatus",
    "build_dsn",
]

# RFC 3464 section 2.3.3; the status class each action may carry. "failed"
# takes 4.x.x too: a message given up after its retry time (e.g. 4.4.7) failed
# because a transient condition persisted (RFC 3463 section 2).
ACTIONS: dict[str, tuple[str, ...]] = {
    "failed": ("4", "5"),
    "delayed": ("4",),
    "delivered": ("2",),
    "relayed": ("2",),
    "expanded": ("2",),
}
RETURN_CONTENTS = ("headers", "full")
# Postfix's bounce_size_limit: a larger original comes back as headers only.
DEFAULT_FULL_RETURN_LIMIT_BYTES = 50_000

CRLF = "\r\n"
_FOLD_WIDTH = 78
# Well below RFC 5322's 998, leaving room for a field name before a long word.
_HARD_WIDTH = 900
_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")
_DIAGNOSTIC_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*;")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]+")
# Field values are one line; runs of spaces and controls become one space.
_BLANKS = re.compile(r"[\x00-\x20\x7f]+")
_ADDRESS_TYPE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9-]*)\s*;(.*)$", re.S)
_SAFE_ID = re.compile(r"[^A-Za-z0-9.\-]")
# Characters an RFC 6533 utf-8-addr-xtext may hold as themselves (QCHAR).
_QCHAR = frozenset(chr(c) for c in range(0x21, 0x7F)) - {"\\", "+", "="}
_HEADERS_END = re.compile(rb"\r?\n\r?\n")
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """What happened to one recipient; becomes one per-recipient group of the report.

    `diagnostic` is already typed ("smtp; 550 5.1.1 user unknown", see
    `Outcome.diagnostic`). `original_recipient` is the ORCPT value, decoded
    from xtext: either an address or "type;address". Naive datetimes are UTC.
    """

    final_recipient: str
    action: str
    status: str
    diagnostic: str = ""
    remote_mta: str = ""
    original_recipient: str = ""
    last_attempt: datetime | None = None
    will_retry_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class DsnRequest:
    """Everything a DSN says; `recipients` are those this DSN reports on (not all of them)."""

    reporting_mta: str
    queue_id: str
    original_sender: str
    arrival_date: datetime
    recipients: tuple[RecipientStatus, ...]
    original_message: bytes
    return_content: str = "headers"
    postmaster: str = ""
    envelope_id: str = ""


def build_dsn(
    request: DsnRequest,
    *,
    now: datetime | None = None,
    message_id_domain: str | None = None,
    full_return_limit_bytes: int = DEFAULT_FULL_RETURN_LIMIT_BYTES,
) -> bytes:
    """The DSN for `request` as wire bytes (CRLF), ready for the outbound queue.

    Raises ValueError for a DSN that must not be sent: to the null sender,
    without recipients, or with an action/status pair that RFC 3464 forbids.
    """
    _check(request)
    now = _aware(now or datetime.now(UTC))
    host = _field_text(request.reporting_mta)
    postmaster = _field_text(request.postmaster) or f"MAILER-DAEMON@{host}"
    actions = {recipient.action for recipient in request.recipients}
    if "failed" in actions:
        subject = "Undelivered Mail Returned to Sender"
    elif "delayed" in actions:
        subject = "Delivery Status Notification (Delay)"
    else:
        subject = "Successful Mail Delivery Report"

    original_part, returned_in_full = _original_part(request, full_return_limit_bytes)
    human_part = _human_part(request, host, returned_in_full)
    status_part = _delivery_status_part(request)
    parts = [human_part, status_part, original_part]
    boundary = _boundary(parts)

    token = secrets.token_hex(6)
    stamp = now.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    queue_id = _SAFE_ID.sub("", request.queue_id) or "dsn"
    message_id = f"<{stamp}.{queue_id}.{token}@{message_id_domain or host}>"
    headers = [
        f"From: Mail Delivery System <{postmaster}>",
        f"To: <{request.original_sender}>",
        f"Subject: {subject}",
        f"Date: {format_datetime(now)}",
        f"Message-ID: {message_id}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f' boundary="{boundary}"',
        "Content-Transfer-Encoding: 7bit",
    ]
    out = [CRLF.join(headers).encode(), b"\r\n\r\n"]
    out.append(b"This is a MIME-encapsulated message.\r\n")
    for part in parts:
        out += [b"\r\n--", boundary.encode(), b"\r\n", part]
    out += [b"\r\n--", boundary.encode(), b"--\r\n"]
    return b"".join(out)


def _check(request: DsnRequest) -> None:
    if not request.original_sender:
        raise ValueError("a DSN to the null sender is never sent (RFC 3461 section 6.2)")
    if _CONTROLS.search(request.original_sender):
        raise ValueError(f"not an envelope address: {request.original_sender!r}")
    if not request.recipients:
        raise ValueError("a DSN reports on at least one recipient")
    if request.return_content not in RETURN_CONTENTS:
        raise ValueError(f"return_content must be one of {RETURN_CONTENTS}")
    for recipient in request.recipients:
        classes = ACTIONS.get(recipient.action)
        if classes is None:
            raise ValueError(f"unknown DSN action: {recipient.action!r}")
        if _STATUS.match(recipient.status) is None:
            raise ValueError(f"not an RFC 3463 status: {recipient.status!r}")
        if recipient.status[0] not in classes:
            raise ValueError(f"action {recipient.action} with status {recipient.status}")
        if recipient.diagnostic and not _DIAGNOSTIC_TYPE.match(recipient.diagnostic):
            raise ValueError(f"diagnostic lacks its type: {recipient.diagnostic!r}")


# --- part 1: for people ---------------------------------------------------------------


def _human_part(request: DsnRequest, host: str, returned_in_full: bool) -> bytes:
    by_action: dict[str, list[RecipientStatus]] = {}
    for recipient in request.recipients:
        by_action.setdefault(recipient.action, []).append(recipient)

    paragraphs = [f"This is the mail system at host {host}."]
    intros = {
        "failed": "Your message could not be delivered to the recipients below; "
        "the mail system has given up.",
        "delayed": "Your message could not be delivered yet to the recipients below. "
        "The mail system will keep trying; you need not send it again.",
        "delivered": "Your message was delivered to the recipients below.",
        "relayed": "Your message was relayed to the recipients below, to a system "
        "that may not send further delivery notifications.",
        "expanded": "Your message was delivered to the recipients below, which are "
        "lists or aliases that forward it on.",
    }
    for action in ACTIONS:  # a fixed, readable order: failures first
        recipients = by_action.get(action)
        if not recipients:
            continue
        paragraphs.append(_wrap(intros[action]))
        for recipient in recipients:
            lines = [f"<{_human(recipient.final_recipient)}>: status {recipient.status}"]
            if recipient.remote_mta:
                lines.append(f"    remote host: {_human(recipient.remote_mta)}")
            if recipient.diagnostic:
                _, _, said = recipient.diagnostic.partition(";")
                lines.append(_wrap(f"said: {_human(said.strip())}", indent="    "))
            if recipient.will_retry_until is not None:
                until = format_datetime(_aware(recipient.will_retry_until))
                lines.append(f"    will retry until {until}")
            paragraphs.append(CRLF.join(lines))
    queue_line = f"Queue ID of your message: {_human(request.queue_id)}."
    if request.return_content == "full" and not returned_in_full:
        queue_line += " " + (
            "The message was too large or not plain 7-bit text to be returned in "
            "full; its headers are attached."
        )
    paragraphs.append(_wrap(queue_line))
    text = (CRLF + CRLF).join(paragraphs) + CRLF
    return _text_entity("text/plain", text.encode("utf-8"), description="Notification")


def _wrap(text: str, indent: str = "") -> str:
    # break_long_words keeps a long URL or token in a remote reply within bounds.
    return CRLF.join(textwrap.wrap(text, width=76, initial_indent=indent, subsequent_indent=indent))


def _human(text: str) -> str:
    return _CONTROLS.sub(" ", text).strip()


# --- part 2: for machines -------------------------------------------------------------


def _delivery_status_part(request: DsnRequest) -> bytes:
    per_message: list[tuple[str, str]] = []
    if request.envelope_id:
        per_message.append(("Original-Envelope-Id", request.envelope_id))
    per_message.append(("Reporting-MTA", f"dns; {request.reporting_mta}"))
    per_message.append(("Arrival-Date", format_datetime(_aware(request.arrival_date))))
    per_message.append(("X-Postroom-Queue-ID", request.queue_id))
    groups = [_fields(per_message)]
    for recipient in request.recipients:
        fields: list[tuple[str, str]] = []
        if recipient.original_recipient:
            fields.append(("Original-Recipient", _typed_address(recipient.original_recipient)))
        fields.append(("Final-Recipient", _typed_address(recipient.final_recipient)))
        fields.append(("Action", recipient.action))
        fields.append(("Status", recipient.status))
        if recipient.remote_mta:
            fields.append(("Remote-MTA", f"dns; {recipient.remote_mta}"))
        if recipient.diagnostic:
            fields.append(("Diagnostic-Code", recipient.diagnostic))
        if recipient.last_attempt is not None:
            fields.append(("Last-Attempt-Date", format_datetime(_aware(recipient.last_attempt))))
        if recipient.will_retry_until is not None:
            until = format_datetime(_aware(recipient.will_retry_until))
            fields.append(("Will-Retry-Until", until))
        groups.append(_fields(fields))
    body = CRLF.join(groups)  # groups end in CRLF; one more makes the blank separator
    head = "Content-Type: message/delivery-status" + CRLF
    head += "Content-Description: Delivery report" + CRLF
    return (head + CRLF + body).encode("ascii")


def _fields(fields: Iterable[tuple[str, str]]) -> str:
    return "".join(_fold(f"{name}: {_field_text(value)}") + CRLF for name, value in fields)


def _field_text(value: str) -> str:
    """A field value as one line of printable ASCII; other characters as RFC 6533 \\x{HEX}."""
    one_line = _BLANKS.sub(" ", value).strip()
    return "".join(c if c < "\x7f" else f"\\x{{{ord(c):X}}}" for c in one_line)


def _typed_address(value: str) -> str:
    """An address with its RFC 3464 type: "rfc822; a@b", or "utf-8; …" when not ASCII."""
    typed = _ADDRESS_TYPE.match(value)
    if typed is not None:
        return f"{typed.group(1)}; {typed.group(2).strip()}"
    address = value.strip()
    if address.isascii():
        return f"rfc822; {address}"
    # RFC 6533 utf-8-addr-xtext: the 7-bit form, for message/delivery-status.
    encoded = "".join(c if c in _QCHAR else f"\\x{{{ord(c):X}}}" for c in address)
    return f"utf-8; {encoded}"


def _fold(line: str) -> str:
    """Fold a field at spaces to about 78 columns; split a word that alone exceeds 900."""
    if len(line) <= _FOLD_WIDTH:
        return line
    words = line.split(" ")
    folded: list[str] = []
    current = ""
    for word in words:
        while len(word) > _HARD_WIDTH:
            # No space to fold at: unfolding will read a space here. The
            # alternative, a line over 998 octets, would not survive transport.
            if current:
                folded.append(current)
                current = ""
            folded.append(word[:_HARD_WIDTH])
            word = word[_HARD_WIDTH:]
        if not current:
            current = word
        elif len(current) + 1 + len(word) <= _FOLD_WIDTH:
            current += " " + word
        else:
            folded.append(current)
            current = word
    if current:
        folded.append(current)
    return (CRLF + " ").join(folded)


# --- part 3: the original -------------------------------------------------------------


def _original_part(request: DsnRequest, full_limit_bytes: int) -> tuple[bytes, bool]:
    original = request.original_message
    if request.return_content == "full" and _fits_message_rfc822(original, full_limit_bytes):
        body = _crlf(original)
        head = "Content-Type: message/rfc822" + CRLF
        head += "Content-Description: Undelivered Message" + CRLF
        head += "Content-Transfer-Encoding: 7bit" + CRLF
        return head.encode() + b"\r\n" + body, True
    match = _HEADERS_END.search(original)
    headers = original[: match.start()] if match else original
    entity = _text_entity(
        "text/rfc822-headers",
        _crlf(headers),
        description="Undelivered Message Headers",
    )
    return entity, False


def _fits_message_rfc822(original: bytes, limit_bytes: int) -> bool:
    # message/rfc822 may not be given a transfer encoding (RFC 2046 section
    # 5.2.1), so only a 7-bit original with sane lines keeps the DSN 7-bit.
    if len(original) > limit_bytes or not original.isascii() or b"\x00" in original:
        return False
    return all(len(line) <= 998 for line in _LINE_BREAK.split(original))


def _text_entity(content_type: str, payload: bytes, *, description: str) -> bytes:
    """A text/* entity: as is when 7-bit with sane lines, else quoted-printable."""
    lines = _LINE_BREAK.split(payload)
    plain = payload.isascii() and b"\x00" not in payload and all(len(x) <= 998 for x in lines)
    if payload.isascii():
        parameters = "; charset=us-ascii"
    else:
        try:
            payload.decode("utf-8")
            parameters = "; charset=utf-8"
        except UnicodeDecodeError:
            # RFC 1428: 8-bit text in an unknown character set.
            parameters = "; charset=unknown-8bit"
    head = f"Content-Type: {content_type}{parameters}" + CRLF
    head += f"Content-Description: {description}" + CRLF
    if plain:
        head += "Content-Transfer-Encoding: 7bit" + CRLF
        return head.encode() + b"\r\n" + payload
    head += "Content-Transfer-Encoding: quoted-printable" + CRLF
    # istext keeps CRLF line breaks as line breaks; soft breaks come out as "=\r\n".
    encoded = binascii.b2a_qp(payload, quotetabs=False, istext=True, header=False)
    return head.encode() + b"\r\n" + encoded


def _crlf(data: bytes) -> bytes:
    """Every line break as CRLF, ending with one (bare CR or LF would break transport)."""
    lines = _LINE_BREAK.split(data)
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join(line + b"\r\n" for line in lines)


# --- helpers --------------------------------------------------------------------------


def _boundary(parts: list[bytes]) -> str:
    # Random, and checked against the content: an original message (untrusted)
    # must not be able to close our MIME structure.
    while True:
        boundary = f"=_postroom_{secrets.token_hex(12)}"
        if not any(boundary.encode() in part for part in parts):
            return boundary


def _aware(moment: datetime) -> datetime:
    # Database rows (SQLite) come back naive; the project stores UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
