"""Group commit: many writers, one transaction, one fsync.

Sessions and delivery workers submit write operations (a function taking a
SQLAlchemy connection) and await their result. One thread runs whatever has
accumulated in a single transaction, so that concurrent SMTP sessions share one
fsync instead of queueing behind each other's (this is how the queue reaches
thousands of durable messages a second on SQLite). The caller's future resolves
only after the commit returned: acknowledge after commit.

When a batch's transaction fails, each operation is retried alone so that one
bad operation fails only its own caller. Reads do not come here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

log = logging.getLogger(__name__)

T = TypeVar("T")
Operation = Callable[[Connection], Any]


class GroupCommitter:
    def __init__(self, engine: Engine, *, batch_max: int = 256) -> None:
        self._engine = engine
        self._batch_max = batch_max
        self._pending: list[tuple[Operation, asyncio.Future[Any]]] = []
        self._wakeup = asyncio.Event()
        # One thread: SQLite has one writer anyway, and ordering stays simple.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="postroom-commit")
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="group-commit")

    async def submit(self, operation: Callable[[Connection], T]) -> T:
        if self._closing:
            raise RuntimeError("the queue is shutting down")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((operation, future))
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
            batch = self._pending[: self._batch_max]
            del self._pending[: self._batch_max]
            results = await loop.run_in_executor(self._thread, self._commit_batch, batch)
            for (_, future), (ok, value) in zip(batch, results, strict=True):
                if future.done():  # the caller went away (connection lost)
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _commit_batch(
        self, batch: list[tuple[Operation, asyncio.Future[Any]]]
    ) -> list[tuple[bool, Any]]:
        try:
            with self._engine.begin() as connection:
                return [(True, operation(connection)) for operation, _ in batch]
        except Exception:
            if len(batch) == 1:
                log.exception("queue write failed")
                return [(False, QueueWriteError("queue write failed"))]
        # Retry alone: one failing operation must not fail the others' callers.
        return [result for item in batch for result in self._commit_batch([item])]


class QueueWriteError(RuntimeError):
    """A write to the queue failed; the cause is in the log, the caller answers 451."""
