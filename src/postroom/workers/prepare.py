"""The supervisor's database step, in a process of its own.

`postroom serve --prepare` (what `supervise` runs before it starts any worker):
apply the migrations, then return every lease this node and its workers held (none
of them runs now), logging how many came back. It runs in a short-lived child so
that the supervisor, which lives as long as the node and handles no mail, never
loads the database layer (SQLAlchemy and Alembic: some 50 MB it would keep for
good). Its failure is its own one-line error and exit status 2, and the node does
not start.

Config keys: [database] url, [server] node_name.
"""

from __future__ import annotations

import logging

from postroom.config import Config
from postroom.db.engine import make_engine
from postroom.db.migrate import ensure_current
from postroom.mta.queue.store import leases_of, release_leases
from postroom.workers.shares import worker_name_prefix

log = logging.getLogger("postroom.supervisor")


def prepare_node(config: Config) -> int:
    """Migrate and return the node's leases; 0 (errors are raised, main says them)."""
    engine = make_engine(config.database_url)
    try:
        ensure_current(engine)
        node = config.node_name
        with engine.begin() as conn:
            released = release_leases(conn, leases_of(node, worker_name_prefix(node)))
    finally:
        engine.dispose()
    if released:
        log.info("returned %d deliveries this node held before it stopped", released)
    return 0
