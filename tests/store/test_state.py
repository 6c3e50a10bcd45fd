"""The Redis adapter and the batch step against a real redis-server.

Proves: a commit computed from a stale read is refused whole (nothing
written); the change notice is published only with the committed version; a
batch that meets a Redis outage waits, retries and is applied exactly once
when Redis returns, keeping its place.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from streams.core.decode import decode
from streams.core.journey import JourneyLimits
from streams.core.plan import Kind, Record, RecordOutcome, needs, plan_batch
from streams.dev import loopback
from streams.store import keys
from streams.store.state import Effects, RedisState
from streams.worker.processor import BatchProcessor
from tests.support.events import added, event
from tests.support.stack import space, wait_until

pytestmark = pytest.mark.e2e


def records(
    events: list[dict[str, object]],
    topic: str = "cart-events",
    start: int = 0,
    partition: int | None = None,
) -> list[Record]:
    """Records at offsets ``start``.. on ``partition``, or each on its key's as a producer
    puts it (the customer's, else the guest's)."""
    return [
        Record(
            topic,
            space("t").partition(str(e.get("customer_id") or e["anonymous_id"]))
            if partition is None
            else partition,
            start + i,
            b"k",
            orjson.dumps(e),
        )
        for i, e in enumerate(events)
    ]


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[tuple[loopback.Child, Redis]]:
    child = loopback.start_redis(tmp_path / "data", tmp_path, appendfsync="always")
    client = Redis.from_url(
        f"redis://127.0.0.1:{child.port}/0", socket_timeout=1, socket_connect_timeout=1
    )
    yield child, client
    await client.aclose()
    child.stop()


async def test_commit_from_a_stale_read_is_refused_and_writes_nothing(
    private_redis: tuple[loopback.Child, Redis],
) -> None:
    _, client = private_redis
    state = RedisState(client, space("t"))
    batch = records([event("cart.item_added", added("A-1"), customer="c1")])
    decoded = [decode(r.value) for r in batch]
    stale = await state.load(needs(batch, decoded))
    other = records([event("cart.item_added", added("B-2"), customer="c1")], start=7, partition=1)
    other_decoded = [decode(r.value) for r in other]
    assert await state.commit(plan_batch(other, other_decoded, stale)) is None

    conflict = await state.commit(plan_batch(batch, decoded, stale))
    assert conflict is not None
    assert conflict.what == "version"
    session = await state.get("c1")
    assert session is not None
    assert [ln.sku for ln in session.cart] == ["B-2"], "the refused plan wrote nothing"
    assert await state.applied_offsets() == {"cart-events:1": 7}


async def test_notice_is_published_with_the_committed_version(
    private_redis: tuple[loopback.Child, Redis],
) -> None:
    _, client = private_redis
    state = RedisState(client, space("t"))
    pubsub = client.pubsub()
    # Sharded pub/sub: the notice stays on the shard of the key's partition.
    await pubsub.ssubscribe(state.channel("c2"))
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    processor = BatchProcessor(state, _no_dead_letters)
    await processor.process(records([event("cart.item_added", added("A-1"), customer="c2")]))
    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    assert message is not None
    header, _, carried = message["data"].partition(b"\n")
    assert orjson.loads(header) == {"key": "c2", "version": 1}
    # The notice carries the state it announces, as stored.
    assert carried == await client.hget(state.session_key("c2"), "d")
    stored = await state.get("c2")
    assert stored is not None
    assert stored.version == 1
    await pubsub.aclose()


def _retries() -> float:
    """Batches this process retried after a Redis failure (the worker's own counter)."""
    return REGISTRY.get_sample_value("continuity_redis_retries_total") or 0.0


async def test_batch_waits_through_a_redis_outage_and_applies_exactly_once(
    private_redis: tuple[loopback.Child, Redis],
) -> None:
    child, client = private_redis
    state = RedisState(client, space("t"))
    processor = BatchProcessor(state, _no_dead_letters, retry_max_delay=0.5)
    first = records([event("cart.item_added", added("A-1", 2), customer="c3")])
    await processor.process(first)

    child.stop()  # Redis goes away (AOF appendfsync=always keeps what was committed)
    second = records([event("cart.item_added", added("B-2", 1), customer="c3")], start=1)
    retries_before = _retries()
    pending = asyncio.create_task(processor.process(second))

    async def retried_twice() -> bool:
        return _retries() >= retries_before + 2 or pending.done()

    await wait_until(retried_twice, timeout=20, interval=0.05)
    assert not pending.done(), "the batch waits for Redis (retried twice) instead of being skipped"

    restarted = child.restart()
    loopback.wait_port(restarted.port or 0)
    try:
        plan = await asyncio.wait_for(pending, timeout=20)
        assert [o.kind for o in plan.outcomes] == [Kind.APPLIED]
        # The same records again (a redelivery after a crash) change nothing.
        again = await processor.process([*first, *second])
        assert {o.kind for o in again.outcomes} == {Kind.ALREADY_APPLIED}
        session = await state.get("c3")
        assert session is not None
        assert {ln.sku: ln.quantity for ln in session.cart} == {"A-1": 2, "B-2": 1}
        assert session.version == 2
    finally:
        restarted.stop()


async def test_a_journey_keeps_its_newest_entries_within_its_age_and_expires(
    private_redis: tuple[loopback.Child, Redis],
) -> None:
    _, client = private_redis
    limits = JourneyLimits(max_entries=3, max_age_seconds=3600)
    state = RedisState(client, space("t"), Effects(journey=limits))
    processor = BatchProcessor(state, _no_dead_letters)
    now = datetime.now(UTC)
    old = (now - timedelta(hours=2)).isoformat()
    times = [old, *((now - timedelta(minutes=m)).isoformat() for m in (50, 40, 30, 20))]
    batch = [
        event("browse.search", {"query": f"q{i}"}, customer="c4", at=at)
        for i, at in enumerate(times)
    ]
    await processor.process(records(batch))
    stored = [orjson.loads(m) for m in await client.zrange(keys.journey(state.space, "c4"), 0, -1)]
    assert [e["query"] for e in stored] == ["q2", "q3", "q4"], "the newest three"
    ttl = await client.ttl(keys.journey(state.space, "c4"))
    assert 3500 < ttl <= 3600, "an idle journey goes by itself"
    # A commit 45 minutes later: what is older than an hour by then goes.
    late = records(
        [event("browse.search", {"query": "q5"}, customer="c4", at=now.isoformat())], start=5
    )
    decoded = [decode(r.value) for r in late]
    plan = plan_batch(late, decoded, await state.load(needs(late, decoded)))
    assert await state.commit(plan, time.time() + 45 * 60) is None
    stored = [orjson.loads(m) for m in await client.zrange(keys.journey(state.space, "c4"), 0, -1)]
    assert [e["query"] for e in stored] == ["q5"]


async def _no_dead_letters(outcomes: Sequence[RecordOutcome]) -> None:
    raise AssertionError(f"unexpected dead letters: {outcomes}")
