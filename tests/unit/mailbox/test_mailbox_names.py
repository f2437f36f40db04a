"""Domain names and addresses as postroom stores them: lower-case A-labels without the final
dot, the names that can never be a linked mail domain, and the stricter rule for the name of
a new mailbox or alias."""

from __future__ import annotations

import pytest

from postroom.mailbox.names import (
    MAX_LOCAL_PART,
    InvalidName,
    display_domain,
    lookup_address,
    mailbox_name_problem,
    new_mailbox_address,
    normalise_address,
    normalise_domain,
)


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("example.com", "example.com"),
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("  mail.Example.org.  ", "mail.example.org"),
        # U-labels become A-labels; an A-label stays as it is.
        ("Bücher.Example", "xn--bcher-kva.example"),
        ("BÜCHER.example.", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        # UTS 46 mapping: full-width letters fold to ASCII; IDNA 2008 keeps ß (no "ss").
        ("ｅｘａｍｐｌｅ.com", "example.com"),
        ("faß.de", "xn--fa-hia.de"),
        # Registered under a public suffix: ours to link.
        ("example.co.uk", "example.co.uk"),
        ("someone.github.io", "someone.github.io"),
    ],
)
def test_normalise_domain_gives_the_stored_form(text: str, stored: str) -> None:
    assert normalise_domain(text) == stored


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (".", "empty"),
        ("localhost", "single label"),
        ("com", "single label"),
        ("192.0.2.1", "IP address"),
        ("[192.0.2.1]", "IP address"),
        ("2001:db8::1", "IP address"),
        ("[2001:db8::1]", "IP address"),
        ("192.0.2.1.", "IP address"),
        # Ideographic full stops map to "." (UTS 46): still an IP address.
        ("192\u30020\u30022\u30021", "IP address"),
        ("co.uk", "public suffix"),
        ("CO.UK.", "public suffix"),
        ("github.io", "public suffix"),
        ("-a.test", "hyphen"),
        ("a-.test", "hyphen"),
        ("a..b", "Empty Label"),
        ("example.com..", "empty label"),
        ("example.com\u3002", "empty label"),
        ("a_b.example.com", r"U\+005F"),
        ("_dmarc.example.com", r"U\+005F"),
        ("exa mple.com", "not a valid domain name"),
        ("user@example.com", "not a valid domain name"),
        ("xn--zz.example", "not a valid domain name"),
        ("a" * 64 + ".example", "too long"),
        (".".join(["a" * 63] * 4) + ".com", "too long"),
    ],
)
def test_normalise_domain_refuses_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidName, match=reason):
        normalise_domain(text)


def test_a_name_of_exactly_253_characters_is_accepted() -> None:
    name = ".".join(["a" * 63] * 3 + ["b" * 57, "com"])
    assert len(name) == 253
    assert normalise_domain(name.upper()) == name


def test_refusal_quotes_what_the_operator_typed() -> None:
    with pytest.raises(InvalidName, match=r"'Co\.UK'"):
        normalise_domain("Co.UK")


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("xn--bcher-kva.example", "bücher.example"),
        ("xn--fa-hia.de", "faß.de"),
        ("example.com", "example.com"),
        # Not a valid A-label: shown as stored rather than failing.
        ("xn--zz.example", "xn--zz.example"),
    ],
)
def test_display_domain(stored: str, shown: str) -> None:
    assert display_domain(stored) == shown


