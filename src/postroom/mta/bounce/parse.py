"""Parse a received bounce, complaint or auto-reply into per-recipient verdicts.

Purpose: `parse_bounce(data)` is the single entry point for messages that
arrive at the bounce / complaint inbox. It recognises, in this order:

1. RFC 5965 ARF complaints (a message/feedback-report part) → reason
   feedback, with the Feedback-Type; `is_bounce` is true for them as for any
   report about mail we sent (only auto-replies and ordinary mail are not);
2. RFC 3464 DSNs (a message/delivery-status part) → one recipient per group,
   delivered / delayed / failed, with Status and Diagnostic-Code; when the
   message has none itself but returns a multipart/report whole (a filtering
   gateway re-wrapping the bounce it got), that attached report is read
   instead, one level deep;
3. Amazon SES JSON notifications (bounce, complaint, delivery);
4. RFC 3834 and vendor auto-replies → reason vacation, not a bounce;
5. plain-text bounces of MTAs that send no DSN (qmail, Exim, old Sendmail,
   Exchange, webmail providers...): delivery-status fields pasted in text, or
   the shapes `prose.py` knows.

Each recipient's reason comes from the `Classifier` (patterns.toml): first on
its own diagnostic, and only when that gives no more than a generic status on
the whole human-readable text. Hard/soft follows `reasons.is_hard`.

Inputs: the raw message bytes (untrusted, possibly truncated or malformed;
LF or CRLF). Output: a `BounceReport`. The function is total: garbage gives
`is_bounce=False` and no recipients, never an exception. Work is bounded by
`MAX_INPUT_BYTES`, `MAX_PARTS` and the caps of the helper modules.

RFCs: RFC 3464, RFC 3463, RFC 6522 (multipart/report), RFC 5965, RFC 3834,
RFC 5321, RFC 2045-2049.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import functools
import logging
import re
from dataclasses import dataclass, field
from email.message import Message

from postroom.mta.bounce import arf, autoreply, dsn_in, prose, ses
from postroom.mta.bounce.classify import Classifier
from postroom.mta.bounce.dsn_in import Finding
from postroom.mta.bounce.reasons import NON_FAILURE_REASONS, Reason, is_hard
from postroom.mta.bounce.textscan import (
    ADDRESS,
    MAX_PART_CHARS,
    dequote,
    find_codes,
    part_text,
    split_original,
    structured_text,
)
from postroom.mta.bounce.verdict import judge

__all__ = [
    "MAX_INPUT_BYTES",
    "MAX_PARTS",
    "BounceReport",
    "BouncedRecipient",
    "parse_bounce",
    "shipped_classifier",
]

log = logging.getLogger(__name__)

# Real bounces are small; a returned original past this size adds nothing we read.
MAX_INPUT_BYTES = 4 * 1024 * 1024
MAX_PARTS = 200
# mbox: a line "From <sender> <asctime date>" opens the next message (writers escape
# body lines that begin with "From "; not all of them leave a blank line before it).
_MBOX_SEPARATOR = re.compile(
    rb"(?<=\n)(?=From \S+ +(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?:Jan|Feb|Mar|Apr|May|Jun|"
    rb"Jul|Aug|Sep|Oct|Nov|Dec) )"
)
MAX_MBOX_MESSAGES = 50
_RECEIVED_FOR = re.compile(r"\bfor\s+<?([^\s<>;]+@[^\s<>;]+)", re.I)


@dataclass(frozen=True, slots=True)
class BouncedRecipient:
    """One recipient's verdict. status: "5.1.1" or ""; reply_code: "550" or ""."""

    address: str
    action: str
    status: str
    reply_code: str
    reason: Reason
    hard: bool
    diagnostic: str


@dataclass(frozen=True, slots=True)
class BounceReport:
    """kind: "arf", "dsn", "ses", "autoreply", "text" or "none"."""

    is_bounce: bool
    feedback_type: str | None
    recipients: tuple[BouncedRecipient, ...]
    kind: str


@dataclass(slots=True)
class _Parts:
    """What the MIME walk found, before interpretation."""

    human: list[str] = field(default_factory=list)
    delivery_status: list[str] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)
    originals: list[Message] = field(default_factory=list)


@functools.cache
def shipped_classifier() -> Classifier:
    """The classifier with the shipped rules only (loaded once; it is immutable)."""
    return Classifier.load(())


