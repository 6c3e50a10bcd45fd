"""One bounded reader of Kafka topics for every operator job. Thin edge.

Rebuild, erasure, time travel, the DLQ tools and the reset guard's log probe
read topics the same way: manual assignment and no consumer group (running
workers are never rebalanced, nothing is committed), from the beginning or
from given offsets, up to a fixed end, in batches.

The end of each partition is the fetch high watermark as it was the first
time a fetch answer for it was seen, lowered to an ``until`` bound if one is
given. A fixed end makes the read a snapshot: it finishes while producers go
on appending, and it covers exactly what existed when it began (what a
rebuild, an erasure's log ends or a DLQ listing mean). It is not asked with
ListOffsets: the embedded broker answers that wrongly. A caller can also let
a partition go early (``finish``: time travel stops at a moment, the probe
once it has seen enough).

The one stall rule: a read gives up with ``LogUnreadable`` once nothing moved
(no record, no position change, no end learned) for ``stall_timeout`` seconds;
any of these restarts the clock, so a long read that progresses never times
out, and a silent broker never hangs a tool. Every other broker error becomes
``LogUnreadable`` too, naming the topic, the partition if one, and why.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, Protocol, Self, TypeVar

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from streams.kafka import clients
from streams.kafka.progress import ReadProgress, Stall

DEFAULT_STALL_TIMEOUT = 30.0
# How long one fetch call waits for records; stall bookkeeping happens between calls.
POLL_SECONDS = 0.2

Partition = tuple[str, int]  # (topic, partition); aiokafka's TopicPartition is one too
T = TypeVar("T")


class LogUnreadable(KafkaError):  # type: ignore[misc]  # aiokafka is untyped
    """A topic could not be read to its end: no such topic, a broker error, or a stall.

    A ``KafkaError``, so every handler of broker errors covers it.
    """

    def __init__(self, topic: str, partition: int | None, reason: str) -> None:
        self.topic, self.partition, self.reason = topic, partition, reason
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.topic if self.partition is None else f"{self.topic}:{self.partition}"
        return f"{where}: {self.reason}"


class Message(Protocol):
    """The fields of an aiokafka ``ConsumerRecord`` the tools read."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


