"""Faults of the broker: it loses every topic, or it stops answering for a while.

Proves: after the restart the worker recognises each reset partition (the
record at the applied offset is gone or different), starts a new epoch
(``continuity_log_resets_total`` counts it), and applies every post-restart
event exactly once, although the new log's offsets are all at or below the
offsets applied before; the sessions folded before the restart are intact.
Without the check those events would be skipped as "already applied".

And a broker frozen (SIGSTOP) longer than the group's session timeout while
the worker folds, its data intact: nothing lost, nothing applied twice.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from schemas.topics import CART_EVENTS
from streams.kafka.publish import Publisher
from tests.support.fault_report import FaultRow, compare, pick, record
from tests.support.metrics_text import metric, scrape
from tests.support.model import model
from tests.support.oracle import NO_DEDUP, NO_DEDUP_ENV, cart_workload, oracle
from tests.support.private_stack import private_stack
from tests.support.stack import applied_since, applied_through, publish, wait_until

# Longer than the workers' group session timeout (CONTINUITY_SESSION_TIMEOUT=6 here).
FROZEN_FOR = 8.0


async def test_broker_restart_starts_a_new_epoch_and_loses_nothing(tmp_path: Path) -> None:
    restarts = pick(1, 3)
    async with private_stack(tmp_path) as st:
        worker = st.start_worker("w")
        all_expected = {}
        sent = 0
        for n in range(restarts + 1):
            # Each epoch is smaller than the last, so every new offset is <= an applied one.
            customers = 40 - 8 * n
            events = cart_workload(seed=30 + n, customers=customers, per_customer=8, prefix=f"e{n}")
            async with Publisher(st.bootstrap, linger_ms=1) as pub:
                if n == 0:
                    await st.ready(pub)
                written = await publish(pub, events)
                await applied_through(st.state, written, timeout=120)
            sent += len(events)
            expected = oracle(events)
            all_expected.update(expected)
            now = await st.sessions(sorted(expected))
            assert compare(expected, now) == (0, 0, 0), f"epoch {n} folded exactly once"
            if n < restarts:
                worker.stop()
                await st.restart_broker()
                worker = st.restart(worker)
        assert worker.port is not None

        async def resets() -> float:
            try:
                return metric(
                    await scrape(worker.port or 0), "continuity_log_resets_total", topic=CART_EVENTS
                )
            except OSError:
                return 0.0

        # The last worker saw the last restart's reset partitions (probe included).
        assert await wait_until(resets, timeout=30) >= 1
        lost, doubled, wrong = compare(all_expected, await st.sessions(sorted(all_expected)))
        record(
            FaultRow(
                "broker restart (topics lost)",
                restarts,
                sent,
                len(all_expected),
                lost,
                doubled,
                wrong,
            )
        )
        assert (lost, doubled, wrong) == (0, 0, 0), "pre-restart sessions intact"


async def test_a_frozen_broker_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """The broker stops answering (SIGSTOP, its data intact) longer than the group's
    session timeout, mid-traffic, then carries on: the worker waits, rejoins, and
    every cart ends as the model says (no event-id memory, so nothing is hidden)."""
    freezes = pick(1, 3)
    events = cart_workload(seed=35, customers=60, per_customer=10, prefix="frozen")
    expected, carts = oracle(events, NO_DEDUP), model(events)
    async with private_stack(tmp_path) as st:
        worker = st.start_worker("w", **NO_DEDUP_ENV)
        step = len(events) // (freezes + 1)
        async with Publisher(st.bootstrap, linger_ms=1) as pub:
            await st.ready(pub)
            for n in range(freezes):
                before = await st.state.applied_offsets()
                written = await publish(pub, events[n * step : (n + 1) * step])
                await applied_since(st.state, before)  # frozen while it folds
                st.broker.proc.send_signal(signal.SIGSTOP)
                try:
                    await asyncio.sleep(FROZEN_FOR)
                finally:
                    st.broker.proc.send_signal(signal.SIGCONT)
                await applied_through(st.state, written, timeout=120)
            await applied_through(st.state, await publish(pub, events[freezes * step :]), 120)
        stored = await st.sessions(sorted(expected))
        lost, doubled, wrong = compare(expected, stored, carts)
        record(
            FaultRow(
                "broker frozen (SIGSTOP) past the session timeout",
                freezes,
                len(events),
                len(expected),
                lost,
                doubled,
                wrong,
            )
        )
        assert (lost, doubled, wrong) == (0, 0, 0)
        assert worker.alive(), "the worker waits a frozen broker out"
