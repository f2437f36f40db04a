"""Which SMTP stage a remote refused at, and what that says about the reason.

Purpose: a bounce often says *when* the remote server refused — "(in reply to
RCPT TO command)", "after end of data", "SMTP error from remote mail server
after MAIL FROM:", a transcript ">>> DATA / <<< 550 ...", qmail's "does not
like recipient", "Connected to ... but my name was rejected", or the command
tag some appliances put before the reply ("SMTP:RCPT host 192.0.2.8: 553 ...").
The stage is evidence of the reason that does not depend on the remote's
choice of words:

- connect / HELO: nothing about the message or its addresses has been said
  yet; a refusal there is about our host (blocked) — even one worded as the
  server's own trouble ("421 service not available" to our connection) —
  and a failure to connect at all is a network problem — or, when the
  bounce is final, a delivery the reporting MTA stopped retrying (expired);
- MAIL FROM: only the sender is known; a vague refusal, or one that says no
  more than X.7.1 "not authorized", is about the sender (rejected);
- RCPT TO: the recipient is judged; "user unknown" there is a fact about the
  address (userunknown) whatever the status code;
- DATA: the recipient was already accepted; "user unknown" after DATA is the
  recipient's filter speaking (filtered);
- no stage at all, no address status (X.1.x) and a reporting system that did
  not look the address up itself (vendors.replies): the words "user unknown"
  alone do not prove the address is gone, and are read as filtered.

`failed_stage(text)` finds the stage; `refine(...)` applies the rules above to
the classifier's reason. Both pure; the text is untrusted and only searched.

RFCs: RFC 5321 (the command sequence), RFC 3463 (X.1.1 vs X.2.x).
"""

from __future__ import annotations

import re

from postroom.mta.bounce.prefilter import fold, needles_for
from postroom.mta.bounce.reasons import Reason
from postroom.mta.bounce.vendors.replies import reporter_says_no_such_address

__all__ = ["failed_stage", "refine"]

# Explicit statements of the command a reply answered, most specific first. Each
# alternative is one group named for the stage it reveals.
_EXPLICIT = re.compile(
    r"(?P<connect>refused to talk to me|greeting failed|after initial connection"
    r"|(?:in reply to|during) (?:the )?(?:initial )?(?:greeting|banner))"
    r"|(?P<helo>my name was rejected|(?:after|in reply to|during|at) (?:the )?(?:helo|ehlo)\b"
    r"|\b(?:helo|ehlo) command\b)"
    r"|(?P<mail>sender was rejected|\bsmtp:mail\b"
    r"|(?:after|in reply to|response to|during|at)(?: the)? "
    r"mail from\b|\bmail from(?::<[^>]{0,300}>)? command)"
    r"|(?P<rcpt>does not like recipient|did not like our rcpt|\[rcpt_to\]|\bsmtp:rcpt\b"
    r"|(?:after|in reply to|response to|during|at)(?: the)? rcpt(?: to)?\b"
    r"|\brcpt(?: to)?(?::<[^>]{0,300}>)? command)"
    r"|(?P<data>failed after i sent the message|\bsmtp:data\b|did(?: not|n't) like (?:the|our) data"
    r"|(?:after|in reply to|response to|during|at)(?: the)?(?: end of)? data\b"
    r"|\bdata command)",
    re.I,
)
_EXPLICIT_NEEDLES = needles_for(_EXPLICIT)
_TRANSCRIPT = re.compile(
    r"^[ \t]*>{3,4} ?(helo|ehlo|data|rcpt to|mail from)|^[ \t]*<{3,4} ?[45]\d\d", re.I | re.M
)
_STAGE_NAMES = {
    "connect": "connect",
    "helo": "helo",
    "mail": "mail from",
    "rcpt": "rcpt to",
    "data": "data",
}

