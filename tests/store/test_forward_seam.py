"""The batch step with ``session-forwards`` records, until the planner takes them.

Against a real redis-server. Proves: a forward record in a batch of events is
neither decoded as an event nor dead-lettered nor counted as one; its offset is
applied in its partition's offsets hash with its fingerprint, in the same
commit as the events of that partition, like a source topic's; delivered
again, it is already applied.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest
from redis.asyncio import Redis

from schemas.topics import CART_EVENTS, SESSION_FORWARDS
from streams.core.forward_marks import forward_headers, forwarded
from streams.core.log_reset import fingerprint
from streams.core.plan import Kind, Record, RecordOutcome
from streams.store import keys
from streams.store.state import RedisState
from streams.worker.processor import BatchProcessor
from tests.support.events import added, event
from tests.support.stack import space

pytestmark = pytest.mark.e2e


async def test_a_forward_record_moves_its_offset_and_nothing_else(client: Redis) -> None:
    state = RedisState(client, space("seam"))
    customer = "c-seam"
    home = state.space.partition(customer)
    dead: list[RecordOutcome] = []

    async def sink(outcomes: Sequence[RecordOutcome]) -> None:
        dead.extend(outcomes)

    forward = Record(
        SESSION_FORWARDS,
        home,
        7,
        b"k",
        b"not an event",
        forwarded=forwarded(forward_headers((home + 1) % 4, "5-0")),
    )
    batch = [
        Record(
            CART_EVENTS,
            home,
            3,
            customer.encode(),
            orjson.dumps(event("cart.item_added", added("A-1"), customer=customer)),
        ),
        forward,
    ]
    processor = BatchProcessor(state, sink)

    plan = await processor.process(batch)

    assert [(o.record.topic, o.kind) for o in plan.outcomes] == [(CART_EVENTS, Kind.APPLIED)]
    assert dead == []
    offsets = await client.hgetall(keys.offsets(state.space, home))
    assert offsets == {
        f"{CART_EVENTS}:{home}".encode(): b"3",
        f"{SESSION_FORWARDS}:{home}".encode(): b"7",
    }
    prints = await client.hget(keys.fingerprints(state.space, home), f"{SESSION_FORWARDS}:{home}")
    assert prints == fingerprint(b"k", b"not an event").encode()

    again = await processor.process([forward])
    assert [o.kind for o in again.outcomes] == [Kind.ALREADY_APPLIED]
    assert dead == []