class TopicReader:
    """Reads partitions to their fixed ends in batches (module docstring); ``async with``."""

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        *,
        partitions: Collection[Partition] | None = None,
        start: Mapping[Partition, int] | None = None,
        until: Mapping[Partition, int] | None = None,
        missing_ok: bool = False,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
        batch_max: int = 2000,
        job: str = "reader",
        kafka: Mapping[str, Any] | None = None,
        report: Callable[[ReadProgress], None] | None = None,
        report_every: float = 2.0,
        **consumer_options: Any,
    ) -> None:
        """Read every partition of ``topics`` (only ``partitions`` if given).

        ``start``: first offset per partition (others from their beginning);
        ``until``: the end never goes past this offset (exclusive). No partition
        found raises ``LogUnreadable`` unless ``missing_ok``. ``report`` gets the
        progress every ``report_every`` s; ``job`` names the client id.
        """
        self.bootstrap, self.topics = bootstrap, list(topics)
        self._wanted = None if partitions is None else set(partitions)
        self._start, self._until = dict(start or {}), dict(until or {})
        self._missing_ok, self._batch_max = missing_ok, batch_max
        self._report, self._report_every = report, report_every
        self._consumer = clients.consumer(bootstrap, job, kafka=kafka, **consumer_options)
        self._stall = Stall(stall_timeout, time.monotonic())
        self._last_report = time.monotonic()
        self.partitions: list[TopicPartition] = []
        self.ends: dict[str, int] = {}
        self.progress = ReadProgress()

    async def __aenter__(self) -> Self:
        try:
            await self._bounded(self._open)
        except BaseException:
            await self._consumer.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    def __aiter__(self) -> AsyncIterator[list[Message]]:
        return self._batches()

    def finish(self, tp: Partition) -> None:
        """Stop reading ``tp`` where it is (the caller has what it needs from it)."""
        name = f"{tp[0]}:{tp[1]}"
        if name not in self.progress.finished:
            self.progress.finished.add(name)
            self._consumer.pause(TopicPartition(*tp))

    async def read_ends(self) -> dict[str, int]:
        """``topic:partition`` -> its end (the next offset it will write); reads no further."""
        while len(self.ends) < len(self.partitions):
            await self._step()
            for tp in self.partitions:
                if f"{tp.topic}:{tp.partition}" in self.ends:
                    self.finish(tp)
        return dict(self.ends)

    async def _open(self) -> None:
        await self._consumer.start()
        await self._consumer.topics()  # a metadata round trip, so partitions_for_topic answers
        self.partitions = [
            TopicPartition(t, p)
            for t in self.topics
            for p in sorted(self._consumer.partitions_for_topic(t) or ())
            if self._wanted is None or (t, p) in self._wanted
        ]
        if not self.partitions:
            if self._missing_ok:
                return
            raise LogUnreadable(", ".join(self.topics), None, f"no such topic on {self.bootstrap}")
        self._consumer.assign(self.partitions)
        for tp in self.partitions:
            if tp in self._start:
                self._consumer.seek(tp, self._start[tp])
        if rest := [tp for tp in self.partitions if tp not in self._start]:
            await self._consumer.seek_to_beginning(*rest)

    async def _batches(self) -> AsyncIterator[list[Message]]:
        while not all(self.progress.done(f"{t}:{p}") for t, p in self.partitions):
            batch = await self._step()
            if batch:
                yield batch

    async def _step(self) -> list[Message]:
        """One fetch: the records below their ends; learns ends and positions."""
        batch = await self._bounded(self._fetch)
        self.progress.records += len(batch)
        if self._report is not None and time.monotonic() - self._last_report >= self._report_every:
            self._report(self.progress)
            self._last_report = time.monotonic()
        return batch

    async def _fetch(self) -> list[Message]:
        c, progress = self._consumer, self.progress
        fetched = await c.getmany(timeout_ms=int(POLL_SECONDS * 1000), max_records=self._batch_max)
        batch: list[Message] = []
        for tp in self.partitions:
            name = f"{tp.topic}:{tp.partition}"
            if progress.done(name):
                continue
            mark = c.highwater(tp)
            if name not in self.ends and mark is not None:
                self.ends[name] = min(int(mark), self._until.get(tp, int(mark)))
            end = self.ends.get(name)
            batch.extend(m for m in fetched.get(tp, ()) if end is None or m.offset < end)
            pos = await c.position(tp)
            progress.positions[name] = (pos if end is None else min(pos, end), end)
            if progress.done(name):
                c.pause(tp)  # at its end: no more fetches for it
        return batch

    async def _bounded(self, step: Callable[[], Awaitable[T]]) -> T:
        """Await ``step`` under the stall rule; broker errors become ``LogUnreadable``."""
        p = self.progress
        state = (p.records, tuple(sorted(p.positions.items())), len(self.ends), len(p.finished))
        left = self._stall.observe(state, time.monotonic())
        try:
            if left <= 0:
                raise TimeoutError
            async with asyncio.timeout(left):
                return await step()
        except TimeoutError:
            raise self._error(f"no progress for {self._stall.timeout:g} s ({p.line()})") from None
        except LogUnreadable:
            raise
        except KafkaError as exc:
            raise self._error(str(exc)) from exc  # aiokafka's str names the error class

    def _error(self, reason: str) -> LogUnreadable:
        """The error, naming the first partition not done (or the topics if none is known)."""
        for tp in self.partitions:
            if not self.progress.done(f"{tp.topic}:{tp.partition}"):
                return LogUnreadable(tp.topic, tp.partition, reason)
        return LogUnreadable(", ".join(self.topics), None, reason)


async def read_all(bootstrap: str, topics: Sequence[str], **options: Any) -> list[Message]:
    """Every record of ``topics`` up to its fixed end, in (topic, partition, offset) order.

    ``options``: those of ``TopicReader``. A read of absent topics is empty with
    ``missing_ok=True``.
    """
    found: list[Message] = []
    async with TopicReader(bootstrap, topics, **options) as reader:
        async for batch in reader:
            found.extend(batch)
    found.sort(key=lambda m: (m.topic, m.partition, m.offset))
    return found
