"""A campaign's sending settings, from what the operator typed (`campaign launch`).

`sending_settings(config, ...)` checks every flag before anything is read from
the database and gives a frozen `SendingSettings`, or a `SettingsError` (one
line naming the flag):
- `--at TIME`: ISO 8601 (`2030-05-01T09:00`, `2030-05-01 09:00+02:00`,
  `...Z`, a date alone is its midnight). With an offset it is that instant;
  without, it is a wall-clock time in `[campaign] timezone` (IANA). A time in
  the past means now; more than `MAX_START_AHEAD_S` ahead is refused (a typo
  in the year). None: now.
- `--interval`, `--part-gap`: durations as the config writes them (`2s`, `5m`,
  `1h`, `500ms`; a bare number is seconds), at most `MAX_INTERVAL_S` /
  `MAX_PART_GAP_S`. `--part-gap` needs parts.
- `--parts N` or `--part-size N` (not both): a positive count, at most
  `MAX_PARTS` / `MAX_PART_SIZE`.
- `--pool`: a `[[pool]]` of the config (with none configured, the implicit
  pool); unknown names are refused naming the known ones. Default
  `Config.campaign_pool`.
- `--from-name`: the From display name, checked as a sender's name is (one
  line, no control characters); empty means the sender's own name (None).
- `--history`/`--no-history`: default `[campaign] history`.
The release times these settings give each recipient are `launch.py`'s.

Untrusted input: the flags' text (an operator's). No I/O.
Config keys: [campaign] timezone, pool, history; [[pool]]; [delivery] default_pool.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime

from postroom.campaign.senders import SenderError, display_name
from postroom.config.loader import ConfigError, parse_duration
from postroom.config.schema import Config
from postroom.mta.lanes.pools import IMPLICIT_POOL

MAX_START_AHEAD_S = 366 * 86400
MAX_INTERVAL_S = 86400.0
MAX_PART_GAP_S = 30 * 86400.0
MAX_PARTS = 10_000
MAX_PART_SIZE = 10_000_000
_MAX_ECHO_CHARS = 40  # of a refused value, in the error line


class SettingsError(ValueError):
    """A flag of `campaign launch` that cannot be used: one line naming it."""


@dataclass(frozen=True, slots=True)
class SendingSettings:
    start_at: float | None  # None: now (a time in the past is now too)
    interval_s: float
    parts: int | None  # the audience in this many parts...
    part_size: int | None  # ...or in parts of this many recipients (not both)
    part_gap_s: float
    pool: str
    from_name: str | None  # None: the sender's own name
    history: bool
    allow_send_only_dmarc: bool = False


def sending_settings(
    config: Config,
    *,
    at: str | None = None,
    interval: str | None = None,
    parts: int | None = None,
    part_size: int | None = None,
    part_gap: str | None = None,
    pool: str | None = None,
    from_name: str | None = None,
    history: bool | None = None,
    allow_send_only_dmarc: bool = False,
    now: float,
) -> SendingSettings:
    if parts is not None and part_size is not None:
        raise SettingsError("--parts and --part-size: give one of them")
    if part_gap is not None and parts is None and part_size is None:
        raise SettingsError("--part-gap: needs --parts or --part-size")
    return SendingSettings(
        start_at=None if at is None else start_time(at, config.campaign.timezone, now),
        interval_s=duration("--interval", interval, MAX_INTERVAL_S),
        parts=_count("--parts", parts, MAX_PARTS),
        part_size=_count("--part-size", part_size, MAX_PART_SIZE),
        part_gap_s=duration("--part-gap", part_gap, MAX_PART_GAP_S),
        pool=campaign_pool(config, pool),
        from_name=_from_name(from_name),
        history=config.campaign.history if history is None else history,
        allow_send_only_dmarc=allow_send_only_dmarc,
    )


def start_time(text: str, timezone: str, now: float) -> float:
    """`--at`: the instant as Unix seconds; a past one is `now`."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SettingsError(
            f"--at: {_echo(text)} is not an ISO 8601 time such as 2030-05-01T09:00 "
            "or 2030-05-01T09:00+02:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zoneinfo.ZoneInfo(timezone))
    start = moment.timestamp()
    if start > now + MAX_START_AHEAD_S:
        raise SettingsError(f"--at: {_echo(text)} is more than a year ahead")
    return max(start, now)


def duration(flag: str, text: str | None, maximum: float) -> float:
    """A duration flag in seconds (0 when not given)."""
    if text is None:
        return 0.0
    try:
        seconds = float(parse_duration(text, flag))
    except ConfigError:
        raise SettingsError(
            f"{flag}: {_echo(text)} is not a duration such as 2s, 5m or 1h"
        ) from None
    if seconds > maximum:
        raise SettingsError(f"{flag}: at most {maximum:g} seconds")
    return seconds


def campaign_pool(config: Config, name: str | None) -> str:
    """`--pool`, or the configured campaign pool: always a pool the queue knows."""
    known = [pool.name for pool in config.pool] or [IMPLICIT_POOL]
    chosen = name if name is not None else (config.campaign_pool or known[0])
    if chosen not in known:
        raise SettingsError(
            f"--pool: no [[pool]] named {_echo(chosen)} (known: {', '.join(known)})"
        )
    return chosen


def _count(flag: str, value: int | None, maximum: int) -> int | None:
    if value is not None and not 1 <= value <= maximum:
        raise SettingsError(f"{flag}: a number from 1 to {maximum}")
    return value


def _from_name(text: str | None) -> str | None:
    if text is None:
        return None
    if "\r" in text or "\n" in text:
        raise SettingsError("--from-name: one line (no CR or LF)")
    try:
        return display_name(text) or None
    except SenderError as error:
        raise SettingsError(f"--from-name: {error}") from None


def _echo(text: str) -> str:
    return repr(text[:_MAX_ECHO_CHARS])
