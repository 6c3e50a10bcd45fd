"""The background loops' retry and stop rules (streams/worker/loops.py)."""

from __future__ import annotations

import asyncio
import contextlib

from streams.worker.loops import Backoff, stop_if_cancelled


async def _swallowing(rounds: list[int], check: bool) -> None:
    while True:
        if check:
            stop_if_cancelled()
        rounds.append(1)
        # What redis-py sometimes does: the cancellation is caught inside a command.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.01)
        if len(rounds) > 50:
            return


async def test_a_swallowed_cancellation_stops_the_next_round() -> None:
    rounds: list[int] = []
    task = asyncio.create_task(_swallowing(rounds, check=True))
    await asyncio.sleep(0.03)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert len(rounds) < 50


async def test_without_the_check_the_loop_goes_on() -> None:
    rounds: list[int] = []
    task = asyncio.create_task(_swallowing(rounds, check=False))
    await asyncio.sleep(0.03)
    task.cancel()
    await task
    assert not task.cancelled()
    assert len(rounds) > 50


async def test_backoff_doubles_to_its_bound_and_starts_again_after_a_success() -> None:
    backoff = Backoff("loop", first=0.001, most=0.004)
    waits = []
    for _ in range(4):
        waits.append(backoff.delay)
        await backoff.failed(RuntimeError("down"))
    assert waits == [0.001, 0.002, 0.004, 0.004]
    backoff.worked()
    assert backoff.delay == 0.001
