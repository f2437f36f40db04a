"""The queue's numbers (`postroom queue stats`), as plain SQL for any DB-API reader.

`queue_stats(rows, now)` runs four read-only queries through `rows(sql)`, a
function that returns a statement's result rows as tuples, and returns
`{"by_state": {STATE: N} (every state, 0 included), "by_pool": {POOL: N},
"by_destination": {DOMAIN: N} (the 20 busiest), "oldest_age_s": S | None}`,
counting deliveries that are not final. The statements are constant text that
SQLite and PostgreSQL both read, with no parameters and no `%`: `QueueAdmin`
runs them through SQLAlchemy (`exec_driver_sql`), and the CLI's fast path
through a bare `sqlite3` connection, without importing SQLAlchemy — the same
queries either way. Config keys: none. Untrusted input: none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from postroom.db.states import FINAL_STATES, DeliveryState

Rows = Callable[[str], Sequence[Sequence[Any]]]

_NOT_FINAL = "d.state NOT IN ({})".format(", ".join(f"'{state.value}'" for state in FINAL_STATES))
_PENDING = f"FROM deliveries d JOIN messages m ON m.id = d.message_id WHERE {_NOT_FINAL}"
BY_STATE = "SELECT d.state, count(*) FROM deliveries d GROUP BY d.state"
BY_POOL = f"SELECT m.pool, count(*) {_PENDING} GROUP BY m.pool"
BY_DESTINATION = (
    f"SELECT d.domain, count(*) FROM deliveries d WHERE {_NOT_FINAL} "
    "GROUP BY d.domain ORDER BY count(*) DESC, d.domain LIMIT 20"
)
OLDEST = f"SELECT min(m.created_at) {_PENDING}"


def queue_stats(rows: Rows, now: float) -> dict[str, Any]:
    by_state = {state: count for state, count in rows(BY_STATE)}
    oldest = rows(OLDEST)[0][0]
    return {
        "by_state": {state.value: by_state.get(state.value, 0) for state in DeliveryState},
        "by_pool": {pool: count for pool, count in rows(BY_POOL)},
        "by_destination": {domain: count for domain, count in rows(BY_DESTINATION)},
        "oldest_age_s": round(now - oldest, 1) if oldest is not None else None,
    }
