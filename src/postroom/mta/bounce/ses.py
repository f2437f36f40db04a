"""Read Amazon SES notifications (JSON, usually delivered by SNS e-mail) as bounce findings.

Purpose: SES reports bounces, complaints and deliveries as a JSON document
(`notificationType` or `eventType`: Bounce, Complaint, Delivery) rather than as
a DSN. We take the per-recipient facts from it: address, action, status,
diagnostic, and for complaints the feedback type.

Inputs: the text of a message body (untrusted; the caller cuts it to
limits.MAX_SCAN_CHARS). SNS e-mail wraps long lines (a "!" and a newline
inside the JSON), so a document that does not decode as is is decoded again
with those wraps removed. Output: a `SesReport` or None; a document of another
shape than SES writes (a list where an object belongs...) gives what its
well-formed pieces say. Bounded: only the first document is read, at most
`MAX_RECIPIENTS`; one nested deeper than `MAX_JSON_DEPTH` (the json module
would recurse into it) is not decoded: `CapExceeded`.

References: Amazon SES developer guide, "Amazon SNS notification contents".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from postroom.mta.bounce.dsn_in import Finding
from postroom.mta.bounce.limits import MAX_JSON_DEPTH, CapExceeded
from postroom.mta.bounce.textscan import find_codes
from postroom.mta.bounce.vendors.replies import reply_codes

__all__ = ["MAX_RECIPIENTS", "SesReport", "ses_report"]

MAX_RECIPIENTS = 500
_START = re.compile(r'\{\s*"(?:notificationType|eventType)"\s*:')
_SNS_WRAP = re.compile(r"!?\r?\n ?")
# The characters that open and close JSON values and strings, and escape inside them.
_JSON_STRUCTURE = re.compile(r'[\[\]{}"\\]')


@dataclass(frozen=True, slots=True)
class SesReport:
    kind: str  # "bounce", "complaint" or "delivery"
    findings: tuple[Finding, ...]
    feedback_type: str | None = None


def _document(text: str) -> dict[str, Any] | None:
    start = _START.search(text)
    if not start:
        return None
    body = text[start.start() :]
    decoder = json.JSONDecoder()
    for candidate in (body, _SNS_WRAP.sub("", body)):
        _check_depth(candidate)
        try:
            value, _ = decoder.raw_decode(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _check_depth(document: str) -> None:
    """CapExceeded when the first JSON value nests deeper than MAX_JSON_DEPTH.

    The json module decodes nested values by recursion, so a deep enough document
    raised RecursionError. The depth is measured first, in one pass over the
    brackets, quotes and backslashes (brackets inside strings do not count),
    ending where the first value closes.
    """
    depth = 0
    in_string = False
    escaped_at = -1
    for token in _JSON_STRUCTURE.finditer(document):
        char, position = token.group(), token.start()
        if position == escaped_at:
            continue
        if in_string:
            if char == "\\":
                escaped_at = position + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise CapExceeded("JSON depth", f"nested more than {MAX_JSON_DEPTH} deep")
        elif char in "]}":
            depth -= 1
            if depth <= 0:
                return


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value[:MAX_RECIPIENTS] if isinstance(value, list) else []


def ses_report(text: str) -> SesReport | None:
    """The SES notification in text, or None when there is none (or it is unreadable)."""
    document = _document(text)
    if document is None:
        return None
    kind = _text(document.get("notificationType") or document.get("eventType")).lower()
    if kind == "bounce":
        bounce = _object(document.get("bounce"))
        permanent = _text(bounce.get("bounceType")).lower() == "permanent"
        findings = []
        for entry in _list(bounce.get("bouncedRecipients")):
            if not isinstance(entry, dict):
                continue
            diagnostic = _text(entry.get("diagnosticCode")).partition(";")
            diagnostic_text = (diagnostic[2] or diagnostic[0]).strip()
            reply_code, text_status = reply_codes(diagnostic_text)
            findings.append(
                Finding(
                    address=_text(entry.get("emailAddress")),
                    action=_text(entry.get("action")).lower() or ("failed" if permanent else ""),
                    status=_text(entry.get("status")) or text_status,
                    reply_code=reply_code,
                    diagnostic=diagnostic_text,
                )
            )
        return SesReport("bounce", tuple(findings))
    if kind == "complaint":
        complaint = _object(document.get("complaint"))
        findings = [
            Finding(address=_text(entry.get("emailAddress")))
            for entry in _list(complaint.get("complainedRecipients"))
            if isinstance(entry, dict)
        ]
        feedback = _text(complaint.get("complaintFeedbackType")) or "abuse"
        return SesReport("complaint", tuple(findings), feedback)
    if kind == "delivery":
        delivery = _object(document.get("delivery"))
        response = _text(delivery.get("smtpResponse"))
        reply_code, status = find_codes(response)
        findings = [
            Finding(
                address=address,
                action="delivered",
                status=status or "2.0.0",
                reply_code=reply_code,
                diagnostic=response,
            )
            for address in _list(delivery.get("recipients"))
            if isinstance(address, str)
        ]
        return SesReport("delivery", tuple(findings))
    return None
