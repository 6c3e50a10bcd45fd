"""The forward relay against a real redis-server and the embedded broker.

Proves: entries appended by hand to two partitions' forwards streams land on
their destination partitions of ``session-forwards``, each origin's records
in stream order, with the key, the value and the two headers naming origin
and id (read back as ``Record.forwarded``); the cursor moves to the last entry
and the streams are emptied; a relay without the lease publishes nothing and
leaves the stream as it is; when the holder stops without releasing, another
relay takes the lease once it expired and publishes the rest (records of the
stopped holder's unfinished round at most twice, none lost, still in order
per destination), and the stopped holder can no longer advance. A record the
broker refuses stops its destination's sends there and leaves the cursor.

Its own broker (one per module): the shared stack's workers fold
``session-forwards`` and must not see these records.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from schemas.topics import (
    FORWARD_ORIGIN_HEADER,
    FORWARD_SEQ_HEADER,
    FORWARD_SPACE_HEADER,
    SESSION_FORWARDS,
)
from streams.core.plan import Record
from streams.dev import loopback
from streams.kafka import clients
from streams.kafka.reader import read_all
from streams.kafka.records import from_kafka
from streams.kafka.topics import ensure_topics
from streams.store import keys
from streams.store.forwards import START, ForwardOutbox, LeaseLost
from streams.store.keys import Space
from streams.worker.forward_relay import publish_round, run_forward_relay
from tests.support.stack import PARTITIONS, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    child = loopback.start_broker(tmp_path_factory.mktemp("forwards-broker"))
    address = f"127.0.0.1:{child.port}"
    try:
        await ensure_topics(address, PARTITIONS)
        yield address
    finally:
        child.stop()


@pytest.fixture
async def producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    made = clients.producer(bootstrap, "tests", linger_ms=1)
    await made.start()
    yield made
    await made.stop()


@pytest.fixture
def space() -> Space:
    """A prefix of the test's own in the shared Redis."""
    return Space(f"f{uuid.uuid4().hex[:8]}", PARTITIONS)


class Relayed:
    """The relay's publish over a real producer, counting what it sent."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.sent: list[tuple[int, bytes]] = []

    async def __call__(
        self, partition: int, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> Any:
        self.sent.append((partition, key))
        return await self.producer.send(
            SESSION_FORWARDS, value, key=key, partition=partition, headers=headers
        )


async def _append(redis: Redis, space: Space, origin: int, destination: int, key: str) -> str:
    """A forward record as the commit appends it (its value names it too); its id."""
    fields: Any = {"p": destination, "k": key, "v": f"value-of-{key}".encode()}
    return str((await redis.xadd(keys.forwards(space, origin), fields)).decode())


async def _on_topic(bootstrap: str, space: Space) -> list[Record]:
    """This test's records on session-forwards (keys start with its prefix), in order."""
    found = await read_all(bootstrap, [SESSION_FORWARDS], stall_timeout=10, job="tests")
    mine = [from_kafka(m) for m in found if (m.key or b"").startswith(space.prefix.encode())]
    return sorted(mine, key=lambda r: (r.partition, r.offset))


def _by_destination(records: list[Record]) -> dict[int, list[tuple[int, str]]]:
    """Destination partition -> the (origin, id) marks of its records, in topic order."""
    out: dict[int, list[tuple[int, str]]] = {}
    for r in records:
        assert r.forwarded is not None, r
        out.setdefault(r.partition, []).append(r.forwarded)
    return out


def _stream_order(marks: list[tuple[int, str]]) -> bool:
    """Each origin's records, the first time each is seen, in stream order: a record
    sent again only repeats ones seen before, never overtakes one not seen yet."""
    last: dict[int, tuple[int, int]] = {}
    seen: set[tuple[int, str]] = set()
    for origin, seq in marks:
        if (origin, seq) in seen:
            continue
        seen.add((origin, seq))
        ms, n = (int(x) for x in seq.split("-"))
        if (ms, n) < last.get(origin, (-1, -1)):
            return False
        last[origin] = (ms, n)
    return True


async def test_two_partitions_forwards_reach_their_destinations_in_order(
    bootstrap: str, producer: AIOKafkaProducer, redis: Redis, space: Space
) -> None:
    p = space.prefix
    # Origin 0 and origin 2, each with records to several destinations, itself included.
    plan = {0: [1, 3, 1, 0, 1, 3], 2: [1, 1, 2, 3]}
    ids = {
        origin: [
            await _append(redis, space, origin, dest, f"{p}-{origin}-{i}")
            for i, dest in enumerate(dests)
        ]
        for origin, dests in plan.items()
    }
    publish = Relayed(producer)
    for origin in plan:
        outbox = ForwardOutbox(redis, space, origin, "worker-a")
        assert await outbox.hold()
        assert await publish_round(outbox, publish, 100) == len(plan[origin])
        assert await outbox.cursor() == ids[origin][-1]
        assert await outbox.pending() == 0, "published entries leave the stream"
        assert await publish_round(outbox, publish, 100) == 0, "nothing left"
        await outbox.release()

    records = await _on_topic(bootstrap, space)
    assert len(records) == sum(map(len, plan.values())), "each exactly once"
    want: dict[int, list[tuple[int, str]]] = {}
    for origin, dests in plan.items():
        for i, dest in enumerate(dests):
            want.setdefault(dest, []).append((origin, ids[origin][i]))
    got = _by_destination(records)
    # Per destination, each origin's records in stream order (origins may interleave).
    for dest, marks in want.items():
        for origin in plan:
            mine = [m for m in got[dest] if m[0] == origin]
            assert mine == [m for m in marks if m[0] == origin], (dest, origin)
    for r in records:
        assert r.forwarded is not None
        origin, seq = r.forwarded
        i = ids[origin].index(seq)
        assert r.key == f"{p}-{origin}-{i}".encode()
        assert r.value == f"value-of-{p}-{origin}-{i}".encode()
        assert r.partition == plan[origin][i]
        assert r.topic == SESSION_FORWARDS


