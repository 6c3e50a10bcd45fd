"""A slot moved and a primary failed over under traffic, on a Redis Cluster of the test's own.

Real processes on loopback: a broker, a three-primary Redis Cluster
(``streams/dev/cluster.py``; a replica per primary for the failover) and
workers in forward mode given only its ``redis+cluster://`` URL. The workload
is guests who shop, sign in to a customer homed on another partition and shop
on (``sign_in_rounds``): every login is folded on the customer's partition and
reaches the guest's partition through the forwards outbox and
``session-forwards``, so merges are in flight whenever a round's logins are.

Rounds go out one after another, each once the previous one is applied and
no merge waits any more (the oracle, a replay in publish order, stays exact
to the byte); within a round the events are paced over a few seconds, and
the fault lands while they flow:

- a slot moved: the slot of the busiest partition's tag (the one holding the
  most of the workload's sessions, padded with ballast keys so the move takes
  a while) moves to another primary with ``SETSLOT IMPORTING/MIGRATING``,
  ``MIGRATE`` and ``SETSLOT NODE``, while the worker's one-slot scripts run on
  it: the scripts are refused while the slot is half moved (before they
  touch anything) and retried; the clients follow ``ASK`` and ``MOVED``;
- a primary failed over: ``CLUSTER FAILOVER`` on the replica of the primary
  serving the busiest partition. A manual failover is coordinated: the
  primary stops taking writes, the replica catches up with its replication
  stream and only then takes over, so no acknowledged write is lost, which is
  what this proves (the clients follow ``MOVED`` to the promoted node). An
  unplanned loss of a primary with asynchronous replication can lose writes
  it had acknowledged; the applied offsets live in the same slot as the state,
  so what was lost is lost together with its position, and the worker
  re-folds it from Kafka once rewound (``continuity offsets rewind``), as the
  single-primary crash test in ``test_redis.py`` shows.

The workers remember no event ids (``CONTINUITY_DEDUP_WINDOW=0``): a record
applied twice shows in a cart. Every session is compared with the oracle and
with the independent cart model (lost, doubled, wrong), and every guest
session must be gone, its alias naming its customer.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from schemas.session import Session
from streams.dev import loopback
from streams.dev.cluster import Node, slot_of
from streams.kafka.publish import Publisher
from streams.store import keys
from tests.support.fault_report import FaultRow, compare, pick, record
from tests.support.metrics_text import samples, scrape, total
from tests.support.model import model
from tests.support.oracle import (
    NO_DEDUP,
    NO_DEDUP_ENV,
    SignIn,
    SignInWorkload,
    mismatches,
    oracle,
    sign_in_rounds,
)
from tests.support.private_stack import PrivateStack, private_stack
from tests.support.stack import PARTITIONS, publish, wait_until

# A fault: given the stack and the busiest partition, break something and return
# once the cluster agrees on its new layout.
Fault = Callable[[PrivateStack, int], Awaitable[None]]


async def _paced(
    pub: Publisher, events: list[dict[str, Any]], over: asyncio.Event
) -> dict[str, int]:
    """Publish ``events`` in small steps, slowly until the fault is ``over`` (so events
    flow all through it), then faster; the highest offsets written."""
    written: dict[str, int] = {}
    for start in range(0, len(events), 4):
        for tp, off in (await publish(pub, events[start : start + 4])).items():
            written[tp] = max(written.get(tp, -1), off)
        await asyncio.sleep(0.02 if over.is_set() else 0.12)
    return written


async def _forwards_published(workers: list[loopback.Child]) -> float:
    """Forward records the workers' relays have put on ``session-forwards`` so far."""
    published = 0.0
    for w in workers:
        assert w.alive(), f"worker {w.name} exited (see its log)"
        assert w.port is not None
        body = samples(await asyncio.wait_for(scrape(w.port), 10))
        published += total(body, "continuity_forwards_published_total")
    return published


async def _applied(
    st: PrivateStack, written: dict[str, int], workers: list[loopback.Child]
) -> None:
    """Until the workers applied every offset in ``written``; fails at once if one exited
    (instead of waiting out the timeout)."""

    async def done() -> bool:
        exited = [w.name for w in workers if not w.alive()]
        assert exited == [], f"worker exited: {exited} (see its log)"
        applied = await st.state.applied_offsets()
        return all(applied.get(tp, -1) >= off for tp, off in written.items())

    await wait_until(done, timeout=pick(90, 240), interval=0.25)


async def _settled(st: PrivateStack) -> None:
    """Until no merge waits and every forwards outbox is empty."""
    where = st.state.space

    async def quiet() -> bool:
        for n in where.all_partitions():
            if await st.redis.hlen(keys.waiting(where, n)):
                return False
            if await st.redis.xlen(keys.forwards(where, n)):
                return False
        return True

    await wait_until(quiet, timeout=90, interval=0.2)


def _busiest(work: SignInWorkload) -> int:
    """The partition holding the most of the workload's sessions: the customers' (each
    guest's session merges into its customer's)."""
    return Counter(s.customer_partition for s in work.sign_ins).most_common(1)[0][0]


async def _converge(st: PrivateStack, expected: dict[str, Session]) -> None:
    async def done() -> bool:
        return not await mismatches(st.state, expected)

    # On a timeout the comparison that follows reports what was lost or doubled.
    with contextlib.suppress(AssertionError):
        await wait_until(done, timeout=pick(60, 240), interval=0.5)


