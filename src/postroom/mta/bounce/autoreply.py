"""Recognise automatic replies (vacation, out of office): not bounces, and proof of life.

Purpose: an auto-reply must never count as a failed delivery; it even shows
that the mailbox exists. RFC 3834 marks them with `Auto-Submitted:
auto-replied` (not auto-generated: that is any notification), but many
responders predate it and only set vendor headers
(X-Autoreply, X-Autorespond, Precedence: auto_reply, Exchange's
X-Auto-Response-Suppress together with a telltale subject) or just a subject
("Out of office", "Auto:", "Automatic reply"). Delivery reports carry
Auto-Submitted too, so a message from a mailer daemon or whose subject says
delivery failed is never taken for an auto-reply.

Inputs: the parsed top-level message (headers only; untrusted; fields decoded
by headers.py within its caps). Output: the responder's address (its From)
when the message is an auto-reply, else None.

RFCs: RFC 3834 (automatic responses), RFC 2076 (common header fields).
"""

from __future__ import annotations

import re
from email.message import Message

from postroom.mta.bounce.headers import decoded_header
from postroom.mta.bounce.textscan import ADDRESS

__all__ = ["autoreply_sender", "is_daemon_sender", "looks_like_bounce_subject"]

_VACATION_SUBJECT = re.compile(
    r"^\s*(?:(?:re|aw|fw|fwd)\s*:\s*)?(?:"
    r"auto(?:matic|matische)?[ \-_]?(?:reply|response|respond|answer|antwort|svar)"
    r"|auto\s*:|autoreply|out of (?:the )?office|on vacation|vacation|away from (?:my |the )?"
    r"(?:office|desk|e-?mail)|abwesenheit|abwesend|absence|absent|r[ée]ponse automatique"
    r"|respuesta autom[aá]tica|risposta automatica|fuera de la oficina|自動応答|自動返信|不在)",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|not delivered|delivery (?:status|fail|failure|problem|notification|report)"
    r"|returned mail|failure notice|mail delivery|non[- ]?delivery|could not be delivered"
    r"|delivery has failed|bounce|rejected|nondeliverable|unzustellbar|warning: could not"
    r"|delayed mail|delivery delayed|message delayed|mail system error|notification",
    re.IGNORECASE,
)
_DAEMON = re.compile(
    r"mailer[-_ ]?daemon|postmaster|mail[-_ ]?delivery|mail[-_ ]?administrator|"
    r"mail[-_ ]?system|bounce|mdaemon|no[-_]?reply.*(?:mail|deliver)|^root@",
    re.IGNORECASE,
)


def is_daemon_sender(message: Message) -> bool:
    """From (or an empty Return-Path's From) names a mail system, not a person."""
    return bool(_DAEMON.search(decoded_header(message, "From")))


def looks_like_bounce_subject(subject: str) -> bool:
    return bool(_BOUNCE_SUBJECT.search(subject))


def autoreply_sender(message: Message) -> str | None:
    """The responder's address when the message is an automatic reply, else None."""
    subject = decoded_header(message, "Subject")
    if is_daemon_sender(message) or looks_like_bounce_subject(subject):
        return None
    auto_submitted = decoded_header(message, "Auto-Submitted").strip().lower()
    precedence = decoded_header(message, "Precedence").strip().lower()
    marked = (
        auto_submitted.startswith("auto-replied")
        or any(message.get(name) for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"))
        or precedence in ("auto_reply", "auto-reply", "autoreply")
    )
    if not marked and not _VACATION_SUBJECT.search(subject):
        return None
    match = ADDRESS.search(decoded_header(message, "From"))
    return match.group(1) if match else ""
