"""Dead letters never stall a partition, and never fail in silence (real broker).

Proves, against the embedded broker: a record just under Kafka's default record
limit (``message.max.bytes`` 1,048,588; aiokafka's producer takes up to 1 MiB),
rejected as oversized, reaches ``events-dlq`` as a reference a worker's producer
accepts, and its partition goes on folding (before, the copy plus its headers
was refused by the worker's producer on every retry and the partition waited
forever); the reference names the record, which is read back whole by its
position. The sender, with real producers: a copy the producer refuses as too
large goes again as a reference; a send failing with an error Kafka does not
call retriable is counted by error and logged as an error, and the dead letter
is delivered once the cause is gone.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from schemas.dead_letter import REFERENCE_ADAPTER
from schemas.topics import CART_EVENTS, DEAD_LETTERS
from streams.core.dead_letter import DeadLetter, describe
from streams.core.fold import Reason
from streams.core.outgoing import Outgoing
from streams.core.plan import Kind, Record, RecordOutcome
from streams.kafka import clients
from streams.kafka.publish import Publisher
from streams.ops.dlq import read_source
from streams.worker.dead_letters import DeadLetterSender
from tests.support.cli import run_cli
from tests.support.events import added, event
from tests.support.stack import Stack, WorkerGroup, publish, read_topic, wait_until, wait_version

pytestmark = pytest.mark.e2e

# Kafka's default broker limit is 1,048,588 bytes per record batch, aiokafka's producer
# default 1,048,576: a value this size (plus key and headers) is taken from a producer.
JUST_UNDER = 1_048_000


async def test_a_record_just_under_the_brokers_limit_does_not_stall_its_partition(
    stack: Stack, group: WorkerGroup, publisher: Publisher, ids: Callable[[str], str]
) -> None:
    group.start("a")
    await group.ready(publisher)
    c = ids("huge")
    key = c.encode()
    huge = b'{"type": "browse.search", "pad": "' + b"x" * (JUST_UNDER - 40) + b'"}'
    metadata = await publisher.send_all([_raw(key, huge)])
    at = metadata[0]
    # The same customer key, so the same partition, after the huge record.
    await publish(publisher, [event("cart.item_added", added("A-1"), customer=c)])
    session = await wait_version(group.state, c, 1, timeout=60)
    assert [ln.sku for ln in session.cart] == ["A-1"], "the partition kept folding"

    async def letters() -> list[Any]:
        return [r for r in await read_topic(stack.bootstrap, DEAD_LETTERS) if r.key == key]

    # Every worker group on the shared topics dead-letters it (this test's and, where
    # this process started one, the shared worker): each letter must be the reference.
    found = await wait_until(letters, timeout=30)
    assert 1 <= len(found) <= 2, found
    for letter in found:
        headers = describe(list(letter.headers))
        assert headers["continuity.dlq.kind"] == "reference"
        assert headers["continuity.dlq.size"] == str(len(huge))
    letter = found[0]
    headers = describe(list(letter.headers))
    assert headers["continuity.dlq.kind"] == "reference"
    assert headers["continuity.dlq.reason"] == Reason.OVERSIZED.value
    assert headers["continuity.dlq.size"] == str(len(huge))
    ref = REFERENCE_ADAPTER.validate_json(letter.value)
    assert (ref.topic, ref.partition, ref.offset, ref.size) == (
        CART_EVENTS,
        at.partition,
        at.offset,
        len(huge),
    )
    source = await read_source(stack.bootstrap, ref)
    assert source is not None
    assert source.value == huge, "read back whole by its position"
    # The operator's view: `continuity dlq show` names the record and reads it back.
    code, out, err = await _dlq("show", f"{letter.partition}:{letter.offset}", stack=stack)
    assert code == 0, err
    assert f"source record: {CART_EVENTS}:{at.partition}@{at.offset}, value {len(huge)}" in out
    assert f"{CART_EVENTS}:{at.partition}@{at.offset}, read back from Kafka:" in out
    assert f"value ({len(huge)} bytes, shown in part)" in out
    assert len(out) < 400_000, "64 KiB of the record, not all of it"


async def _dlq(*args: str, stack: Stack) -> tuple[int, str, str]:
    """``continuity dlq ARGS`` as a process: (exit status, stdout, stderr)."""
    env = {**os.environ, "KAFKA_BOOTSTRAP": stack.bootstrap, "REDIS_URL": stack.redis_url}
    return await run_cli("dlq", *args, env=env)


def _raw(key: bytes, value: bytes) -> Outgoing:
    return Outgoing(CART_EVENTS, key, value)


def _outcome(value: bytes, offset: int) -> RecordOutcome:
    record = Record(CART_EVENTS, 0, offset, b"dl-test", value, timestamp_ms=None)
    return RecordOutcome(record, Kind.REJECTED, reason=Reason.OVERSIZED, detail="too big")


def _failures(error: str, kind: str) -> float:
    value = REGISTRY.get_sample_value(
        "continuity_dead_letter_send_failures_total", {"error": error, "retriable": kind}
    )
    return value or 0.0


async def test_a_copy_the_producer_refuses_as_too_large_goes_again_as_a_reference(
    stack: Stack, ids: Callable[[str], str]
) -> None:
    # A producer whose request limit (64 KiB) is below the sender's (1,000,000): it
    # refuses the 100 kB copy itself, as a broker with a lower limit would.
    producer = clients.producer(stack.bootstrap, "tests", max_request_size=64 * 1024)
    await producer.start()
    tag = ids("refused").encode()
    try:

        async def send(dl: DeadLetter) -> Any:
            return await producer.send(DEAD_LETTERS, dl.value, key=tag, headers=dl.headers)

        before = _failures("MessageSizeTooLargeError", "not_retriable")
        await DeadLetterSender(send, 1_000_000, max_delay=0.2)([_outcome(b"y" * 100_000, 11)])
    finally:
        await producer.stop()
    assert _failures("MessageSizeTooLargeError", "not_retriable") == before + 1
    (letter,) = [r for r in await read_topic(stack.bootstrap, DEAD_LETTERS) if r.key == tag]
    ref = REFERENCE_ADAPTER.validate_json(letter.value)
    assert (ref.offset, ref.size) == (11, 100_000)
    assert ref.why_reference.startswith("refused as too large")


async def test_a_non_retriable_send_failure_is_counted_and_logged_until_it_is_fixed(
    stack: Stack, ids: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    # A stopped producer refuses every send (ProducerClosed: Kafka does not call it
    # retriable); the sender must say so loudly, keep the dead letter, and deliver it
    # once a working producer is there.
    closed = clients.producer(stack.bootstrap, "tests")
    await closed.start()
    await closed.stop()
    working = clients.producer(stack.bootstrap, "tests")
    await working.start()
    tag = ids("closed").encode()
    attempts: list[str] = []
    try:

        async def send(dl: DeadLetter) -> Any:
            producer = closed if len(attempts) < 3 else working
            attempts.append("closed" if producer is closed else "working")
            return await producer.send(DEAD_LETTERS, dl.value, key=tag, headers=dl.headers)

        before = _failures("ProducerClosed", "not_retriable")
        with caplog.at_level(logging.ERROR, logger="streams.worker.dead_letters"):
            await DeadLetterSender(send, 1_000_000, max_delay=0.05)([_outcome(b"z" * 10, 12)])
    finally:
        await working.stop()
    assert attempts == ["closed", "closed", "closed", "working"]
    assert _failures("ProducerClosed", "not_retriable") == before + 3
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 3
    assert "not retriable" in errors[0].getMessage()
    (letter,) = [r for r in await read_topic(stack.bootstrap, DEAD_LETTERS) if r.key == tag]
    assert letter.value == b"z" * 10, "a copy: it fits"
