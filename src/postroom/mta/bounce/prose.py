"""Read the non-standard, plain-text bounces of qmail, Exim, Sendmail, Exchange, webmail...

Purpose: many MTAs still bounce in prose instead of RFC 3464 fields. Their
layouts differ but share a few shapes, which this module looks for instead
of fingerprinting each vendor:

- an address alone on its line, or opening it ("<a@b>:", "a@b... User unknown",
  "a@b: reason"), under a heading like "The following address(es) failed";
- an address in a labelled line ("Recipient: a@b", "Original-Recipient: a@b")
  or in a session transcript ("RCPT TO:<a@b>");
- an address after a delivery phrase ("could not be delivered to a@b").

When none of these shapes is present, every address in the text that is not
the bounce's own sender or the original's sender is taken. Each recipient's
diagnostic is the text from each place its address appears up to the next
place another recipient's does, so that one failure's reason does not leak
into the next.

Inputs: the human-readable text of a bounce, already cut before the returned
original (untrusted), and addresses to leave out. Output: `Finding` values.
Bounded: `MAX_RECIPIENTS` recipients, `MAX_SEGMENT_CHARS` of text each; work
linear in the text (which the caller cuts to limits.MAX_SCAN_CHARS): the
patterns' blank runs are possessive, so they cannot be rescanned, and a
recipient's segments are found in one backward pass over its mentions.
"""

from __future__ import annotations

import re

from postroom.mta.bounce.dsn_in import Finding
from postroom.mta.bounce.textscan import ADDRESS, find_codes

__all__ = ["MAX_RECIPIENTS", "MAX_SEGMENT_CHARS", "failure_action", "prose_findings", "segments"]

MAX_RECIPIENTS = 200
MAX_SEGMENT_CHARS = 1500

_A = ADDRESS.pattern
_STRUCTURAL = [
    re.compile(rf"^[ \t>]*+<{_A}>", re.M),
    # The leading run may give "*" or "-" back: an address may begin with either.
    re.compile(rf"^[ \t>*\-]*\"?(?:mailto:)?{_A}\"?[ \t]*+[:;,.]?[ \t]*+$", re.M),
    re.compile(rf"^[ \t>]*+<?{_A}>?(?:\.\.\.|:|\s++\(|\s++-\s|\s++on\s)", re.M),
    # Sendmail's transcript: each failed recipient on a line of its own, behind the
    # reply code it got ("550 5.1.1 <a@b>... User unknown").
    re.compile(
        rf"^[ \t]*+[245]\d\d(?:[ \-][245]\.\d{{1,3}}\.\d{{1,3}})?[ \t]++<?{_A}>?\.\.\.", re.M
    ),
    re.compile(rf"rcpt to:?\s*+<?{_A}", re.I),
    re.compile(
        rf"(?:recipient|addressee|address|original[- ]recipient|final[- ]recipient|"
        rf"failed[- ]recipient|mail address|e-?mail|to|destinataire|empf[äa]nger)s?"
        rf"(?: address)?[ \t]*+[:=][ \t]*+(?:rfc822;[ \t]*+)?\"?<?{_A}",
        re.I,
    ),
    re.compile(
        rf"(?:(?:not|n't|failed to) (?:be )?deliver(?:ed|able)? to|(?:your )?message to|"
        rf"delivering (?:your )?(?:mail|message|e-?mail) to|undeliverable to|"
        rf"delivery to|sent to|addressed to|following (?:recipients?|address(?:es)?)"
        rf"[^:\n]{{0,80}}:)\s*+\"?<?{_A}",
        re.I,
    ),
]
_PERMANENT = re.compile(
    r"permanent|fatal|given up|giving up|gave up|failed permanently|could not be delivered"
    r"|undeliverable|has been rejected|retry (time|timeout) exceeded|will not (be )?(retried|try)",
    re.I,
)
_DELAYED = re.compile(
    r"will (continue to |keep )?(retry|try again|trying)|still trying|(is|has been) delayed"
    r"|delivery (is )?delayed|not yet been delivered|will be retried|is being retried"
    r"|will try (again|to deliver)|delay(ed)? notification|warning: message",
    re.I,
)
_DAEMON_LOCAL = re.compile(r"^(?:mailer-daemon|postmaster|mail-daemon|maildaemon)@", re.I)


