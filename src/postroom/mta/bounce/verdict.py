"""Decide one bounced recipient's action, status and reason from what its bounce says.

Purpose: the readers (dsn_in, ses, prose) report raw facts per recipient — a
`Finding`. This module turns a Finding into the verdict we record:

- action: the DSN's Action when given, else "failed";
- status: the RFC 3463 code the bounce gave; when it gave none, the generic
  X.0.0 of the reply code's class, else of the action (delivered 2, delayed 4,
  failed 5), so that every failure carries a class;
- reason: delivered for a 2.x.x or a delivered/relayed/expanded action;
  otherwise the classifier on the recipient's own diagnostic — first on the
  remote server's reply inside it (vendors.replies), whose phrase beats the
  reporting MTA's wrapper words. A phrase there wins. When only a code
  matched, and the code is a generic one (X.0.0, or a reply code alone), a
  phrase in the prose around the recipient, then in the whole human-readable
  text, is preferred: servers often pair "550 5.0.0"
  with an exact explanation a paragraph away.
- The SMTP stage a failure answered, and the status, refine it (stage.py):
  "user unknown" after DATA is the recipient's filter, a vague refusal at
  MAIL FROM is about the sender, one at HELO about our host; a failure with
  nothing to judge by is onhold.
- A failure with a temporary (4.x.x) status and no better explanation is a
  message the reporting MTA gave up retrying: expired; a delay notice with no
  better explanation says the same thing before the end (the message has been
  waiting, and will expire unless something changes).

Inputs: a Finding, the recipient's prose, the whole prose (all untrusted, only
searched by the classifier). Output: (action, status, reason). Pure.

RFCs: RFC 3464 (Action), RFC 3463 (status classes).
"""

from __future__ import annotations

import re

from postroom.mta.bounce.classify import Classifier, Rule
from postroom.mta.bounce.dsn_in import Finding
from postroom.mta.bounce.reasons import Reason
from postroom.mta.bounce.stage import refine
from postroom.mta.bounce.textscan import find_codes
from postroom.mta.bounce.vendors.replies import remote_reply

__all__ = ["judge"]

_SUCCESS_ACTIONS = frozenset({"delivered", "relayed", "expanded"})
_GENERIC_STATUS = re.compile(r"^[245]\.0\.0$")


def _status_for(finding: Finding, context: str, action: str) -> tuple[str, str]:
    """(status, reply code): the given ones, else found in the context, else by class."""
    status, reply = finding.status, finding.reply_code
    if not status and not finding.diagnostic and context:
        context_reply, context_status = find_codes(context)
        status, reply = context_status, reply or context_reply
    if status:
        return status, reply
    if reply:
        return f"{reply[0]}.0.0", reply
    class_digit = {"delivered": "2", "relayed": "2", "expanded": "2", "delayed": "4"}.get(
        action, "5"
    )
    return f"{class_digit}.0.0", reply


def _is_weak(rule: Rule | None, status: str, status_given: bool) -> bool:
    """A verdict from a generic or inferred code alone, which prose may overrule."""
    if rule is None:
        return True
    if rule.text is not None:
        return False
    return rule.status is None or not status_given or bool(_GENERIC_STATUS.match(status))


def _first_rule(classifier: Classifier, reply: str, status: str, diagnostic: str) -> Rule | None:
    """The rule for the remote server's own reply when one is found, else the whole text.

    The reporting MTA's wrapper ("it was rejected by the recipient domain") says the
    same thing for every failure; only the reply it wraps tells them apart.
    """
    own_reply = remote_reply(diagnostic)
    if own_reply:
        rule = classifier.first_match(reply, status, own_reply)
        if rule is not None and rule.text is not None:
            return rule
    return classifier.first_match(reply, status, diagnostic)


def judge(
    finding: Finding, context: str, human: str, classifier: Classifier
) -> tuple[str, str, Reason]:
    """(action, status, reason) for one recipient; see the module docstring."""
    action = finding.action or "failed"
    status, reply = _status_for(finding, context, action)
    if action in _SUCCESS_ACTIONS or status.startswith("2"):
        return action, status, Reason.DELIVERED
    status_given = bool(finding.status) or not status.endswith(".0.0")
    rule = _first_rule(classifier, reply, status, finding.diagnostic or context)
    if _is_weak(rule, status, status_given):
        for text in (context, human):
            better = classifier.first_match(None, None, text, text_only=True)
            if better is not None:
                rule = better
                break
    reason = rule.reason if rule is not None else Reason.UNDEFINED
    if (
        action in ("failed", "delayed")
        and status.startswith("4")
        and (rule is None or rule.text is None)
        and reason in (Reason.UNDEFINED, Reason.NETWORKERROR)
    ):
        reason = Reason.EXPIRED
    return action, status, refine(reason, status, action, f"{finding.diagnostic}\n{context}")
