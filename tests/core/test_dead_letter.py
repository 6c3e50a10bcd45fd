"""Dead letters: a copy when it fits, a reference when it does not. Pure.

Proves: a rejected record is copied byte for byte while the copy fits the limit;
a larger one (or one the broker refused as too large) becomes a reference that
names its position, size and reason, whatever the record's size and key, and
always fits; the reference's value is valid against the exported JSON Schema
and the model; the repair tools show, list and export a reference sensibly (no
"event" made of the reference, a hint to read the record by position), and a
repair file replays a rewritten event or drops it.
"""

from __future__ import annotations

import json

import jsonschema
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.dead_letter import REFERENCE_ADAPTER, DeadLetterReference
from schemas.topics import CART_EVENTS
from streams.core import dead_letter as dlq
from streams.core.dead_letter import DEFAULT_MAX_BYTES, dead_letter, describe
from streams.core.dlq_repair import DeadLetter as DeadLetterView
from streams.core.dlq_repair import (
    State,
    dedupe,
    export_line,
    list_json,
    list_line,
    parse_repairs,
    show_lines,
    source_lines,
)
from streams.core.dlq_repair import dead_letter as view
from streams.core.fold import Reason
from streams.core.plan import Kind, Record, RecordOutcome
from streams.ops.schema_export import rendered
from tests.support.pure import add, ev

SCHEMA = json.loads(rendered()["dead-letter-reference.schema.json"])


def rejected(value: bytes, key: bytes | None = b"c-1", offset: int = 7) -> RecordOutcome:
    record = Record(CART_EVENTS, 3, offset, key, value, timestamp_ms=1_790_000_000_000)
    detail = f"{len(value)} bytes > limit of 65536"
    return RecordOutcome(record, Kind.REJECTED, reason=Reason.OVERSIZED, detail=detail)


def test_a_record_that_fits_is_copied_byte_for_byte() -> None:
    value = b'{"type": "cart.item_added", "x": "' + b"a" * 70_000 + b'"}'
    letter = dead_letter(rejected(value))
    assert not letter.reference
    assert (letter.key, letter.value) == (b"c-1", value)
    headers = describe(letter.headers)
    assert headers[dlq.REASON] == "oversized"
    assert (headers[dlq.TOPIC], headers[dlq.PARTITION], headers[dlq.OFFSET]) == (
        CART_EVENTS,
        "3",
        "7",
    )


def test_a_record_just_under_the_brokers_limit_is_dead_lettered_as_a_reference() -> None:
    """Kafka's default message.max.bytes is 1,048,588: a record just under it is taken
    from its producer, but its copy plus the dead-letter headers is not (nor by the
    worker's producer, whose limit is 1,000,000): it would be retried forever."""
    value = b"x" * 1_048_000
    letter = dead_letter(rejected(value))
    assert letter.reference
    assert letter.size <= 4096, "a reference is small whatever the record"
    ref = REFERENCE_ADAPTER.validate_json(letter.value)
    assert (ref.topic, ref.partition, ref.offset, ref.size) == (CART_EVENTS, 3, 7, len(value))
    assert (ref.reason, ref.key_bytes, ref.timestamp_ms) == ("oversized", 3, 1_790_000_000_000)
    assert "over the limit of 1000000" in ref.why_reference
    jsonschema.validate(orjson.loads(letter.value), SCHEMA)
    headers = describe(letter.headers)
    assert headers[dlq.KIND] == "reference"
    assert headers[dlq.SIZE] == str(len(value))
    assert headers[dlq.OFFSET] == "7", "the identity headers are a copy's: dedupe still works"
    assert letter.key == b"c-1"


def test_a_copy_the_broker_refused_is_sent_as_a_reference() -> None:
    letter = dead_letter(rejected(b"small"), refused="refused as too large (X)")
    assert letter.reference
    assert REFERENCE_ADAPTER.validate_json(letter.value).why_reference == (
        "refused as too large (X)"
    )


@settings(max_examples=60)
@given(
    size=st.integers(min_value=0, max_value=3 * DEFAULT_MAX_BYTES),
    key_size=st.integers(min_value=0, max_value=200_000),
    limit=st.integers(min_value=16 * 1024, max_value=2 * DEFAULT_MAX_BYTES),
)
def test_every_dead_letter_fits_the_limit(size: int, key_size: int, limit: int) -> None:
    letter = dead_letter(rejected(b"v" * size, b"k" * key_size), limit)
    assert letter.size <= limit
    if letter.reference:
        ref = DeadLetterReference.model_validate_json(letter.value)
        assert (ref.size, ref.key_bytes) == (size, key_size)
        assert letter.key is None or len(letter.key) == key_size <= 1024


def _reference_view(offset: int = 4) -> DeadLetterView:
    letter = dead_letter(rejected(b"x" * 1_048_000))
    return view(0, offset, 1_790_000_000_100, letter.key, letter.value, letter.headers)


def test_the_repair_tools_show_a_reference_and_where_its_record_is() -> None:
    d = _reference_view()
    assert d.reference is not None
    assert d.event is None, "the reference is no event to repair"
    assert d.identity == "cart-events:3@7", "deduplicated on the source record"
    entry = dedupe([d])[0]
    assert "reference: 1048000 bytes left in cart-events" in list_line(entry, State.PENDING)
    assert list_json(entry, State.PENDING)["reference"]["offset"] == 7
    shown = "\n".join(show_lines(d, State.PENDING, None))
    assert "source record: cart-events:3@7, value 1048000 bytes" in shown
    read_back = "\n".join(source_lines(d.reference, True, b"c-1", b"x" * 1_048_000))
    assert "1048000 bytes, shown in part" in read_back
    assert len(read_back) < 300_000, "a terminal gets 64 KiB of it, not a megabyte"
    gone = "\n".join(source_lines(d.reference, False, None, None))
    assert "no longer in the log" in gone


def test_an_exported_reference_is_repaired_by_a_rewritten_event_or_a_drop() -> None:
    line = export_line(dedupe([_reference_view()])[0], State.PENDING)
    assert line["event"] is None
    assert "raw" not in line, "no megabyte of raw text in the repair file"
    assert line["reference"]["size"] == 1_048_000
    assert "continuity dlq show 0:4" in line["hint"]
    as_exported = parse_repairs([orjson.dumps(line).decode()])
    assert as_exported.errors
    assert '"event" must be' in str(as_exported.errors[0])
    fixed = {**line, "event": ev("cart.item_added", add("A-1"), customer="c-1")}
    dropped = {**line, "dlq": "0:5", "action": "drop"}
    parsed = parse_repairs([orjson.dumps(fixed).decode(), orjson.dumps(dropped).decode()])
    assert not parsed.errors
    assert [ln.action.value for ln in parsed.lines] == ["replay", "drop"]