def test_display_then_normalise_round_trips() -> None:
    stored = normalise_domain("Bücher.Example")
    assert normalise_domain(display_domain(stored)) == stored


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("alice@example.com", ("alice", "example.com")),
        ("Alice.Smith@Example.COM", ("alice.smith", "example.com")),
        ("<bob@example.com>", ("bob", "example.com")),
        (" <bob@example.com.> ", ("bob", "example.com")),
        ("bob+tag@Bücher.example", ("bob+tag", "xn--bcher-kva.example")),
        # Dot-atom allows "/" (RFC 5322 atext); Accounts refuses it for mailboxes.
        ("a/b@example.com", ("a/b", "example.com")),
        ("o'neil@example.com", ("o'neil", "example.com")),
        ("x" * MAX_LOCAL_PART + "@example.com", ("x" * MAX_LOCAL_PART, "example.com")),
    ],
)
def test_normalise_address(text: str, parts: tuple[str, str]) -> None:
    assert normalise_address(text) == parts


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("alice", "not an address"),
        ("@example.com", "not an address"),
        ("<>", "not an address"),
        ("alice@", "empty domain"),
        (".alice@example.com", "dot-separated"),
        ("alice.@example.com", "dot-separated"),
        ("al..ice@example.com", "dot-separated"),
        ("a b@example.com", "dot-separated"),
        ('"a b"@example.com', "dot-separated"),
        ("a@b@example.com", "dot-separated"),
        ("ä@example.com", "dot-separated"),
        ("x" * (MAX_LOCAL_PART + 1) + "@example.com", "longer than 64"),
        ("alice@co.uk", "public suffix"),
        ("alice@192.0.2.1", "IP address"),
        ("alice@localhost", "single label"),
    ],
)
def test_normalise_address_refuses(text: str, reason: str) -> None:
    with pytest.raises(InvalidName, match=reason):
        normalise_address(text)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("App@Example.COM", "app@example.com"),
        ("app@example.com.", "app@example.com"),
        ("Shop@Bücher.Example", "shop@xn--bcher-kva.example"),
        ("a@b@example.com", "a@b@example.com"),  # the domain is after the last "@"
        ("no-at-sign", None),
        ("@example.com", None),
        ("app@", None),
        ("app@bad..name", "app@bad..name"),  # lenient: such a lookup simply finds nothing
    ],
)
def test_lookup_address_is_the_stored_form_or_none(text: str, found: str | None) -> None:
    assert lookup_address(text) == found


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("alice@example.com", "alice@example.com"),
        ("Alice.Smith@Example.COM", "alice.smith@example.com"),
        ("<bob_2-x@example.com>", "bob_2-x@example.com"),
        ("0day@Bücher.example", "0day@xn--bcher-kva.example"),
        ("x" * MAX_LOCAL_PART + "@example.com", "x" * MAX_LOCAL_PART + "@example.com"),
    ],
)
def test_new_mailbox_address_accepts_what_dovecot_and_paths_take(text: str, stored: str) -> None:
    assert new_mailbox_address(text) == stored


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        # Each character of RFC 5322 atext beyond letters, digits, "-" and "_":
        *((f"a{char}b@example.com", repr(char)) for char in "!#$%&'*+/=?^`{|}~"),
        ("a:b@example.com", "':'"),
        ("a b@example.com", "' '"),
        ("a\x00b@example.com", "'\\x00'"),
        ("ä@example.com", "'ä'"),
        ("-a@example.com", "'-' cannot start"),
        ("_a@example.com", "'_' cannot start"),
        (".a@example.com", "'.' cannot start"),
        ("a.@example.com", "'.' cannot end"),
        ("a..b@example.com", "follow another '.'"),
    ],
)
def test_new_mailbox_address_names_the_refused_character(text: str, refused: str) -> None:
    with pytest.raises(InvalidName) as raised:
        new_mailbox_address(text, "alias")
    assert str(raised.value).startswith(f"alias {text!r}: ")
    assert refused in str(raised.value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("alice", "not an address"),
        ("@example.com", "not an address"),
        ("x" * (MAX_LOCAL_PART + 1) + "@example.com", "longer than 64"),
        ("alice@co.uk", "public suffix"),
    ],
)
def test_new_mailbox_address_keeps_the_address_syntax_refusals(text: str, reason: str) -> None:
    with pytest.raises(InvalidName, match=reason):
        new_mailbox_address(text)


def test_mailbox_name_problem_of_a_good_name_and_of_no_name() -> None:
    assert mailbox_name_problem("a.b-c_d9") is None
    assert mailbox_name_problem("") is None  # "not an address" is normalise_address's to say
