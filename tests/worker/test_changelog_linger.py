"""The changelog relay lets a busy partition's commits gather between rounds.

Against a real redis-server: commits of one event each, 20 ms apart for about
1.2 s, into one partition's changelog (``RedisState.commit``, as the worker
writes them), while that partition's relay runs with ``linger`` 0.3 s. Proves:
every committed state is published, in far fewer rounds (advances of the
cursor) than commits, each round after the first carrying several commits;
with ``linger`` 0, a round per commit or close to it. Without the linger the
first assertion fails (about 60 rounds for 60 commits).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
import pytest

from streams.core.changelog import Cursor
from streams.core.decode import decode
from streams.core.placement import partition_of
from streams.core.plan import Record, Snapshot, plan_batch
from streams.store import keys
from streams.store.changelog import ChangelogOutbox
from streams.store.client import Client
from streams.store.keys import Space
from streams.store.state import RedisState
from streams.worker.changelog_relay import run_changelog_relay
from tests.support.stack import PARTITIONS, wait_until

pytestmark = pytest.mark.e2e
COMMITS = 60


class CountingOutbox(ChangelogOutbox):
    """The real outbox, counting the rounds that moved its cursor."""

    rounds = 0

    async def advance(self, cursor: Cursor) -> bool:
        self.rounds += 1
        return await super().advance(cursor)


def _view(key: str, n: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"{key}-{n}",
            "type": "browse.product_viewed",
            "occurred_at": "2026-01-01T00:00:00Z",
            "channel": "web",
            "customer_id": key,
            "payload": {"sku": f"SKU-{n}", "name": "x", "category": "toys"},
        }
    )


async def _commit_one_by_one(state: RedisState, keys_here: list[str]) -> None:
    snapshot = Snapshot({}, {}, {})
    for n, key in enumerate(keys_here):
        record = Record("browse-events", 0, n, key.encode(), _view(key, n))
        plan = plan_batch([record], [decode(record.value)], snapshot)
        assert await state.commit(plan, time.time(), partition=0) is None
        snapshot = Snapshot({}, {"browse-events:0": n}, {})
        await asyncio.sleep(0.02)


async def _rounds(redis: Client, linger: float) -> tuple[int, int]:
    space = Space(f"lg{uuid.uuid4().hex[:8]}", PARTITIONS)
    keys_here = [k for k in (f"c{i:05d}" for i in range(5_000)) if partition_of(k, PARTITIONS) == 0]
    keys_here = keys_here[:COMMITS]
    outbox = CountingOutbox(redis, space, 0, "test")
    published: list[Any] = []

    async def publish(key: str, value: bytes | None, headers: Any, partition: int) -> Any:
        published.append(key)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    relay = asyncio.create_task(run_changelog_relay(outbox, publish, 60.0, linger=linger))
    try:
        await _commit_one_by_one(RedisState(redis, space), keys_here)
        await wait_until(lambda: _empty(redis, space))
    finally:
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)
    states = {k for k in published if k in set(keys_here)}
    return outbox.rounds, len(states)


async def _empty(redis: Client, space: Space) -> bool:
    return int(await redis.xlen(keys.changelog(space, 0))) == 0


async def test_a_busy_partitions_commits_share_rounds(redis: Client) -> None:
    rounds, states = await _rounds(redis, linger=0.3)
    assert states == COMMITS
    assert rounds <= COMMITS // 4, rounds


async def test_without_linger_each_commit_is_its_own_round_or_close(redis: Client) -> None:
    rounds, states = await _rounds(redis, linger=0.0)
    assert states == COMMITS
    assert rounds > COMMITS // 4, rounds
