"""The command phase on the wire: command lines in, reply texts out.

Pure functions over what a client sends, for the session (session.py):

- `parse_command(line, smtputf8=...)`: one line as read up to its LF → a
  `Command` (verb, argument) or the `Reply` that refuses it. A command line
  ends with CRLF and nothing else (RFC 5321 2.3.8, 4.1.1): a bare LF or a CR
  anywhere else is 500 5.5.2 and nothing of the line is executed (the session
  refuses the rest of such a line up to its CRLF too). The verb is ASCII; the
  argument is strict UTF-8 when SMTPUTF8 is on (RFC 6531), ASCII otherwise:
  bytes that are neither are refused here (501), so that no later reply or
  log line can meet them. 512 octets at most (RFC 5321 4.5.3.1.4), MAIL 548
  (SIZE, RFC 1870 +26; SMTPUTF8, RFC 6531 +10).
- `parse_path(argument, null_allowed=...)`: RFC 5321 4.1.2 `Reverse-path` /
  `Forward-path` followed by nothing or by SP and parameters, with RFC 6531's
  UTF-8 in local parts and domains. Nothing is guessed: an unclosed `<`, a
  missing `<`, an unbalanced quote, text glued after `>` are syntax errors
  (501 5.1.7 for MAIL, 501 5.1.3 for RCPT: RFC 3463 "bad sender's / destination
  mailbox address syntax" under RFC 5321's 501 "syntax error in parameters",
  as Postfix answers). A source route is dropped (RFC 5321 4.1.1.3, C); a
  quoted local part that needs no quotes loses them (RFC 5321 4.1.2). What is
  syntactically fine but unacceptable (label rules, lengths, relay tricks) is
  policy.py's to judge; the parameters' syntax is aiosmtpd's (501 5.5.4, or 555
  5.5.4 for parameters it does not know).
- `add_enhanced_code(reply)`: aiosmtpd's bare reply texts with the RFC 3463
  code that fits their reply code (RFC 2034).

Cost: one regular expression per path, linear in its length (the character
classes of each repetition are disjoint); a line is at most 1001 octets (the
session's stream limit) before any of this runs.
Untrusted input: every byte of `line` and `argument`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postroom.core.reply import Reply

COMMAND_LINE_MAX = 512
MAIL_LINE_MAX = COMMAND_LINE_MAX + 26 + 10

BARE_LINE_ENDING = Reply(
    500, "5.5.2", "Bare CR or LF in a command line is not allowed (RFC 5321 2.3.8)"
)
LINE_TOO_LONG = Reply(500, "5.5.2", "Command line too long (RFC 5321 4.5.3.1.4)")
BAD_SYNTAX = Reply(500, "5.5.2", "Error: bad syntax")
UNKNOWN_COMMAND = Reply(500, "5.5.2", "Error: command not recognized")
SENDER_SYNTAX = Reply(501, "5.1.7", "Bad sender address syntax")
RECIPIENT_SYNTAX = Reply(501, "5.1.3", "Bad recipient address syntax")
BAD_ARGUMENT = Reply(501, "5.5.4", "Invalid characters in command arguments")
# The refusal of a path, or of bytes that are not text, by command.
ARGUMENT_REFUSALS = {"MAIL": SENDER_SYNTAX, "RCPT": RECIPIENT_SYNTAX}


@dataclass(frozen=True, slots=True)
class Command:
    verb: str
    """Upper case ASCII, e.g. "MAIL"."""
    argument: str | None
    """What follows the first space, stripped; None when nothing does."""


def parse_command(line: bytes, *, smtputf8: bool) -> Command | Reply:
    """One command line including its line ending, as read up to LF."""
    if line[-2:] != b"\r\n" or line.count(b"\r") != 1:
        return BARE_LINE_ENDING
    line = line[:-2]
    if not line:
        return BAD_SYNTAX
    verb_bytes, _, argument_bytes = line.partition(b" ")
    if not verb_bytes or not verb_bytes.isascii():
        return BAD_SYNTAX
    verb = verb_bytes.decode("ascii").upper()
    if len(line) > (MAIL_LINE_MAX if verb == "MAIL" else COMMAND_LINE_MAX):
        return LINE_TOO_LONG
    argument_bytes = argument_bytes.strip()
    if not argument_bytes:
        return Command(verb, None)
    try:
        argument = argument_bytes.decode("utf-8" if smtputf8 else "ascii")
    except UnicodeDecodeError:
        return ARGUMENT_REFUSALS.get(verb, BAD_ARGUMENT)
    return Command(verb, argument)


# RFC 6531 UTF8-non-ascii, less the C1 controls (no address needs them; lone
# surrogates cannot occur in strictly decoded text).
_UTF8 = "\u00a0-\U0010ffff"
_ATOM = rf"[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~{_UTF8}-]+"
_DOT_STRING = rf"{_ATOM}(?:\.{_ATOM})*"
_QUOTED = rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_UTF8}]|\\[\x20-\x7e])*"'
# Label rules and the IP literal's content are policy.py's: here only the characters.
_DOMAIN = rf"[A-Za-z0-9{_UTF8}][A-Za-z0-9.{_UTF8}-]*"
_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"
_AT_DOMAIN = rf"@{_DOMAIN}"
_PATH = re.compile(
    rf"<(?:(?:{_AT_DOMAIN}(?:,{_AT_DOMAIN})*:)?"  # a source route, dropped
    rf"(?P<local>{_DOT_STRING}|{_QUOTED})@(?P<domain>{_DOMAIN}|{_LITERAL}))?>"
    r"(?: +(?P<params>.*))?\Z"
)
_DOT_STRING_ONLY = re.compile(rf"{_DOT_STRING}\Z")
_QUOTED_PAIR = re.compile(r"\\(.)")


def parse_path(argument: str, *, null_allowed: bool) -> tuple[str, str] | None:
    """(mailbox, parameters) of `<mailbox> params`, ("<>", params) for the null path
    when allowed, or None when the argument is not that."""
    match = _PATH.match(argument)
    if match is None:
        return None
    params = match.group("params") or ""
    local = match.group("local")
    if local is None:
        return ("<>", params) if null_allowed else None
    if local[0] == '"':
        unquoted = _QUOTED_PAIR.sub(r"\1", local[1:-1])
        if _DOT_STRING_ONLY.match(unquoted):
            local = unquoted
    return f"{local}@{match.group('domain')}", params


_HAS_ENHANCED = re.compile(rb"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)")
# The enhanced code that best describes aiosmtpd's bare replies, by reply code.
_ENHANCED_FOR_CODE = {
    b"211": b"2.0.0",
    b"214": b"2.0.0",
    b"220": b"2.0.0",
    b"221": b"2.0.0",
    b"250": b"2.0.0",
    b"252": b"2.5.0",
    b"421": b"4.3.0",
    b"451": b"4.3.0",
    b"452": b"4.5.3",
    b"454": b"4.7.0",
    b"500": b"5.5.2",
    b"501": b"5.5.4",
    b"502": b"5.5.1",
    b"503": b"5.5.1",
    b"504": b"5.5.4",
    b"530": b"5.7.0",
    b"535": b"5.7.8",
    b"550": b"5.0.0",
    b"552": b"5.3.4",
    b"553": b"5.1.3",
    b"554": b"5.0.0",
    b"555": b"5.5.4",
}
# aiosmtpd texts we replace outright because they say too little.
_REWRITES = {
    b"552 Error: Too much mail data": b"552 5.3.4 Message size exceeds fixed maximum message size",
    b"500 Line too long (see RFC5321 4.5.3.1.6)": (
        b"500 5.5.2 Line too long (RFC 5321 4.5.3.1.6 allows 1000 octets)"
    ),
}


def add_enhanced_code(response: bytes) -> bytes:
    """'503 Error: need MAIL command' → '503 5.5.1 Error: need MAIL command'."""
    if response in _REWRITES:
        return _REWRITES[response]
    if len(response) < 3 or response[:1] == b"3" or _HAS_ENHANCED.match(response):
        return response
    enhanced = _ENHANCED_FOR_CODE.get(response[:3])
    if enhanced is None:
        return response
    separator = response[3:4] or b" "
    return response[:3] + separator + enhanced + b" " + response[4:].lstrip()
