"""Group commit: many writers, one transaction, one fsync.

Sessions and delivery workers submit write operations (a function taking a
SQLAlchemy connection, or an item for a batch operation that handles many
items in one statement) and await their result. One thread runs whatever has
accumulated in a single transaction, so that concurrent SMTP sessions share one
fsync instead of queueing behind each other's (this is how the queue reaches
thousands of durable messages a second on SQLite). The caller's future resolves
only after the commit returned: acknowledge after commit.

Several processes may each run a committer on one database (the workers of a
multi-process `serve`). On SQLite every transaction here starts with
`BEGIN IMMEDIATE` (`db.engine.write_transaction`): it waits for the write lock
(busy timeout) before its first statement, so what an operation reads (the
due deliveries of a claim, a contact's rating) cannot change under it before
it commits, and it never fails with "database is locked" half-way through.

When a batch's transaction fails, each operation is retried alone so that one
bad operation fails only its own caller. Reads do not come here. A caller
cancelled while its write is pending does not withdraw it: the write commits
and its result is dropped (with a warning), so a caller that must act on a
committed result (hand jobs to delivery, record a reservation) submits from a
`core.shielded` task that cannot be cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from postroom.db.engine import write_transaction, writers_turn

log = logging.getLogger(__name__)

T = TypeVar("T")
Operation = Callable[[Connection], Any]
# Does the work of many callers in one call: items in, one result per item out.
BatchOperation = Callable[[Connection, list[Any]], list[Any]]


def _call_each(connection: Connection, operations: list[Operation]) -> list[Any]:
    return [operation(connection) for operation in operations]


@dataclass(slots=True)
class _Entry:
    batch_operation: BatchOperation
    item: Any
    future: asyncio.Future[Any]


class GroupCommitter:
    def __init__(self, engine: Engine, *, batch_max: int = 256) -> None:
        self._engine = engine
        self._batch_max = batch_max
        # Appended on the event loop, taken by the commit thread once its turn came.
        self._pending: deque[_Entry] = deque()
        self._wakeup = asyncio.Event()
        # One thread: SQLite has one writer anyway, and ordering stays simple.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="postroom-commit")
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="group-commit")

    async def submit(self, operation: Callable[[Connection], T]) -> T:
        """Run `operation` in the next transaction; its result once committed."""
        return await self.submit_item(_call_each, operation)

    async def submit_item(self, batch_operation: BatchOperation, item: Any) -> Any:
        """Add `item` to the next transaction; every item of that transaction with the
        same `batch_operation` is handled by one call (e.g. one multi-row INSERT)."""
        if self._closing:
            raise RuntimeError("the queue is shutting down")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(_Entry(batch_operation, item, future))
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        """Commit what is pending, then stop the thread."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._thread.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch, results = await loop.run_in_executor(self._thread, self._commit_next)
            for entry, (ok, value) in zip(batch, results, strict=True):
                if entry.future.done():
                    # Its caller was cancelled. Work whose result must be acted on
                    # (an enqueue's jobs, a reservation) comes through ShieldedTasks
                    # and is never cancelled: this says one slipped through.
                    if ok:
                        log.warning("a committed write (%s) had no caller left", _name(entry))
                    continue
                if ok:
                    entry.future.set_result(value)
                else:
                    entry.future.set_exception(value)

    def _commit_next(self) -> tuple[list[_Entry], list[tuple[bool, Any]]]:
        """The pending entries (up to batch_max) in one transaction, taken once this
        process's turn to write came: with several writer processes, what arrived
        while the others held the database joins this transaction, not the next."""
        with writers_turn(self._engine):
            batch = [
                self._pending.popleft() for _ in range(min(self._batch_max, len(self._pending)))
            ]
            return batch, self._commit_batch(batch) if batch else []

    def _commit_batch(self, batch: list[_Entry]) -> list[tuple[bool, Any]]:
        try:
            with write_transaction(self._engine, in_turn=True) as connection:
                return [(True, value) for value in self._apply(connection, batch)]
        except Exception:
            if len(batch) == 1:
                log.exception("queue write failed")
                return [(False, QueueWriteError("queue write failed"))]
        # Retry alone: one failing operation must not fail the others' callers.
        return [result for entry in batch for result in self._commit_batch([entry])]

    @staticmethod
    def _apply(connection: Connection, batch: list[_Entry]) -> list[Any]:
        """Each batch operation once, over its items in arrival order."""
        groups: dict[BatchOperation, list[int]] = {}
        for index, entry in enumerate(batch):
            groups.setdefault(entry.batch_operation, []).append(index)
        results: list[Any] = [None] * len(batch)
        for batch_operation, indexes in groups.items():
            values = batch_operation(connection, [batch[i].item for i in indexes])
            for index, value in zip(indexes, values, strict=True):
                results[index] = value
        return results


def _name(entry: _Entry) -> str:
    operation = entry.item if entry.batch_operation is _call_each else entry.batch_operation
    return str(getattr(operation, "__qualname__", operation))


class QueueWriteError(RuntimeError):
    """A write to the queue failed; the cause is in the log, the caller answers 451."""
