"""Find the remote server's own reply inside a bounce diagnostic.

Purpose: reporting MTAs wrap the reply they got in their own words. Each common
format introduces it in a fixed way, and the reply is what tells the reason:

- Gmail: "The error that the other server returned was: 550 ... (state 13)",
  newer bounces "The response was:" / "The response from the remote server was:";
- qmail, Yahoo: "Remote host said: 550 ...";
- Postfix prose: "host mx.example.net[192.0.2.1] said: 550 ... (in reply to ...)";
- Exim: "host mx.example.net [192.0.2.1]: 550 ..." under "SMTP error from remote
  mail server after ...:";
- Exchange / Office 365: "Remote Server returned '550 5.1.1 ...'";
- Sendmail, Courier: the transcript's "<<< 550 ..." line;
- X6-style and others: "It responded as follows: [550 ...]";
- Amazon SES (older DSNs): its own guess first, the remote's reply quoted after
  it: "5.1.0 - Unknown address error 550-'5.7.1 ... Access denied'".

`remote_reply(text)` returns the last such reply (the last word of a session is
the refusal), "" when the text has none. `reporter_says_no_such_address(text)`
is true when the reporting system's own heading says the address does not
exist (Gmail "Address not found", Exchange "The recipient name is not
recognized", Office 365 "The email address you entered couldn't be found"): that
system looked the address up itself, so its verdict is about the address.

Inputs: untrusted diagnostic text. Outputs: strings and booleans. Bounded by
`MAX_REPLY_CHARS`.
"""

from __future__ import annotations

import re

from postroom.mta.bounce.textscan import find_codes

__all__ = ["MAX_REPLY_CHARS", "remote_reply", "reply_codes", "reporter_says_no_such_address"]

MAX_REPLY_CHARS = 600

_INTRODUCERS = re.compile(
    r"the error that the other server returned was:"
    r"|the response (?:from the remote server )?was:"
    r"|remote (?:host|server) said:"
    r"|\bhost \S{1,255} ?\[[0-9a-f.:]{3,45}\] said:"
    r"|\bhost \S{1,255} \[[0-9a-f.:]{3,45}\]:"
    r"|remote server returned '"
    r"|it responded as follows:"
    r"|^[ \t]*<<<[ \t]*(?=[45]\d\d)"
    r"|\berror (?=[45]\d\d-'[45]\.\d)",
    re.I | re.M,
)
# Where a reply ends: Gmail's "(state N)", Postfix's "(in reply to ...)", a closing
# quote or bracket of Exchange / X6 layouts, or a blank line.
_REPLY_END = re.compile(
    r"\(state \d+\)|\(in reply to |'\s*$|'[ \t]*\(|\]\s*$|\n[ \t]*\n", re.I | re.M
)
# SES quotes the reply after its code: "550-'5.7.1 ..." reads as "550 5.7.1 ...".
_QUOTED_REPLY = re.compile(r"^([45]\d\d)-'")

_NO_SUCH_ADDRESS = re.compile(
    r"\*\* ?address not found ?\*\*|address couldn'?t be found|address could not be found"
    r"|recipient name is not recognized|e-?mail account does not exist at the organization"
    r"|email address you entered couldn'?t be found|\(000C05A6\)",
    re.I,
)


def remote_reply(text: str) -> str:
    """The last remote reply introduced in one of the known ways; "" when none."""
    last = None
    for match in _INTRODUCERS.finditer(text):
        last = match
    if last is None:
        return ""
    rest = text[last.end() : last.end() + MAX_REPLY_CHARS]
    end = _REPLY_END.search(rest)
    reply = rest[: end.start()] if end else rest
    return _QUOTED_REPLY.sub(r"\1 ", " ".join(reply.split()))


def reply_codes(diagnostic: str) -> tuple[str, str]:
    """(reply code, status) of the remote's own reply in a diagnostic, else of the whole.

    A reporting MTA that wraps the reply often puts its own code first ("5.1.0 -
    Unknown address error 550-'5.7.1 ...'"); the remote's code is the evidence.
    """
    own = remote_reply(diagnostic)
    if own:
        reply_code, status = find_codes(own)
        if reply_code or status:
            return reply_code, status
    return find_codes(diagnostic)


def reporter_says_no_such_address(text: str) -> bool:
    return bool(_NO_SUCH_ADDRESS.search(text))
