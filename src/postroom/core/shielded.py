"""Work that finishes even when whoever waits for it goes away.

aiosmtpd cancels an SMTP session's handler the moment its client hangs up (a
half-close is enough), wherever the handler is. Work that has begun to commit
must not stop halfway because of that: a message whose queue insert commits
while its session is cancelled would stay leased `inflight` with no delivery
engine holding it, and a reservation of a project's message limit that commits
after its session is gone would be counted with nobody left to give it back.

`ShieldedTasks.run(coroutine)` runs `coroutine` as a task of its own and waits
for it shielded: cancelling the caller ends only the wait, and the task goes on
to the end; its outcome is then nobody's, so an exception is logged rather than
lost. `start(coroutine)` is the same without a caller (giving back what an
abandoned transaction held). `wait(timeout_s)` lets shutdown give the unfinished
tasks time before the queue closes. The tasks are kept here until they end:
the event loop holds only weak references to tasks.

A coroutine given here must itself end in bounded time (its I/O has timeouts),
and must not need its caller: it runs to the end whether anyone listens or not.
Config keys: none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("postroom.shielded")

T = TypeVar("T")


class ShieldedTasks:
    def __init__(self, name: str) -> None:
        self.name = name  # for the log: whose work went wrong with nobody listening
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """`coroutine`'s result; if the caller is cancelled, the work still finishes."""
        task = self._spawn(coroutine)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(self._log_failure)  # its caller is gone
            raise

    def start(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run `coroutine` to the end with nobody waiting; a failure is logged."""
        self._spawn(coroutine).add_done_callback(self._log_failure)

    async def wait(self, timeout_s: float) -> int:
        """Wait for the running tasks (and those they start) for up to `timeout_s`;
        how many are still running then."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._tasks and (left_s := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left_s)
        return len(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def _spawn(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _log_failure(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: work whose caller had gone failed", self.name, exc_info=task.exception())
