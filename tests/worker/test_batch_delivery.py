"""``streams.worker.batch_delivery`` without a broker: which partitions go batched, chunks,
staleness.

The delivery itself (the consumer's fetch loop, acks, commits, rebalances and
kills) is proven against the real broker: tests/worker/test_transport_acks.py,
tests/faults/test_worker.py and the e2e suites.
"""

from __future__ import annotations

import faust
from faust.types import TP, Message

from streams.worker.batch_delivery import BatchTopic, Fetched, batch_channel, batch_topic


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
