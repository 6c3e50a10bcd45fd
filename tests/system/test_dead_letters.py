"""Bad input gets a clear answer and loses nothing: each kind lands in ``events-dlq``.

Proves, through the real broker and worker: the raw bytes and key are kept,
the headers name the reason, topic, partition and offset; the worker keeps
folding the same partition afterwards (no crash, no stall).
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from schemas.topics import CART_EVENTS, DEAD_LETTERS
from streams.core.dead_letter import describe
from streams.kafka.publish import Publisher
from streams.store.state import RedisState
from tests.support.events import added, event
from tests.support.stack import Stack, publish, read_topic, wait_until, wait_version


def _bad_inputs(c: str) -> dict[str, tuple[bytes, str]]:
    """name -> (raw value, expected reason)."""
    good = event("cart.item_added", added("A-1"), customer=c)

    def variant(**changes: object) -> bytes:
        ev = {**good, "event_id": f"{c}-{len(changes)}-{sorted(changes)}"[:60].replace(" ", "")}
        for k, v in changes.items():
            if k == "payload":
                ev["payload"] = {**good["payload"], **v}  # type: ignore[dict-item]
            elif v is None:
                ev.pop(k)
            else:
                ev[k] = v
        return orjson.dumps(ev)

    return {
        "malformed": (b'{"type": "cart.item_added", "event_id": ', "malformed_json"),
        "unknown_type": (variant(type="cart.teleported"), "unknown_type"),
        "missing_field": (variant(occurred_at=None), "invalid_event"),
        "negative_quantity": (variant(payload={"quantity": -3}), "invalid_event"),
        "wrong_currency": (variant(payload={"currency": "EURO"}), "invalid_event"),
        "oversized": (variant(payload={"name": "x" * 70_000}), "oversized"),
    }


async def test_each_kind_of_bad_input_is_dead_lettered_with_its_reason(
    stack: Stack, shared_worker: RedisState, publisher: Publisher, ids: Callable[[str], str]
) -> None:
    c = ids("bad")
    key = c.encode()
    cases = _bad_inputs(c)
    for raw, _ in cases.values():
        await publisher.send_raw(CART_EVENTS, key, raw)
    # A valid event for the same customer (same partition) after all the bad ones,
    # then one in another currency than the cart: rejected by the fold itself.
    await publish(publisher, [event("cart.item_added", added("A-1", 1, "5.00", "EUR"), customer=c)])
    mismatch = event("cart.item_added", added("B-1", 1, "5.00", "USD"), customer=c)
    await publish(publisher, [mismatch])
    session = await wait_version(shared_worker, c, 1)
    assert [ln.sku for ln in session.cart] == ["A-1"], "the partition kept flowing"

    async def dead_letters() -> list[object]:
        records = [r for r in await read_topic(stack.bootstrap, DEAD_LETTERS) if r.key == key]
        return records if len(records) >= len(cases) + 1 else []

    records = await wait_until(dead_letters)
    # Every group in the suite starts at the log end, so each bad record is dead-
    # lettered once: by this test's own publish, never again by a later group.
    sources = [
        (h["continuity.dlq.topic"], h["continuity.dlq.partition"], h["continuity.dlq.offset"])
        for h in (describe(list(r.headers)) for r in records)
    ]
    assert len(set(sources)) == len(sources) == len(cases) + 1, "each dead-lettered once"
    by_value = {r.value: describe(list(r.headers)) for r in records}
    for name, (raw, reason) in cases.items():
        assert raw in by_value, f"{name}: raw bytes kept in the dead letter"
        headers = by_value[raw]
        assert headers["continuity.dlq.reason"] == reason, name
        assert headers["continuity.dlq.topic"] == CART_EVENTS
        assert int(headers["continuity.dlq.offset"]) >= 0
        assert headers["continuity.dlq.detail"], f"{name}: a human-readable detail"
    mismatched = by_value[orjson.dumps(mismatch)]
    assert mismatched["continuity.dlq.reason"] == "currency_mismatch"
    assert "EUR" in mismatched["continuity.dlq.detail"]