def failure_action(text: str) -> str:
    """'delayed' when the prose says the message is still being retried, else 'failed'."""
    if _DELAYED.search(text) and not _PERMANENT.search(text):
        return "delayed"
    return "failed"


def _structural_addresses(text: str) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for pattern in _STRUCTURAL:
        found.extend(
            (match.start(1), match.group(1).rstrip(".")) for match in pattern.finditer(text)
        )
    return sorted(found)


def _unique(found: list[tuple[int, str]], exclude: set[str]) -> list[str]:
    chosen: list[str] = []
    seen: set[str] = set()
    for _, address in found:
        key = address.lower()
        if key in seen or key in exclude:
            continue
        seen.add(key)
        chosen.append(address)
        if len(chosen) >= MAX_RECIPIENTS:
            break
    return chosen


def segments(text: str, recipients: list[str]) -> dict[str, str]:
    """Each recipient's text: from each mention of it to the next mention of another."""
    wanted = {address.lower() for address in recipients}
    mentions = [
        (match.start(1), match.group(1).rstrip(".").lower())
        for match in ADDRESS.finditer(text)
        if match.group(1).rstrip(".").lower() in wanted
    ]
    # Where each mention's segment ends: the next mention of another address, found
    # for all of them in one pass from the end.
    ends = [len(text)] * len(mentions)
    for index in range(len(mentions) - 2, -1, -1):
        following_start, following_address = mentions[index + 1]
        same = following_address == mentions[index][1]
        ends[index] = ends[index + 1] if same else following_start
    limit = MAX_SEGMENT_CHARS * 2
    result: dict[str, list[str]] = {address.lower(): [] for address in recipients}
    seen: dict[str, set[str]] = {address: set() for address in result}
    joined_sizes = dict.fromkeys(result, -1)  # len("\n".join(pieces)) so far
    for (start, address), end in zip(mentions, ends, strict=True):
        if joined_sizes[address] >= limit:
            continue  # later pieces would fall past the cut below
        # From the start of the line: some servers write "reason: address".
        line_start = text.rfind("\n", 0, start) + 1
        piece = text[line_start : min(end, start + MAX_SEGMENT_CHARS)]
        if piece not in seen[address]:
            seen[address].add(piece)
            result[address].append(piece)
            joined_sizes[address] += len(piece) + 1
    return {address: "\n".join(pieces)[:limit] for address, pieces in result.items()}


def prose_findings(text: str, exclude: set[str]) -> tuple[Finding, ...]:
    """Failed recipients described in bounce prose, with their diagnostics."""
    lowered_exclude = {address.lower() for address in exclude}
    structural = _structural_addresses(text)
    # The excluded addresses are a guess (the bounce's own ends); a failed recipient
    # that happens to be one of them is still better than none.
    recipients = _unique(structural, lowered_exclude) or [
        address for address in _unique(structural, set()) if not _DAEMON_LOCAL.match(address)
    ]
    if not recipients:
        every = [
            (start, address)
            for start, address in (
                (m.start(1), m.group(1).rstrip(".")) for m in ADDRESS.finditer(text)
            )
            if not _DAEMON_LOCAL.match(address)
        ]
        recipients = _unique(every, lowered_exclude)
    if not recipients:
        return ()
    action = failure_action(text)
    by_address = segments(text, recipients)
    findings = []
    for address in recipients:
        diagnostic = by_address.get(address.lower(), "")
        reply_code, status = find_codes(diagnostic)
        if not (reply_code or status) and len(recipients) == 1:
            # Some layouts (MailMarshal, several gateways) give the reason first and
            # list the affected recipients after it: with one recipient, it is theirs.
            whole_reply, whole_status = find_codes(text)
            if whole_reply or whole_status:
                reply_code, status = whole_reply, whole_status
                diagnostic = f"{text[:MAX_SEGMENT_CHARS]}\n{diagnostic}"
        findings.append(
            Finding(
                address=address,
                action=action,
                status=status,
                reply_code=reply_code,
                diagnostic=diagnostic.strip(),
            )
        )
    return tuple(findings)
