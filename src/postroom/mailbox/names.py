"""Domain names and mailbox addresses as postroom stores them.

`normalise_domain(text)` turns what an operator typed into the one form the
database, the router and DNS use: lower case, no final dot, IDNA 2008 A-labels
(UTS 46 mapping, so "Bücher.Example." and "xn--bcher-kva.example" are the same
domain). It refuses, with a message naming the problem, anything that cannot be
a mail domain of ours: empty or over-long labels, a single label, an IP address,
or a public suffix ("co.uk", "github.io": those belong to a registry, not to a
project). `normalise_address(text)` does the same for `local@domain`, with a
dot-atom local part (RFC 5321 4.1.2, 4.5.3.1 limits) kept in lower case:
mailboxes are matched case-insensitively, as every mainstream server does.
That is the rule for naming an address that exists somewhere (a lookup, an
alias target, a sender).

`new_mailbox_address(text, what)` is the stricter rule for a name postroom
creates (a mailbox, or an alias source: the two share one namespace, so a name
valid as one must be valid as the other). Its local part may hold only
lower-case letters, digits, ".", "-" and "_", starts with a letter or digit,
and has no empty atom. Why, downstream: the name becomes a directory
(`<root>/<domain>/<local part>/`: "/" and a leading "." would leave or hide in
the tree), a field of Dovecot's passwd-file (":" ends a field, whitespace and
control characters end the extra fields or the line, "#" at the start of a
line makes it a comment) whose extra fields Dovecot expands ("%" starts a
variable), and an IMAP login, which Dovecot refuses unless every character is
in its default `auth_username_chars` (letters, digits, "." "-" "_" "@"). "+"
is refused too: Dovecot would refuse the login, and it is the subaddress
separator (RFC 5233, Postfix's recipient_delimiter), so `user+tag` must stay
free to reach `user`. `mailbox_name_problem(local)` says what is wrong with a
local part under this rule (None when nothing), for layers that check again.
`lookup_form`, `lookup_address` and `login_address` give the forms that names
from mail and AUTH usernames are compared in, cheaply and without a verdict.

Untrusted input: operator text, envelope addresses and AUTH usernames.
RFCs: 5890-5892 (IDNA 2008), UTS #46, 5321, 1035 (label and name lengths).
"""

from __future__ import annotations

import functools
import ipaddress
import re

import idna
from publicsuffixlist import PublicSuffixList

_ATOM = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+$")
MAX_LOCAL_PART = 64
MAILBOX_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")
_MAILBOX_NAME_HINT = "use letters, digits, '.', '-' and '_' (what Dovecot logins and paths take)"
MAX_LOGIN = 320  # RFC 5321 path limits: a longer username is no address of ours


class InvalidName(ValueError):
    """Text that is not an acceptable domain or address; the message says why."""


@functools.cache
def public_suffixes() -> PublicSuffixList:
    # Parsing the bundled list takes ~50 ms: once per process, on first use.
    return PublicSuffixList()


def normalise_domain(text: str) -> str:
    """The stored form of a domain (see module docstring); raises `InvalidName`."""
    name = text.strip()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise InvalidName("empty domain name")
    if _is_ip_address(name.strip("[]")):
        raise InvalidName(f"{text!r} is an IP address, not a domain name")
    try:
        ascii_name = idna.encode(name, uts46=True).decode("ascii")
    except idna.IDNAError as error:
        raise InvalidName(f"{text!r} is not a valid domain name: {error}") from None
    # idna keeps a final dot, and UTS 46 maps dots such as "\u3002" to ".": check the result too.
    if ascii_name.endswith("."):
        raise InvalidName(f"{text!r} is not a valid domain name: empty label")
    if _is_ip_address(ascii_name):
        raise InvalidName(f"{text!r} is an IP address, not a domain name")
    if "." not in ascii_name:
        raise InvalidName(f"{text!r} has a single label: a mail domain needs at least two")
    if ascii_name.rpartition(".")[2].isdigit():
        # RFC 3696 2: no top-level domain is all-numeric; "1.2.3" reads as an address.
        raise InvalidName(f"{text!r} ends in a numeric label: not a domain name")
    if public_suffixes().is_public(ascii_name):
        raise InvalidName(f"{text!r} is a public suffix: link a domain registered under it")
    return ascii_name


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def lookup_form(domain: str) -> str | None:
    """The form stored domains are compared in (lower-case A-labels, no final dot), for a
    domain from mail (an SMTPUTF8 peer may spell it in Unicode); None when it has no
    such form. Cheap on purpose: no public-suffix or syntax verdict, which lookups of
    untrusted names do not need (they simply find nothing)."""
    domain = domain.rstrip(".")
    if domain.isascii():
        return domain.lower()
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return None


