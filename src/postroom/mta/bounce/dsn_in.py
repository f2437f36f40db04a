"""Read RFC 3464 delivery-status fields from a received DSN (the inbound side).

Purpose: turn the machine-readable part of a delivery status notification —
a message/delivery-status body, or the same fields pasted into plain text by
MTAs that do not send multipart/report — into one `Finding` per recipient
group: the address (Final-Recipient, else Original-Recipient), Action, Status,
the SMTP reply code and the Diagnostic-Code text.

Inputs: the text of the delivery-status body (untrusted). Output: a tuple of
`Finding` values, empty when nothing usable is there. Field names are matched
case-insensitively, folded lines are unfolded, address-type prefixes
("rfc822;") are removed, and everything is capped (`MAX_GROUPS`).

RFCs: RFC 3464 (fields), RFC 3463 (Status), RFC 6533 (utf-8 address type).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postroom.mta.bounce.textscan import normalise_address
from postroom.mta.bounce.vendors.replies import reply_codes

__all__ = ["MAX_GROUPS", "Finding", "fields_in_text", "groups_from_text"]

# Hundreds of recipients in one DSN happen (list mail); more is a hostile input.
MAX_GROUPS = 500

_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9\-]{0,60})[ \t]*:[ \t]*(.*)$")
_RECIPIENT_FIELD = re.compile(r"^[ \t]*(?:final|original)-recipient[ \t]*:", re.I | re.M)
_STATUS_VALUE = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})")


@dataclass(frozen=True, slots=True)
class Finding:
    """What a bounce says about one recipient, before classification."""

    address: str
    action: str = ""
    status: str = ""
    reply_code: str = ""
    diagnostic: str = ""


def _groups(text: str) -> list[list[tuple[str, str]]]:
    """Blank-line separated groups of (lower-case name, unfolded value)."""
    groups: list[list[tuple[str, str]]] = []
    # A field's value is kept as its lines until the group ends: joining them as they
    # come would copy the value again for every continuation line.
    current: list[tuple[str, list[str]]] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if current:
                groups.append(_joined(current))
                current = []
            continue
        if line[0] in " \t" and current:
            current[-1][1].append(line.strip())
            continue
        match = _FIELD.match(line)
        if match:
            name = match.group(1).lower()
            # Broken DSNs run several recipients together without the blank line.
            if name in ("final-recipient", "original-recipient") and any(
                seen == name for seen, _ in current
            ):
                groups.append(_joined(current))
                current = []
            current.append((name, [match.group(2).strip()]))
    if current:
        groups.append(_joined(current))
    return groups


def _joined(fields: list[tuple[str, list[str]]]) -> list[tuple[str, str]]:
    return [(name, " ".join(lines)) for name, lines in fields]


def _strip_type(value: str) -> str:
    """'smtp; 550 5.1.1 ...' → '550 5.1.1 ...' (the RFC 3464 type prefix).

    "X-Unix;" is kept: it says a local program answered, which is the reason
    (mailererror) when its exit status is all the text there is.
    """
    head, separator, rest = value.partition(";")
    if head.strip().lower() == "x-unix":
        return value.strip()
    if separator and re.fullmatch(r"[ \t]*[A-Za-z0-9\-]{1,20}[ \t]*", head):
        return rest.strip()
    return value.strip()


def _better_status(field_status: str, diagnostic_status: str) -> str:
    """The Status field, unless it is a bare X.0.0 and the remote's reply is more exact.

    Reporting MTAs often write a generic Status ("5.0.0") over a remote reply that
    carried its own enhanced code ("550 5.1.1 ..."); the remote's code is the better
    evidence when it has the same class.
    """
    if not field_status:
        return diagnostic_status
    if (
        diagnostic_status
        and field_status.endswith(".0.0")
        and diagnostic_status[0] == field_status[0]
        and not diagnostic_status.endswith(".0.0")
    ):
        return diagnostic_status
    return field_status


def groups_from_text(text: str) -> tuple[Finding, ...]:
    """One Finding per recipient group in delivery-status text."""
    findings: list[Finding] = []
    for group in _groups(text)[: MAX_GROUPS + 1]:
        fields: dict[str, str] = {}
        for name, value in group:
            fields.setdefault(name, value)
        recipient = fields.get("final-recipient") or fields.get("original-recipient") or ""
        address = normalise_address(_strip_type(recipient)) if recipient else ""
        if not address and not ("action" in fields and "status" in fields):
            continue  # the per-message group, or noise
        # Prefer Original-Recipient only when Final-Recipient carries no address at all.
        if not address and fields.get("original-recipient"):
            address = normalise_address(_strip_type(fields["original-recipient"]))
        diagnostic = _strip_type(fields.get("diagnostic-code", ""))
        status_match = _STATUS_VALUE.search(fields.get("status", ""))
        status = ".".join(status_match.groups()) if status_match else ""
        reply_code, text_status = reply_codes(diagnostic)
        findings.append(
            Finding(
                address=address,
                action=fields.get("action", "").split()[0].lower() if fields.get("action") else "",
                status=_better_status(status, text_status),
                reply_code=reply_code,
                diagnostic=diagnostic,
            )
        )
    return tuple(findings)


def fields_in_text(text: str) -> tuple[Finding, ...]:
    """Delivery-status groups pasted into plain text (no message/delivery-status part)."""
    first = _RECIPIENT_FIELD.search(text)
    if not first:
        return ()
    # Start at the line of the first recipient field; unrelated prose above is ignored.
    start = text.rfind("\n", 0, first.start()) + 1
    return tuple(finding for finding in groups_from_text(text[start:]) if finding.address)
