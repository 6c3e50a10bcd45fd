"""Fetches that arrive while the agent folds join the one waiting: across a real broker,
Redis and worker process, nothing joined is lost, doubled or acked before Redis holds it.

``streams/worker/batch_delivery.py`` (``join_waiting``): a fetch arriving while
the agent is busy is appended to the fetch waiting for it, so the agent takes
everything that arrived meanwhile as one batch. Here the agent is held on its
first batch by a frozen redis-server (SIGSTOP) while the events come in
separate bursts, each its own fetch; then Redis resumes and the worker folds
them all. The join counter shows the bursts did join; the oracle shows each
event applied exactly once; Kafka's committed offsets show every joined record
acked.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from streams.kafka.publish import Publisher
from tests.support.fault_report import compare
from tests.support.metrics_text import scrape
from tests.support.oracle import cart_workload, mismatches, oracle
from tests.support.private_stack import private_stack, wait_redis
from tests.support.stack import publish, wait_until

pytestmark = [pytest.mark.e2e]

BURSTS = 5


def _total(text: str, name: str) -> float:
    """The sum of a metric's samples (all labels) in a ``/metrics`` text."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((f"{name} ", f"{name}{{"))
    )


async def test_bursts_arriving_during_a_fold_join_and_are_folded_exactly_once(
    tmp_path: Path,
) -> None:
    async with private_stack(tmp_path) as st, Publisher(st.bootstrap, linger_ms=1) as pub:
        worker = st.start_worker("a", CONTINUITY_COMMIT_INTERVAL="0.2")
        await st.ready(pub)
        port = worker.port
        assert port is not None
        received = _total(await scrape(port), "continuity_events_received_total")
        joined = _total(await scrape(port), "continuity_fetches_joined_total")
        events = cart_workload(seed=29, customers=30, per_customer=BURSTS * 2, prefix="join")
        expected = oracle(events)
        # In publish order, cut into bursts.
        size = -(-len(events) // BURSTS)
        bursts = [events[n : n + size] for n in range(0, len(events), size)]

        for pid in st.redis_pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            await publish(pub, bursts[0])

            async def holds_a_batch() -> bool:
                text = await scrape(port)
                return _total(text, "continuity_events_received_total") > received

            await wait_until(holds_a_batch, timeout=60, interval=0.2)
            for burst in bursts[1:]:
                await publish(pub, burst)
                await asyncio.sleep(0.5)  # its own fetch: the consumer polls every 10 ms
            grown = _total(await scrape(port), "continuity_fetches_joined_total") - joined
        finally:
            for pid in st.redis_pids:
                os.kill(pid, signal.SIGCONT)
        await wait_redis(st)
        # Burst 2 waits for the agent held on burst 1; bursts 3 to 5 join it.
        assert grown >= BURSTS - 2

        async def converged() -> bool:
            return not await mismatches(st.state, expected)

        await wait_until(converged, timeout=120, interval=0.5)
        assert compare(expected, await st.sessions(list(expected))) == (0, 0, 0)
        applied = await st.state.applied_offsets()

        async def all_committed() -> bool:
            committed = await st.committed()
            return all(committed.get(tp, 0) == offset + 1 for tp, offset in applied.items())

        await wait_until(all_committed, timeout=30, interval=0.3)