def parse_bounce(data: bytes, classifier: Classifier | None = None) -> BounceReport:
    """Parse one received message; never raises (see the module docstring).

    An mbox of several messages (an operator feeding a saved mailbox) gives the
    recipients of each, in order, in one report.
    """
    data = data[:MAX_INPUT_BYTES]
    messages = _MBOX_SEPARATOR.split(data, MAX_MBOX_MESSAGES - 1) if data[:5] == b"From " else []
    if len(messages) < 2:
        return _parse_one(data, classifier)
    reports = [_parse_one(one, classifier) for one in messages]
    recipients = tuple(r for report in reports for r in report.recipients)
    return BounceReport(
        is_bounce=any(report.is_bounce for report in reports),
        feedback_type=next((r.feedback_type for r in reports if r.feedback_type), None),
        recipients=recipients[: prose.MAX_RECIPIENTS],
        kind=next((report.kind for report in reports if report.recipients), reports[0].kind),
    )


def _parse_one(data: bytes, classifier: Classifier | None) -> BounceReport:
    try:
        message = email.message_from_bytes(data, policy=email.policy.compat32)
        return _parse(message, classifier or shipped_classifier())
    except Exception:  # untrusted input: a parser bug must cost one message, not the worker
        log.warning("bounce parse failed", exc_info=True)
        return BounceReport(False, None, (), "none")


def _walk(message: Message, parts: _Parts, budget: list[int]) -> None:
    """Collect parts, without descending into returned originals."""
    budget[0] -= 1
    if budget[0] < 0:
        return
    content_type = message.get_content_type()
    if content_type in ("message/delivery-status", "message/global-delivery-status"):
        parts.delivery_status.append(structured_text(message))
    elif content_type == "message/feedback-report":
        parts.feedback.append(structured_text(message))
    elif content_type in ("message/rfc822", "message/global"):
        payload = message.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            parts.originals.append(payload[0])
    elif content_type in ("text/rfc822-headers", "text/global-headers"):
        parts.originals.append(email.message_from_string(part_text(message)))
    elif message.get_content_maintype() == "multipart":
        payload = message.get_payload()
        if isinstance(payload, str):
            # The boundary was never found (a mangled or redacted header): read the body
            # as text, where the delivery-status fields can still be found.
            parts.human.append(payload[:MAX_PART_CHARS].replace("\r\n", "\n"))
            return
        for child in payload if isinstance(payload, list) else []:
            if isinstance(child, Message):
                _walk(child, parts, budget)
    elif message.get_content_maintype() == "text" and not message.get_filename():
        # Attached text files are content, not the report.
        parts.human.append(part_text(message))


def _parse(message: Message, classifier: Classifier, *, nested: bool = False) -> BounceReport:
    parts = _Parts()
    _walk(message, parts, [MAX_PARTS])
    dequoted = [dequote(text) for text in parts.human]
    splits = [split_original(text) for text in dequoted]
    human = "\n".join(report for report, _ in splits)
    copies = [copy for _, copy in splits if copy.strip()]
    if parts.originals:
        original: Message | None = parts.originals[0]
    elif copies:
        original = email.message_from_string(copies[0].lstrip()[:MAX_PART_CHARS])
    else:
        original = None

    complaint_without_arf = (
        not parts.delivery_status
        and original is not None
        and arf.is_complaint_subject(autoreply.decoded_header(message, "Subject"))
    )
    if parts.feedback or complaint_without_arf:
        report = "\n\n".join(parts.feedback)
        addresses = arf.complaint_recipients(report, original)
        recipients = tuple(
            BouncedRecipient(address, "", "", "", Reason.FEEDBACK, False, "")
            for address in addresses or [""]
        )
        return BounceReport(True, arf.feedback_type(report) or "other", recipients, "arf")

    if (
        not parts.delivery_status
        and not nested
        and original is not None
        and original.get_content_type() == "multipart/report"
    ):
        # A gateway that re-wraps a bounce it received (a filter appliance, a forwarder)
        # attaches the real report whole and says little itself: read the attached one.
        inner = _parse(original, classifier, nested=True)
        if inner.recipients:
            return inner

    if parts.delivery_status:
        findings = [
            finding for text in parts.delivery_status for finding in dsn_in.groups_from_text(text)
        ]
        if findings:
            if any(not finding.address for finding in findings):
                findings = _fill_addresses(findings, human, _senders(message, original), original)
            return _report(findings, human, classifier, "dsn")

    body = "\n".join(parts.human)
    ses_report = (
        ses.ses_report(body) if '"notificationType"' in body or '"eventType"' in body else None
    )
    if ses_report is not None and ses_report.findings:
        if ses_report.kind == "complaint":
            recipients = tuple(
                BouncedRecipient(f.address, "", "", "", Reason.FEEDBACK, False, "")
                for f in ses_report.findings
            )
            return BounceReport(True, ses_report.feedback_type, recipients, "ses")
        return _report(list(ses_report.findings), "", classifier, "ses")

    responder = autoreply.autoreply_sender(message)
    if responder is not None:
        recipient = BouncedRecipient(responder, "", "", "", Reason.VACATION, False, "")
        return BounceReport(False, None, (recipient,), "autoreply")

    if not _looks_like_bounce(message, human):
        return BounceReport(False, None, (), "none")
    senders = _senders(message, original)
    findings = list(dsn_in.fields_in_text("\n".join(dequoted))) or list(
        prose.prose_findings(human, senders)
    )
    if not findings and original is not None:
        addresses = _original_recipients(original, senders)
        # With one recipient, the whole report speaks of it.
        diagnostic = human.strip()[:MAX_PART_CHARS] if len(addresses) == 1 else ""
        reply_code, status = find_codes(diagnostic)
        findings = [
            Finding(address, prose.failure_action(human), status, reply_code, diagnostic)
            for address in addresses
        ]
    if not findings:
        return BounceReport(False, None, (), "none")
    return _report(findings, human, classifier, "text")


