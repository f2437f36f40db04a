"""Read Amazon SES notifications (JSON, usually delivered by SNS e-mail) as bounce findings.

Purpose: SES reports bounces, complaints and deliveries as a JSON document
(`notificationType` or `eventType`: Bounce, Complaint, Delivery) rather than as
a DSN. We take the per-recipient facts from it: address, action, status,
diagnostic, and for complaints the feedback type.

Inputs: the text of a message body (untrusted). SNS e-mail wraps long lines
(a "!" and a newline inside the JSON), so a document that does not decode as
is is decoded again with those wraps removed. Output: a `SesReport` or None.
Bounded: only the first document is read, at most `MAX_RECIPIENTS`.

References: Amazon SES developer guide, "Amazon SNS notification contents".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from postroom.mta.bounce.dsn_in import Finding
from postroom.mta.bounce.textscan import find_codes
from postroom.mta.bounce.vendors.replies import reply_codes

__all__ = ["MAX_RECIPIENTS", "SesReport", "ses_report"]

MAX_RECIPIENTS = 500
_START = re.compile(r'\{\s*"(?:notificationType|eventType)"\s*:')
_SNS_WRAP = re.compile(r"!?\r?\n ?")


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
        try:
            value, _ = decoder.raw_decode(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def ses_report(text: str) -> SesReport | None:
    """The SES notification in text, or None when there is none (or it is unreadable)."""
    document = _document(text)
    if document is None:
        return None
    kind = _text(document.get("notificationType") or document.get("eventType")).lower()
    if kind == "bounce":
        bounce = document.get("bounce") or {}
        permanent = _text(bounce.get("bounceType")).lower() == "permanent"
        findings = []
        for entry in (bounce.get("bouncedRecipients") or [])[:MAX_RECIPIENTS]:
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
        complaint = document.get("complaint") or {}
        findings = [
            Finding(address=_text(entry.get("emailAddress")))
            for entry in (complaint.get("complainedRecipients") or [])[:MAX_RECIPIENTS]
            if isinstance(entry, dict)
        ]
        feedback = _text(complaint.get("complaintFeedbackType")) or "abuse"
        return SesReport("complaint", tuple(findings), feedback)
    if kind == "delivery":
        delivery = document.get("delivery") or {}
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
            for address in (delivery.get("recipients") or [])[:MAX_RECIPIENTS]
            if isinstance(address, str)
        ]
        return SesReport("delivery", tuple(findings))
    return None
