"""What From and Sender of submitted mail must say (issue 12, item 7): at least one
address, every one allowed, several only with a Sender (RFC 5322 3.6.2)."""

from __future__ import annotations

import pytest

from postroom.mailbox.names import lookup_address
from postroom.mta.inbound.authors import MAX_AUTHORS, author_refusal

MAILBOX = "app@shop.test"
ALLOWED = {"app@shop.test", "news@shop.test"}


def judge(from_values: list[str], sender_values: list[str] | None = None) -> str | None:
    refusal = author_refusal(
        from_values, sender_values or [], MAILBOX, lambda a: lookup_address(a) in ALLOWED
    )
    return None if refusal is None else refusal.wire()


@pytest.mark.parametrize(
    ("from_values", "sender_values"),
    [
        (["app@shop.test"], []),
        (["App <APP@Shop.Test>"], []),
        (['"Receipts, App" <app@shop.test> (our app)'], []),
        (["app@shop.test, News <news@shop.test>"], ["app@shop.test"]),
        (["Team: app@shop.test, news@shop.test;"], ["News <news@shop.test>"]),
        (["news@shop.test"], ["app@shop.test"]),
    ],
)
def test_accepted(from_values: list[str], sender_values: list[str]) -> None:
    assert judge(from_values, sender_values) is None


@pytest.mark.parametrize(
    ("from_values", "sender_values", "reply"),
    [
        ([], [], "550 5.6.0 Message has no From field"),
        (["app@shop.test", "app@shop.test"], [], "550 5.6.0 Message has 2 From fields"),
        ([""], [], "550 5.6.0 From names no address"),
        (["undisclosed-recipients:;"], [], "550 5.6.0 From names no address"),
        (["App"], [], "550 5.6.0 From is not a list of mailboxes"),
        (['"App" <app@shop.test'], [], "550 5.6.0 From is not a list of mailboxes"),
        (["ceo@bank.test <app@shop.test>"], [], "550 5.6.0 From is not a list of mailboxes"),
        (["app@shop.test, news@shop.test"], [], "550 5.6.0 From names several addresses"),
        (["app@shop.test"], [""], "550 5.6.0 Sender must be one field"),
        (["app@shop.test"], ["a@shop.test, b@shop.test"], "550 5.6.0 Sender must be one"),
        (["app@shop.test"], ["app@shop.test", "app@shop.test"], "550 5.6.0 Sender must"),
        (["ceo@bank.test"], [], "553 5.7.1 From <ceo@bank.test>: not an address app@"),
        (
            ["app@shop.test, ceo@bank.test"],
            ["app@shop.test"],
            "553 5.7.1 From <ceo@bank.test>: not an address app@shop.test may send as",
        ),
        (["app@shop.test"], ["ceo@bank.test"], "553 5.7.1 Sender <ceo@bank.test>"),
        (
            [", ".join(["app@shop.test"] * (MAX_AUTHORS + 1))],
            ["app@shop.test"],
            f"550 5.6.0 From names more than {MAX_AUTHORS} addresses",
        ),
    ],
)
def test_refused(from_values: list[str], sender_values: list[str], reply: str) -> None:
    assert (judge(from_values, sender_values) or "").startswith(reply)
