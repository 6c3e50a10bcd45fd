"""Abandoned carts, resumes and the journey, end to end: real broker, Redis and workers.

Proves: a cart left idle is announced once as ``cart.abandoned`` on
``session-notifications``, even when the worker that set its timer is killed
before the deadline and another worker starts after it; activity before the
deadline cancels it, an emptied or checked-out cart never fires, and coming
back after an abandonment arms a new one with a new id; a cart picked up on
another channel is announced as ``session.resumed_elsewhere``; every applied
event is one journey entry and a login moves the guest's entries to the
customer; the KPI hash counts each fact once.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.topics import NOTIFICATIONS
from streams.kafka.publish import Publisher
from streams.store import keys
from tests.support.clock import at as clock_at
from tests.support.events import added, event
from tests.support.private_stack import PrivateStack, private_stack
from tests.support.stack import applied_through, publish, read_topic, space, wait_until

# clock: event times meet the worker's clock (journey pruning, abandonment timers).
pytestmark = pytest.mark.clock

FAST = {"CONTINUITY_ABANDON_AFTER": "8", "CONTINUITY_ABANDON_SWEEP_INTERVAL": "0.5"}


async def notes_for(st: PrivateStack, wanted: set[str]) -> list[dict[str, Any]]:
    """The notifications on the topic for the keys ``wanted``, in topic order per key."""
    records = await read_topic(st.bootstrap, NOTIFICATIONS)
    notes = [orjson.loads(r.value) for r in records if r.key and r.key.decode() in wanted]
    assert all(r.key.decode() == orjson.loads(r.value)["key"] for r in records if r.key)
    return notes


@pytest.fixture
async def st(tmp_path: Path) -> AsyncIterator[PrivateStack]:
    """A broker and Redis of the test's own: KPIs count every event a group folds."""
    async with private_stack(tmp_path) as stack:
        yield stack


@pytest.fixture
async def publisher(st: PrivateStack) -> AsyncIterator[Publisher]:
    async with Publisher(st.bootstrap, linger_ms=1) as pub:
        yield pub


async def test_an_idle_cart_is_abandoned_once_across_a_worker_restart(
    st: PrivateStack, publisher: Publisher, ids: Any
) -> None:
    idle, active, bought, emptied = ids("idle"), ids("active"), ids("bought"), ids("emptied")
    redis, where = st.redis, space(st.prefix)
    first = st.start_worker("a", **FAST)
    await st.ready(publisher)
    written = await publish(
        publisher,
        [
            event("cart.item_added", added("A-1", 2), customer=idle, channel="mobile_app"),
            event("cart.item_added", added("A-1"), customer=active, channel="web"),
            event("cart.item_added", added("A-1"), customer=bought, channel="web"),
            event("cart.item_added", added("A-1"), customer=emptied, channel="kiosk"),
            event("cart.cleared", {}, customer=emptied, channel="kiosk"),
        ],
    )
    await applied_through(st.state, written)
    # Topics have no order between them: the checkout goes once the cart holds the line.
    written = await publish(
        publisher,
        [event("checkout.completed", {"order_id": ids("o")}, customer=bought, channel="pos")],
    )
    await applied_through(st.state, written)
    armed: list[Any] = []
    for n in where.all_partitions():
        armed += await redis.zrange(keys.abandonment(where, n), 0, -1)
    timers = {t.decode() for t in armed}
    assert {idle, active} <= timers
    assert not {bought, emptied} & timers, "an empty cart has no timer"
    # ``active`` comes back in time: its timer moves and version 1 is never abandoned.
    written = await publish(
        publisher, [event("browse.search", {"query": "x"}, customer=active, channel="web")]
    )
    await applied_through(st.state, written)

    # The worker that armed the timers dies before they run out; none is running
    # when they do; a new one finds them in Redis.
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)
    assert await redis.zscore(_timers(st, idle), idle) is not None, "not yet due"
    st.start_worker("b", **FAST)

    carts = {idle, active, bought, emptied}
    notes = await wait_until(lambda: _abandoned(st, carts, {idle, active}), timeout=60)
    by_key = {n["key"]: n for n in notes}
    assert len(notes) == 2, f"one notification per abandonment: {notes}"
    note = by_key[idle]
    assert note["notification_id"] == f"abandoned:{idle}:1"
    assert note["cart"][0]["sku"] == "A-1"
    assert (note["item_count"], note["subtotal"], note["currency"]) == (2, "20.00", "EUR")
    assert (note["last_channel"], note["cart_path"]) == ("mobile_app", ["mobile_app"])
    assert by_key[active]["version"] == 2, "the timer ran from the last activity"

    # Coming back arms a new abandonment, with a new id.
    written = await publish(
        publisher, [event("cart.item_added", added("B-2"), customer=idle, channel="web")]
    )
    await applied_through(st.state, written)
    notes = await wait_until(lambda: _abandoned(st, {idle}, {idle}, versions={1, 2}), timeout=60)
    assert [n["notification_id"] for n in notes] == [
        f"abandoned:{idle}:1",
        f"abandoned:{idle}:2",
    ]
    kpis = await _kpis(st)
    assert kpis["abandoned:mobile_app"] == 2, kpis
    assert kpis["abandoned:web"] == 1
    assert kpis["abandoned_path:mobile_app>web"] == 1
    # Nothing is armed any more: no activity since, so no further notification.
    assert await redis.zscore(_timers(st, idle), idle) is None
    assert await redis.zscore(_timers(st, active), active) is None
    final = [(n["type"], n["notification_id"]) for n in await notes_for(st, carts)]
    assert sorted(final) == [
        ("cart.abandoned", f"abandoned:{active}:2"),
        ("cart.abandoned", f"abandoned:{idle}:1"),
        ("cart.abandoned", f"abandoned:{idle}:2"),
        # Checked out at the store, added to on the web: the carts were picked up elsewhere.
        ("session.resumed_elsewhere", f"resumed:{bought}:2"),
        ("session.resumed_elsewhere", f"resumed:{idle}:2"),
    ]


