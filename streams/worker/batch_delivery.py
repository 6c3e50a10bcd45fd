"""Whole fetches handed to one Faust agent as one event, instead of one event per record.

Why: Faust dispatches every record on its own. Its fetch loop awaits
``wait_first(callback(message), suspend_flow.wait())`` per record (four
tasks and an ``asyncio.wait`` each), the conductor builds an ``Event`` and
queues it, the stream iterator, its sensors and ``take()``'s buffer handle it,
and ``stream.ack`` acks it: about 59 of the worker's 140 us of CPU per event
(docs/benchmarks.md, "Where the worker's time goes"). The worker folds records
in batches anyway, so it takes them the way the consumer fetched them.

How it stays Faust (subscription, assignor, commits, rebalances):

* The agent consumes a ``BatchTopic``, a Faust topic like any other: iterating
  it registers it with the conductor, so the consumer subscribes its topics
  and Faust's assignor assigns them (the same partition number of every topic
  to one worker); its queue is one of Faust's flow-controlled queues.
* The consumer (``streams.worker.transport``) puts one ``Fetched`` per fetch on
  that queue, for the partitions whose only subscriber is the batch topic, with
  the same checks as Faust's own loop: partitions still active, flow active,
  same generation, the read-offset and gap bookkeeping, and one
  ``wait_first(put, suspend_flow.wait())`` per fetch instead of per record.
* On a rebalance Faust clears the queue (``flow_control.clear()``), so a fetch
  not yet taken is dropped; the event carrying a fetch has the fetch's last
  message, so Faust's stream iterator drops a fetch of an older generation or
  taken while the flow is stopped; ``Fetched.current`` lets the agent stop
  between chunks of a fetch taken just before a rebalance.
* A fetch that arrives while the agent is busy joins the fetch still waiting
  last in the queue (``join_waiting``), as long as both are of one generation
  and one seek count: under steady load the agent then takes everything that
  arrived while it folded as one batch, instead of a queue of small fetches
  each waiting for the ones before it. Measured at 1,000 events/s, a fetch's
  newest record was 185 ms old when the agent took it, of which 32 ms was the
  fold before it: the rest was the queue (docs/benchmarks.md, "Freshness").
* Acks: the agent acks a chunk's records (``Fetched.ack``, the consumer's own
  ``ack``) only after Redis holds the chunk. Faust commits the highest
  contiguous acked offset of each partition, so nothing unacked is committed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import faust
from faust.types import EventT, Message

BATCH_QUEUE_FETCHES = 4
"""Fetches queued for the agent at most: bounds memory (a fetch may hold thousands of
records) and holds the fetch loop, so aiokafka's own prefetch is the only read-ahead."""


class BatchTopic(faust.Topic):
    """A topic whose subscribing agent receives whole fetches (``Fetched``), not records.

    Only partitions whose one subscriber is a batch topic are delivered this way;
    a partition shared with an ordinary topic keeps Faust's per-record delivery.
    """


def batch_topic(app: faust.App, *topics: str) -> BatchTopic:
    """A ``BatchTopic`` of raw bytes over ``topics``, with a queue of a few fetches."""
    return BatchTopic(
        app,
        topics=list(topics),
        key_type=bytes,
        value_type=bytes,
        maxsize=BATCH_QUEUE_FETCHES,
    )


def batch_channel(channels: Iterable[Any] | None) -> BatchTopic | None:
    """The batch topic that alone subscribes a partition, or None (deliver per record)."""
    if not channels:
        return None
    only: BatchTopic | None = None
    for n, channel in enumerate(channels):
        if n or not isinstance(channel, BatchTopic):
            return None
        only = channel
    return only


def join_waiting(queue: Any, fetched: Fetched, most: int) -> bool:
    """Append ``fetched``'s records to the fetch waiting last in ``queue``; False if it cannot.

    Only the last one, so the records stay in fetch order; only one of the same
    generation and seek count (``Fetched.current``, ``Fetched.positioned`` then
    hold for the joined records as for its own); only up to ``most`` records, so a
    queued fetch stays bounded. A fetch Faust dropped from the queue (a rebalance
    clears it) is no longer in it, so nothing joins a fetch nobody will take.
    """
    waiting = getattr(queue, "_queue", None)  # asyncio.Queue's deque: read, never awaited
    if not waiting:
        return False
    last = getattr(waiting[-1], "value", None)
    if (
        not isinstance(last, Fetched)
        or last.generation_id != fetched.generation_id
        or last.seeks != fetched.seeks
        or len(last.messages) + len(fetched.messages) > most
    ):
        return False
    last.messages.extend(fetched.messages)
    return True


class Fetched:
    """The records of one fetch for one agent, oldest first within each partition."""

    __slots__ = ("app", "generation_id", "messages", "seeks")

    def __init__(
        self, app: faust.App, messages: list[Message], generation_id: int, seeks: int = 0
    ) -> None:
        self.app = app
        self.messages = messages
        self.generation_id = generation_id
        self.seeks = seeks  # the consumer's seek count when the fetch returned

    def event(self) -> EventT[Any]:
        """The Faust event that carries this fetch through the batch topic's queue.

        Its message is the fetch's last one: Faust's stream iterator checks its
        generation and the flow control before handing the fetch to the agent.
        Fetches joined to it later (``join_waiting``) are of the same generation,
        so the check holds for their records too.
        """
        return self.app.create_event(None, self, None, self.messages[-1])

    def chunks(self, size: int) -> Iterator[Sequence[Message]]:
        """The records in slices of at most ``size``, in order."""
        messages = self.messages
        for start in range(0, len(messages), size):
            yield messages[start : start + size]

    def current(self) -> bool:
        """Still worth folding: no rebalance began or ended since the fetch.

        A fetch outliving a rebalance may hold partitions now owned by another
        worker; its rest is left unacked and is fetched again by the owner.
        """
        app = self.app
        return app.flow_control.is_active() and self.generation_id == app.consumer_generation_id

    def positioned(self, messages: Sequence[Message]) -> list[Message]:
        """``messages`` less those of partitions sought since this fetch (a rewind).

        After a rewind the partition is fetched again from Redis's position; its
        records in this fetch are from the old one and are neither folded nor acked.
        """
        before = getattr(self.app.consumer, "fetched_before_seek", None)
        if before is None:
            return list(messages)
        stale = {m.tp for m in messages if before(m.tp, self.seeks)}
        return [m for m in messages if m.tp not in stale] if stale else list(messages)

    def ack(self, messages: Iterable[Message]) -> None:
        """Mark ``messages`` processed: Faust may now commit offsets up to them."""
        ack = self.app.consumer.ack
        for message in messages:
            ack(message)
