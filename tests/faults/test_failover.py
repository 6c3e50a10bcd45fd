"""Crashes, scale-out and full replay, through the real broker, worker processes and Redis.

Proves: SIGKILL of a worker mid-stream (three times, each once the restarted worker
folds again; no event-id memory, carts checked against the independent model)
loses and doubles nothing;
two workers share the partitions and together compute exactly the oracle; and
resetting the consumer group to the earliest offsets and replaying every topic
leaves every key in Redis byte-for-byte identical.
"""

from __future__ import annotations

import asyncio
import random

from schemas.topics import SOURCE_TOPICS
from streams.dev import loopback
from streams.kafka.groups import rewind_group
from streams.kafka.publish import Publisher
from streams.store import keys
from tests.support.metrics_text import metric, scrape
from tests.support.model import disagreements, model
from tests.support.oracle import (
    NO_DEDUP,
    NO_DEDUP_ENV,
    cart_workload,
    dump_prefix,
    mismatches,
    oracle,
)
from tests.support.stack import (
    PARTITIONS,
    Stack,
    WorkerGroup,
    applied_since,
    applied_through,
    balanced,
    publish,
    settled,
    wait_until,
)


async def test_worker_killed_mid_stream_three_times_loses_and_doubles_nothing(
    group: WorkerGroup, publisher: Publisher
) -> None:
    events = cart_workload(seed=11, customers=150, per_customer=16, prefix=group.group)
    expected, carts = oracle(events, NO_DEDUP), model(events)
    worker = group.start("a", **NO_DEDUP_ENV)
    await group.ready(publisher)
    rng = random.Random(5)
    quarter = len(events) // 4
    chunks = [events[i * quarter : (i + 1) * quarter] for i in range(3)] + [events[3 * quarter :]]
    for chunk in chunks[:3]:
        before = await group.state.applied_offsets()
        sending = asyncio.create_task(publish(publisher, chunk))
        await applied_since(group.state, before)  # the (re)started worker is folding
        await asyncio.sleep(rng.uniform(0, 0.3))
        worker.kill()
        await sending
        worker = group.restart(worker)
        group.stack.workers.append(worker)  # stopped with the stack if the test fails
    await publish(publisher, chunks[3])

    async def converged() -> bool:
        return not await mismatches(group.state, expected)

    await wait_until(converged, timeout=120, interval=0.5)
    assert await mismatches(group.state, expected) == []
    stored = {k: await group.state.get(k) for k in carts}
    assert disagreements(carts, stored) == []
    worker.stop()


async def test_two_workers_share_partitions_and_agree_with_the_oracle(
    group: WorkerGroup, publisher: Publisher
) -> None:
    events = cart_workload(seed=12, customers=120, per_customer=10, prefix=group.group)
    expected = oracle(events)
    a, b = group.start("a"), group.start("b")
    await group.ready(publisher)
    await balanced([a, b])  # the second member's rebalance settled before the load
    await publish(publisher, events)

    async def converged() -> bool:
        return not await mismatches(group.state, expected)

    await wait_until(converged, timeout=90, interval=0.5)
    assert a.port is not None
    assert b.port is not None
    applied = []
    for w in (a, b):
        text = await scrape(w.port)
        applied.append(
            metric(text, "continuity_events_total", topic="cart-events", outcome="applied")
        )
    assert all(n > 0 for n in applied), f"both workers folded events: {applied}"


async def test_full_replay_from_earliest_leaves_every_key_byte_identical(
    stack: Stack, group: WorkerGroup, publisher: Publisher
) -> None:
    from streams.dev.simulate import workload

    worker = group.start("a")
    await group.ready(publisher)
    written = await publish(publisher, workload(seed=21, customers=60, prefix=group.group))
    await applied_through(group.state, written)
    # Forward mode (a cluster run): the logins' forwards land after the sources.
    await settled(group.state, stack.bootstrap)
    before = await _state(group)
    assert len(before) > 60

    worker.stop()
    rewound = await rewind_group(stack.bootstrap, group.group, SOURCE_TOPICS, PARTITIONS)
    assert rewound == len(SOURCE_TOPICS) * PARTITIONS
    worker = group.restart(worker)
    await _replay_changes_nothing(group, worker, before)


async def _replay_changes_nothing(
    group: WorkerGroup, worker: loopback.Child, before: dict[bytes, object]
) -> None:
    assert worker.port is not None

    async def replayed() -> float:
        try:
            text = await scrape(worker.port)  # type: ignore[arg-type]
        except OSError:
            return 0.0  # the restarted worker is not listening yet
        return sum(
            metric(text, "continuity_events_total", topic=t, outcome="already_applied")
            for t in SOURCE_TOPICS
        )

    # The source records only: the rewind replays those (a forward-mode worker's
    # ``session-forwards`` records stay behind its group's committed offsets).
    applied = await group.state.applied_offsets()
    total = sum(v + 1 for tp, v in applied.items() if tp.rpartition(":")[0] in SOURCE_TOPICS)
    await wait_until(lambda: _ge(replayed, total), timeout=90, interval=0.5)
    assert await _state(group) == before


async def _state(group: WorkerGroup) -> dict[bytes, object]:
    """Every key of the group's prefix but the workers' liveness (heartbeats), the
    outbox's delivery bookkeeping (its consumer group names the restarted relay) and
    the changelog's and the forward relay's leases (they name the relay holding them)."""
    skipped = {keys.HEARTBEATS, keys.OUTBOX, keys.CHANGELOG_LEASE, keys.FORWARDS_LEASE}
    return {
        k: v
        for k, v in (await dump_prefix(group.state.redis, group.prefix)).items()
        if keys.family_of(k.decode(), group.state.space) not in skipped
    }


async def _ge(probe: object, target: float) -> bool:
    value: float = await probe()  # type: ignore[operator]
    return value >= target
