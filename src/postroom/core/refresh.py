"""Keep an in-memory copy of database state fresh.

Hot paths (RCPT, signing) answer from memory instead of asking the database
per message; `keep_fresh(load, what)` re-runs the blocking `load` in a thread
every `REFRESH_S`, so a change made by the CLI (a domain verified, a DKIM key
activated) takes effect within a quarter second on every node sharing the
database. A failing `load` keeps the last good copy and is logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("postroom.refresh")

REFRESH_S = 0.25


async def keep_fresh(load: Callable[[], None], what: str, interval_s: float = REFRESH_S) -> None:
    while True:
        try:
            await asyncio.to_thread(load)
        except Exception:  # keep the last good copy; the database may be back soon
            log.exception("cannot re-read %s", what)
        await asyncio.sleep(interval_s)
