"""Every record a real stack wrote on every topic conforms to the AsyncAPI document.

A broker, Redis and worker of the test's own (forward mode, abandonment after a
second), so each topic holds only this test's records. The traffic touches every
topic: each event type on the source topics, a login across partitions and its
undo (session-forwards), a cart moving from the web to a till and a cart left
alone (session-notifications), a record that is not JSON and a currency
mismatch (events-dlq), a dead letter dropped with `continuity dlq drop`
(events-dlq-repairs), an erasure with `continuity erase` (session-erasures, and
a tombstone on session-changelog). Then every topic is read to its end and each
record is checked with ``jsonschema`` against the message schemas of its channel
in schemas/json/asyncapi.json: key, headers and value. A source record may be
out of contract only if the worker dead-lettered it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from schemas.topics import (
    BROWSE_EVENTS,
    CART_EVENTS,
    CHECKOUT_EVENTS,
    DEAD_LETTERS,
    DLQ_REPAIRS,
    ERASURES,
    NOTIFICATIONS,
    SESSION_CHANGELOG,
    SESSION_FORWARDS,
    SOURCE_TOPICS,
)
from streams.core.dead_letter import describe
from streams.kafka.publish import Publisher
from streams.kafka.reader import read_all
from streams.store.state import RedisState
from tests.support import asyncapi
from tests.support.events import added, event
from tests.support.private_stack import private_stack
from tests.support.stack import applied_through, publish, space, wait_until

# clock: the abandonment sweep compares event times with the worker's clock.
pytestmark = [pytest.mark.e2e, pytest.mark.clock]

WHERE = space("cont")
ALL_TOPICS = (
    *SOURCE_TOPICS,
    DEAD_LETTERS,
    NOTIFICATIONS,
    ERASURES,
    DLQ_REPAIRS,
    SESSION_CHANGELOG,
    SESSION_FORWARDS,
)


def _apart(stem: str) -> tuple[str, str]:
    guest = f"g-{stem}"
    customer = next(
        c
        for c in (f"c-{stem}-{n}" for n in range(99))
        if WHERE.partition(c) != WHERE.partition(guest)
    )
    return guest, customer


async def test_every_record_of_every_topic_conforms_to_the_document(tmp_path: Path) -> None:
    doc = asyncapi.load()
    guest, customer = _apart("aa")
    shopper, erased = "c-aa-shop", "c-aa-erased"
    async with private_stack(tmp_path) as st:
        st.start_worker(
            "w1",
            CONTINUITY_CROSS_PARTITION="forward",
            CONTINUITY_ABANDON_AFTER="1",
            CONTINUITY_ABANDON_SWEEP_INTERVAL="0.5",
        )
        state = RedisState(st.redis, WHERE)
        async with Publisher(st.bootstrap, linger_ms=1) as pub:
            await st.ready(pub)
            till = {"channel": "pos", "store_id": "s-1"}
            written = await publish(
                pub,
                [
                    event("cart.item_added", added("A-1", 2), anon=guest),
                    event("browse.product_viewed", {"sku": "A-1"}, anon=guest),
                    event("browse.search", {"query": "boots"}, anon=guest),
                    event("session.identified", customer=customer, anon=guest),
                    event("cart.item_added", added("B-2"), customer=customer),
                    event("cart.quantity_set", {"sku": "B-2", "quantity": 3}, customer=customer),
                    event("cart.item_added", added("C-3"), customer=shopper),
                    event("cart.item_added", added("D-4"), customer=shopper, **till),
                    event("cart.item_removed", {"sku": "C-3"}, customer=shopper, **till),
                    event(
                        "checkout.handoff_claimed", {"terminal_id": "t-1"}, customer=shopper, **till
                    ),
                    event("checkout.started", customer=shopper, **till),
                    event("checkout.completed", {"order_id": "o-1"}, customer=shopper, **till),
                    event(
                        "cart.item_added",
                        added("E-5", price="1.00", currency="USD"),
                        customer=shopper,
                    ),
                    event("cart.cleared", customer=shopper),
                    event("cart.item_added", added("F-6"), customer=erased),
                ],
            )
            await applied_through(state, written, timeout=60)
            await pub.send_raw(CART_EVENTS, b"c-aa-junk", b'{"event_id": "no end')

            async def merged() -> Any:
                s = await state.get(customer)
                return s if s is not None and len(s.cart) == 2 else None

            await wait_until(merged, 60, interval=0.1)
            undo = await publish(
                pub,
                [event("session.unmerged", {"anonymous_id": guest}, customer=customer)],
            )
            await applied_through(state, undo, timeout=60)

        async def dead_letters() -> list[Any] | None:
            found = await read_all(st.bootstrap, [DEAD_LETTERS], stall_timeout=2)
            return found if len(found) >= 2 else None

        letters = await wait_until(dead_letters, 60, interval=0.5)
        code, _, err = await st.cli(
            "dlq", "drop", f"{letters[0].partition}:{letters[0].offset}", "--note", "test"
        )
        assert code == 0, err
        code, _, err = await st.cli("erase", "--customer", erased)
        assert code == 0, err

        async def notified() -> list[Any] | None:
            found = await read_all(st.bootstrap, [NOTIFICATIONS], stall_timeout=2)
            kinds = {r.value and r.value.split(b'"type":"')[1].split(b'"')[0] for r in found}
            return found if {b"cart.abandoned", b"session.resumed_elsewhere"} <= kinds else None

        await wait_until(notified, 60, interval=0.5)

        async def tombstoned() -> bool:
            found = await read_all(st.bootstrap, [SESSION_CHANGELOG], stall_timeout=2)
            return any(r.value is None and r.key == erased.encode() for r in found)

        await wait_until(tombstoned, 60, interval=0.5)

        by_topic = {t: await read_all(st.bootstrap, [t], stall_timeout=3) for t in ALL_TOPICS}

    assert all(by_topic.values()), {t: len(rs) for t, rs in by_topic.items()}
    reasons = sorted(
        describe(list(r.headers))["continuity.dlq.reason"] for r in by_topic[DEAD_LETTERS]
    )
    assert reasons == ["currency_mismatch", "malformed_json"]
    rejected = {
        (
            h["continuity.dlq.topic"],
            int(h["continuity.dlq.partition"]),
            int(h["continuity.dlq.offset"]),
        )
        for h in (describe(list(r.headers)) for r in by_topic[DEAD_LETTERS])
    }
    failures: list[str] = []
    out_of_contract = 0
    for topic, records in by_topic.items():
        for r in records:
            why = asyncapi.problems(doc, topic, r)
            if why and topic in SOURCE_TOPICS and (topic, r.partition, r.offset) in rejected:
                out_of_contract += 1
                continue
            if why:
                failures.append(f"{topic}[{r.partition}]@{r.offset}: " + " | ".join(why))
    assert failures == [], "\n".join(failures[:20])
    assert out_of_contract == 1, "the record that is not JSON, and only it"
    seen_types = {
        orjson_type(r.value)
        for t in (CART_EVENTS, BROWSE_EVENTS, CHECKOUT_EVENTS)
        for r in by_topic[t]
    }
    assert {
        "cart.item_added",
        "cart.item_removed",
        "cart.quantity_set",
        "cart.cleared",
        "session.identified",
        "session.unmerged",
        "browse.product_viewed",
        "browse.search",
        "checkout.started",
        "checkout.completed",
        "checkout.handoff_claimed",
    } <= seen_types


def orjson_type(value: bytes | None) -> str | None:
    """The ``type`` of a JSON event value (None when it is not one)."""
    try:
        body = json.loads(value or b"")
    except ValueError:
        return None
    return body.get("type") if isinstance(body, dict) else None
