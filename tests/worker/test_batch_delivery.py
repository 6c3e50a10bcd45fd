"""``streams.worker.batch_delivery`` without a broker: which partitions go batched, chunks,
staleness.

The delivery itself (the consumer's fetch loop, acks, commits, rebalances and
kills) is proven against the real broker: tests/worker/test_transport_acks.py,
tests/faults/test_worker.py and the e2e suites.
"""

from __future__ import annotations

import faust
from faust.types import TP, Message

from streams.worker.batch_delivery import (
    BatchTopic,
    Fetched,
    batch_channel,
    batch_topic,
    join_waiting,
)


def _app() -> faust.App:
    return faust.App("batch-delivery-test", broker="kafka://127.0.0.1:9", store="memory://")


def _messages(n: int, generation_id: int = 1) -> list[Message]:
    return [
        Message(
            "cart-events",
            0,
            offset,
            0.0,
            0,
            None,
            b"k",
            b"v",
            None,
            tp=TP("cart-events", 0),
            generation_id=generation_id,
        )
        for offset in range(n)
    ]


def test_only_a_partition_whose_one_subscriber_is_a_batch_topic_is_batched() -> None:
    app = _app()
    batched = batch_topic(app, "cart-events")
    plain = app.topic("cart-events")
    assert isinstance(batched, BatchTopic)
    assert batch_channel([batched]) is batched
    assert batch_channel(None) is None
    assert batch_channel([]) is None
    assert batch_channel([plain]) is None
    # Shared with an ordinary topic: Faust's per-record delivery, which counts references.
    assert batch_channel([batched, plain]) is None
    assert batch_channel([plain, batched]) is None


def test_a_batch_topic_clone_stays_a_batch_topic_with_its_small_queue() -> None:
    # The agent iterates a clone: the conductor sees the clone, not the original.
    app = _app()
    clone = batch_topic(app, "cart-events", "browse-events").clone(is_iterator=True)
    assert isinstance(clone, BatchTopic)
    assert clone.queue.maxsize == batch_topic(app, "x").maxsize


def test_chunks_keep_the_order_and_the_bound() -> None:
    messages = _messages(5)
    fetched = Fetched(_app(), messages, 1)
    chunks = [list(c) for c in fetched.chunks(2)]
    assert [len(c) for c in chunks] == [2, 2, 1]
    assert [m for c in chunks for m in c] == messages


def test_a_fetch_is_current_only_while_the_flow_runs_in_its_generation() -> None:
    app = _app()
    fetched = Fetched(app, _messages(1, generation_id=3), 3)
    app.consumer_generation_id = 3
    app.flow_control.resume()
    assert fetched.current()
    app.flow_control.suspend()  # a rebalance began
    assert not fetched.current()
    app.flow_control.resume()
    app.consumer_generation_id = 4  # and ended: the partitions may have moved
    assert not fetched.current()


def test_the_carrying_event_holds_the_fetch_and_its_last_message() -> None:
    # Faust's stream iterator drops the event if this message is of an older generation.
    messages = _messages(3)
    fetched = Fetched(_app(), messages, 1)
    event = fetched.event()
    assert event.value is fetched
    assert event.message is messages[-1]


def _queued(app: faust.App, *fetches: Fetched) -> object:
    """The batch topic's own queue (as the agent's clone has it), holding ``fetches``."""
    queue = batch_topic(app, "cart-events").clone(is_iterator=True).queue
    for fetched in fetches:
        queue.put_nowait(fetched.event())
    return queue


def test_a_fetch_joins_the_one_waiting_last_and_keeps_the_order() -> None:
    app = _app()
    first, second = Fetched(app, _messages(3), 1), Fetched(app, _messages(2), 1)
    own = list(second.messages)
    queue = _queued(app, first, second)
    late = Fetched(app, _messages(4), 1)
    assert join_waiting(queue, late, most=10)
    assert queue.qsize() == 2  # no third entry: the agent takes it with the second
    assert len(first.messages) == 3
    assert second.messages == own + late.messages


def test_nothing_joins_an_empty_queue_so_an_idle_agent_gets_the_fetch_at_once() -> None:
    app = _app()
    assert not join_waiting(_queued(app), Fetched(app, _messages(1), 1), most=10)


def test_a_fetch_joins_only_one_of_its_generation_and_seek_count_within_the_bound() -> None:
    app = _app()
    waiting = Fetched(app, _messages(3), 1, seeks=5)
    queue = _queued(app, waiting)
    # Another generation: Faust drops the older one's event when the agent takes it.
    assert not join_waiting(queue, Fetched(app, _messages(1, 2), 2, seeks=5), most=10)
    # A rewind sought since: the waiting fetch's records of that partition are stale,
    # the new ones are not; joined, ``positioned`` could not tell them apart.
    assert not join_waiting(queue, Fetched(app, _messages(1), 1, seeks=6), most=10)
    # Past the bound: a queued fetch stays at most one batch.
    assert not join_waiting(queue, Fetched(app, _messages(8), 1, seeks=5), most=10)
    assert len(waiting.messages) == 3
    assert join_waiting(queue, Fetched(app, _messages(7), 1, seeks=5), most=10)
    assert len(waiting.messages) == 10


def test_nothing_joins_a_fetch_a_rebalance_cleared_from_the_queue() -> None:
    app = _app()
    waiting = Fetched(app, _messages(3), 1)
    queue = _queued(app, waiting)
    queue.clear()  # what Faust does to a channel's queue when the flow resumes
    assert not join_waiting(queue, Fetched(app, _messages(1), 1), most=10)
    assert len(waiting.messages) == 3