def _fill_addresses(
    findings: list[Finding], human: str, senders: set[str], original: Message | None
) -> list[Finding]:
    """Give address-less DSN groups the recipients the prose names, when they pair up.

    Some MTAs write a Final-Recipient without a usable address ("rfc822; @host")
    while their human-readable part names the recipient plainly. The pairing is
    made only when the addresses left over are exactly as many as the groups that
    lack one; otherwise the groups stay as they are.
    """
    known = {finding.address.lower() for finding in findings if finding.address}
    candidates = [
        found.address
        for found in prose.prose_findings(human, senders)
        if found.address.lower() not in known
    ]
    if not candidates and original is not None:
        candidates = [a for a in _original_recipients(original, senders) if a.lower() not in known]
    missing = [index for index, finding in enumerate(findings) if not finding.address]
    if len(candidates) != len(missing):
        return findings
    filled = list(findings)
    for index, address in zip(missing, candidates, strict=True):
        filled[index] = dataclasses.replace(findings[index], address=address)
    return filled


def _original_recipients(original: Message, senders: set[str]) -> list[str]:
    """Where the returned original was going: its To, else its Received "for" clause."""
    for name in ("To", "Delivered-To", "X-Original-To", "Received"):
        found = []
        for value in original.get_all(name) or []:
            text = str(value)
            if name == "Received":
                text = " ".join(_RECEIVED_FOR.findall(text))
            for match in ADDRESS.finditer(text):
                if match.group(1).lower() not in senders and match.group(1) not in found:
                    found.append(match.group(1))
        if found:
            return found[: prose.MAX_RECIPIENTS]
    return []


def _looks_like_bounce(message: Message, human: str) -> bool:
    """A daemon sender, a null Return-Path or a bounce subject: prose worth reading."""
    subject = autoreply.decoded_header(message, "Subject")
    return_path = (message.get("Return-Path") or "").strip()
    return (
        autoreply.is_daemon_sender(message)
        or autoreply.looks_like_bounce_subject(subject)
        or (
            return_path in ("<>", "")
            and prose.failure_action(human) == "failed"
            and bool(human.strip())
            and message.get("Return-Path") is not None
        )
    )


def _senders(message: Message, original: Message | None) -> set[str]:
    """Addresses that are not failed recipients: the bounce's ends and the original sender."""
    found: set[str] = set()
    sources: list[tuple[Message, tuple[str, ...]]] = [(message, ("From", "To", "Reply-To"))]
    if original is not None:
        sources.append((original, ("From", "Sender", "Return-Path", "Reply-To")))
    for source, names in sources:
        for name in names:
            for value in source.get_all(name) or []:
                found.update(match.group(1).lower() for match in ADDRESS.finditer(str(value)))
    return found


def _report(findings: list[Finding], human: str, classifier: Classifier, kind: str) -> BounceReport:
    human_segments = prose.segments(human, [f.address for f in findings if f.address])
    recipients = []
    for finding in findings[: prose.MAX_RECIPIENTS]:
        context = human_segments.get(finding.address.lower(), "")
        action, status, reason = judge(finding, context, human, classifier)
        recipients.append(
            BouncedRecipient(
                address=finding.address,
                action=action,
                status=status,
                reply_code=finding.reply_code,
                reason=reason,
                hard=is_hard(reason, status),
                diagnostic=(finding.diagnostic or context)[:1000].strip(),
            )
        )
    is_bounce = any(r.reason not in NON_FAILURE_REASONS for r in recipients)
    return BounceReport(is_bounce, None, tuple(recipients), kind)
