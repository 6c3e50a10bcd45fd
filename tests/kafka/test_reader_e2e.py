"""The bounded reader against the real broker: a topic of each test's own.

Proves: a read from the beginning returns every record once, in offset order per
partition, and ends with every partition done and counted; a read from given
offsets starts there, and ``until`` and ``partitions`` bound it; the end is fixed
at the first fetch, so a read finishes while a producer keeps appending and holds
exactly the snapshot; ``read_ends`` learns the ends without reading on; an absent
topic is ``LogUnreadable`` unless ``missing_ok``; and a broker that stops
answering mid-read (SIGSTOP, on a broker of the test's own) ends the read with
``LogUnreadable`` naming the partition, instead of hanging.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import NewTopic

from streams.dev import loopback
from streams.kafka import clients
from streams.kafka.reader import LogUnreadable, Message, TopicReader, read_all
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


async def _topic(bootstrap: str, partitions: int) -> str:
    name = f"reader-{uuid.uuid4().hex[:10]}"
    admin = clients.admin(bootstrap, "test")
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    return name


async def _fill(bootstrap: str, topic: str, counts: dict[int, int], size: int = 10) -> None:
    """``counts[p]`` records into partition ``p``, values ``p:i`` padded to ``size`` bytes."""
    producer = clients.producer(bootstrap, "test", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, f"{p}:{i}".encode().ljust(size, b"."), partition=p)
            for p, n in counts.items()
            for i in range(n)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


@pytest.fixture
async def topic(stack: Stack) -> str:
    """A two-partition topic with 300 records in partition 0 and 120 in partition 1."""
    name = await _topic(stack.bootstrap, 2)
    await _fill(stack.bootstrap, name, {0: 300, 1: 120})
    return name


def _by_partition(records: list[Message]) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for m in records:
        found.setdefault(m.partition, []).append(m.offset)
    return found


async def test_a_read_from_the_beginning_returns_every_record_once(
    stack: Stack, topic: str
) -> None:
    batches: list[list[Message]] = []
    async with TopicReader(stack.bootstrap, [topic], batch_max=50) as reader:
        async for batch in reader:
            assert 0 < len(batch) <= 50
            batches.append(batch)
    records = [m for b in batches for m in b]
    assert _by_partition(records) == {0: list(range(300)), 1: list(range(120))}
    assert records[0].value == b"0:0......." or records[0].value == b"1:0......."
    assert reader.ends == {f"{topic}:0": 300, f"{topic}:1": 120}
    assert reader.progress.records == 420
    assert reader.progress.positions == {f"{topic}:0": (300, 300), f"{topic}:1": (120, 120)}
    assert reader.progress.line().startswith("420 records read, ")
    assert reader.progress.line().endswith("2/2 partitions done")


async def test_a_read_from_offsets_starts_there_and_stops_at_until(
    stack: Stack, topic: str
) -> None:
    records = await read_all(stack.bootstrap, [topic], start={(topic, 0): 250, (topic, 1): 100})
    assert _by_partition(records) == {0: list(range(250, 300)), 1: list(range(100, 120))}
    only = await read_all(
        stack.bootstrap,
        [topic],
        partitions=[(topic, 1)],
        start={(topic, 1): 10},
        until={(topic, 1): 15},
    )
    assert [(m.partition, m.offset) for m in only] == [(1, o) for o in range(10, 15)]
    assert only[0].value == b"1:10......"


async def test_the_end_is_fixed_at_the_first_fetch_while_a_producer_appends(
    stack: Stack, topic: str
) -> None:
    producer = clients.producer(stack.bootstrap, "test", linger_ms=1)
    await producer.start()
    appended = 0

    async def append() -> None:
        nonlocal appended
        while True:
            await producer.send_and_wait(topic, b"later", partition=0)
            appended += 1

    appending = asyncio.create_task(append())
    try:
        while appended < 5:  # the log is growing before the read starts
            await asyncio.sleep(0.01)
        async with TopicReader(stack.bootstrap, [topic], batch_max=20) as reader:
            read = 0
            async for batch in reader:
                read += len(batch)
                await asyncio.sleep(0.01)  # a slow caller: the producer outpaces it
        seen_during = appended
    finally:
        appending.cancel()
        await asyncio.gather(appending, return_exceptions=True)
        await producer.stop()
    end = reader.ends[f"{topic}:0"]
    assert end >= 305
    assert read == reader.progress.records == end + 120, "exactly the snapshot, nothing later"
    assert 300 + seen_during > end, "records were appended after the end was fixed"


async def test_read_ends_learns_every_end_without_reading_on(stack: Stack, topic: str) -> None:
    async with TopicReader(stack.bootstrap, [topic], fetch_max_bytes=1024) as reader:
        ends = await reader.read_ends()
    assert ends == {f"{topic}:0": 300, f"{topic}:1": 120}


async def test_an_absent_topic_is_unreadable_unless_missing_is_fine(stack: Stack) -> None:
    absent = f"absent-{uuid.uuid4().hex[:10]}"
    with pytest.raises(LogUnreadable) as caught:
        async with TopicReader(stack.bootstrap, [absent]):
            pass
    assert (caught.value.topic, caught.value.partition) == (absent, None)
    assert f"no such topic on {stack.bootstrap}" in str(caught.value)
    assert await read_all(stack.bootstrap, [absent], missing_ok=True) == []


@pytest.mark.timeout(120)
async def test_a_broker_that_stops_answering_ends_the_read_with_log_unreadable(
    tmp_path: Path,
) -> None:
    broker = loopback.start_broker(tmp_path / "logs")
    bootstrap = f"127.0.0.1:{broker.port}"
    stopped = False
    try:
        topic = await _topic(bootstrap, 1)
        # 2000 records of 1 KB, fetched 64 KB at a time: far more than one fetch holds.
        # (The embedded broker honours a fetch's total limit, not the per-partition one.)
        await _fill(bootstrap, topic, {0: 2000}, size=1024)
        reader = TopicReader(
            bootstrap, [topic], stall_timeout=2.0, batch_max=20, fetch_max_bytes=65536
        )
        read = 0

        async def read_with_a_stop() -> None:
            nonlocal read, stopped
            async with reader:
                async for batch in reader:
                    read += len(batch)
                    if not stopped:
                        broker.proc.send_signal(signal.SIGSTOP)
                        stopped = True

        with pytest.raises(LogUnreadable) as caught:
            await read_with_a_stop()
        assert 0 < read < 2000
        error: Any = caught.value
        assert (error.topic, error.partition) == (topic, 0)
        assert error.reason.startswith("no progress for 2 s (")
        assert f"{topic}:0 {read}/2000" in error.reason
    finally:
        if stopped:
            broker.proc.send_signal(signal.SIGCONT)
        broker.stop()
