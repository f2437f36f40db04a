"""Audience filters as operators write them: every operator, every flag's bad input
(one line naming the flag and value), the stored JSON round trip and its refusals,
and `campaign edit`'s merge of new flags over a stored filter."""

from __future__ import annotations

import argparse

import pytest

from postroom.campaign.audience import (
    OPERATORS,
    AudienceError,
    AudienceFilter,
    VarCondition,
)
from postroom.cli.audience_flags import OPERATORS_TEXT, add_audience_arguments, filter_from_args


def parse(*argv: str, base: AudienceFilter | None = None) -> AudienceFilter:
    parser = argparse.ArgumentParser()
    add_audience_arguments(parser)
    return filter_from_args(parser.parse_args(list(argv)), base)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("age = 30", ("age", "=", "30")),
        ("age!=30", ("age", "!=", "30")),
        ("age < 30", ("age", "<", "30")),
        ("age <= 30", ("age", "<=", "30")),
        ("age > -1.5", ("age", ">", "-1.5")),
        ("age >= 1e3", ("age", ">=", "1e3")),
        ("joined >= 2024-01-31", ("joined", ">=", "2024-01-31")),
        ("joined < 31.01.2024", ("joined", "<", "31.01.2024")),
        ("city contains Ber", ("city", "contains", "Ber")),
        ("city CONTAINS a = b", ("city", "contains", "a = b")),
        ("note contains <b>", ("note", "contains", "<b>")),
        ("phone exists", ("phone", "exists", "")),
        ("first name = Ann", ("first name", "=", "Ann")),
        ('city = "New York "', ("city", "=", "New York ")),
        ("city = Ann = Bob", ("city", "=", "Ann = Bob")),
    ],
)
def test_every_operator_parses(text: str, expected: tuple[str, str, str]) -> None:
    condition = VarCondition.parse(text)
    assert (condition.name, condition.operator, condition.value) == expected
    assert condition.operator in OPERATORS


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("age >> 3", "unknown operator '>>' (expected = != < <= > >= contains exists)"),
        ("age => 3", "unknown operator '=>'"),
        ("age == 3", "unknown operator '=='"),
        ("age 3", "expected NAME OP VALUE"),
        ("= 3", "a variable name cannot be empty"),
        ("age =", "= needs a value"),
        ("age exists yes", "exists takes no value"),
        ("city < Berlin", "< compares numbers or dates; 'Berlin' is neither"),
        ("city >= 2024-13-01", "'2024-13-01' is neither"),
        ("x\x1b = 1", "no control characters"),
        ("age = " + "9" * 1001, "at most 1000 characters"),
    ],
)
def test_a_bad_condition_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(AudienceError) as caught:
        parse("--var", text)
    assert message in str(caught.value)
    assert str(caught.value).startswith("--var ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--list", ""], "--list '': a list name cannot be empty"),
        (["--exclude-list", "a\tb"], "no control characters"),
        (["--channel", "tele gram"], "--channel 'tele gram': channel"),
        (["--stage", "x" * 65], "at most 64 characters"),
        (["--registered-after", "yesterday"], "--registered-after 'yesterday': not a date"),
        (["--registered-before", "2024-02-30"], "--registered-before '2024-02-30': not a date"),
        (["--min-rating", "0"], "--min-rating '0': expected a whole number from 1 to 10"),
        (["--min-rating", "6.5"], "--min-rating '6.5'"),
        (["--min-rating", "many"], "--min-rating 'many'"),
        (["--list", "a"] * 65, "--list: at most 64 values"),
    ],
)
def test_a_bad_flag_is_one_line_naming_it(argv: list[str], message: str) -> None:
    with pytest.raises(AudienceError) as caught:
        parse(*argv)
    assert str(caught.value).startswith(argv[0])
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_stored_json_round_trips_and_names_what_it_refuses() -> None:
    audience = parse(
        "--list", "a", "--list", "b", "--list", "a", "--exclude-list", "c", "--stage", "lead",
        "--state", "new", "--channel", "Telegram", "--var", "age >= 3", "--var", "x exists",
        "--registered-after", "2024-01-01", "--registered-before", "01.02.2024",
        "--min-rating", "7",
    )  # fmt: skip
    assert audience.lists == ("a", "b")  # repeated values once
    assert audience.channels == ("telegram",)
    assert AudienceFilter.from_json(audience.to_json()) == audience
    assert AudienceFilter.from_json("") == AudienceFilter() == AudienceFilter.from_json("{}")
    assert audience.list_names() == {"a", "b", "c"}
    for stored, message in [
        ("[1]", "not a JSON object"),
        ("{", "not JSON"),
        ('{"lists": "a"}', "lists has the wrong type"),
        ('{"colour": []}', "unknown key 'colour'"),
        ('{"min_rating": true}', "min_rating True is not a number"),
        ('{"min_rating": 11}', "min_rating"),
        ('{"registered_after": ["2024-01-01"]}', "registered_after has the wrong type"),
        ('{"variables": [{"name": "a", "operator": "~", "value": "1"}]}', "unknown operator"),
        ('{"variables": ["a = 1"]}', "is malformed"),
    ]:
        with pytest.raises(AudienceError, match=message):
            AudienceFilter.from_json(stored)


def test_edit_replaces_only_the_flags_given() -> None:
    stored = parse("--list", "a", "--stage", "lead", "--min-rating", "5")
    edited = parse("--list", "b", "--var", "age > 1", base=stored)
    assert edited.lists == ("b",)
    assert edited.stages == ("lead",) and edited.min_rating == 5
    assert [str(condition) for condition in edited.variables] == ["age > 1"]
    assert parse(base=stored) == stored


def test_the_help_text_names_every_operator_the_parser_knows() -> None:
    assert OPERATORS_TEXT.split() == list(OPERATORS)
