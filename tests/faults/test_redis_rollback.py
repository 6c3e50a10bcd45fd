"""Redis coming back older than it was, under running workers: nothing folded is lost.

A snapshot of Redis's data (the AOF directory, as a lagging replica or a
backup holds it) is taken after the first third of a cart workload; the
second third is folded, acknowledged and committed to Kafka; then Redis is
killed and started again from the snapshot, and the last third is sent.
Every cart must equal the oracle: the workers find that Redis's applied
offsets are below what they know was applied, count it in
``continuity_redis_rollbacks_total`` and fold the lost range again from the
log (``streams/core/positions.py``, ``streams/worker/rewind.py``). With two workers the
partitions are split between them and each finds its own.

A second test wipes Redis entirely (a replica that lost everything) and an
erasure made after the snapshot must stay in force: the rewind re-applies it
from the ``session-erasures`` topic before folding again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from streams.kafka.publish import Publisher
from tests.support.events import added, event
from tests.support.fault_report import FaultRow, compare, pick, record
from tests.support.metrics_text import samples, total
from tests.support.model import model
from tests.support.oracle import NO_DEDUP, NO_DEDUP_ENV, cart_workload, oracle
from tests.support.private_stack import PrivateStack, http_get, private_stack, wait_redis
from tests.support.stack import applied_through, publish, wait_until

FAST = {"CONTINUITY_COMMIT_INTERVAL": "0.2", "CONTINUITY_POSITION_CHECK_INTERVAL": "0.5"}


def _snapshot(st: PrivateStack, into: Path) -> Path:
    """Copy Redis's AOF directories (every node's, on a cluster) into ``into``."""
    for n, aof in enumerate(st.aof_dirs()):
        shutil.copytree(aof, into / str(n))
    return into


def _restore(st: PrivateStack, snapshot: Path | None) -> None:
    """Kill Redis (every node) and start it on ``snapshot`` (None: on nothing at all)."""
    st.stop_redis(kill=True)
    for n, aof in enumerate(st.aof_dirs()):
        shutil.rmtree(aof)
        if snapshot is not None:
            shutil.copytree(snapshot / str(n), aof)
    st.start_redis()


async def _committed_past(st: PrivateStack, written: dict[str, int]) -> None:
    """Wait until Kafka's committed offsets passed ``written``: the defect's precondition."""

    async def past() -> bool:
        committed = await st.committed()
        return all(committed.get(tp, 0) > off for tp, off in written.items())

    await wait_until(past, 60, interval=0.3)


async def _rollbacks(st: PrivateStack) -> float:
    seen = 0.0
    for w in st.workers:
        status, body = await http_get(w.port or 0, "/metrics")
        assert status == 200, body
        seen += total(samples(body), "continuity_redis_rollbacks_total")
    return seen


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_redis_restored_from_an_older_snapshot_is_folded_again(
    tmp_path: Path, workers: int
) -> None:
    events = cart_workload(
        seed=60 + workers, customers=pick(40, 160), per_customer=12, prefix=f"rb{workers}"
    )
    expected, carts = oracle(events, NO_DEDUP), model(events)
    third = len(events) // 3
    async with private_stack(tmp_path) as st:
        for i in range(workers):
            st.start_worker(f"w{i}", **NO_DEDUP_ENV, **FAST)
        async with Publisher(st.bootstrap, linger_ms=1) as pub:
            await st.ready(pub)
            await applied_through(st.state, await publish(pub, events[:third]), timeout=180)
            snapshot = _snapshot(st, tmp_path / "snapshot")
            written = await publish(pub, events[third : 2 * third])
            await applied_through(st.state, written, timeout=180)
            await _committed_past(st, written)
            assert await _rollbacks(st) == 0, "no rollback on a healthy Redis"

            _restore(st, snapshot)
            await wait_redis(st)
            rest = await publish(pub, events[2 * third :])
            everything = {
                tp: max(written.get(tp, -1), rest.get(tp, -1)) for tp in {*written, *rest}
            }
            await applied_through(st.state, everything, timeout=180)
            lost, doubled, wrong = compare(expected, await st.sessions(sorted(expected)), carts)
            rollbacks = await _rollbacks(st)
        assert all(w.alive() for w in st.workers), "no worker exits on a rollback"
    fault = f"redis restored from a snapshot, {workers} worker(s)"
    record(FaultRow(fault, 1, len(events), len(expected), lost, doubled, wrong))
    assert (lost, doubled, wrong) == (0, 0, 0)
    assert rollbacks >= 1, "the rollback is counted"


async def test_a_wiped_redis_is_refolded_and_keeps_an_erasure_made_after_the_snapshot(
    tmp_path: Path,
) -> None:
    async with private_stack(tmp_path) as st:
        st.start_worker("w", **FAST)
        async with Publisher(st.bootstrap, linger_ms=1) as pub:
            await st.ready(pub)
            kept, erased = "keep-me", "erase-me"
            first = await publish(
                pub,
                [
                    event("cart.item_added", added("K-1", 2), customer=kept),
                    event("cart.item_added", added("E-1", 1), customer=erased),
                ],
            )
            await applied_through(st.state, first)
            code, out, err = await st.cli("erase", "--customer", erased)
            assert code == 0, out + err
            assert await st.state.get(erased) is None

            _restore(st, None)  # a replica that lost everything
            await wait_redis(st)
            later = await publish(pub, [event("browse.search", {"query": "x"}, customer=kept)])
            # The later event's topic is another than the first events': it can be
            # applied before the rewind refolded theirs, so wait for both.
            await applied_through(st.state, {**first, **later}, timeout=120)
            session = await st.state.get(kept)
            assert session is not None
            assert [(ln.sku, ln.quantity) for ln in session.cart] == [("K-1", 2)]
            assert session.version == 2, "folded again from the start, each event once"
            assert await st.state.get(erased) is None, "the erasure came back before the refold"
            assert await st.state.erasure(erased) is not None
            assert await _rollbacks(st) >= 1