async def test_headers_are_the_origin_and_the_id_in_ascii(
    bootstrap: str, producer: AIOKafkaProducer, redis: Redis, space: Space
) -> None:
    sent = await _append(redis, space, 3, 2, f"{space.prefix}-h")
    outbox = ForwardOutbox(redis, space, 3)
    assert await outbox.hold()
    assert await publish_round(outbox, Relayed(producer), 10) == 1
    found = await read_all(bootstrap, [SESSION_FORWARDS], stall_timeout=10, job="tests")
    (mine,) = [m for m in found if m.key == f"{space.prefix}-h".encode()]
    assert dict(mine.headers) == {
        FORWARD_ORIGIN_HEADER: b"3",
        FORWARD_SEQ_HEADER: sent.encode(),
        FORWARD_SPACE_HEADER: space.prefix.encode(),
    }
    assert mine.partition == 2


async def test_without_the_lease_nothing_is_published_and_a_takeover_publishes_the_rest(
    bootstrap: str, producer: AIOKafkaProducer, redis: Redis, space: Space
) -> None:
    p = space.prefix
    origin = 1
    dests = [0, 2, 0, 3, 0, 2, 0, 3, 0, 2]
    ids = [await _append(redis, space, origin, d, f"{p}-{i}") for i, d in enumerate(dests)]
    holder = ForwardOutbox(redis, space, origin, "worker-a", lease_seconds=1.0)
    assert await holder.hold()
    # The other worker's relay runs all along: it publishes nothing while the lease is held.
    second = Relayed(producer)
    other = ForwardOutbox(redis, space, origin, "worker-b", lease_seconds=5.0)
    running = asyncio.create_task(run_forward_relay(other, second, count=3, idle=0.01))
    try:
        await asyncio.sleep(0.5)
        assert second.sent == []
        assert await redis.xlen(keys.forwards(space, origin)) == len(ids)

        # The holder publishes one round of four, then another it cannot finish: it stops
        # (no release) after sending, before advancing.
        first = Relayed(producer)
        assert await publish_round(holder, first, 4) == 4
        assert await holder.cursor() == ids[3]
        unfinished = await holder.read(await holder.cursor(), 3)
        for entry in unfinished:
            await (await first(entry.partition, entry.key, entry.value, _marks(origin, entry.id)))

        # Its lease runs out; the other relay takes over and publishes everything after
        # the cursor (the unfinished round's records again).
        async def drained() -> bool:
            return await redis.xlen(keys.forwards(space, origin)) == 0

        await wait_until(drained, 20, interval=0.05)
        assert await other.cursor() == ids[-1]
        lease: Any = await redis.get(keys.forwards_lease(space, origin))
        assert lease.decode().startswith("worker-b:")
        assert [k for _, k in second.sent] == [f"{p}-{i}".encode() for i in range(4, 10)]
        # The stopped holder wakes up: its advance is refused.
        assert not await holder.advance(unfinished[-1].id)
        assert await other.cursor() == ids[-1]
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert await redis.get(keys.forwards_lease(space, origin)) is None, "released on stop"

    records = await _on_topic(bootstrap, space)
    seen = {r.forwarded for r in records}
    assert seen == {(origin, i) for i in ids}, "nothing lost"
    assert len(records) >= len(ids)
    for dest, marks in _by_destination(records).items():
        assert _stream_order(marks), (dest, marks)
        assert not _stream_order(list(reversed(marks))) or len(set(marks)) < 2
        assert {m[1] for m in marks} == {ids[i] for i, d in enumerate(dests) if d == dest}


async def test_a_refused_record_stops_its_destination_and_leaves_the_cursor(
    producer: AIOKafkaProducer, redis: Redis, space: Space
) -> None:
    p = space.prefix
    for i, dest in enumerate([1, 2, 1, 2]):
        await _append(redis, space, 0, dest, f"{p}-{i}")
    outbox = ForwardOutbox(redis, space, 0)
    assert await outbox.hold()
    real = Relayed(producer)
    tried: list[bytes] = []

    async def refusing(
        partition: int, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> Any:
        tried.append(key)
        if key == f"{p}-0".encode():
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(RuntimeError("broker refused it"))
            return failed
        return await real(partition, key, value, headers)

    with pytest.raises(RuntimeError, match="refused"):
        await publish_round(outbox, refusing, 10)
    assert f"{p}-2".encode() not in tried, "nothing after the refused record to its partition"
    assert f"{p}-3".encode() in tried, "other destinations went on"
    assert await outbox.cursor() == START
    assert await outbox.pending() == 4


def _marks(origin: int, seq: str) -> list[tuple[str, bytes]]:
    return [(FORWARD_ORIGIN_HEADER, str(origin).encode()), (FORWARD_SEQ_HEADER, seq.encode())]


async def test_a_round_whose_lease_ran_out_is_not_advanced(
    producer: AIOKafkaProducer, redis: Redis, space: Space
) -> None:
    await _append(redis, space, 2, 0, f"{space.prefix}-late")
    stalled = ForwardOutbox(redis, space, 2, "worker-a", lease_seconds=0.3)
    assert await stalled.hold()
    await asyncio.sleep(0.5)
    taker = ForwardOutbox(redis, space, 2, "worker-b")
    assert await taker.hold()
    with pytest.raises(LeaseLost):
        await publish_round(stalled, Relayed(producer), 10)
    assert await taker.cursor() == START
    assert await taker.pending() == 1, "the new holder sends it (again)"
