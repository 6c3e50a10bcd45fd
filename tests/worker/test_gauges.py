"""The lag and sessions-active gauges against the real redis-server (``streams/worker/gauges.py``).

Proves: lag is reported only for the partitions assigned here and its series
disappear on revoke, so two workers never report one partition; the
sessions-active estimate is reported only by the owner of cart-events
partition 0 and counts the distinct keys commits wrote (a replay that writes
nothing adds nothing); a refresh against a dead Redis marks it down.
"""

from __future__ import annotations

import time
import uuid

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from streams.core.activity import WINDOW_LABEL
from streams.store import keys
from streams.store.state import RedisState
from streams.worker.gauges import SESSIONS_OWNER, GaugeRefresher
from streams.worker.processor import BatchProcessor
from tests.support.pure import ev, routed
from tests.support.stack import space

CART0, CART1, BROWSE0 = ("cart-events", 0), ("cart-events", 1), ("browse-events", 0)


async def _no_dead_letters(_: object) -> None:
    raise AssertionError("nothing here is dead-lettered")


def _lag(tp: tuple[str, int]) -> float | None:
    return REGISTRY.get_sample_value(
        "continuity_consumer_lag_records", {"topic": tp[0], "partition": str(tp[1])}
    )


def _sessions() -> float | None:
    return REGISTRY.get_sample_value("continuity_sessions_active", {"window": WINDOW_LABEL})


@pytest.fixture
def state(redis: Redis) -> RedisState:
    return RedisState(redis, space(f"g{uuid.uuid4().hex[:8]}"))


async def test_lag_is_reported_for_assigned_partitions_and_dropped_on_revoke(
    state: RedisState,
) -> None:
    # Partition 0's hash holds both topics' partition 0; cart-events:1 is applied nowhere.
    await state.redis.hset(
        keys.offsets(state.space, 0), mapping={"cart-events:0": 9, "browse-events:0": 2}
    )
    # A decoy: partition 1's field in partition 0's hash is not where a reader looks.
    await state.redis.hset(keys.offsets(state.space, 0), "cart-events:1", 3)
    marks = {CART0: 10, CART1: 4, BROWSE0: 8}
    gauges = GaugeRefresher()
    gauges.assigned([CART0, CART1, BROWSE0, ("events-dlq", 0)])
    await gauges.refresh(state, marks.get, time.time())
    assert (_lag(CART0), _lag(CART1), _lag(BROWSE0)) == (0, 4, 5)
    assert _lag(("events-dlq", 0)) is None, "only source topics are folded here"

    gauges.revoked([CART1])
    assert _lag(CART1) is None, "a revoked partition's series goes at once"
    await gauges.refresh(state, marks.get, time.time())
    assert _lag(CART1) is None, "and does not come back"

    gauges.assigned([BROWSE0])
    assert (_lag(CART0), _lag(BROWSE0)) == (None, 5)
    assert _sessions() is None, "partition 0 of cart-events moved away with its estimate"
    gauges.revoked([BROWSE0])


async def test_sessions_active_counts_distinct_keys_committed_in_the_window(
    state: RedisState,
) -> None:
    now = time.time()
    events = [
        ev("browse.search", {"query": "q"}, customer=f"c{n % 5}", event_id=f"e{n}")
        for n in range(12)
    ]
    # On each key's own partition, committed per partition as a worker does (so on a
    # cluster each commit is one slot's).
    batch = routed(events, state.space.partitions)
    processor = BatchProcessor(state, _no_dead_letters, forward=True)
    for chunk in (batch[:6], batch[6:]):
        await processor.process(chunk)
    replay = await processor.process(batch)
    assert not replay.writes

    gauges = GaugeRefresher()
    gauges.assigned([CART1])
    await gauges.refresh(state, lambda tp: None, now)
    assert _sessions() is None, "only the owner of cart-events partition 0 reports it"
    gauges.assigned([SESSIONS_OWNER, CART1])
    await gauges.refresh(state, lambda tp: None, now)
    assert _sessions() == 5
    spread = {state.space.partition(f"c{n}") for n in range(5)}
    assert len(spread) > 1, "the count is a sum over several partitions' HyperLogLogs"
    gauges.revoked([SESSIONS_OWNER, CART1])
    assert _sessions() is None


async def test_a_refresh_against_a_dead_redis_marks_it_down() -> None:
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    gauges = GaugeRefresher()
    gauges.assigned([CART1])
    errors = REGISTRY.get_sample_value("continuity_redis_errors_total", {"operation": "refresh"})
    try:
        await gauges.refresh(RedisState(dead, space("gdead")), lambda tp: 0, time.time())
    finally:
        await dead.aclose()
    assert REGISTRY.get_sample_value("continuity_redis_up") == 0
    after = REGISTRY.get_sample_value("continuity_redis_errors_total", {"operation": "refresh"})
    assert after == (errors or 0) + 1
    assert _lag(CART1) is None
