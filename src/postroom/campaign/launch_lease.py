"""Who is launching a campaign: the `launching` state's owner and lease.

`campaign launch` writes its audience snapshot in many short write transactions
(campaign/launch.py), so the campaign spends seconds in the transient state
`launching`. This module makes sure that only ONE launch ever writes a
campaign's rows, and that a launch that died (kill -9, a power cut, a lost
connection) never leaves the campaign stuck:
- `Launcher.this_process()`: pid, a random token (two launches in one process
  differ) and the host name; `key` is what `campaigns.launch_owner` stores
  (`PID.TOKEN@HOST`);
- `LaunchLease(engine, campaign_id, launcher, clock)`:
  - `claim()`, one write transaction, the campaign row locked first (`FOR
    UPDATE` on PostgreSQL; SQLite runs writers one at a time): a draft, or a
    `launching` campaign whose launch is dead, becomes `launching` owned by
    this launcher until now + `LEASE_S`; it returns who ran the dead launch
    taken over ("pid N on HOST"; its rows are still there: `delete_rows` clears
    them). A launch still alive, or any other state, is a `LaunchError` (exit 2);
  - `owned_write()`: a write transaction that first renews the lease, checking
    that this launcher still owns the campaign; if not (a launch that stalled
    past its lease and was taken over), `LaunchError` and nothing is written.
    Every chunk of rows is written inside one, so a launch that lost the
    campaign can never add a row after the one that took it over began;
  - `delete_rows()`: the campaign's recipient rows, `DELETE_ROWS` per owned
    write; `abandon()`: those, then the campaign back to `draft` (a refusal, or
    an error: best effort, an error while abandoning leaves it to the next
    launch's `claim`).
- `dead(owner, lease_until, now)`: a launch is dead when its lease ran out, or
  at once when it ran on this host and its process is gone. A process on
  another host (a second node on PostgreSQL) is waited for until its lease
  runs out; a pid reused on this host is too. Whatever `dead` concludes, the
  owner check of `owned_write` keeps two launches from both writing rows.
- `LaunchError`, what `launch` raises (defined here: both modules raise it).

Config keys: none.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, delete, select, update
from sqlalchemy.exc import SQLAlchemyError

from postroom.db.engine import write_transaction
from postroom.db.models import CampaignState, campaign_recipients, campaigns

LEASE_S = 60.0  # renewed with every chunk, a fraction of a second apart
DELETE_ROWS = 5000


class LaunchError(Exception):
    """A launch that did not happen; nothing was written. `refused`: the answer is no
    (exit 1: the gate, DMARC, nobody to send to); otherwise bad input or state (exit 2)."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


@dataclass(frozen=True, slots=True)
class Launcher:
    """One launch: the process running it, on which host, and a token of its own."""

    pid: int
    token: str
    host: str

    @classmethod
    def this_process(cls) -> Launcher:
        return cls(os.getpid(), secrets.token_hex(4), socket.gethostname())

    @property
    def key(self) -> str:
        return f"{self.pid}.{self.token}@{self.host}"

    @classmethod
    def from_key(cls, key: str) -> Launcher | None:
        process, _, host = key.partition("@")
        pid, _, token = process.partition(".")
        return cls(int(pid), token, host) if pid.isdigit() and host else None

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def dead(owner: str | None, lease_until: float | None, now: float) -> bool:
    if owner is None or lease_until is None or lease_until <= now:
        return True
    launcher = Launcher.from_key(owner)
    if launcher is None:
        return True
    return launcher.host == socket.gethostname() and not _process_runs(launcher.pid)


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it runs
        return True
    return True


def _interrupted_launch(
    campaign_id: int, state: str, owner: str | None, lease_until: float | None, now: float
) -> str | None:
    """None for a draft; for a `launching` campaign whose launch is dead, who ran it
    (what the new launch starts over); a `LaunchError` (exit 2) for anything else."""
    if state == CampaignState.DRAFT:
        return None
    if state != CampaignState.LAUNCHING:
        raise LaunchError(
            f"campaign {campaign_id} is {state}: only a draft is launched "
            "(campaign copy makes a new draft from it)"
        )
    if not dead(owner, lease_until, now):
        assert lease_until is not None
        until = datetime.fromtimestamp(lease_until, UTC).strftime("%H:%M:%S UTC")
        raise LaunchError(
            f"campaign {campaign_id} is being launched ({_who(owner)}, lease until {until}): "
            "wait for that launch to end"
        )
    return _who(owner)


def _who(owner: str | None) -> str:
    launcher = Launcher.from_key(owner or "")
    return launcher.describe() if launcher is not None else "an unknown process"


class LaunchLease:
    def __init__(
        self, engine: Engine, campaign_id: int, launcher: Launcher, clock: Callable[[], float]
    ) -> None:
        self.engine = engine
        self.campaign_id = campaign_id
        self.launcher = launcher
        self.clock = clock

    def claim(self) -> str | None:
        """The campaign is ours; who ran the dead launch it was taken from, if any."""
        with write_transaction(self.engine) as conn:
            row = conn.execute(
                select(campaigns.c.state, campaigns.c.launch_owner, campaigns.c.launch_lease_until)
                .where(campaigns.c.id == self.campaign_id)
                .with_for_update()
            ).first()
            if row is None:
                raise LaunchError(f"no campaign {self.campaign_id}")
            now = self.clock()
            interrupted = _interrupted_launch(
                self.campaign_id, row.state, row.launch_owner, row.launch_lease_until, now
            )
            conn.execute(
                update(campaigns)
                .where(campaigns.c.id == self.campaign_id)
                .values(
                    state=CampaignState.LAUNCHING.value,
                    launch_owner=self.launcher.key,
                    launch_lease_until=now + LEASE_S,
                )
            )
        return interrupted

    @contextmanager
    def owned_write(self) -> Iterator[Connection]:
        with write_transaction(self.engine) as conn:
            renewed = conn.execute(
                update(campaigns)
                .where(
                    campaigns.c.id == self.campaign_id,
                    campaigns.c.state == CampaignState.LAUNCHING.value,
                    campaigns.c.launch_owner == self.launcher.key,
                )
                .values(launch_lease_until=self.clock() + LEASE_S)
            ).rowcount
            if not renewed:
                raise LaunchError(
                    f"campaign {self.campaign_id}: this launch stalled past its lease and "
                    "another took it over"
                )
            yield conn

    def delete_rows(self, *, back_to_draft: bool = False) -> None:
        """The campaign's recipient rows, `DELETE_ROWS` per owned write; `back_to_draft`:
        the last of these writes makes the campaign a draft again."""
        some = (
            select(campaign_recipients.c.id)
            .where(campaign_recipients.c.campaign_id == self.campaign_id)
            .limit(DELETE_ROWS)
        )
        while True:
            with self.owned_write() as conn:
                deleted = conn.execute(
                    delete(campaign_recipients).where(campaign_recipients.c.id.in_(some))
                ).rowcount
                if deleted < DELETE_ROWS:
                    if back_to_draft:
                        conn.execute(
                            update(campaigns)
                            .where(campaigns.c.id == self.campaign_id)
                            .values(
                                state=CampaignState.DRAFT.value,
                                launch_owner=None,
                                launch_lease_until=None,
                            )
                        )
                    return

    def abandon(self) -> None:
        """Rows deleted, the campaign a draft again. An error doing it (the database
        gone too, or the campaign lost to another launch) leaves it as it is: the next
        launch finds this one dead, or the other one finishes."""
        with suppress(LaunchError, SQLAlchemyError):
            self.delete_rows(back_to_draft=True)
