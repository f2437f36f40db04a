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
`is_bounce=False` and no recipients, never an exception. Its work is linear in
the input and bounded by the caps of limits.py: the MIME tree is read by
mime.py (depth, parts, header sections), every text a pattern scans is cut to
a window, and the time budget (`deadline`) is checked between parts and
between recipients. A message past a hard cap or the deadline is not read
further: its verdict is one recipient with reason `undefined` (kind
"undefined"; a bounce, reason unknown, which changes no rating), and one
warning names the cap.

RFCs: RFC 3464, RFC 3463, RFC 6522 (multipart/report), RFC 5965, RFC 3834,
RFC 5321, RFC 2045-2049.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from dataclasses import dataclass, field
from email.message import Message

from postroom.mta.bounce import arf, autoreply, dsn_in, prose, ses
from postroom.mta.bounce.classify import Classifier
from postroom.mta.bounce.dsn_in import Finding
from postroom.mta.bounce.headers import decoded_header
from postroom.mta.bounce.limits import (
    MAX_INPUT_BYTES,
    MAX_PART_CHARS,
    MAX_SCAN_CHARS,
    PARSE_TIME_LIMIT_S,
    Budget,
    CapExceeded,
)
from postroom.mta.bounce.mime import MimeReader
from postroom.mta.bounce.reasons import NON_FAILURE_REASONS, Reason, is_hard
from postroom.mta.bounce.textscan import (
    ADDRESS,
    dequote,
    find_codes,
    part_text,
    split_original,
    structured_text,
)
from postroom.mta.bounce.verdict import judge

__all__ = ["BounceReport", "BouncedRecipient", "parse_bounce", "shipped_classifier"]

log = logging.getLogger(__name__)

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
    """kind: "arf", "dsn", "ses", "autoreply", "text", "none", or "undefined" (not read
    past a cap: one recipient without an address, reason undefined)."""

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


def parse_bounce(
    data: bytes, classifier: Classifier | None = None, *, deadline: float | None = None
) -> BounceReport:
    """Parse one received message; never raises (see the module docstring).

    `deadline` is a `time.monotonic()` instant; without one the parse may take
    `PARSE_TIME_LIMIT_S`. An mbox of several messages (an operator feeding a saved
    mailbox) gives the recipients of each, in order, in one report; a cap passed in
    any of them makes the whole report undefined.
    """
    budget = Budget(deadline) if deadline is not None else Budget.starting_now(PARSE_TIME_LIMIT_S)
    classifier = classifier or shipped_classifier()
    data = data[:MAX_INPUT_BYTES]
    messages = _MBOX_SEPARATOR.split(data, MAX_MBOX_MESSAGES - 1) if data[:5] == b"From " else []
    try:
        if len(messages) < 2:
            return _parse_one(data, classifier, budget)
        reports = [_parse_one(one, classifier, budget) for one in messages]
    except CapExceeded as cap:
        log.warning("bounce not read past a cap, verdict undefined: %s", cap)
        recipient = BouncedRecipient("", "", "", "", Reason.UNDEFINED, False, f"not read: {cap}")
        return BounceReport(True, None, (recipient,), "undefined")
    recipients = tuple(r for report in reports for r in report.recipients)
    return BounceReport(
        is_bounce=any(report.is_bounce for report in reports),
        feedback_type=next((r.feedback_type for r in reports if r.feedback_type), None),
        recipients=recipients[: prose.MAX_RECIPIENTS],
        kind=next((report.kind for report in reports if report.recipients), reports[0].kind),
    )


def _parse_one(data: bytes, classifier: Classifier, budget: Budget) -> BounceReport:
    try:
        reader = MimeReader(budget)
        return _parse(reader.read(data), classifier, reader)
    except CapExceeded:
        raise
    except Exception:  # untrusted input: a parser bug must cost one message, not the worker
        log.warning("bounce parse failed", exc_info=True)
        return BounceReport(False, None, (), "none")


