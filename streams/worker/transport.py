"""Faust's aiokafka transport, with the consumer's fetch wait made configurable.

Faust builds its worker consumer with ``fetch_max_wait_ms=1500`` and no
setting to change it. On Apache Kafka that only bounds an idle long poll (a
fetch returns as soon as one byte is there). The embedded broker instead holds
every fetch for the full wait, so an event sat up to 1.5 s before the worker
saw it: measured produce -> consume on loopback, p50 132 ms at 500 ms and
2.8 ms at 10 ms.

Its consumer also hands whole fetches to a ``BatchTopic`` agent
(``streams.worker.batch_delivery``): Faust's fetch loop awaits four tasks and an
``asyncio.wait`` for every record, about a fifth of the worker's CPU per event.
Apps without a batch topic (the benchmark's Faust baselines) run Faust's own
loop, unchanged.

And it reports where each assignment was positioned (Kafka's committed
offsets) to the worker's ``Floors`` (``streams/core/positions.py``), and counts
seeks per partition, so that a fetch made before the worker rewound a
partition (a Redis rollback, ``streams/worker/rewind.py``) is recognised as stale.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

from streams.worker import metrics
from streams.worker.batch_delivery import BatchTopic, Fetched, batch_channel, join_waiting

Positioned = Callable[[Mapping[str, int | None]], None]


def transport_class(fetch_max_wait_ms: int, positioned: Positioned | None = None) -> type[Any]:
    """A Faust transport class whose worker consumer waits at most ``fetch_max_wait_ms``.

    ``positioned`` is told, after every seek to the committed offsets (each
    assignment), ``topic:partition`` -> committed offset of the assignment.
    """

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # Read by AIOKafkaConsumer.start() when it builds its Fetcher, which
            # has not happened yet: Faust starts the consumer after creating it.
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    class Consumer(BatchDrainMixin, faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        async def perform_seek(self) -> None:
            await super().perform_seek()
            if positioned is not None:
                committed = self._committed_offset
                positioned(
                    {f"{tp.topic}:{tp.partition}": committed.get(tp) for tp in self.assignment()}
                )

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport


class BatchDrainMixin:
    """Faust's ``Consumer._drain_messages``, delivering one ``Fetched`` per fetch to batch topics.

    Mirrors ``faust.transport.consumer.Consumer._drain_messages`` and
    ``getmany`` (faust-streaming 0.15), record by record where they do
    bookkeeping, fetch by fetch where they await: the per-record read offsets,
    dropped re-reads and gaps (so commits still find contiguous offsets), a
    partition delivered only while active, the loop leaving a fetch when the
    flow stops or the generation changes, a seek back to the committed offsets
    when a fetch returns after the flow stopped, and the delivery raced against
    ``suspend_flow`` (a rebalance cancels it). The stop and crash handling is
    Faust's own: the inherited ``_drain_messages`` runs with its handlers, and
    the fetch loop is only entered from it via ``getmany``.
    """

    # Faust's consumer, which this class is mixed into, provides every attribute used.
    app: Any
    callback: Any
    log: Any
    flow_active: bool
    suspend_flow: Any
    should_stop: bool
    _read_offset: Any
    _buffered_partitions: set[TP]
    _unacked_messages: Any
    _commit_every: int | None
    _n_acked: int
    _committed_offset: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Seeks so far, and the count at each partition's latest seek: records
        # fetched before a partition's seek are from its old position.
        self.seeks = 0
        self._sought: dict[TP, int] = {}
        # A fetch waiting for the agent grows to at most one fetch's worth (the worker's
        # batch_max): joined fetches are still folded as one batch each.
        self._join_most = self.app.conf.broker_max_poll_records or 500

    async def seek(self, partition: TP, offset: int) -> None:
        """Faust's seek, remembered: fetches made before it are stale for ``partition``."""
        self.seeks += 1
        self._sought[partition] = self.seeks
        await super().seek(partition, offset)  # type: ignore[misc]

    def fetched_before_seek(self, tp: TP, seeks_at_fetch: int) -> bool:
        """True if ``tp`` was sought after a fetch made when ``seeks`` was ``seeks_at_fetch``."""
        return self._sought.get(tp, 0) > seeks_at_fetch

    async def _drain_messages(self, fetcher: Any) -> None:
        if not any(isinstance(topic, BatchTopic) for topic in self.app.topics):
            await super()._drain_messages(fetcher)  # type: ignore[misc]
            return
        # Faust's loop, stop and crash handling included, with ``getmany``
        # swapped for the batching one below for the life of this loop.
        self.getmany = self._getmany_batched
        try:
            await super()._drain_messages(fetcher)  # type: ignore[misc]
        finally:
            del self.getmany

    async def _getmany_batched(self, timeout: float) -> Any:
        """Fetch once, deliver it, and yield nothing: Faust's loop then fetches again."""
        await self._fetch_and_deliver(timeout)
        return
        yield  # an async generator, as Faust's loop iterates ``getmany``

    async def _fetch_and_deliver(self, timeout: float) -> None:
        records, active = await self._wait_next_records(timeout)  # type: ignore[attr-defined]
        # Read before any await: these records come from the positions as of now.
        seeks = self.seeks
        app = self.app
        generation_id = app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            # As Faust's getmany: a fetch that returns after the flow stopped
            # is dropped, and the positions go back to the committed offsets.
            try:
                await self.perform_seek()  # type: ignore[attr-defined]
            except Exception as exc:
                self.log.warning(f"exception performing seek when flow not active {exc}")
            return
        tp_index = app.topics._tp_index
        batches: dict[BatchTopic, list[Message]] = {}
        for tp, tp_records in records.items():
            if not self.flow_active or app.consumer_generation_id != generation_id:
                return
            if not (active is None or tp in active or tp in self._buffered_partitions):
                continue
            app.monitor.track_tp_end_offset(tp, self.highwater(tp))  # type: ignore[attr-defined]
            channel = batch_channel(tp_index.get(tp))
            if channel is None:
                await self._deliver_each(tp, tp_records)
                continue
            fresh = await self._fresh_messages(tp, tp_records)
            if fresh:
                batches.setdefault(channel, []).extend(fresh)
        for channel, messages in batches.items():
            if not self.flow_active or app.consumer_generation_id != generation_id:
                return
            await self._maybe_commit()
            fetched = Fetched(app, messages, generation_id, seeks)
            await self.wait_first(  # type: ignore[attr-defined]
                self._put(channel, fetched), self.suspend_flow.wait()
            )

    async def _fresh_messages(self, tp: TP, tp_records: list[Any]) -> list[Message]:
        """The records past the read offset as messages; gaps noted, read offset advanced.

        Faust advances the read offset after each record's delivery, cancelled or
        not; here it advances before the fetch's delivery, which nothing reads in
        between (the read offset only filters later fetches of this loop).
        """
        to_message = self._to_message  # type: ignore[attr-defined]
        read = self._read_offset[tp]
        acks_enabled = self.app.topics.acks_enabled_for(tp.topic)
        fresh: list[Message] = []
        for record in tp_records:
            offset = record.offset
            if read is not None and offset < read:
                self.log.dev("DROPPED MESSAGE ROFF %r: k=%r v=%r", offset, record.key, record.value)
                continue
            if read and offset - read > 1 and acks_enabled:
                await self._add_gap(tp, read + 1, offset)  # type: ignore[attr-defined]
            fresh.append(to_message(tp, record))
            read = offset
        if fresh:
            self._read_offset[tp] = read
        return fresh

    async def _deliver_each(self, tp: TP, tp_records: list[Any]) -> None:
        """Faust's per-record delivery, for a partition some ordinary topic subscribes."""
        to_message = self._to_message  # type: ignore[attr-defined]
        get_read_offset = self._read_offset.__getitem__
        for record in tp_records:
            if not self.flow_active:
                return
            message = to_message(tp, record)
            offset = message.offset
            r_offset = get_read_offset(tp)
            if r_offset is None or offset >= r_offset:
                gap = offset - (r_offset or 0)
                if gap > 1 and r_offset and self.app.topics.acks_enabled_for(message.topic):
                    await self._add_gap(tp, r_offset + 1, offset)  # type: ignore[attr-defined]
                await self._maybe_commit()
                await self.wait_first(  # type: ignore[attr-defined]
                    self.callback(message), self.suspend_flow.wait()
                )
                self._read_offset[tp] = offset
            else:
                self.log.dev(
                    "DROPPED MESSAGE ROFF %r: k=%r v=%r", offset, message.key, message.value
                )

    async def _maybe_commit(self) -> None:
        commit_every = self._commit_every
        if commit_every is not None and self._n_acked >= commit_every:
            self._n_acked = 0
            await self.commit()  # type: ignore[attr-defined]

    async def _put(self, channel: BatchTopic, fetched: Fetched) -> None:
        """Queue ``fetched`` for the agent once flow control and the producer allow (as Faust)."""
        app = self.app
        await app.flow_control.acquire()
        await app.producer.buffer.wait_until_ebb()
        # Tracked as Faust's conductor tracks each message: a graceful stop with
        # stream_wait_empty waits for them to be acked.
        self._unacked_messages.update(fetched.messages)
        # No await between this check and the join: the agent cannot take it meanwhile.
        if join_waiting(channel.queue, fetched, self._join_most):
            metrics.FETCHES_JOINED.inc()
            return
        await channel.queue.put(fetched.event())
