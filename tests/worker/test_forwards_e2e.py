"""A login across partitions through the real relay and broker (forward mode).

One worker (``CONTINUITY_CROSS_PARTITION=forward``) on a stack of its own (the
shared stack's workers must not see these records). A guest adds a line on its
partition; the guest signs in to a customer homed on another partition; the
customer adds a line of its own at once (the same topic and partition as the
login, so it comes after it). The customer's partition hands the login to the
guest's partition through the forwards outbox, the worker's relay and
``session-forwards``; the guest side answers with the guest's session; the
customer's session, which held its add meanwhile, merges the guest's line, then
applies the add. Proves, against real processes: the customer's cart holds the
guest's line first and its own after it (without the hold the add would come
first, a merge putting the guest's lines after the customer's), the guest's
alias points at the customer, no session waits any more, exactly two forward
records went through the topic (the login and its merge) with their origin
marks applied on each destination, every outbox was emptied, nothing was dead-
lettered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schemas.topics import DEAD_LETTERS, SESSION_FORWARDS
from streams.core.forward_marks import forwarded
from streams.kafka.publish import Publisher
from streams.kafka.reader import read_all
from streams.store import keys
from streams.store.state import RedisState
from tests.support.events import added, event
from tests.support.metrics_text import samples, scrape, total
from tests.support.private_stack import private_stack
from tests.support.stack import applied_through, publish, space, wait_until

pytestmark = pytest.mark.e2e

WHERE = space("cont")


def apart() -> tuple[str, str]:
    """A guest and a customer homed on different partitions."""
    guest = "g-fw-1"
    customer = next(
        c for c in (f"c-fw-{n}" for n in range(99)) if WHERE.partition(c) != WHERE.partition(guest)
    )
    return guest, customer


async def test_a_login_across_partitions_merges_through_the_topic(tmp_path: Path) -> None:
    guest, customer = apart()
    async with private_stack(tmp_path) as st:
        worker = st.start_worker("w1", CONTINUITY_CROSS_PARTITION="forward")
        state = RedisState(st.redis, WHERE)
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
            await applied_through(state, written, timeout=60)

        async def merged() -> Any:
            session = await state.get(customer)
            return session if session is not None and len(session.cart) == 2 else None

        session = await wait_until(merged, 60, interval=0.1)
        assert [(line.sku, line.quantity) for line in session.cart] == [("A-1", 2), ("B-2", 1)]
        assert await st.redis.get(keys.alias(WHERE, guest)) == customer.encode()
        for n in WHERE.all_partitions():
            assert await st.redis.hlen(keys.waiting(WHERE, n)) == 0
            assert await st.redis.xlen(keys.forwards(WHERE, n)) == 0
        records = await read_all(st.bootstrap, [SESSION_FORWARDS], stall_timeout=10)
        assert sorted((r.partition, r.key) for r in records) == sorted(
            [
                (WHERE.partition(guest), guest.encode()),
                (WHERE.partition(customer), customer.encode()),
            ]
        )
        for r in records:
            mark = forwarded(list(r.headers))
            assert mark is not None
            origin, seq = mark
            seen = await st.redis.hget(keys.forwards_seen(WHERE, r.partition), str(origin))
            assert seen == seq.encode()
        assert await read_all(st.bootstrap, [DEAD_LETTERS], stall_timeout=10) == []
        assert worker.port is not None
        body = samples(await scrape(worker.port))
        assert total(body, "continuity_forwards_published_total") == 2
        assert total(body, "continuity_dead_letters_total") == 0
