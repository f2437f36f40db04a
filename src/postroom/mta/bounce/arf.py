"""Read RFC 5965 Abuse Reporting Format (ARF) complaints: who complained, and of what kind.

Purpose: a feedback loop report (multipart/report; report-type=feedback-report)
says that a recipient marked our message as spam (or reports fraud, a virus,
an authentication failure...). We need the complaining recipient's address and
the Feedback-Type. The recipient is named, in order of preference, by the
report's Original-Rcpt-To or Removal-Recipient fields (RFC 5965 section 3.2),
else by the To header of the returned original message; providers redact
more or less of it, so every source is tried.

Inputs: the message/feedback-report field text and the returned original's
headers (both untrusted). Output: (feedback type, addresses). Total: missing
pieces give an empty result, never an exception.

RFCs: RFC 5965 (ARF), RFC 6591 (authentication failure reports), RFC 6650.
"""

from __future__ import annotations

import re
from email.message import Message

from postroom.mta.bounce.textscan import ADDRESS

__all__ = ["complaint_recipients", "feedback_type", "is_complaint_subject"]

# Feedback loops that predate ARF (Hotmail's JMRP among them) send the complained-of
# message as a plain attachment, with only the subject to say what it is.
_COMPLAINT_SUBJECT = re.compile(
    r"complaint about message|abuse report|spam (?:complaint|report)|feedback[- ]loop|"
    r"\bfbl\b|scomp",
    re.I,
)
_FIELD = re.compile(r"^([A-Za-z][\w\-]*)[ \t]*:[ \t]*(.*)$", re.M)
# More addresses than this in one complaint is not a complaint.
_MAX_RECIPIENTS = 100


def feedback_type(report_text: str) -> str | None:
    """The Feedback-Type value (lower case), or None when the report has none."""
    for name, value in _FIELD.findall(report_text):
        if name.lower() == "feedback-type" and value.strip():
            return value.strip().split()[0].lower()
    return None


def is_complaint_subject(subject: str) -> bool:
    return bool(_COMPLAINT_SUBJECT.search(subject))


def complaint_recipients(report_text: str, original: Message | None) -> list[str]:
    """Addresses the complaint is about: report fields first, then the original's To."""
    found: list[str] = []
    for name, value in _FIELD.findall(report_text):
        if name.lower() in ("original-rcpt-to", "removal-recipient"):
            found.extend(match.group(1) for match in ADDRESS.finditer(value))
    if not found and original is not None:
        # X-HmXmrOriginalRecipient: the unredacted recipient in Hotmail's reports.
        for header in ("X-HmXmrOriginalRecipient", "To", "Delivered-To", "X-Original-To", "Cc"):
            for value in original.get_all(header) or []:
                found.extend(match.group(1) for match in ADDRESS.finditer(str(value)))
            if found:
                break
    unique: list[str] = []
    seen: set[str] = set()
    for address in found:
        if address.lower() not in seen:
            seen.add(address.lower())
            unique.append(address)
            if len(unique) >= _MAX_RECIPIENTS:
                break
    return unique