async def _guests_left(st: PrivateStack, sign_ins: list[SignIn]) -> list[str]:
    """Guest ids whose session still exists or whose alias does not name their customer."""
    bad = []
    for s in sign_ins:
        left = await st.redis.exists(st.state.session_key(s.guest))
        if left or await st.state.resolve(s.guest) != s.customer:
            bad.append(s.guest)
    return bad


async def _under_traffic(
    tmp_path: Path, name: str, seed: int, replicas: int, workers: int, fault: Fault
) -> None:
    """Run the sign-in workload on a cluster of its own, ``fault`` once in each of the
    first ``injections`` rounds that carry logins, then compare and record a row."""
    injections = pick(1, 3)
    work = sign_in_rounds(
        seed=seed,
        cohorts=injections + 1,
        per_cohort=pick(24, 60),
        prefix=f"cf{seed}",
        partitions=PARTITIONS,
    )
    events = work.events
    expected, carts = oracle(events, NO_DEDUP), model(events)
    busy = _busiest(work)
    rng = random.Random(seed)
    landed = 0
    took: list[float] = []
    async with private_stack(tmp_path, cluster_replicas=replicas) as st:
        assert st.cluster is not None
        started = [st.start_worker(f"w{n}", **NO_DEDUP_ENV) for n in range(workers)]
        async with Publisher(st.bootstrap, linger_ms=1) as pub:
            await st.ready(pub)
            for r, events_of_round in enumerate(work.rounds):
                over = asyncio.Event()
                sending = asyncio.create_task(_paced(pub, events_of_round, over))
                try:
                    if 1 <= r <= injections:
                        # Mid-round: the logins of the round before are being folded
                        # and their merges forwarded.
                        await asyncio.sleep(rng.uniform(0.4, 0.9))
                        before = await _forwards_published(started)
                        began = time.monotonic()
                        await fault(st, busy)
                        took.append(time.monotonic() - began)
                        assert not sending.done(), "the fault landed while events still flowed"
                        # Merges crossed partitions while the layout changed.
                        landed += await _forwards_published(started) > before
                    over.set()
                    written = await sending
                finally:
                    sending.cancel()  # a failed round publishes no more
                await _applied(st, written, started)
                await _settled(st)
        await _converge(st, expected)
        stored = {k: await st.state.get(k) for k in expected}
        lost, doubled, wrong = compare(expected, stored, carts)
        stray = await _guests_left(st, work.sign_ins)
        exited = [w.name for w in started if not w.alive()]
    record(
        FaultRow(
            name,
            injections,
            len(events),
            len(expected),
            lost,
            doubled,
            wrong + len(stray),
            landed=landed,
        )
    )
    assert (lost, doubled, wrong) == (0, 0, 0)
    assert stray == [], f"guest sessions left or aliases wrong after sign-in: {stray[:5]}"
    assert exited == [], "no worker exits when the cluster changes its layout"
    assert landed == injections, "a fault landed while no merge crossed partitions"
    print(f"{name}: faults took {[round(t, 1) for t in took]} s")


# Keys of no family of ours in the busy partition's slot (same hash tag): the slot
# stays half moved (MIGRATING on its old primary, IMPORTING on the new one) while
# they go across in batches, long enough for commits to meet keys already moved
# (ASK) and scripts over keys on both sides (TRYAGAIN), not just the final MOVED.
BALLAST = 20_000


async def _ballast(owner: Node, partition: int) -> None:
    for start in range(0, BALLAST, 1000):
        await owner.client.mset(
            {f"ballast:{{p{partition}}}:{n}": "x" * 16 for n in range(start, start + 1000)}
        )


# Every script's first call is a probe of two absent keys of its slot
# (``scripts.SETTLED_SLOT_PROBE``): on a half-moved slot it is refused before it
# reads or writes anything, and the worker retries it until the move is over.
# Without the probe the scripts, which reach most keys by name inside Lua, were
# refused halfway ("Script attempted to access a non local key") and the worker
# exited; a refused commit could keep the writes made before the refusal, and a
# script sent to the importing side would read keys not moved yet as absent.
async def test_a_busy_slot_moved_under_traffic_loses_nothing(tmp_path: Path) -> None:
    moves = 0

    async def move(st: PrivateStack, busy: int) -> None:
        nonlocal moves
        assert st.cluster is not None
        slot = slot_of(st.state.space.tag(busy))
        source = await st.cluster.owner(slot)
        if moves == 0:
            await _ballast(source, busy)
        primaries = [p for p in await st.cluster.primaries() if p is not source]
        # Each move to another primary than the last one.
        target: Node = primaries[moves % len(primaries)]
        await st.cluster.reshard(slot, target)
        assert await st.cluster.owner(slot) is target
        moves += 1

    await _under_traffic(tmp_path, "cluster slot moved under traffic", 91, 0, 1, move)


async def test_a_busy_primary_failed_over_under_traffic_loses_nothing(tmp_path: Path) -> None:
    async def fail_over(st: PrivateStack, busy: int) -> None:
        assert st.cluster is not None
        slot = slot_of(st.state.space.tag(busy))
        primary = await st.cluster.owner(slot)
        [replica] = await st.cluster.replicas_of(primary)
        await st.cluster.failover(replica)
        assert await st.cluster.owner(slot) is replica

    await _under_traffic(tmp_path, "cluster primary failed over under traffic", 92, 1, 2, fail_over)
