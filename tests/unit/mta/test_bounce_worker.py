"""The feedback worker: its own threads, a bounded backlog, a time limit, a drain.

Jobs here are plain functions that wait on an Event, standing in for a slow
parse; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import pytest

from postroom.mta.bounce.worker import FeedbackBusy, FeedbackTimeout, FeedbackWorker

WAIT_S = 10  # the longest any test job is held


def _held(release: threading.Event, seen: list[float] | None = None) -> Callable[[float], str]:
    def job(deadline: float) -> str:
        if seen is not None:
            seen.append(deadline)
        release.wait(WAIT_S)
        return threading.current_thread().name

    return job


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached within 5 s")


async def test_a_job_runs_on_a_feedback_thread_with_its_deadline() -> None:
    worker = FeedbackWorker(threads=1, backlog=0, time_limit_s=3)
    release, seen = threading.Event(), []
    release.set()
    before = time.monotonic()
    assert (await worker.run(_held(release, seen))).startswith("feedback")
    assert before + 3 <= seen[0] <= time.monotonic() + 3
    assert worker.admitted == 0


async def test_past_threads_and_backlog_a_job_is_refused_at_once() -> None:
    worker = FeedbackWorker(threads=1, backlog=2, time_limit_s=5)
    release = threading.Event()
    try:
        held = [asyncio.create_task(worker.run(_held(release))) for _ in range(3)]
        await _until(lambda: worker.admitted == 3)
        with pytest.raises(FeedbackBusy):
            await asyncio.wait_for(worker.run(_held(release)), 1)
    finally:
        release.set()
    assert len(await asyncio.gather(*held)) == 3
    await _until(lambda: worker.admitted == 0)


async def test_the_caller_stops_waiting_at_the_limit_and_the_slot_stays_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("postroom.mta.bounce.worker.DATABASE_GRACE_S", 0.1)
    worker = FeedbackWorker(threads=1, backlog=0, time_limit_s=0.2)
    release = threading.Event()
    try:
        started = time.monotonic()
        with pytest.raises(FeedbackTimeout):
            await worker.run(_held(release))
        assert time.monotonic() - started < WAIT_S / 2
        # The thread still runs the job: its slot is not given to another.
        assert worker.admitted == 1
        with pytest.raises(FeedbackBusy):
            await worker.run(_held(release))
    finally:
        release.set()
    await _until(lambda: worker.admitted == 0)


async def test_a_job_that_waited_past_its_deadline_is_not_started() -> None:
    worker = FeedbackWorker(threads=1, backlog=1, time_limit_s=0.3)
    release, ran = threading.Event(), []
    try:
        first = asyncio.create_task(worker.run(_held(release)))
        await _until(lambda: worker.admitted == 1)
        second = asyncio.create_task(worker.run(lambda deadline: ran.append(deadline)))
        await asyncio.sleep(0.5)  # the second's deadline passes while it waits
    finally:
        release.set()
    await first
    with pytest.raises(FeedbackTimeout, match="expired"):
        await second
    assert ran == []


async def test_a_job_error_reaches_the_caller() -> None:
    worker = FeedbackWorker(threads=1, backlog=0, time_limit_s=5)

    def broken(deadline: float) -> None:
        raise ValueError("database gone")

    with pytest.raises(ValueError, match="database gone"):
        await worker.run(broken)


async def test_an_error_after_the_caller_stopped_waiting_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("postroom.mta.bounce.worker.DATABASE_GRACE_S", 0.0)
    worker = FeedbackWorker(threads=1, backlog=0, time_limit_s=0.1)
    release = threading.Event()

    def late_failure(deadline: float) -> None:
        release.wait(WAIT_S)
        raise ValueError("late")

    with pytest.raises(FeedbackTimeout):
        await worker.run(late_failure)
    release.set()
    await _until(lambda: worker.admitted == 0)
    assert "feedback job failed after its caller stopped waiting" in caplog.text


async def test_drain_lets_admitted_jobs_finish_and_admits_no_more() -> None:
    worker = FeedbackWorker(threads=1, backlog=1, time_limit_s=5)
    release = threading.Event()
    held = [asyncio.create_task(worker.run(_held(release))) for _ in range(2)]
    await _until(lambda: worker.admitted == 2)
    asyncio.get_running_loop().call_later(0.2, release.set)
    await asyncio.wait_for(worker.drain(WAIT_S), WAIT_S)
    assert all(task.done() and not task.exception() for task in held)
    with pytest.raises(FeedbackBusy):
        await worker.run(_held(release))


async def test_drain_gives_up_at_its_timeout(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="postroom.feedback")
    worker = FeedbackWorker(threads=1, backlog=0, time_limit_s=5)
    release = threading.Event()
    try:
        held = asyncio.create_task(worker.run(_held(release)))
        await _until(lambda: worker.admitted == 1)
        started = time.monotonic()
        await worker.drain(0.2)
        assert time.monotonic() - started < WAIT_S / 2
        assert "1 feedback jobs not finished" in caplog.text
    finally:
        release.set()
    await held


async def test_refusal_turns_an_error_into_451_4_3_0_and_success_into_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = FeedbackWorker(threads=1, backlog=0, time_limit_s=5)

    def broken(deadline: float) -> None:
        raise ValueError("database gone")

    reply = await worker.refusal(broken, "Q1")
    assert reply is not None and (reply.code, reply.enhanced) == (451, "4.3.0")
    assert "(Q1)" in reply.text and "feedback processing failed queue_id=Q1" in caplog.text
    assert await worker.refusal(lambda deadline: None, "Q2") is None
