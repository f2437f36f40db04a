"""Work that finishes even when its caller is cancelled, failures nobody hears logged,
and shutdown's bounded wait."""

from __future__ import annotations

import asyncio
import logging

import pytest

from postroom.core.shielded import ShieldedTasks


async def test_a_cancelled_caller_stops_waiting_and_the_work_goes_on() -> None:
    shielded = ShieldedTasks("test")
    gate, done = asyncio.Event(), []

    async def work() -> str:
        await gate.wait()
        done.append("finished")
        return "result"

    caller = asyncio.create_task(shielded.run(work()))
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert len(shielded) == 1 and done == []
    gate.set()
    assert await shielded.wait(5) == 0
    assert done == ["finished"]


async def test_a_caller_that_waits_gets_the_result_or_the_exception() -> None:
    shielded = ShieldedTasks("test")

    async def fails() -> None:
        raise LookupError("nothing")

    async def answers() -> int:
        return 42

    assert await shielded.run(answers()) == 42
    with pytest.raises(LookupError):
        await shielded.run(fails())


async def test_failures_with_nobody_listening_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    shielded = ShieldedTasks("books")

    async def fails() -> None:
        await asyncio.sleep(0)
        raise LookupError("the release failed")

    with caplog.at_level(logging.ERROR, logger="postroom.shielded"):
        shielded.start(fails())
        assert await shielded.wait(5) == 0
        await asyncio.sleep(0)  # done callbacks run on the next turn of the loop
    assert "books: work whose caller had gone failed" in caplog.text
    assert "the release failed" in caplog.text


async def test_wait_is_bounded_and_says_what_is_left() -> None:
    shielded = ShieldedTasks("test")
    never = asyncio.Event()
    shielded.start(never.wait())
    assert await shielded.wait(0.05) == 1
    never.set()
    assert await shielded.wait(5) == 0