async def _abandoned(
    st: PrivateStack, wanted: set[str], want: set[str], versions: set[int] | None = None
) -> list[dict[str, Any]] | None:
    notes = [n for n in await notes_for(st, wanted) if n["type"] == "cart.abandoned"]
    got = {n["key"] for n in notes}
    if got < want or (versions and {n["version"] for n in notes} < versions):
        return None
    return notes


async def test_a_cart_picked_up_on_another_channel_is_announced_and_journeyed(
    st: PrivateStack, publisher: Publisher, ids: Any
) -> None:
    customer, guest = ids("c"), ids("g")
    redis, where = st.redis, space(st.prefix)
    st.start_worker("a")
    await st.ready(publisher)
    steps = [
        event("browse.product_viewed", {"sku": "A-1"}, anon=guest, channel="social"),
        event("cart.item_added", added("A-1"), anon=guest, channel="mobile_app"),
        event("session.identified", {}, customer=customer, anon=guest, channel="mobile_app"),
        event("browse.search", {"query": "size"}, customer=customer, channel="call_center"),
        event("checkout.handoff_claimed", {}, customer=customer, channel="pos", store_id="s-12"),
        event("checkout.completed", {"order_id": ids("o")}, customer=customer, channel="pos"),
    ]
    # One at a time: events on different topics have no order between them.
    for minute, step in enumerate(steps):
        step["occurred_at"] = clock_at(minute)
        await applied_through(st.state, await publish(publisher, [step]))
    notes = await wait_until(lambda: notes_for(st, {customer, guest}), timeout=30)
    assert [(n["type"], n["from_channel"], n["to_channel"]) for n in notes] == [
        ("session.resumed_elsewhere", "mobile_app", "call_center")
    ]
    # Guest versions 1-2, the merge 3, the login 4, the call-center search 5.
    assert notes[0]["notification_id"] == f"resumed:{customer}:5"

    journey = await redis.zrange(keys.journey(where, customer), 0, -1)
    entries = [orjson.loads(m) for m in journey]
    assert [(e["channel"], e["type"]) for e in entries] == [
        ("social", "browse.product_viewed"),
        ("mobile_app", "cart.item_added"),
        ("mobile_app", "session.identified"),
        ("call_center", "browse.search"),
        ("pos", "checkout.handoff_claimed"),
        ("pos", "checkout.completed"),
    ]
    assert entries[4]["store_id"] == "s-12"
    assert not await redis.exists(keys.journey(where, guest)), "moved at login"
    kpis = await _kpis(st)
    assert kpis["carts_started:mobile_app"] == 1, kpis
    assert kpis["resumes:mobile_app:call_center"] == 1
    assert kpis["converted:mobile_app"] == 1
    assert kpis["converted_path:mobile_app>pos"] == 1
    assert kpis["checkouts:pos"] == 1
    assert kpis["ttc_count"] == 1


def _timers(st: PrivateStack, key: str) -> str:
    """The abandonment timers of ``key``'s partition (where its commit arms it)."""
    where = space(st.prefix)
    return keys.abandonment(where, where.partition(key))


async def _kpis(st: PrivateStack) -> Counter[str]:
    """The KPI totals: the sum of every partition's hash."""
    where, out = space(st.prefix), Counter[str]()
    for n in where.all_partitions():
        counted: dict[Any, Any] = await st.redis.hgetall(keys.kpis(where, n))
        for k, v in counted.items():
            out[k.decode()] += int(v)
    return out