# The connection itself could not be made (as opposed to one lost mid-session, or DNS).
_NEVER_CONNECTED = re.compile(
    r"connect(?:ion)? to \S+ (?:failed|timed out)|connect to \S+: (?:connection )?"
    r"(?:timed out|refused)|connection (?:timed out|refused)|(?:unable|not able|wasn't able|"
    r"could not|couldn't|failed) to (?:establish|open|make) (?:an? )?(?:smtp )?connection"
    r"|(?:unable|could not|couldn't|failed) to connect|(?:host|server|network) (?:is )?"
    r"(?:not reachable|unreachable)|did not accept our requests? to connect|socket error"
    r"|no route to host",
    re.I,
)
# A refusal at MAIL FROM is about the sender, whatever words it uses, unless they say more.
_SENDER_STAGE_VAGUE = frozenset(
    {Reason.USERUNKNOWN, Reason.HOSTUNKNOWN, Reason.UNDEFINED, Reason.FILTERED, Reason.SUSPEND}
)
# Before MAIL FROM only our host is known: these readings cannot be right there.
_HOST_STAGE_VAGUE = frozenset(
    {Reason.UNDEFINED, Reason.SYNTAXERROR, Reason.HOSTUNKNOWN, Reason.REJECTED, Reason.EXPIRED}
)

_MAILBOX_STATUS = re.compile(r"^[45]\.2\.[01]$")


def failed_stage(text: str) -> str | None:
    """The stage a failure answered ("connect", "helo", "mail from", "rcpt to", "data")."""
    # Most texts name no stage: a substring test of the pattern's literals says so
    # without the regex search (prefilter.py), which would scan the whole text.
    if _EXPLICIT_NEEDLES is None or _EXPLICIT_NEEDLES.admit(fold(text), text.isascii()):
        explicit = _EXPLICIT.search(text)
    else:
        explicit = None
    if explicit and explicit.lastgroup:
        return _STAGE_NAMES[explicit.lastgroup]
    last_command = None
    for match in _TRANSCRIPT.finditer(text):
        if match.group(1):
            command = match.group(1).lower()
            last_command = "helo" if command == "ehlo" else command
        elif last_command:
            return last_command
    return None


def refine(reason: Reason, status: str, action: str, text: str) -> Reason:
    """The classifier's reason corrected by what the stage and the status say (docstring)."""
    stage = failed_stage(text)
    if reason is Reason.USERUNKNOWN and not status[2:].startswith("1."):
        if stage == "data":
            # The recipient was accepted at RCPT; "unknown" after DATA is a filter's word.
            return Reason.FILTERED
        if _MAILBOX_STATUS.match(status) and stage != "rcpt to":
            # X.2.0 / X.2.1: the mailbox exists but refuses (RFC 3463); an "unknown user"
            # text with it, not at RCPT, is the recipient's filter refusing this sender.
            return Reason.FILTERED
        if stage is None and status[2:] != "4.1" and not reporter_says_no_such_address(text):
            # Nothing places the refusal at RCPT, no address status backs the words, and
            # the reporting system did not look the address up itself: the words alone
            # do not show that the address is gone (a filter may say "unknown" too).
            return Reason.FILTERED
    if (
        stage == "mail from"
        and (
            reason in _SENDER_STAGE_VAGUE
            # X.7.1 "delivery not authorized" when only the sender is known: this sender.
            or (reason is Reason.SECURITYERROR and status[2:] == "7.1")
        )
    ):
        return Reason.REJECTED
    if stage in ("connect", "helo") and reason in _HOST_STAGE_VAGUE:
        return Reason.BLOCKED
    if stage == "connect" and reason is Reason.SYSTEMERROR:
        # A server that answers the connection only to refuse it says "service not
        # available" of itself, but nothing else of us has been seen: the refusal is of
        # the connecting host.
        return Reason.BLOCKED
    if reason is Reason.HOSTUNKNOWN and status.startswith("4") and status[2:5] != "1.2":
        # A temporary status with a lookup failure: DNS trouble, not a missing domain.
        return Reason.NETWORKERROR
    if (
        action == "failed"
        and reason in (Reason.NETWORKERROR, Reason.UNDEFINED)
        and _NEVER_CONNECTED.search(text)
    ):
        # A final failure because no connection could ever be made: the reporting MTA
        # retried until its queue lifetime ran out.
        return Reason.EXPIRED
    if reason is Reason.UNDEFINED:
        # A failure was found but nothing in it tells which: on hold for a person.
        return Reason.ONHOLD
    return reason
