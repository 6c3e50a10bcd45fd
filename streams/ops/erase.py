"""Carry out an erasure: log ends from Kafka, the record on Kafka, the deletion in Redis.

Thin edge around ``streams/core/erasure.py``. The steps, in the order that keeps
an erasure from being undone by a crash half-way:

1. read the end of every partition of the event topics (the fetch high
   watermark, ``streams/kafka/reader.py``; the embedded broker's ListOffsets
   is not to be trusted);
2. publish the erasure to the compacted ``session-erasures`` topic and wait
   for the broker's acknowledgement, so a rebuild will honour it even if
   Redis is lost the next moment;
3. run ``erase.lua`` on every partition (``RedisState.erase``): record the
   erasure next to the state, delete the sessions, aliases, link sets and
   handoff codes, end open streams. If a login linked another guest id
   meanwhile, go back to 2 with that id too;
4. publish the erasure again as Redis recorded it (its log ends raised to
   what the workers had already applied), the version a rebuild will use.

Running it again is harmless: a later erasure covers at least as much.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from aiokafka import AIOKafkaProducer

from schemas.topics import ERASURES, SOURCE_TOPICS
from streams.core.erasure import Erasure, erasure_ids
from streams.core.erasure import loads as load_erasure
from streams.kafka import clients
from streams.kafka.reader import DEFAULT_STALL_TIMEOUT, TopicReader, read_all
from streams.kafka.topics import partition_mismatch
from streams.store.state import Erased, ErasureRaced, RedisState, Unnamed

# Linked ids found by erase.lua are added this many times at most; each round
# needs a login of the customer on a new device between two of our steps.
MAX_ROUNDS = 5


class EraseError(RuntimeError):
    """The erasure could not be completed; nothing is half-done that a retry would not fix."""


async def log_ends(
    bootstrap: str,
    topics: Sequence[str] = SOURCE_TOPICS,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    kafka: dict[str, Any] | None = None,
) -> dict[str, int]:
    """``topic:partition`` -> the offset the next record appended there will get.

    Raises ``LogUnreadable`` when none of ``topics`` exists or the broker stops answering.
    """
    # Only the high watermark of each fetch answer is wanted, not the records. The
    # embedded broker ignores the per-partition limit and honours the request's.
    reader = TopicReader(
        bootstrap,
        topics,
        stall_timeout=stall_timeout,
        job="erase",
        kafka=kafka,
        max_partition_fetch_bytes=1024,
        fetch_max_bytes=1024,
    )
    async with reader:
        return await reader.read_ends()


async def erase_customer(
    state: RedisState,
    bootstrap: str,
    customer_id: str,
    also: Iterable[str] = (),
    kafka: dict[str, Any] | None = None,
) -> Erased:
    """Erase a customer (and ``also`` these guest ids) for good; see the module docstring."""
    ends = await log_ends(bootstrap, kafka=kafka)
    # An erasure recorded under another partition count's tags would be found by no
    # worker, and a replay would bring the erased state back: refuse first.
    found = sum(1 for tp in ends if tp.rpartition(":")[0] == SOURCE_TOPICS[0])
    if found != state.space.partitions:
        raise EraseError(partition_mismatch(found, state.space.partitions))
    linked = await state.linked_ids(customer_id)
    ids = erasure_ids(customer_id, [*linked, *also])
    producer = clients.producer(bootstrap, "erase", kafka=kafka)
    await producer.start()
    try:
        for _ in range(MAX_ROUNDS):
            erasure = Erasure(customer_id, ids, int(time.time() * 1000), ends)
            await _record(producer, erasure)
            try:
                outcome = await state.erase(erasure)
            except ErasureRaced as exc:
                raise EraseError(f"{exc}; run the erasure again") from None
            if isinstance(outcome, Unnamed):
                ids = erasure_ids(customer_id, [*ids, *outcome.ids])
                continue
            await _record(producer, outcome.erasure)
            return outcome
    finally:
        await producer.stop()
    raise EraseError(f"new guest ids kept appearing for {customer_id}; run the erasure again")


def report(done: Erased) -> dict[str, Any]:
    """What an erasure did, as ``continuity erase`` prints it and the API answers it."""
    e = done.erasure
    return {
        "customer_id": e.customer_id,
        "erased_ids": list(e.ids),
        "erased_at_ms": e.erased_at_ms,
        "sessions_deleted": done.sessions,
        "aliases_deleted": done.aliases,
        "handoff_codes_deleted": done.handoff_codes,
    }


async def _record(producer: AIOKafkaProducer, erasure: Erasure) -> None:
    await producer.send_and_wait(ERASURES, erasure.dumps(), key=erasure.customer_id.encode())


async def read_erasures(
    bootstrap: str,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    kafka: dict[str, Any] | None = None,
) -> list[Erasure]:
    """Every erasure on the ``session-erasures`` topic (for a rebuild), oldest first.

    Up to the topic's end when the read began; none if the topic is absent.
    Raises ``LogUnreadable`` when the broker stops answering.
    """
    found = await read_all(
        bootstrap,
        [ERASURES],
        missing_ok=True,
        stall_timeout=stall_timeout,
        job="erase",
        kafka=kafka,
    )
    # A compacted topic's deleted keys leave null values behind.
    return [load_erasure(m.value) for m in found if m.value is not None]


async def restore_lost_erasures(
    state: RedisState, bootstrap: str, kafka: dict[str, Any] | None = None
) -> int:
    """Re-apply every erasure of the topic that Redis does not hold; return how many.

    For a Redis that came back older than it was (``streams/worker/rewind.py``): an
    erasure made after its snapshot is on the compacted topic but no longer in
    Redis, and the customer's session may be back. Each is carried out again
    (sessions, aliases, handoff codes deleted, the erasure recorded) before any
    record is folded again. An erasure counts as held only if every id it names
    holds it: Redis erases partition by partition, and a crash between two
    partitions leaves some of its ids without it.
    """
    newest: dict[str, Erasure] = {}
    for erasure in await read_erasures(bootstrap, kafka=kafka):
        known = newest.get(erasure.customer_id)
        if known is None or erasure.erased_at_ms >= known.erased_at_ms:
            newest[erasure.customer_id] = erasure
    restored = 0
    for customer_id, erasure in sorted(newest.items()):
        if await _held(state, erasure):
            continue
        ids = erasure.ids
        for _ in range(MAX_ROUNDS):
            outcome = await state.erase(replace(erasure, ids=ids))
            if isinstance(outcome, Unnamed):
                ids = erasure_ids(customer_id, [*ids, *outcome.ids])
                continue
            restored += 1
            break
    return restored


async def _held(state: RedisState, erasure: Erasure) -> bool:
    """Whether every id of ``erasure`` holds it (or a later one) in Redis."""
    for some_id in erasure.ids:
        held = await state.erasure(some_id)
        if held is None or held.erased_at_ms < erasure.erased_at_ms:
            return False
    return True
