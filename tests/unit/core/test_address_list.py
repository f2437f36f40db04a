"""The mailbox-list reader shared by DMARC and submission: the addr-spec of every mailbox,
or None for anything that is no mailbox list (the DMARC tests cover the domains)."""

from __future__ import annotations

import pytest

from postroom.core.address_list import mailbox_addresses


@pytest.mark.parametrize(
    ("value", "addresses"),
    [
        ("app@shop.test", ["app@shop.test"]),
        ("App <APP@Shop.Test>", ["APP@Shop.Test"]),  # as written: callers compare
        ('"Doe, Jane" <jane@shop.test>, bob@shop.test', ["jane@shop.test", "bob@shop.test"]),
        ('"ceo@bank.test" <app@shop.test>', ["app@shop.test"]),  # a display name only
        ('"quoted local@part"@shop.test', ['"quoted local@part"@shop.test']),
        ("app@shop.test (ceo@bank.test)", ["app@shop.test"]),  # a comment only
        ("<@relay.test:app@shop.test>", ["app@shop.test"]),  # the route is dropped
        ("Team: a@shop.test, b@shop.test;", ["a@shop.test", "b@shop.test"]),
        ("=?utf-8?q?ceo=40bank.test?= <app@shop.test>", ["app@shop.test"]),
        ("", []),
        ("   ", []),
        ("undisclosed-recipients:;", []),
    ],
)
def test_the_addresses_of_a_mailbox_list(value: str, addresses: list[str]) -> None:
    assert mailbox_addresses(value) == addresses


@pytest.mark.parametrize(
    "value",
    [
        "App",  # a display name alone: a phrase is no addr-spec
        "a@evil.test <app@shop.test>",
        "app@shop.test, a@b@evil.test",  # one bad mailbox spoils the list
        "app@[192.0.2.1]",
        '"unclosed <app@shop.test>',
        "(unclosed app@shop.test",
        "<app@shop.test",
        "app@shop..test",
    ],
)
def test_what_is_no_mailbox_list(value: str) -> None:
    assert mailbox_addresses(value) is None


def test_cost_is_linear_in_the_value() -> None:
    # Deep comments, long quotes and many mailboxes: each character is looked at a bounded
    # number of times (a quadratic reader would take minutes here).
    assert mailbox_addresses("(" * 200_000 + "x" + ")" * 200_000 + " a@shop.test") == [
        "a@shop.test"
    ]
    assert mailbox_addresses('"' + "x" * 400_000) is None
    assert len(mailbox_addresses(", ".join(["a@shop.test"] * 50_000)) or []) == 50_000