def _walk(message: Message, parts: _Parts, reader: MimeReader) -> None:
    """Collect parts in order, without descending into returned originals.

    Iterative: the depth is capped by the reader, and no recursion is needed.
    """
    pending = [message]
    while pending:
        reader.budget.check()
        part = pending.pop()
        content_type = part.get_content_type()
        if content_type in ("message/delivery-status", "message/global-delivery-status"):
            parts.delivery_status.append(structured_text(part))
        elif content_type == "message/feedback-report":
            parts.feedback.append(structured_text(part))
        elif content_type in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                parts.originals.append(payload[0])
        elif content_type in ("text/rfc822-headers", "text/global-headers"):
            parts.originals.append(reader.read(part_text(part)))
        elif part.get_content_maintype() == "multipart":
            payload = part.get_payload()
            if isinstance(payload, str):
                # The boundary was never found (a mangled or redacted header): read the
                # body as text, where the delivery-status fields can still be found.
                parts.human.append(payload[:MAX_PART_CHARS].replace("\r\n", "\n"))
                continue
            children = payload if isinstance(payload, list) else []
            pending.extend(reversed([child for child in children if isinstance(child, Message)]))
        elif part.get_content_maintype() == "text" and not _has_filename(part):
            # Attached text files are content, not the report.
            parts.human.append(part_text(part))


def _has_filename(part: Message) -> bool:
    try:
        return bool(part.get_filename())
    except (LookupError, ValueError):  # an RFC 2231 name in a charset that cannot decode
        return True


def _parse(
    message: Message, classifier: Classifier, reader: MimeReader, *, nested: bool = False
) -> BounceReport:
    parts = _Parts()
    _walk(message, parts, reader)
    dequoted = [dequote(text) for text in parts.human]
    splits = [split_original(text) for text in dequoted]
    human = "\n".join(report for report, _ in splits)[:MAX_SCAN_CHARS]
    copies = [copy for _, copy in splits if copy.strip()]
    if parts.originals:
        original: Message | None = parts.originals[0]
    elif copies:
        original = reader.read(copies[0].lstrip()[:MAX_PART_CHARS])
    else:
        original = None

    complaint_without_arf = (
        not parts.delivery_status
        and original is not None
        and arf.is_complaint_subject(decoded_header(message, "Subject"))
    )
    if parts.feedback or complaint_without_arf:
        report = "\n\n".join(parts.feedback)[:MAX_SCAN_CHARS]
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
        inner = _parse(original, classifier, reader, nested=True)
        if inner.recipients:
            return inner

    if parts.delivery_status:
        findings = [
            finding for text in parts.delivery_status for finding in dsn_in.groups_from_text(text)
        ]
        if findings:
            if any(not finding.address for finding in findings):
                findings = _fill_addresses(findings, human, _senders(message, original), original)
            return _report(findings, human, classifier, reader.budget, "dsn")

    body = "\n".join(parts.human)[:MAX_SCAN_CHARS]
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
        return _report(list(ses_report.findings), "", classifier, reader.budget, "ses")

    responder = autoreply.autoreply_sender(message)
    if responder is not None:
        recipient = BouncedRecipient(responder, "", "", "", Reason.VACATION, False, "")
        return BounceReport(False, None, (recipient,), "autoreply")

    if not _looks_like_bounce(message, human):
        return BounceReport(False, None, (), "none")
    senders = _senders(message, original)
    findings = list(dsn_in.fields_in_text("\n".join(dequoted)[:MAX_SCAN_CHARS])) or list(
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
    return _report(findings, human, classifier, reader.budget, "text")


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
        found: dict[str, None] = {}  # ordered and without repeats
        for value in original.get_all(name) or []:
            text = str(value)
            if name == "Received":
                text = " ".join(_RECEIVED_FOR.findall(text))
            for match in ADDRESS.finditer(text):
                if match.group(1).lower() not in senders:
                    found[match.group(1)] = None
            if len(found) >= prose.MAX_RECIPIENTS:
                break
        if found:
            return list(found)[: prose.MAX_RECIPIENTS]
    return []


def _looks_like_bounce(message: Message, human: str) -> bool:
    """A daemon sender, a null Return-Path or a bounce subject: prose worth reading."""
    subject = decoded_header(message, "Subject")
    # str(): a value with 8-bit bytes comes back as an email.header.Header.
    return_path = str(message.get("Return-Path") or "").strip()
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


def _report(
    findings: list[Finding], human: str, classifier: Classifier, budget: Budget, kind: str
) -> BounceReport:
    human_segments = prose.segments(human, [f.address for f in findings if f.address])
    recipients = []
    for finding in findings[: prose.MAX_RECIPIENTS]:
        budget.check()
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
