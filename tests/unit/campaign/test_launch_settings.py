"""`campaign launch` flags: start times with offsets, zones and in the past, durations,
parts, pools, the From name — each refusal one line naming its flag."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from postroom.campaign.launch_settings import (
    SettingsError,
    campaign_pool,
    sending_settings,
    start_time,
)
from postroom.config.schema import Config, PoolConfig
from postroom.config.tenancy import CampaignConfig

NOW = datetime(2030, 1, 15, 12, 0, tzinfo=UTC).timestamp()


def config(**campaign: object) -> Config:
    return Config(
        campaign=CampaignConfig(**campaign),  # type: ignore[arg-type]
        pool=(
            PoolConfig(name="transactional", sources=("a",)),
            PoolConfig(name="mailings", sources=("a",)),
        ),
    )


@pytest.mark.parametrize(
    ("text", "zone", "expected"),
    [
        ("2030-05-01T09:00:00+02:00", "UTC", datetime(2030, 5, 1, 7, 0, tzinfo=UTC)),
        ("2030-05-01T09:00Z", "Europe/Paris", datetime(2030, 5, 1, 9, 0, tzinfo=UTC)),
        # No offset: a wall-clock time in [campaign] timezone (summer time in Paris).
        ("2030-05-01 09:00", "Europe/Paris", datetime(2030, 5, 1, 7, 0, tzinfo=UTC)),
        ("2030-01-20T09:00", "America/New_York", datetime(2030, 1, 20, 14, 0, tzinfo=UTC)),
        ("2030-02-01", "UTC", datetime(2030, 2, 1, 0, 0, tzinfo=UTC)),
    ],
)
def test_a_start_time_with_an_offset_or_in_the_configured_zone(
    text: str, zone: str, expected: datetime
) -> None:
    assert start_time(text, zone, NOW) == expected.timestamp()


def test_a_start_in_the_past_is_now_and_a_typo_in_the_year_is_refused() -> None:
    assert start_time("2020-01-01T00:00+00:00", "UTC", NOW) == NOW
    with pytest.raises(SettingsError, match="--at: '2300-01-01' is more than a year ahead"):
        start_time("2300-01-01", "UTC", NOW)
    with pytest.raises(SettingsError, match="--at: 'tomorrow' is not an ISO 8601 time"):
        start_time("tomorrow", "UTC", NOW)


def test_durations_parts_and_defaults() -> None:
    settings = sending_settings(
        config(), interval="2s", part_size=500, part_gap="1h", from_name=" Spring  Team ", now=NOW
    )
    assert (settings.interval_s, settings.part_size, settings.parts, settings.part_gap_s) == (
        2.0,
        500,
        None,
        3600.0,
    )
    assert (settings.start_at, settings.pool, settings.history) == (None, "mailings", True)
    assert settings.from_name == "Spring Team"
    assert sending_settings(config(), interval="500ms", now=NOW).interval_s == 0.5
    quiet = sending_settings(config(history=False), parts=3, from_name="", now=NOW)
    assert (quiet.history, quiet.parts, quiet.from_name, quiet.interval_s) == (False, 3, None, 0.0)
    assert sending_settings(config(history=False), history=True, now=NOW).history


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"parts": 2, "part_size": 10}, "--parts and --part-size: give one of them"),
        ({"part_gap": "1h"}, "--part-gap: needs --parts or --part-size"),
        ({"parts": 0}, "--parts: a number from 1 to 10000"),
        ({"part_size": -5}, "--part-size: a number from 1 to"),
        ({"interval": "soon"}, "--interval: 'soon' is not a duration such as 2s"),
        ({"interval": "-2s"}, "--interval: '-2s' is not a duration"),
        ({"interval": "2d"}, "--interval: at most 86400 seconds"),
        ({"parts": 2, "part_gap": "60d"}, "--part-gap: at most"),
        ({"pool": "bulk"}, "--pool: no [[pool]] named 'bulk' (known: transactional, mailings)"),
        ({"from_name": "Evil\r\nBcc: x@y.test"}, "--from-name: one line (no CR or LF)"),
        ({"from_name": "a\x00b"}, "--from-name: display name 'a\\x00b' holds control"),
    ],
)
def test_bad_flags_are_refused_naming_the_flag(flags: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        sending_settings(config(), now=NOW, **flags)  # type: ignore[arg-type]
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)


def test_the_pool_defaults_to_the_configured_campaign_pool() -> None:
    assert campaign_pool(config(pool="transactional"), None) == "transactional"
    assert campaign_pool(config(), "transactional") == "transactional"
    # Without any [[pool]] the queue has its implicit pool, and only that one.
    assert campaign_pool(Config(), None) == "default"
    with pytest.raises(SettingsError, match="known: default"):
        campaign_pool(Config(), "mailings")
