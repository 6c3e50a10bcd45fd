"""A worker relays a partition's forwards and folds ``session-forwards`` with the events.

One worker on a stack of its own (the shared stack's workers must not see
these records). A forward record appended by hand to partition 2's forwards
stream, addressed to partition 1, is published by the worker's forward relay
(the stream emptied, the cursor on it, counted in
``continuity_forwards_published_total``), consumed back from
``session-forwards`` by the same worker (the topic is subscribed with the
source topics) and reaches the processor as a record of partition 1 carrying
its origin and id (``Record.forwarded``; the processor's log line names them).
Until the planner takes forward records, the processor only applies their
offset (``session-forwards:1`` in partition 1's offsets hash, like a source
topic's): nothing is decoded as an event, nothing dead-lettered.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from schemas.topics import DEAD_LETTERS, SESSION_FORWARDS
from streams.kafka.publish import Publisher
from streams.kafka.reader import read_all
from streams.store import keys
from tests.support.metrics_text import samples, scrape, total
from tests.support.private_stack import private_stack
from tests.support.stack import space, wait_until

pytestmark = pytest.mark.e2e

WHERE = space("cont")


async def test_a_forward_goes_out_through_the_relay_and_comes_back_to_the_processor(
    tmp_path: Path,
) -> None:
    async with private_stack(tmp_path) as st:
        worker = st.start_worker("w1")
        async with Publisher(st.bootstrap, linger_ms=1) as pub:
            await st.ready(pub)
        fields: Any = {"p": 1, "k": "fwd-key", "v": b"forwarded payload"}
        added: Any = await st.redis.xadd(keys.forwards(WHERE, 2), fields)
        seq = added.decode()

        async def applied() -> Any:
            return await st.redis.hget(keys.offsets(WHERE, 1), f"{SESSION_FORWARDS}:1")

        offset = int(await wait_until(applied, 60, interval=0.1))
        assert await st.redis.xlen(keys.forwards(WHERE, 2)) == 0, "published and trimmed"
        assert await st.redis.get(keys.forwards_cursor(WHERE, 2)) == added
        # The record on the topic, and the processor's view of it.
        (record,) = await read_all(st.bootstrap, [SESSION_FORWARDS], stall_timeout=10)
        assert (record.partition, record.offset, record.key) == (1, offset, b"fwd-key")
        line = f"{SESSION_FORWARDS}[1]@{offset} forwarded from partition 2 ({seq})"
        await wait_until(lambda: _logged(worker.log_path, line), 10)
        assert await read_all(st.bootstrap, [DEAD_LETTERS], stall_timeout=10) == []
        assert worker.port is not None
        body = samples(await scrape(worker.port))
        assert total(body, "continuity_forwards_published_total") >= 1
        assert total(body, "continuity_dead_letters_total") == 0


async def _logged(path: Path, text: str) -> bool:
    return text in await asyncio.to_thread(path.read_text, errors="replace")