def lookup_address(address: str) -> str | None:
    """`address` from mail or a login in the form stored addresses are compared in (local
    part lower-cased, domain in its `lookup_form`); None when it has no such form. As
    cheap and as lenient as `lookup_form`: a lookup of a malformed name finds nothing."""
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return None
    ascii_domain = lookup_form(domain)
    return None if not ascii_domain else f"{local.lower()}@{ascii_domain}"


def login_address(username: str) -> str | None:
    """The stored form of the mailbox an AUTH username names (`lookup_address`), None
    when it names none. One function for AUTH and its brute-force throttle: every
    spelling that can log in to a mailbox ("CEO@Ｂ.ｔｅｓｔ", "ceo@b.test.") is
    counted as that mailbox."""
    return lookup_address(username) if len(username) <= MAX_LOGIN else None


def display_domain(ascii_name: str) -> str:
    """The Unicode form for people (U-labels), or the name as is when it has none."""
    if "xn--" not in ascii_name:
        return ascii_name
    try:
        return idna.decode(ascii_name)
    except idna.IDNAError:
        return ascii_name


def normalise_address(text: str) -> tuple[str, str]:
    """(local part, domain) of `local@domain`; raises `InvalidName`."""
    local, at, domain = _unbracketed(text).rpartition("@")
    if not at or not local:
        raise InvalidName(f"{text!r} is not an address: expected local-part@domain")
    local = local.lower()
    if len(local.encode()) > MAX_LOCAL_PART:
        raise InvalidName(f"{text!r}: local part longer than {MAX_LOCAL_PART} octets")
    if any(not atom or not _ATOM.match(atom) for atom in local.split(".")):
        raise InvalidName(
            f"{text!r}: local part must be dot-separated letters, digits and !#$%&'*+/=?^_`{{|}}~-"
        )
    return local, normalise_domain(domain)


def new_mailbox_address(text: str, what: str = "mailbox") -> str:
    """The stored `local@domain` of a new mailbox (or, with `what="alias"`, of an alias
    source) under the naming rule of the module docstring; raises `InvalidName` naming
    the address and the refused character."""
    problem = mailbox_name_problem(_unbracketed(text).rpartition("@")[0].lower())
    if problem is not None:
        raise InvalidName(f"{what} {text.strip()!r}: {problem}")
    local, domain = normalise_address(text)
    return f"{local}@{domain}"


def mailbox_name_problem(local: str) -> str | None:
    """Why `local` (lower case) cannot name a new mailbox, or None when it can. An empty
    local part passes: that is `normalise_address`'s "not an address" to report."""
    for char in local:
        if char not in MAILBOX_NAME_CHARS:
            return f"{char!r} cannot be part of a mailbox name: {_MAILBOX_NAME_HINT}"
    if local and not local[0].isalnum():
        return f"{local[0]!r} cannot start a mailbox name: {_MAILBOX_NAME_HINT}"
    if local.endswith(".") or ".." in local:
        return f"'.' cannot end a mailbox name or follow another '.': {_MAILBOX_NAME_HINT}"
    return None


def _unbracketed(text: str) -> str:
    address = text.strip()
    if address.startswith("<") and address.endswith(">"):
        return address[1:-1]
    return address
