"""Junk around addresses: each kind is trimmed and reported; broken forms stay broken."""

from __future__ import annotations

import pytest

from postroom.campaign.addresses import Validator
from postroom.campaign.addresses.junk import clean


@pytest.mark.parametrize(
    "text",
    [
        "  ann@example.com  ",
        "\tann@example.com\r\n",
        "\u00a0ann@example.com\u00a0",  # no-break spaces
        "\u202fann@example.com",  # narrow no-break space
        "\ufeffann@example.com",  # byte-order mark
        "ann@example.com\u200b",  # zero-width space at the end
        "ann\u200b@example.com",  # ... and inside
        "\u200dann@example.com\u200e",  # joiner and direction mark at the edges
        "ann@example.com.",
        "ann@example.com,",
        "ann@example.com;",
        "ann@example.com.;, ",
        ",ann@example.com",
        "ann@example.com\uff0e",  # full-width full stop
        "mailto:ann@example.com",
        "MAILTO:ann@example.com?subject=Hello",
        "<ann@example.com>",
        " <mailto:ann@example.com>; ",
        '"ann@example.com"',
        "'ann@example.com'",
        "\u201cann@example.com\u201d",
    ],
)
def test_junk_is_trimmed_and_reported(syntax_validator: Validator, text: str) -> None:
    result = syntax_validator.check_syntax(text)
    assert result.address == "ann@example.com", result
    assert result.verdict == "valid"
    assert result.reasons == ("junk_trimmed",)
    assert result.input == text


@pytest.mark.parametrize(
    ("text", "reasons"),
    [
        ('"Ann Lee" <ann@example.com>', ("display_name",)),
        ("Ann Lee <ann@example.com>", ("display_name",)),
        ("Lee, Ann <ann@example.com>", ("display_name",)),
        (' "Ann" <ann@example.com>, ', ("junk_trimmed", "display_name")),
    ],
)
def test_display_names_are_dropped(
    syntax_validator: Validator, text: str, reasons: tuple[str, ...]
) -> None:
    result = syntax_validator.check_syntax(text)
    assert result.address == "ann@example.com"
    assert result.verdict == "valid"
    assert result.reasons == reasons


@pytest.mark.parametrize(
    "text",
    [
        "<ann@example.com>>",  # unbalanced: not repaired
        "<ann@example.com",
        "<ann@example.com> !",
        "\u202eann@example.com",  # a direction override is never removed silently
        "ann @example.com",  # inside the address, a space stays an error
        "   ",
        "\u200b",
    ],
)
def test_broken_forms_stay_invalid(syntax_validator: Validator, text: str) -> None:
    assert syntax_validator.check_syntax(text).verdict == "invalid"


def test_empty_input_says_empty(syntax_validator: Validator) -> None:
    result = syntax_validator.check_syntax(" \u00a0; ")
    assert result.verdict == "invalid"
    assert result.reasons == ("junk_trimmed", "empty")
    assert result.address is None


def test_clean_keeps_a_quoted_local_part() -> None:
    assert clean('"a b"@example.com').text == '"a b"@example.com'
    assert not clean("ann@example.com").trimmed


def test_overlong_input_is_refused_unread(syntax_validator: Validator) -> None:
    result = syntax_validator.check_syntax(" " * 5000 + "ann@example.com")
    assert result.verdict == "invalid"
    assert result.reasons == ("syntax",)
