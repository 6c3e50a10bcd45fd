"""Stopping a worker's relays gives their leases up, against a real redis-server.

Proves: the forward relays and the changelog relays of every partition, each
blocked on its stream's read, cancelled as a stopping worker cancels its task
(twice: the app, then the worker's sweep of every task left) and then closing
the task's client (as ``streams/worker/app.py`` does), leave no
lease behind; so another worker's relay, or a rebuild from history, takes the
partitions over at once instead of after the lease time. Found by a rebuild
``--into-live`` right after a worker stopped: under ``gather`` the second
cancellation ended the relays' releases, and the leases stayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from streams.store import changelog, forwards, keys
from streams.store.client import Client
from streams.store.keys import Space
from streams.worker.changelog_relay import run_changelog_relays
from streams.worker.forward_relay import run_forward_relays
from tests.support.stack import PARTITIONS, Stack, client, wait_until

pytestmark = pytest.mark.e2e


async def _never(*_: Any) -> Any:
    raise AssertionError("nothing is pending: the relays have nothing to publish")


def _forward_relays(own: Client, space: Space) -> Awaitable[None]:
    return run_forward_relays(forwards.every_partition(own, space, "worker-a"), _never, idle=0.5)


def _changelog_relays(own: Client, space: Space) -> Awaitable[None]:
    outboxes = changelog.every_partition(own, space, "worker-a")
    return run_changelog_relays(outboxes, _never, sweep_interval=60.0)


@pytest.mark.parametrize(
    ("relays", "lease"),
    [
        (_forward_relays, keys.forwards_lease),
        (_changelog_relays, keys.changelog_lease),
    ],
    ids=["forwards", "changelog"],
)
async def test_stopped_relays_leave_no_lease(
    stack: Stack,
    redis: Client,
    relays: Callable[[Client, Space], Awaitable[None]],
    lease: Callable[[Space, int], str],
) -> None:
    space = Space(f"rs{uuid.uuid4().hex[:8]}", PARTITIONS)
    own = client(stack.redis_url, socket_timeout=10)

    async def worker_task() -> None:
        try:
            await relays(own, space)
        finally:
            await own.aclose()

    running = asyncio.create_task(worker_task())

    async def all_held() -> bool:
        held = [await redis.get(lease(space, n)) for n in space.all_partitions()]
        return all(h is not None for h in held)

    try:
        await wait_until(all_held, 20, interval=0.05)
        # Every relay is now blocked on its read (or sleeping until the next round).
        await asyncio.sleep(0.3)
    finally:
        # As a stopping worker does: its app cancels its tasks, then the worker
        # cancels every task still running (``mode``'s ``Worker._gather_all``).
        running.cancel()
        await asyncio.sleep(0)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    left = {n: await redis.get(lease(space, n)) for n in space.all_partitions()}
    assert left == {n: None for n in space.all_partitions()}, "every lease released on stop"
