"""The session changelog end to end: a downstream consumer, and ``continuity rebuild``
restoring Redis from it on a broker and a Redis of the test's own.

Proves: the topic holds, per key, exactly the state Redis holds (sessions byte
for byte once stored, merged guests' aliases, device sign-ins), every value
valid against the exported JSON Schema; a restore into an empty prefix after
the source topics were deleted and created again (their history gone) equals
the live state, reading no source record; and with only a tail not yet on the
changelog, a restore reads just that tail and still equals the live state.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.topics import SOURCE_TOPICS
from streams.dev.simulate import workload
from streams.kafka import clients
from streams.kafka.publish import Publisher
from streams.kafka.topics import ensure_topics
from tests.support.changelog import downstream_view, drained, mismatches, restored_families
from tests.support.events import added, event
from tests.support.private_stack import private_stack
from tests.support.stack import PARTITIONS, applied_through, publish, wait_until

pytestmark = pytest.mark.e2e


async def _recreate_sources(bootstrap: str) -> None:
    """Delete the source topics and create them again, empty: their history is gone."""
    admin = clients.admin(bootstrap, "test")
    await admin.start()
    try:
        await admin.delete_topics(list(SOURCE_TOPICS))
    finally:
        await admin.close()

    async def gone() -> bool:
        admin = clients.admin(bootstrap, "test")
        await admin.start()
        try:
            return not set(SOURCE_TOPICS) & set(await admin.list_topics())
        finally:
            await admin.close()

    await wait_until(gone, 30, interval=0.5)
    await ensure_topics(bootstrap, PARTITIONS)


async def test_downstream_reads_the_state_and_a_restore_needs_no_history(tmp_path: Path) -> None:
    async with private_stack(tmp_path) as st:
        worker = st.start_worker("w")
        async with Publisher(st.bootstrap, linger_ms=1) as pub:
            await st.ready(pub)
            # Beside the mixed traffic, a guest signed in to two customers in turn: the
            # first customer's link set keeps it (an erasure of either reaches it).
            moved = [
                event("cart.item_added", added("G-1"), anon="cl-guest"),
                event("session.identified", customer="cl-first", anon="cl-guest"),
                event("session.identified", customer="cl-second", anon="cl-guest"),
            ]
            written = await publish(pub, workload(seed=81, customers=60, prefix="cl") + moved)
            await applied_through(st.state, written, timeout=120)
        await drained(st.redis, st.bootstrap)
        worker.stop()
        live = await restored_families(st.redis, "cont")
        assert any(k.startswith(b"a:") for k in live), "the workload merged guests"
        assert live[b"l:{cl-first}"] == live[b"l:{cl-second}"] == {b"cl-guest"}
        # A downstream consumer: the newest record per key, by seq; control records skipped.
        view, _ = await downstream_view(st.bootstrap)
        assert any(k.startswith(b"s:") for k in live)
        assert mismatches(view, live) == []

        # Redis lost (a fresh prefix) and the source history gone: the changelog suffices.
        await _recreate_sources(st.bootstrap)
        code, out, err = await st.cli("rebuild", "--prefix", "cont-restored", timeout=180)
        assert code == 0, out + err
        assert "then folded 0 source records" in out, out
        assert "logs reset, read from the start" in out, out
        assert await restored_families(st.redis, "cont-restored") == live
        # The reset partitions start a new epoch: no applied offsets carried into it.
        assert await st.redis.hgetall("cont-restored:o") == {}


async def test_a_restore_folds_only_the_tail_the_changelog_lacks(tmp_path: Path) -> None:
    async with private_stack(tmp_path) as st:
        worker = st.start_worker("w")
        async with Publisher(st.bootstrap, linger_ms=1) as pub:
            await st.ready(pub)
            head_events = workload(seed=82, customers=40, prefix="hd")
            head = await publish(pub, head_events)
            await applied_through(st.state, head, timeout=120)
            await drained(st.redis, st.bootstrap)
            worker.stop()
            # The tail: folded live by a worker that keeps no changelog.
            st.start_worker("w2", CONTINUITY_CHANGELOG="false")
            # One topic, so the restore folds it in the order the live worker did.
            keys = sorted({e["customer_id"] for e in head_events if e.get("customer_id")})
            tail_events = [
                event("cart.item_added", added(f"T-{n % 7}"), customer=keys[n % len(keys)])
                for n in range(120)
            ]
            tail = await publish(pub, tail_events)
            await applied_through(st.state, tail, timeout=120)
        for w in st.workers:
            w.stop()
        live = await restored_families(st.redis, "cont")
        code, out, err = await st.cli("rebuild", "--prefix", "cont-tail", timeout=180)
        assert code == 0, out + err
        assert f"then folded {len(tail_events)} source records" in out, out
        assert "logs reset" not in out
        assert await restored_families(st.redis, "cont-tail") == live
        assert await st.redis.hgetall("cont-tail:o") == await st.redis.hgetall("cont:o")
