"""VERP return paths: the address format, the signed token round trip, and the
refusal of every address that is not exactly one we made."""

from __future__ import annotations

import re

import pytest

from postroom.mta.bounce.verp import Verp

KEY = bytes(range(32))
DOMAIN = "bounces.example.test"
VERP = Verp(KEY, DOMAIN)
ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
IDS = [0, 1, 42, 2**31, 2**64 - 1]


def _token(address: str) -> str:
    local = address.partition("@")[0]
    assert local.startswith("bounce+")
    return local.removeprefix("bounce+")


@pytest.mark.parametrize("delivery_id", IDS)
def test_address_format_and_length(delivery_id: int) -> None:
    address = VERP.address(delivery_id)
    assert re.fullmatch(rf"bounce\+[a-z2-7]{{29}}@{re.escape(DOMAIN)}", address)
    assert len(address.partition("@")[0]) <= 64  # RFC 5321 4.5.3.1.1


@pytest.mark.parametrize("delivery_id", IDS)
def test_round_trip(delivery_id: int) -> None:
    assert VERP.delivery_id(VERP.address(delivery_id)) == delivery_id


def test_addresses_differ_per_delivery_and_per_key() -> None:
    assert VERP.address(1) != VERP.address(2)
    assert Verp(b"another key", DOMAIN).address(1) != VERP.address(1)


def test_the_domain_is_lower_cased() -> None:
    assert Verp(KEY, "Bounces.Example.TEST").address(5).endswith(f"@{DOMAIN}")


def test_an_address_is_read_case_insensitively() -> None:
    address = VERP.address(12345)
    assert VERP.delivery_id(address.upper()) == 12345
    assert VERP.delivery_id("BOUNCE+" + address.removeprefix("bounce+")) == 12345
    assert VERP.delivery_id(address + ".") == 12345  # a root-anchored domain


@pytest.mark.parametrize("domain", ["other.test", "example.test", "x.bounces.example.test", ""])
def test_another_domain_is_not_ours(domain: str) -> None:
    local = VERP.address(7).partition("@")[0]
    assert VERP.delivery_id(f"{local}@{domain}") is None


@pytest.mark.parametrize("local", ["bounces+", "bounce-", "xbounce+", ""])
def test_another_prefix_is_not_ours(local: str) -> None:
    token = _token(VERP.address(7))
    assert VERP.delivery_id(f"{local}{token}@{DOMAIN}") is None


def test_a_token_changed_at_any_position_is_refused() -> None:
    # Every other character at every position: the signature covers all of them,
    # and the last character's unused bit must not give a second spelling.
    token = _token(VERP.address(987654321))
    accepted = [
        (position, char)
        for position in range(len(token))
        for char in ALPHABET
        if char != token[position]
        and VERP.delivery_id(f"bounce+{token[:position]}{char}{token[position + 1 :]}@{DOMAIN}")
        is not None
    ]
    assert accepted == []


def test_a_token_of_another_key_is_refused() -> None:
    address = Verp(b"another key", DOMAIN).address(42)
    assert VERP.delivery_id(address) is None
    assert VERP.find(address.encode()) == []


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a",
        "a" * 28,
        "a" * 30,
        "a" * 29,  # well formed, but not signed
        "0" * 29,  # not base32
        "1" * 29,
        "!" * 29,
    ],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    assert VERP.delivery_id(f"bounce+{token}@{DOMAIN}") is None


def test_a_good_token_cut_or_extended_is_refused() -> None:
    token = _token(VERP.address(3))
    for changed in (token[:-1], token + "a", token[1:], "a" + token):
        assert VERP.delivery_id(f"bounce+{changed}@{DOMAIN}") is None


def test_find_collects_valid_tokens_in_order_once() -> None:
    data = (
        b"Return-Path: <" + VERP.address(5).encode() + b">\r\n"
        b"X-Other: " + VERP.address(9).upper().encode() + b"\r\n"
        b"Quoted again: " + VERP.address(5).encode() + b"\r\n"
        b"Forged: " + Verp(b"another key", DOMAIN).address(6).encode() + b"\r\n"
        b"Junk: bounce+" + b"a" * 29 + b"@" + DOMAIN.encode() + b"\r\n"
    )
    assert VERP.find(data) == [5, 9]


def test_find_in_data_without_tokens() -> None:
    assert VERP.find(b"") == []
    assert VERP.find(b"From: someone@example.test\r\n\r\nbounce+short@x\r\n") == []


def test_find_stops_after_20() -> None:
    data = b"\r\n".join(VERP.address(n).encode() for n in range(1, 31))
    assert VERP.find(data) == list(range(1, 21))
