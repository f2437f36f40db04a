"""The contact fields' parsers: channels, dates as spans, labels, and `contact set`
assignments (every built-in name, variables, and the refusals)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from postroom.campaign.contact_edit import parse_assignments
from postroom.campaign.contact_fields import (
    DAY_S,
    check_label,
    moment_span,
    parse_channels,
    parse_moment,
)

MAY_1 = datetime(2024, 5, 1, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("telegram; whatsapp", ("telegram", "whatsapp")),
        ("Telegram,WhatsApp , telegram", ("telegram", "whatsapp")),
        ("email telegram|viber", ("email", "telegram", "viber")),
        ("", ()),
        (" ;, ", ()),
    ],
)
def test_channels_in_one_cell(text: str, expected: tuple[str, ...]) -> None:
    assert parse_channels(text) == expected


@pytest.mark.parametrize("text", ["tele/gram", "x" * 33, "-x", "телеграм"])
def test_a_bad_channel_is_named(text: str) -> None:
    with pytest.raises(ValueError, match="channel"):
        parse_channels(f"email, {text}")


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("2024-05-01", (MAY_1, MAY_1 + DAY_S)),
        ("01.05.2024", (MAY_1, MAY_1 + DAY_S)),
        ("2024-05-01T00:00:00Z", (MAY_1, MAY_1)),
        ("2024-05-01T02:00:00+02:00", (MAY_1, MAY_1)),
        ("2024-05-01 00:00", (MAY_1, MAY_1)),
        ("2024-02-30", None),
        ("May 1 2024", None),
        ("20240501", None),
        ("", None),
    ],
)
def test_dates_are_spans(text: str, span: tuple[float, float] | None) -> None:
    assert moment_span(text) == span
    assert parse_moment(text) == (None if span is None else span[0])


def test_labels_are_trimmed_and_bounded() -> None:
    assert check_label("stage", "  hot   lead ") == "hot lead"
    with pytest.raises(ValueError, match="stage"):
        check_label("stage", "x" * 65)


def test_assignments_of_every_kind() -> None:
    changes = parse_assignments(
        [
            "name=Ann  Smith",
            "STAGE=customer",
            "state=",
            "registered=2024-05-01",
            "channels=email telegram",
            "channels+=viber",
            "channels-=email",
            "City=Berlin",
            "nickname=",
            "note=a=b",
        ]
    )
    assert changes.name == "Ann Smith" and changes.stage == "customer" and changes.state == ""
    assert changes.registered_at == MAY_1
    assert changes.channels == ("email", "telegram")
    assert changes.channels_added == ["viber"] and changes.channels_removed == ["email"]
    assert changes.variables == {"City": "Berlin", "nickname": "", "note": "a=b"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stage", "expected NAME=VALUE"),
        ("=x", "variable name cannot be empty"),
        ("email=a@b.test", "email cannot be set here"),
        ("rating=3", "contact set-rating"),
        ("blocked=1", "contact block"),
        ("registered=soon", "'soon' is not a date"),
        ("channels=a/b", "channel 'a/b'"),
        ("channels+=", "channel ''"),
        ("state=" + "x" * 65, "at most 64 characters"),
        ("city=" + "x" * 10_001, "at most 10000 characters"),
    ],
)
def test_a_bad_assignment_names_itself(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_assignments(["name=ok", text])
    assert str(caught.value).startswith(repr(text[:80]))
    assert message in str(caught.value)


def test_the_same_name_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="city is set twice"):
        parse_assignments(["city=a", "city=b"])
    with pytest.raises(ValueError, match="registered is set twice"):
        parse_assignments(["registered=2024-01-01", "registered_at=2024-01-02"])
