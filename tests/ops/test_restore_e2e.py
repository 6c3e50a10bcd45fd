"""The session changelog end to end: a downstream consumer, and ``continuity rebuild``
restoring Redis from it on a broker and a Redis of the test's own.

Proves: the topic holds, per key, exactly the state Redis holds (sessions byte
for byte once stored, merged guests' aliases, device sign-ins), every value
valid against the exported JSON Schema; a restore into an empty prefix after
the source topics were deleted and created again (their history gone) equals
the live state, reading no source record; with only a tail not yet on the
changelog, a restore reads just that tail and still equals the live state,
applied offsets included; two relays, each holding the
leases of different partitions, publish a topic that still ends equal to
Redis, each record on its key's partition and each partition's watermark on
that partition covering only that partition's source positions; and in
forward mode, a restore taken while a login across partitions is half done
(the customer's session waiting with a record held, the guest's answer not yet
on ``session-forwards``) puts back the wait, the guest's side and the forward
to send, so that workers on the restored prefix finish the merge with nothing
lost.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.changelog import CONTROL_HEADER, WATERMARK_ADAPTER
from schemas.topics import SESSION_CHANGELOG, SESSION_FORWARDS, SOURCE_TOPICS
from streams.core.changelog import flat
from streams.core.crossing import Pending
from streams.dev.simulate import workload
from streams.kafka import clients
from streams.kafka.publish import Publisher
from streams.kafka.topics import ensure_topics
from streams.store import keys
from streams.store.changelog import ChangelogOutbox
from streams.store.forwards import ForwardOutbox
from streams.store.state import RedisState
from streams.worker.changelog_relay import run_changelog_relay
from tests.support.changelog import (
    by_family,
    downstream_view,
    drained,
    mismatches,
    restored_families,
)
from tests.support.events import added, event
from tests.support.private_stack import PrivateStack, private_stack
from tests.support.stack import (
    PARTITIONS,
    applied_through,
    publish,
    read_topic,
    space,
    wait_until,
)

pytestmark = pytest.mark.e2e

WHERE = space("cont")


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
        assert by_family(live, b"a:"), "the workload merged guests"
        links = by_family(live, b"l:")
        assert links["cl-first"] == links["cl-second"] == {b"cl-guest"}
        # A downstream consumer: the newest record per key, by seq; control records skipped.
        view, _ = await downstream_view(st.bootstrap)
        assert by_family(live, b"s:")
        assert mismatches(view, live) == []

        # Redis lost (a fresh prefix) and the source history gone: the changelog suffices.
        await _recreate_sources(st.bootstrap)
        code, out, err = await st.cli("rebuild", "--prefix", "cont-restored", timeout=180)
        assert code == 0, out + err
        assert "then folded 0 source records" in out, out
        assert "logs reset, read from the start" in out, out
        assert await restored_families(st.redis, "cont-restored") == live
        # The reset partitions start a new epoch: no applied offsets carried into it. The
        # workers' own session-forwards (forward mode) was not reset: its positions carry
        # over, as the live ones (nothing of it was in flight, so nothing was folded).
        restored = await RedisState(st.redis, space("cont-restored")).applied_offsets()
        live_forwards = {
            tp: o
            for tp, o in (await st.state.applied_offsets()).items()
            if tp.rpartition(":")[0] == SESSION_FORWARDS
        }
        assert restored == live_forwards


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
            customers = sorted({e["customer_id"] for e in head_events if e.get("customer_id")})
            tail_events = [
                event(
                    "cart.item_added", added(f"T-{n % 7}"), customer=customers[n % len(customers)]
                )
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
        tail_state = RedisState(st.redis, space("cont-tail"))
        assert await tail_state.applied_offsets() == await st.state.applied_offsets()


async def test_partitions_published_under_different_leases_end_equal_to_redis(
    tmp_path: Path,
) -> None:
    where = space("cont")
    # Two relays (as two workers would), started before the worker so they hold every
    # lease: one the even partitions, the other the odd ones. The worker's own relays
    # find each lease held and only stand by.
    async with private_stack(tmp_path) as st:
        relays = {
            holder: [ChangelogOutbox(st.redis, where, n, holder) for n in ns]
            for holder, ns in (
                ("relay-even", where.all_partitions()[0::2]),
                ("relay-odd", where.all_partitions()[1::2]),
            )
        }
        producer = clients.producer(st.bootstrap, "test", linger_ms=1)
        await producer.start()

        async def send(
            key: str, value: bytes | None, headers: list[tuple[str, bytes]], partition: int
        ) -> Any:
            return await producer.send(
                SESSION_CHANGELOG, value, key=key.encode(), partition=partition, headers=headers
            )

        for outboxes in relays.values():
            for outbox in outboxes:
                assert await outbox.hold()
        tasks = [
            asyncio.create_task(run_changelog_relay(o, send, sweep_interval=0.5))
            for outboxes in relays.values()
            for o in outboxes
        ]
        try:
            st.start_worker("w")
            async with Publisher(st.bootstrap, linger_ms=1) as pub:
                await st.ready(pub)
                written = await publish(pub, workload(seed=83, customers=50, prefix="ls"))
                await applied_through(st.state, written, timeout=120)
            await drained(st.redis, st.bootstrap, where)
            for holder, outboxes in relays.items():
                for outbox in outboxes:
                    lease: Any = await st.redis.get(keys.changelog_lease(where, outbox.partition))
                    assert lease is not None
                    assert lease.decode().startswith(f"{holder}:")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await producer.stop()
        for w in st.workers:
            w.stop()
        live = await restored_families(st.redis, "cont")
        view, _ = await downstream_view(st.bootstrap)
        assert by_family(live, b"s:"), "sessions"
        assert by_family(live, b"a:"), "merged guests"
        assert mismatches(view, live) == []
        marks: dict[int, int] = {}
        for m in await read_topic(st.bootstrap, SESSION_CHANGELOG):
            headers = dict(m.headers or ())
            if CONTROL_HEADER not in headers:
                assert m.partition == where.partition(m.key.decode()), m.key
                continue
            positions = flat(WATERMARK_ADAPTER.validate_json(m.value).positions)
            assert {int(tp.rsplit(":", 1)[1]) for tp in positions} <= {m.partition}
            marks[m.partition] = marks.get(m.partition, 0) + 1
        assert set(marks) == set(where.all_partitions()), "a watermark on every partition"


async def test_a_restore_keeps_the_work_in_flight_between_partitions(tmp_path: Path) -> None:
    forward = {"CONTINUITY_CROSS_PARTITION": "forward"}
    guest = "g-rs-1"
    customer = next(
        c for c in (f"c-rs-{n}" for n in range(99)) if WHERE.partition(c) != WHERE.partition(guest)
    )
    home_g, home_c = WHERE.partition(guest), WHERE.partition(customer)
    async with private_stack(tmp_path) as st:
        # The guest's partition's forwards stay unsent: the test holds their relay's lease.
        stuck = ForwardOutbox(st.redis, WHERE, home_g, "test", lease_seconds=600)
        assert await stuck.hold()
        worker = st.start_worker("w", **forward)
        async with Publisher(st.bootstrap, linger_ms=1) as pub:
            await st.ready(pub)
            written = await publish(
                pub,
                [
                    event("cart.item_added", added("A-1", 2), anon=guest),
                    event("session.identified", customer=customer, anon=guest),
                    event("cart.item_added", added("B-2", 1), customer=customer),
                ],
            )
            await applied_through(st.state, written, timeout=60)

        async def half_done() -> bool:
            waits = await st.redis.hget(keys.waiting(WHERE, home_c), customer)
            merge = await st.redis.xlen(keys.forwards(WHERE, home_g))
            return waits is not None and len(Pending.loads(waits).held) == 1 and merge == 1

        await wait_until(half_done, 60, interval=0.1)
        # Everything of the customer's partition reaches the changelog; the guest's side
        # of the login waits there for its forward to be sent.
        await wait_until(lambda: _published(st, home_c), 30, interval=0.2)
        await asyncio.sleep(1.0)
        assert await st.redis.xlen(keys.changelog(WHERE, home_g)) >= 1
        worker.stop()
        live = await restored_families(st.redis, "cont")
        assert by_family(live, b"a:")[guest] == customer.encode()

        # Redis lost: a restore into a fresh prefix, as the workers fold (forward mode).
        code, out, err = await st.cli("rebuild", "--prefix", "cont-r", timeout=180, env=forward)
        assert code == 0, out + err
        assert "then folded 0 source records and 1 session-forwards records" in out, out
        assert await restored_families(st.redis, "cont-r") == live
        assert await _unsent(st, "cont-r", home_g) == await _unsent(st, "cont", home_g)
        restored = RedisState(st.redis, space("cont-r"))
        assert await restored.applied_offsets() == await st.state.applied_offsets()

        # Workers on the restored prefix finish the merge: nothing folded was lost.
        st.start_worker(
            "w-r", CONTINUITY_REDIS_PREFIX="cont-r", CONTINUITY_APP_ID="restored", **forward
        )

        async def merged() -> Any:
            session = await restored.get(customer)
            return session if session is not None and len(session.cart) == 2 else None

        session = await wait_until(merged, 90, interval=0.2)
        assert [(line.sku, line.quantity) for line in session.cart] == [("A-1", 2), ("B-2", 1)]
        assert await st.redis.hlen(keys.waiting(space("cont-r"), home_c)) == 0


async def _published(st: PrivateStack, partition: int) -> bool:
    return await st.redis.xlen(keys.changelog(WHERE, partition)) == 0


async def _unsent(st: PrivateStack, prefix: str, partition: int) -> list[dict[str, Any]]:
    """The forwards a partition's outbox holds, as their relay would send them, less the
    journey a merge carries (journeys are not restored: Operations, Restore)."""
    rows = await st.redis.xrange(keys.forwards(space(prefix), partition))
    out = []
    for _, fields in rows:
        fwd = orjson.loads(fields[b"v"])
        fwd.pop("journey", None)
        out.append({"p": fields[b"p"], "k": fields[b"k"], "v": fwd})
    return out
