"""The shared-device guard (``streams/core/shared_device.py``), pure and against Redis.

Proves: on a device more than one customer signed in on within the window
(a kiosk), a sign-in never takes the device's guest cart and anonymous
activity stays the device's instead of landing in the last customer's
session, each decision counted; a personal device (one customer) merges as
before; sign-ins older than the window do not count; a device session started
after a merge never reuses a version; Redis (load and commit scripts) decides
exactly as the in-memory model, batch by batch, and an erasure keeps the
erased customer's sign-in on the device nameless, as a replay counts it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from redis.asyncio import Redis

from streams.core.erasure import Erasure
from streams.core.session_codec import decode
from streams.core.shared_device import is_shared
from streams.ops.inline_forwards import InlineForwards
from streams.store import keys
from streams.store.state import Erased, RedisState
from streams.worker.processor import BatchProcessor
from tests.support.forwards import homed
from tests.support.pure import MemoryState, add, ev, records
from tests.support.stack import space

KIOSK = "kiosk-7"


def at(day: int, minute: int) -> str:
    return f"2026-11-{day:02d}T10:{minute:02d}:00Z"


def kiosk_day(day: int = 24) -> list[dict[str, Any]]:
    """Three shoppers on one kiosk, each browsing as a guest and then signing in."""
    return [
        ev("cart.item_added", add("A"), anon=KIOSK, channel="kiosk", at=at(day, 0), event_id="a"),
        ev("session.identified", customer="c-1", anon=KIOSK, at=at(day, 1), event_id="in-1"),
        ev("cart.item_added", add("B"), anon=KIOSK, channel="kiosk", at=at(day, 2), event_id="b"),
        ev("session.identified", customer="c-2", anon=KIOSK, at=at(day, 3), event_id="in-2"),
        ev("cart.item_added", add("C"), anon=KIOSK, channel="kiosk", at=at(day, 4), event_id="c"),
        ev("session.identified", customer="c-3", anon=KIOSK, at=at(day, 5), event_id="in-3"),
    ]


def carts(state: MemoryState) -> dict[str, set[str]]:
    return {k: {ln.sku for ln in s.cart} for k, s in state.sessions.items()}


def test_a_kiosk_keeps_each_shoppers_guest_cart_out_of_the_next_shoppers_account() -> None:
    state = MemoryState()
    kept: Counter[str] = Counter()
    for rec in records(kiosk_day()):
        kept.update(state.process([rec]).kept_apart)
    # c-1 signed in first: the kiosk was anyone's, its guest cart (A) merged, and the
    # next anonymous add (B) followed the sign-in. From c-2's sign-in on, the kiosk
    # has two customers: c-2 and c-3 take nothing, C stays the kiosk's.
    assert carts(state) == {"c-1": {"A", "B"}, "c-2": set(), "c-3": set(), KIOSK: {"C"}}
    assert kept == Counter({"sign_in": 2, "guest_event": 1})
    assert state.aliases[KIOSK] == "c-3"


def test_a_personal_device_merges_as_before() -> None:
    events = [
        ev("cart.item_added", add("A"), anon="phone", at=at(24, 0), event_id="a"),
        ev("session.identified", customer="c-1", anon="phone", at=at(24, 1), event_id="in"),
        ev("cart.item_added", add("B"), anon="phone", at=at(24, 2), event_id="b"),
        ev("session.identified", customer="c-1", anon="phone", at=at(24, 3), event_id="again"),
    ]
    state = MemoryState()
    for rec in records(events):
        assert not state.process([rec]).kept_apart
    assert carts(state) == {"c-1": {"A", "B"}}


def test_sign_ins_older_than_the_window_do_not_make_a_device_shared() -> None:
    month = 30 * 86400
    day = 86_400_000
    assert is_shared({"c-1": 0}, 10 * day, 1, month, signing_in="c-2")
    assert not is_shared({"c-1": 0}, 31 * day, 1, month, signing_in="c-2")
    assert not is_shared({"c-1": 0}, 10 * day, 1, month, signing_in="c-1")
    assert not is_shared({"c-1": 20 * day}, 10 * day, 1, month), "one customer is no crowd"
    # A sign-in dated before the device's others still meets them within the window.
    assert is_shared({"c-1": 20 * day}, 10 * day, 1, month, signing_in="c-2")
    assert not is_shared({"c-1": 50 * day}, 10 * day, 1, month, signing_in="c-2")
    events = [
        ev("session.identified", customer="c-1", anon="laptop", at=at(1, 0), event_id="in-1"),
        ev("cart.item_added", add("A"), anon="laptop", at=at(1, 1), event_id="a"),
    ]
    later = [
        ev("session.identified", customer="c-2", anon="laptop", at="2027-01-05T10:00:00Z"),
        ev("cart.item_added", add("B"), anon="laptop", at="2027-01-05T10:01:00Z"),
    ]
    state = MemoryState()
    for rec in records([*events, *later]):
        state.process([rec])
    assert carts(state) == {"c-1": {"A"}, "c-2": {"B"}}, "five weeks apart: not shared"


def test_a_device_session_started_after_a_merge_never_reuses_a_version() -> None:
    state = MemoryState()
    versions: dict[str, int] = {}
    for rec in records(kiosk_day()):
        for key, session in state.process([rec]).writes.items():
            assert session.version > versions.get(key, 0), key
            versions[key] = session.version


@pytest.mark.e2e
async def test_redis_decides_as_the_model_batch_by_batch(client: Redis) -> None:
    state = RedisState(client, space("t"))

    async def no_dead_letters(outcomes: Any) -> None:
        raise AssertionError(outcomes)

    processor = BatchProcessor(state, no_dead_letters, forward=True)
    pump = InlineForwards(client, space("t"), processor)
    model = MemoryState()
    day = records(kiosk_day())
    for rec, homed_rec in zip(day, homed(day, space("t")), strict=True):
        pump.plans = [await processor.process([homed_rec])]
        await pump.drain()
        kept = sum((p.kept_apart for p in pump.plans), Counter[str]())
        assert kept == model.process([rec]).kept_apart
    stored = {k: await client.hget(state.session_key(k), "d") for k in model.sessions}
    assert {k: decode(v) for k, v in stored.items() if v is not None} == model.sessions
    assert KIOSK in model.sessions, "the kiosk keeps a session of its own"
    links = await client.zrange(keys.devices(space("t"), "kiosk-7"), 0, -1)
    assert links == [b"c-1", b"c-2", b"c-3"]
    # Erasing c-1 keeps its sign-in nameless (the kiosk stays as shared), as a replay.
    linked_ids = await state.linked_ids("c-1")
    done = await state.erase(Erasure("c-1", ("c-1", *sorted(linked_ids)), 42, {}, {}))
    assert isinstance(done, Erased)
    model.erase("c-1", {}, at_ms=42)
    links = await client.zrange(keys.devices(space("t"), "kiosk-7"), 0, -1, withscores=True)
    assert {m.decode(): int(s) for m, s in links} == model.devices[KIOSK]
    assert "erased:42" in model.devices[KIOSK]
