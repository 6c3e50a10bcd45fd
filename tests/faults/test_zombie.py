"""A zombie worker: frozen with a commit in flight while the group moves on without it.

Proves, against the oracle and the independent model: a worker frozen
(SIGSTOP) longer than the group's session timeout, holding a commit it
planned before it froze, loses its partitions to another worker, which folds
the same records again from Kafka's committed offsets. When the frozen
commit finally reaches Redis, the commit script's compare-and-set refuses it
(seen on the wire by the proxy in front of Redis: ``{0, what, name}``, nothing
written), the worker is let go on (SIGCONT) and rejoins, and every cart ends
as the model says: nothing lost, nothing applied twice. The workers remember
no event ids (``CONTINUITY_DEDUP_WINDOW=0``), so only the compare-and-set and
the applied offsets stand between the zombie and a doubled cart.

And a commit that runs in Redis but whose answer is lost on the way back (the
proxy closes the worker's connection instead of passing it on): the worker
retries the batch, finds its records applied, and applies nothing twice.
With the planner's applied-offset skip disabled on purpose, both tests fail
(58 and 90 sessions doubled); restored, they pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from streams.kafka.publish import Publisher
from tests.support.fault_report import FaultRow, compare, record
from tests.support.model import disagreements, model
from tests.support.oracle import NO_DEDUP, NO_DEDUP_ENV, cart_workload, mismatches, oracle
from tests.support.redis_proxy import CommitHoldingProxy
from tests.support.stack import (
    WorkerGroup,
    applied_through,
    balanced,
    publish,
    single_primary,
    wait_until,
)

# The proxy speaks to one redis-server (a cluster client would follow MOVED around it).
pytestmark = single_primary("a commit-holding proxy in front of one redis-server")

# Longer than the workers' group session timeout (CONTINUITY_SESSION_TIMEOUT=6 in tests).
FROZEN_AT_LEAST = 8.0


@pytest.fixture
async def proxy(group: WorkerGroup) -> AsyncIterator[CommitHoldingProxy]:
    """A commit-holding proxy in front of the shared Redis, closed after the test."""
    redis_port = urlsplit(group.stack.redis_url).port
    assert redis_port is not None
    held = CommitHoldingProxy(redis_port)
    await held.start()
    yield held
    await held.close()


def through(proxy: CommitHoldingProxy) -> dict[str, str]:
    """A worker's environment to reach Redis through ``proxy``, remembering no event ids."""
    return {"REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0", **NO_DEDUP_ENV}


async def test_a_zombie_workers_stale_commit_is_refused_and_nothing_doubles(
    group: WorkerGroup, publisher: Publisher
) -> None:
    events = cart_workload(seed=71, customers=120, per_customer=12, prefix=group.group)
    expected, carts = oracle(events, NO_DEDUP), model(events)
    redis_port = urlsplit(group.stack.redis_url).port
    assert redis_port is not None
    proxy = CommitHoldingProxy(redis_port)
    await proxy.start()
    zombie = group.start("zombie", REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0", **NO_DEDUP_ENV)
    survivor = group.start("survivor", **NO_DEDUP_ENV)
    try:
        await group.ready(publisher)
        await balanced([zombie, survivor])
        third = len(events) // 3
        proxy.arm()
        written = await publish(publisher, events[:third])
        # The zombie planned a batch of its partitions and sent the commit: held.
        await asyncio.wait_for(proxy.held_commit.wait(), timeout=60)
        zombie.proc.send_signal(signal.SIGSTOP)
        for tp, offset in (await publish(publisher, events[third : 2 * third])).items():
            written[tp] = max(written.get(tp, -1), offset)
        await asyncio.sleep(FROZEN_AT_LEAST)
        # The survivor took every partition over and folded what the zombie held.
        await applied_through(group.state, written, timeout=120)
        await proxy.release()
        reply = await asyncio.wait_for(proxy.reply, timeout=30)
        zombie.proc.send_signal(signal.SIGCONT)
        await publish(publisher, events[2 * third :])

        async def converged() -> bool:
            return not await mismatches(group.state, expected)

        with contextlib.suppress(AssertionError):
            await wait_until(converged, timeout=120, interval=0.5)
        stored = {k: await group.state.get(k) for k in expected}
        lost, doubled, wrong = compare(expected, stored)
        off_model = disagreements(carts, stored)
        refused = reply.startswith(b"*3\r\n:0\r\n")
        record(
            FaultRow(
                "zombie worker (SIGSTOP > session timeout), stale commit",
                1,
                len(events),
                len(expected),
                lost,
                doubled,
                wrong + len(off_model),
                landed=int(refused),
            )
        )
        assert refused, f"the stale commit was not refused: {reply!r}"
        assert (lost, doubled, wrong, off_model) == (0, 0, 0, [])
        assert survivor.alive(), "the survivor exited"
        assert zombie.alive(), "the zombie exited instead of rejoining"
    finally:
        with contextlib.suppress(ProcessLookupError):
            zombie.proc.send_signal(signal.SIGCONT)


async def test_a_commit_whose_reply_is_lost_is_not_applied_twice(
    group: WorkerGroup, publisher: Publisher, proxy: CommitHoldingProxy
) -> None:
    """The commit runs in Redis but its answer never reaches the worker: the worker
    cannot know it ran, retries the batch, finds its records applied and skips them."""
    events = cart_workload(seed=72, customers=100, per_customer=12, prefix=group.group)
    expected, carts = oracle(events, NO_DEDUP), model(events)
    worker = group.start("w", **through(proxy))
    await group.ready(publisher)
    half = len(events) // 2
    proxy.arm()
    sending = asyncio.create_task(publish(publisher, events[:half]))
    await asyncio.wait_for(proxy.held_commit.wait(), timeout=60)
    await proxy.release(drop_reply=True)
    reply = await asyncio.wait_for(proxy.reply, timeout=30)
    await sending
    await publish(publisher, events[half:])

    async def converged() -> bool:
        return not await mismatches(group.state, expected)

    with contextlib.suppress(AssertionError):
        await wait_until(converged, timeout=120, interval=0.5)
    stored = {k: await group.state.get(k) for k in expected}
    lost, doubled, wrong = compare(expected, stored, carts)
    applied = reply.startswith(b"*1\r\n:1\r\n")
    record(
        FaultRow(
            "commit applied, its reply lost",
            1,
            len(events),
            len(expected),
            lost,
            doubled,
            wrong,
            landed=int(applied),
        )
    )
    assert applied, f"the held commit did not run: {reply!r}"
    assert (lost, doubled, wrong) == (0, 0, 0)
    assert worker.alive(), "a lost reply is retried, not fatal"
