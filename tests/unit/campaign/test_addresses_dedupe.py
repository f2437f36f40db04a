"""Duplicates after normalisation: the first occurrence wins, later ones name it."""

from __future__ import annotations

import pytest

from postroom.campaign.addresses import Validator


async def verdicts(validator: Validator, *inputs: str) -> list[tuple[str, str | None]]:
    return [(item.verdict, item.duplicate_of) for item in await validator.validate(inputs)]


@pytest.mark.parametrize(
    ("first", "later"),
    [
        ("ann.lee@gmail.com", "annlee@gmail.com"),  # Gmail ignores dots
        ("annlee@gmail.com", "a.n.n.l.e.e+news@gmail.com"),  # ... and +tags
        ("annlee@gmail.com", "annlee@googlemail.com"),  # one namespace
        ("Ann@Example.com", "ann@EXAMPLE.COM"),  # case of both parts
        ("ann@outlook.com", "ann+shop@outlook.com"),
        ("ann@hotmail.com", "ANN+x@hotmail.com"),
        ("ann@icloud.com", "ann+x@me.com"),
        ("ann@proton.me", "ann+x@protonmail.com"),
        ("ann@fastmail.com", "ann+lists@fastmail.com"),
        ("ann@yahoo.com", "ann-shopping@yahoo.com"),  # Yahoo's disposable -keyword
        ("ann@yandex.ru", "ann@ya.ru"),
        ("  ann@example.com", "<ann@example.com>"),  # junk does not hide a duplicate
        ("ann@bücher.example", "ann@xn--bcher-kva.example"),  # IDNA forms
    ],
)
async def test_later_spelling_is_a_duplicate_of_the_first(
    syntax_validator: Validator, first: str, later: str
) -> None:
    results = await syntax_validator.validate([first, later])
    assert results[0].verdict == "valid", results[0]
    assert results[0].duplicate_of is None
    assert results[1].verdict == "duplicate", results[1]
    assert results[1].reasons[-1] == "duplicate"
    assert results[1].duplicate_of == results[0].address


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("ann.lee@example.com", "annlee@example.com"),  # dots count outside Gmail
        ("ann+x@example.com", "ann@example.com"),  # tags are the server's business
        ("ann.lee@outlook.com", "annlee@outlook.com"),
        ("ann-x@gmail.com", "ann@gmail.com"),  # "-" is no tag at Gmail
        ("ann@gmx.de", "ann@gmx.com"),  # separate services
    ],
)
async def test_different_mailboxes_are_not_duplicates(
    syntax_validator: Validator, one: str, other: str
) -> None:
    assert await verdicts(syntax_validator, one, other) == [("valid", None), ("valid", None)]


async def test_first_occurrence_wins_for_every_later_one(syntax_validator: Validator) -> None:
    results = await syntax_validator.validate(
        ["x@example.net", "Ann@Gmail.com", "ann@gmail.com", "not an address", "A.NN@gmail.com"]
    )
    assert [item.verdict for item in results] == [
        "valid",
        "valid",
        "duplicate",
        "invalid",
        "duplicate",
    ]
    assert results[2].duplicate_of == "Ann@gmail.com"
    assert results[4].duplicate_of == "Ann@gmail.com"
    assert results[3].duplicate_of is None


async def test_duplicate_of_an_invalid_input_stays_invalid(syntax_validator: Validator) -> None:
    results = await syntax_validator.validate(["ann@mailinator.com", "ANN@mailinator.com"])
    assert results[1].verdict == "invalid"
    assert results[1].reasons == ("disposable", "duplicate")
    assert results[1].duplicate_of == "ann@mailinator.com"


async def test_a_risky_input_repeated_is_a_duplicate(syntax_validator: Validator) -> None:
    results = await syntax_validator.validate(["postmaster@example.com", "Postmaster@example.com"])
    assert results[0].verdict == "risky"
    assert results[1].verdict == "duplicate"
    assert results[1].reasons == ("role_account", "duplicate")


async def test_verdicts_come_back_in_input_order(syntax_validator: Validator) -> None:
    inputs = [f"user{number}@example.com" for number in range(50)]
    results = await syntax_validator.validate(iter(inputs))
    assert [item.input for item in results] == inputs
