"""The worker's batched delivery across a real process boundary: Kafka never commits past Redis.

The consumer hands whole fetches to the agent (``streams/worker/batch_delivery.py``)
and the agent acks a batch's records only once Redis holds them. Shown here
with a real broker, a real redis-server frozen with SIGSTOP and a real worker
process: while the worker holds fetched batches it cannot write, the group's
committed offsets stay at what Redis applied before; the worker SIGKILLed with
those batches in hand, a fresh one folds every event exactly once.
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
from tests.support.private_stack import PrivateStack, private_stack, wait_redis
from tests.support.stack import publish, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

COMMIT_INTERVAL = "0.2"


async def _committed(st: PrivateStack) -> dict[str, int]:
    return await st.committed()


def _received(text: str) -> float:
    """Records the worker took into a batch (``continuity_events_received_total``, all labels)."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("continuity_events_received_total{")
    )


def _beyond(committed: dict[str, int], applied: dict[str, int]) -> dict[str, tuple[int, int]]:
    """Partitions whose committed offset passes the last applied one: (committed, applied)."""
    return {
        tp: (offset, applied.get(tp, -1))
        for tp, offset in committed.items()
        if offset > applied.get(tp, -1) + 1
    }


async def test_offsets_wait_for_redis_and_a_kill_with_batches_in_hand_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    async with private_stack(tmp_path) as st, Publisher(st.bootstrap, linger_ms=1) as pub:
        worker = st.start_worker("a", CONTINUITY_COMMIT_INTERVAL=COMMIT_INTERVAL)
        await st.ready(pub)
        assert worker.port is not None
        received_before = _received(await scrape(worker.port))
        applied_before = await st.state.applied_offsets()
        events = cart_workload(seed=71, customers=80, per_customer=10, prefix="acks")
        expected = oracle(events)

        # Every node of a cluster at once: none sees another fail meanwhile.
        for pid in st.redis_pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            sending = asyncio.create_task(publish(pub, events))

            async def holds_a_batch() -> bool:
                assert worker.port is not None
                return _received(await scrape(worker.port)) > received_before

            await wait_until(holds_a_batch, timeout=60, interval=0.2)
            await sending
            # Many commit intervals with batches fetched and none in Redis.
            for _ in range(10):
                await asyncio.sleep(float(COMMIT_INTERVAL))
                assert _beyond(await _committed(st), applied_before) == {}
            worker.kill()
        finally:
            for pid in st.redis_pids:
                os.kill(pid, signal.SIGCONT)
        await wait_redis(st)
        assert _beyond(await _committed(st), await st.state.applied_offsets()) == {}

        st.start_worker("b", CONTINUITY_COMMIT_INTERVAL=COMMIT_INTERVAL)

        async def converged() -> bool:
            return not await mismatches(st.state, expected)

        await wait_until(converged, timeout=180, interval=0.5)
        stored = await st.sessions(list(expected))
        assert compare(expected, stored) == (0, 0, 0)  # (lost, doubled, wrong)
        applied = await st.state.applied_offsets()

        async def all_committed() -> bool:
            committed = await _committed(st)
            return all(committed.get(tp, 0) == offset + 1 for tp, offset in applied.items())

        await wait_until(all_committed, timeout=30, interval=0.3)
        assert _beyond(await _committed(st), await st.state.applied_offsets()) == {}
