"""The feedback worker: bounces, complaints and replies, processed apart from the SMTP hot path.

Purpose: port 25 hands what comes back from recipients — a bounce or an ARF
complaint at the bounce domain (`BounceInbox.process`: parse, then the rating
rules in one transaction) and a reply that shows a contact alive
(`Contacts.received`) — to this worker, not to the event loop's default
executor. That executor runs every RCPT lookup (`LocalMail.resolve`, quota
checks), AUTH's password verification and the Maildir writes: a few hostile
reports once held all its threads for minutes, and a plain RCPT on another
connection waited as long. Here feedback has its own threads, a bounded
backlog and a time limit:

- `threads` threads run jobs in order of arrival; at most `backlog` more wait.
  A job that finds the worker full is refused at once (`FeedbackBusy`): the
  SMTP session answers 451 4.3.2 and the sender retries later, so nothing is
  lost and memory stays bounded.
- Each job is given a deadline, `time_limit_s` after its arrival, which the
  bounce parser checks as it goes (limits.Budget): a report not read by then
  gets the verdict `undefined`, logged, so a thread always finishes — Python
  threads cannot be stopped from outside, the job stops itself. A job still
  waiting in the backlog at its deadline is not started (`FeedbackTimeout`).
- The caller waits at most `time_limit_s` + `DATABASE_GRACE_S` (the rating
  transaction after the parse); past that, `FeedbackTimeout`: the session
  answers 451 4.4.5 and the sender retries. The job may still finish and keep
  its effect: a bounce or complaint counts once per delivery (inbox.py).
- `refusal(job, queue_id)` runs a job for an SMTP session and gives the reply
  for what went wrong (those two, and 451 4.3.0 for an error), None when done.
- `drain(timeout_s)` at SIGTERM: no new job is admitted, those admitted get up
  to the timeout to finish, then the threads are let go.

Admission is counted on the event loop only (no locks). Not for other uses:
the jobs are blocking calls of the feedback intake, nothing else.
Config keys: [bounce] worker_threads, worker_backlog, time_limit (app.py passes them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from postroom.core.reply import Reply

__all__ = ["DATABASE_GRACE_S", "FeedbackBusy", "FeedbackTimeout", "FeedbackWorker"]

log = logging.getLogger("postroom.feedback")

T = TypeVar("T")

# What a job may take past its deadline: the rating transaction after a parse that
# used all its time (SQLite's own busy timeout is 5 s as well).
DATABASE_GRACE_S = 5.0


class FeedbackBusy(Exception):
    """Every thread is busy and the backlog is full (or the worker is draining)."""


class FeedbackTimeout(Exception):
    """The job did not finish within its time limit (or expired before it started)."""


class FeedbackWorker:
    def __init__(self, threads: int, backlog: int, time_limit_s: float) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="feedback")
        self.capacity = threads + backlog
        self.time_limit_s = time_limit_s
        self._admitted: set[asyncio.Future[object]] = set()
        # Jobs whose caller stopped waiting: their errors are logged here, not there.
        self._abandoned: set[asyncio.Future[object]] = set()
        self._draining = False

    @property
    def admitted(self) -> int:
        """Jobs running or waiting."""
        return len(self._admitted)

    async def run(self, job: Callable[[float], T]) -> T:
        """`job(deadline)` on a feedback thread; `deadline` is a time.monotonic() instant.

        Raises FeedbackBusy at once when full, FeedbackTimeout past the time limit,
        and whatever the job raises.
        """
        if self._draining or len(self._admitted) >= self.capacity:
            raise FeedbackBusy(f"{len(self._admitted)} feedback jobs admitted")
        deadline = time.monotonic() + self.time_limit_s
        future: asyncio.Future[T] = asyncio.get_running_loop().run_in_executor(
            self._executor, _start_before, deadline, job
        )
        self._admitted.add(future)  # type: ignore[arg-type]
        future.add_done_callback(self._finished)
        try:
            return await asyncio.wait_for(
                asyncio.shield(future), self.time_limit_s + DATABASE_GRACE_S
            )
        except TimeoutError:
            self._abandoned.add(future)  # type: ignore[arg-type]
            raise FeedbackTimeout(f"not done within {self.time_limit_s:.0f}s") from None
        except asyncio.CancelledError:  # the client went away; the job goes on
            self._abandoned.add(future)  # type: ignore[arg-type]
            raise

    async def refusal(self, job: Callable[[float], object], queue_id: str) -> Reply | None:
        """Run `job` for an SMTP session: None when done, else the temporary refusal
        that makes the sender try again later (logged with the queue id)."""
        try:
            await self.run(job)
        except FeedbackBusy:
            log.warning("queue_id=%s feedback deferred: the feedback worker is full", queue_id)
            return Reply(451, "4.3.2", f"Too busy for feedback now, try again later ({queue_id})")
        except FeedbackTimeout as timeout:
            log.warning("queue_id=%s feedback deferred: %s", queue_id, timeout)
            return Reply(451, "4.4.5", f"Feedback took too long, try again later ({queue_id})")
        except Exception:
            log.exception("feedback processing failed queue_id=%s", queue_id)
            return Reply.temporary_failure(
                f"Feedback processing failed, try again later ({queue_id})"
            )
        return None

    async def drain(self, timeout_s: float) -> None:
        """Admit nothing more, give the admitted jobs `timeout_s`, release the threads."""
        self._draining = True
        if self._admitted:
            _, unfinished = await asyncio.wait(set(self._admitted), timeout=timeout_s)
            if unfinished:
                log.warning("drain timeout: %d feedback jobs not finished", len(unfinished))
        # Jobs not started are dropped: their senders got no 250 and will retry.
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _finished(self, future: asyncio.Future[object]) -> None:
        self._admitted.discard(future)
        if future in self._abandoned:
            self._abandoned.discard(future)
            error = None if future.cancelled() else future.exception()
            if error is not None and not isinstance(error, FeedbackTimeout):
                log.error("feedback job failed after its caller stopped waiting", exc_info=error)


def _start_before(deadline: float, job: Callable[[float], T]) -> T:
    if time.monotonic() > deadline:
        # It waited its whole time limit in the backlog: the caller has given up or is
        # about to; starting it now would only delay the jobs behind it.
        raise FeedbackTimeout("expired in the backlog")
    return job(deadline)
