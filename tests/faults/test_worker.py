"""Faults of the worker: SIGKILL at random points, and rebalances while traffic flows.

Proves, against the oracle (single-topic workloads, exact to the byte):

* a worker SIGKILLed again and again, each time after the restarted process
  has rejoined and applied new offsets, loses and doubles nothing: records
  applied in Redis but not yet committed in Kafka (counted at each kill: the
  table's "landed") come again and are skipped by the applied offsets. The
  workers remember no event ids (``CONTINUITY_DEDUP_WINDOW=0``), so a record
  applied twice would show in the cart; the carts are checked against the
  independent model (``tests/support/model.py``) as well as the oracle;
* a second worker joining and then leaving the group while events flow
  (two rebalances per cycle, partitions moving both ways) loses and doubles
  nothing: the commit's compare-and-set refuses any stale writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

from schemas.session import Session
from streams.kafka.publish import Publisher
from tests.support.fault_report import FaultRow, compare, pick, record
from tests.support.model import disagreements, model
from tests.support.oracle import NO_DEDUP, NO_DEDUP_ENV, cart_workload, mismatches, oracle
from tests.support.stack import (
    WorkerGroup,
    applied_since,
    committed_offsets,
    in_flight,
    publish,
    wait_until,
)


async def _converge(group: WorkerGroup, expected: dict[str, Session], timeout: float) -> None:
    async def done() -> bool:
        return not await mismatches(group.state, expected)

    # On a timeout the comparison that follows reports what was lost or doubled.
    with contextlib.suppress(AssertionError):
        await wait_until(done, timeout=timeout, interval=0.5)


async def test_worker_sigkilled_at_random_points_loses_and_doubles_nothing(
    group: WorkerGroup, publisher: Publisher
) -> None:
    kills = pick(4, 12)
    events = cart_workload(
        seed=61, customers=pick(150, 400), per_customer=pick(12, 16), prefix=group.group
    )
    expected, carts = oracle(events, NO_DEDUP), model(events)
    rng = random.Random(61)
    worker = group.start("a", **NO_DEDUP_ENV)
    await group.ready(publisher)
    step = len(events) // (kills + 1)
    landed = redelivered = 0
    for n in range(kills):
        before = await group.state.applied_offsets()
        sending = asyncio.create_task(publish(publisher, events[n * step : (n + 1) * step]))
        # A kill before the (re)started process has rejoined and committed a batch
        # would test nothing: wait until it applied new offsets, then kill mid-flow.
        await applied_since(group.state, before)
        await asyncio.sleep(rng.uniform(0, 0.3))
        worker.kill()
        left = in_flight(
            await group.state.applied_offsets(),
            await committed_offsets(group.stack.bootstrap, group.group),
        )
        landed += left > 0
        redelivered += left
        await sending
        worker = group.restart(worker)
        group.stack.workers.append(worker)
    await publish(publisher, events[kills * step :])
    await _converge(group, expected, timeout=pick(180, 600))
    stored = {k: await group.state.get(k) for k in expected}
    lost, doubled, wrong = compare(expected, stored)
    off_model = disagreements(carts, stored)
    record(
        FaultRow(
            "worker SIGKILL mid-batch",
            kills,
            len(events),
            len(expected),
            lost,
            doubled,
            wrong + len(off_model),
            landed=landed,
        )
    )
    assert (lost, doubled, wrong, off_model) == (0, 0, 0, [])
    # The kills did land: records applied but not yet acknowledged came again.
    assert landed >= 1, f"no kill left work in flight ({redelivered} records)"


async def test_rebalance_while_traffic_flows_loses_and_doubles_nothing(
    group: WorkerGroup, publisher: Publisher
) -> None:
    cycles = pick(1, 4)
    events = cart_workload(seed=62, customers=pick(120, 300), per_customer=12, prefix=group.group)
    expected = oracle(events)
    group.start("a")
    await group.ready(publisher)
    parts = 2 * cycles + 1
    step = len(events) // parts
    chunks = [events[i * step : (i + 1) * step] for i in range(parts - 1)]
    chunks.append(events[(parts - 1) * step :])
    for n in range(cycles):
        sending = asyncio.create_task(publish(publisher, chunks[2 * n]))
        joiner = group.start(f"b{n}")  # joins mid-traffic: partitions move to it
        await sending
        await publish(publisher, chunks[2 * n + 1])
        await group.ready(publisher)  # the group folds with both members
        joiner.stop()  # leaves (SIGTERM): its partitions move back
    await publish(publisher, chunks[-1])
    await _converge(group, expected, timeout=pick(180, 600))
    stored = {k: await group.state.get(k) for k in expected}
    lost, doubled, wrong = compare(expected, stored)
    record(
        FaultRow(
            "rebalance: worker joins then leaves",
            2 * cycles,
            len(events),
            len(expected),
            lost,
            doubled,
            wrong,
        )
    )
    assert (lost, doubled, wrong) == (0, 0, 0)
