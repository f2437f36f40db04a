"""The addresses of a mailbox-list header field (From, Sender): RFC 5322 3.4, RFC 6854.

`mailbox_addresses(value)` reads a field value (unfolded, as text) and returns the
addr-spec of each mailbox in order, "local@domain" with the local part as written
(quoted strings keep their quotes) and the domain's labels joined by dots, without
display names, comments or routes; the members of groups (RFC 6854) count as
mailboxes, an empty group ("undisclosed-recipients:;") names none. The answer is
None when the value is not a mailbox list or one of its mailboxes has no usable
addr-spec: an unclosed quote, comment or angle bracket, an "@" in an unquoted
display name ("a@evil.example <b@example.com>", what spoofers write), two "@", a
domain-literal (it names no DNS domain), an empty label. Encoded-words are never
decoded: what they hide cannot pose as an address. Callers compare domains in
their own lookup form (`mailbox.names.lookup_form`), which also refuses bytes
that are no domain.

Used by the DMARC check (the RFC5322.From domain) and by submission (every From
and Sender address must be one the app may use): one reading of the field for
both, so that what is checked is what is judged.

Untrusted input: the whole value. Cost: one pass to tokenise (comments, quotes
and literals each scanned once), one over the tokens; no backtracking.
"""

from __future__ import annotations

Token = tuple[str, str]  # (kind, text); kind: "atom", "quoted", "literal" or "special"

_AT: Token = ("special", "@")
_DOT: Token = ("special", ".")
_OPEN: Token = ("special", "<")
_CLOSE: Token = ("special", ">")
_COLON: Token = ("special", ":")
# Where an atom ends: white space, the RFC 5322 specials, and the backslash.
_ATOM_END = frozenset(' \t\r\n"()[]<>:;@,.\\')


def mailbox_addresses(value: str) -> list[str] | None:
    """The addr-specs of a mailbox-list value, or None (see the module docstring)."""
    tokens = _tokens(value)
    mailboxes = _mailboxes(tokens) if tokens is not None else None
    if mailboxes is None:
        return None
    addresses = []
    for mailbox in mailboxes:
        address = _mailbox_address(mailbox)
        if address is None:
            return None
        addresses.append(address)
    return addresses


def _tokens(value: str) -> list[Token] | None:
    """RFC 5322 3.2 lexical tokens, comments dropped; None when a quote, comment or
    literal is not closed or a ")", "]" or "\\" stands alone."""
    tokens: list[Token] = []
    index, end = 0, len(value)
    while index < end:
        char = value[index]
        if char in " \t\r\n":
            index += 1
        elif char == "(":
            index = _comment_end(value, index)
            if index < 0:
                return None
        elif char in '"[':
            close = _quoted_end(value, index, '"' if char == '"' else "]")
            if close < 0:
                return None
            tokens.append(("quoted" if char == '"' else "literal", value[index + 1 : close]))
            index = close + 1
        elif char in "<>:;@,.":
            tokens.append(("special", char))
            index += 1
        elif char in ")]\\":
            return None
        else:
            start = index
            while index < end and value[index] not in _ATOM_END:
                index += 1
            tokens.append(("atom", value[start:index]))
    return tokens


def _quoted_end(value: str, start: int, closing: str) -> int:
    """Index of the `closing` character after `start`, past quoted-pairs; -1 if none."""
    index = start + 1
    while index < len(value):
        if value[index] == "\\":
            index += 2
        elif value[index] == closing:
            return index
        else:
            index += 1
    return -1


def _comment_end(value: str, start: int) -> int:
    """Index after the comment opened at `start` (comments nest, RFC 5322 3.2.2); -1 if open."""
    depth = 0
    index = start
    while index < len(value):
        char = value[index]
        if char == "\\":
            index += 1
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return -1


def _mailboxes(tokens: list[Token]) -> list[list[Token]] | None:
    """The mailboxes of a mailbox-list, groups (RFC 6854) opened; None when malformed.

    A group's closing ";" may be missing at the very end, as some senders write
    "From: Name <a@example.com>" into the value; nothing is ambiguous about it.
    """
    entries: list[list[Token]] = []
    current: list[Token] = []
    in_angle = in_group = False
    for token in tokens:
        kind, text = token
        if kind != "special" or text in "@." or (in_angle and text not in "<>"):
            # Inside <...> an obsolete route ("@a,@b:") keeps its "," and ":".
            current.append(token)
        elif text == "<":
            if in_angle:
                return None
            in_angle = True
            current.append(token)
        elif text == ">":
            if not in_angle:
                return None
            in_angle = False
            current.append(token)
        elif text == ",":
            entries.append(current)
            current = []
        elif text == ":":
            # What came before is the group's display name.
            if in_group or not _words(current):
                return None
            in_group = True
            current = []
        else:  # ";"
            if not in_group:
                return None
            in_group = False
            entries.append(current)
            current = []
    if in_angle:
        return None
    entries.append(current)
    # Empty entries: obsolete empty list members, or an empty group ("undisclosed:;").
    return [entry for entry in entries if entry]


def _mailbox_address(mailbox: list[Token]) -> str | None:
    angles = [index for index, token in enumerate(mailbox) if token in (_OPEN, _CLOSE)]
    if not angles:
        return _addr_spec(mailbox)
    # name-addr: [display-name] "<" addr-spec ">". An "@" outside the brackets
    # ("a@evil.example <b@good.example>") is what spoofers write: refused.
    opening = angles[0]
    if len(angles) != 2 or angles[1] != len(mailbox) - 1:
        return None
    if opening and not _words(mailbox[:opening]):
        return None
    address = mailbox[opening + 1 : -1]
    routes = [index for index, token in enumerate(address) if token == _COLON]
    return _addr_spec(address[routes[-1] + 1 :] if routes else address)


def _addr_spec(tokens: list[Token]) -> str | None:
    ats = [index for index, token in enumerate(tokens) if token == _AT]
    if len(ats) != 1:
        return None
    local, domain = tokens[: ats[0]], tokens[ats[0] + 1 :]
    # The local part need only be words: one "@" outside quotes and comments makes
    # the domain unambiguous ('"Name" joe@example.com').
    if not _words(local):
        return None
    # dot-atom: atom *("." atom). A domain-literal names no DNS domain.
    labels, dots = domain[0::2], domain[1::2]
    if (
        len(domain) % 2 == 0
        or any(kind != "atom" for kind, _ in labels)
        or any(token != _DOT for token in dots)
    ):
        return None
    local_part = "".join(f'"{text}"' if kind == "quoted" else text for kind, text in local)
    return f"{local_part}@{'.'.join(text for _, text in labels)}"


def _words(tokens: list[Token]) -> bool:
    """A non-empty phrase: atoms, quoted strings and dots (RFC 5322 obs-phrase)."""
    return bool(tokens) and all(token[0] in ("atom", "quoted") or token == _DOT for token in tokens)
