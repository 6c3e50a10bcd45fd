"""Records placed as a producer places them, for tests that drive a ``BatchProcessor``
without Kafka. Their forwards between partitions are delivered by the rebuild's
own ``streams/ops/inline_forwards.py``; the relay and the topic themselves are
proven with a real broker in ``tests/worker/test_forward_relay.py`` and the e2e
tests."""

from __future__ import annotations

from collections import Counter

import orjson

from streams.core.plan import Record
from streams.store.keys import Space


def homed(records: list[Record], space: Space) -> list[Record]:
    """``records`` each on its key's partition (the customer's, else the guest's), as a
    producer puts them, offsets 0.. per topic-partition in the given order."""
    ends: Counter[tuple[str, int]] = Counter()
    out = []
    for r in records:
        body = orjson.loads(r.value or b"{}")
        partition = space.partition(str(body.get("customer_id") or body.get("anonymous_id")))
        out.append(
            Record(r.topic, partition, ends[r.topic, partition], r.key, r.value, r.timestamp_ms)
        )
        ends[r.topic, partition] += 1
    return out
