"""Dead-letter repair, the pure parts: views, dedupe, ledger, filters, export and repair files.

Proves: any bytes make a dead letter view (never an exception) and terminal
output escapes control characters; copies of one source record are listed
once; the newest ledger record decides a dead letter's state; an export line,
once its event is fixed, is a valid repair line addressed by the contract
(topic by type, customer key, the same event_id); a repair file with any
invalid line is refused with the line numbers.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.topics import BROWSE_EVENTS, CART_EVENTS
from streams.core import dead_letter as dlq
from streams.core.dlq_repair import (
    REPLAYED_FROM,
    Action,
    DeadLetter,
    Filter,
    Position,
    Repair,
    State,
    dead_letter,
    dedupe,
    export_line,
    latest,
    list_line,
    load_repair,
    parse_position,
    parse_repairs,
    parse_since,
    replay_headers,
    replay_of,
    safe,
    show_lines,
    state_of,
    summary,
)
from tests.support.pure import add, ev

GOOD = ev("cart.item_added", add("A-1", 2), customer="c-1", event_id="e-1")


def letter(
    offset: int,
    value: bytes,
    *,
    reason: str = "invalid_event",
    source: tuple[str, int, int] | None = (CART_EVENTS, 1, 7),
    partition: int = 0,
    ts: int | None = 1_790_000_000_000,
) -> DeadLetter:
    headers = [
        (dlq.REASON, reason.encode()),
        (dlq.DETAIL, b"payload.quantity: too small"),
    ]
    if source is not None:
        topic, part, off = source
        headers += [
            (dlq.TOPIC, topic.encode()),
            (dlq.PARTITION, str(part).encode()),
            (dlq.OFFSET, str(off).encode()),
        ]
    return dead_letter(partition, offset, ts, b"c-1", value, headers)


def test_positions_parse_and_print() -> None:
    assert parse_position("3:1200") == Position(3, 1200)
    assert str(Position(0, 5)) == "0:5"
    for bad in ["", "3", "a:1", "1:-2", "1:2:3", "1 :2x"]:
        with pytest.raises(ValueError, match="partition:offset"):
            parse_position(bad)


def test_a_dead_letter_shows_its_reason_source_and_event() -> None:
    bad = {**GOOD, "payload": {**GOOD["payload"], "quantity": -3}}
    d = letter(4, orjson.dumps(bad))
    assert (d.reason, d.source, d.source_topic) == ("invalid_event", "cart-events:1@7", CART_EVENTS)
    assert (d.event_type, d.event_id) == ("cart.item_added", "e-1")
    assert d.identity == "cart-events:1@7"
    line = list_line(dedupe([d])[0], State.PENDING)
    for part in ("0:4", "pending", "invalid_event", "cart-events:1@7", "cart.item_added", "e-1"):
        assert part in line


def test_a_record_without_headers_is_its_own_identity() -> None:
    d = dead_letter(2, 9, None, None, b"junk", None)
    assert (d.reason, d.source, d.identity) == ("unknown", None, "events-dlq:2:9")
    assert (d.event, d.event_type) == (None, None)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    value=st.one_of(st.none(), st.binary(max_size=300)),
    key=st.one_of(st.none(), st.binary(max_size=40)),
    headers=st.lists(st.tuples(st.text(max_size=30), st.binary(max_size=60)), max_size=6),
)
def test_any_bytes_make_a_view_and_safe_output(
    value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]]
) -> None:
    d = dead_letter(0, 1, None, key, value, headers)
    entry = dedupe([d])[0]
    text = "\n".join([list_line(entry, State.PENDING), *show_lines(d, State.PENDING, None)])
    assert not any(ord(c) < 32 and c != "\n" for c in text), "control characters are escaped"
    orjson.dumps(export_line(entry, State.PENDING))  # always serialisable


def test_hostile_text_is_escaped_and_cut() -> None:
    assert safe("a\x1b[31mb\nc") == "a\\x1b[31mb\\nc"
    assert safe("x" * 500, 20) == "x" * 17 + "..."
    assert safe("line\nnext", None, keep_newlines=True) == "line\nnext"


def test_copies_of_one_source_record_are_listed_once() -> None:
    value = orjson.dumps(GOOD)
    first, again, other = letter(3, value), letter(9, value, partition=0), letter(4, value)
    other = letter(4, value, source=(CART_EVENTS, 1, 8))
    entries = dedupe([again, other, first])
    assert [str(e.letter.position) for e in entries] == ["0:3", "0:4"]
    assert entries[0].copies == (Position(0, 3), Position(0, 9))
    assert "(2 copies)" in list_line(entries[0], State.PENDING)
    lines = summary([(e, State.PENDING) for e in entries], shown=1)
    assert lines[0] == "2 dead letters (1 shown); 1 repeated copies folded in"
    assert lines[1].split() == ["invalid_event", "2", "(2", "pending)"]


def test_the_newest_ledger_record_decides_the_state() -> None:
    entry = dedupe([letter(3, b"{}")])[0]
    assert state_of(entry, {}) is State.PENDING
    dropped = Repair("cart-events:1@7", "0:3", State.DROPPED, 1, note="test data")
    replayed = Repair("cart-events:1@7", "0:3", State.REPLAYED, 2, "e-1", "cart-events:1@40")
    for r in (dropped, replayed):
        assert load_repair(r.dumps()) == r
    ledger = latest([dropped, replayed])
    assert state_of(entry, ledger) is State.REPLAYED
    assert replay_of(ledger) == {"cart-events:1@40": "0:3"}
    # A replay the fold rejected again: its dead letter names the one it repaired.
    again = dedupe([letter(5, b"{}", source=(CART_EVENTS, 1, 40))])[0]
    assert "(replay of events-dlq 0:3)" in list_line(again, State.PENDING, "0:3")
    with pytest.raises(ValueError, match="not a repair record"):
        load_repair(b'{"identity": "x"}')


def test_filters_by_reason_topic_time_and_state() -> None:
    e = dedupe([letter(1, b"{}", reason="malformed_json", ts=2_000)])[0]
    assert Filter().admits(e, State.PENDING)
    assert Filter(reason="malformed_json", topic=CART_EVENTS).admits(e, State.PENDING)
    assert not Filter(reason="invalid_event").admits(e, State.PENDING)
    assert not Filter(topic=BROWSE_EVENTS).admits(e, State.PENDING)
    assert Filter(since_ms=2_000).admits(e, State.PENDING)
    assert not Filter(since_ms=2_001).admits(e, State.PENDING)
    assert not Filter(state=State.PENDING).admits(e, State.REPLAYED)


def test_since_takes_iso_times_and_dates() -> None:
    assert parse_since("1970-01-01T00:00:02Z") == 2_000
    assert parse_since("1970-01-01T01:00:02+01:00") == 2_000
    assert parse_since("1970-01-02") == 86_400_000
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_since("yesterday")


def test_an_export_line_fixed_is_a_valid_repair() -> None:
    bad = {**GOOD, "payload": {**GOOD["payload"], "quantity": -3}}
    line = export_line(dedupe([letter(4, orjson.dumps(bad))])[0], State.PENDING)
    assert (line["dlq"], line["action"], line.get("raw")) == ("0:4", "replay", None)
    assert line["event"] == bad
    refused = parse_repairs([orjson.dumps(line).decode()])
    assert [str(e) for e in refused.errors] == [
        "line 1: dlq 0:4: event breaks the contract: invalid_event: "
        "cart.item_added.payload.quantity: Input should be greater than or equal to 1"
    ]
    line["event"]["payload"]["quantity"] = 3
    parsed = parse_repairs([orjson.dumps(line).decode()])
    assert parsed.errors == []
    [repair] = parsed.lines
    assert (repair.dlq, repair.action, repair.event_id) == (Position(0, 4), Action.REPLAY, "e-1")
    assert repair.outgoing is not None
    assert (repair.outgoing.topic, repair.outgoing.key) == (CART_EVENTS, b"c-1")
    assert orjson.loads(repair.outgoing.value)["payload"]["quantity"] == 3
    assert replay_headers(repair.dlq) == [(REPLAYED_FROM, b"events-dlq:0:4")]


def test_an_unparsable_value_is_exported_raw_and_must_be_rewritten() -> None:
    raw = b'{"type": "cart.item_added", "event_id": \xff'
    line = export_line(dedupe([letter(2, raw, reason="malformed_json")])[0], State.PENDING)
    assert line["event"] is None
    assert line["raw"] == '{"type": "cart.item_added", "event_id": \\xff'
    [error] = parse_repairs([orjson.dumps(line).decode()]).errors
    assert '"event" must be the repaired event' in error.message
    line["event"] = GOOD
    assert parse_repairs([orjson.dumps(line).decode()]).errors == []


def _line(**fields: Any) -> str:
    return orjson.dumps({"dlq": "0:1", "event": GOOD, **fields}).decode()


def test_a_repair_file_with_bad_lines_is_refused_with_line_numbers() -> None:
    text = [
        _line(),
        "",
        "not json",
        "[1, 2]",
        _line(dlq="zero"),
        _line(dlq="0:1"),
        _line(dlq="0:2", action="fix"),
        _line(dlq="0:3", event={**GOOD, "type": "cart.teleported"}),
        _line(dlq="0:4", note=5),
        orjson.dumps({"dlq": "0:5", "action": "drop", "note": "test data"}).decode(),
        "[" * 5000,
    ]
    parsed = parse_repairs(text)
    assert [e.number for e in parsed.errors] == [3, 4, 5, 6, 7, 8, 9, 11]
    messages = {e.number: e.message for e in parsed.errors}
    assert "already on line 1" in messages[6]
    assert "unknown_type" in messages[8]
    assert [(ln.number, ln.action) for ln in parsed.lines] == [
        (1, Action.REPLAY),
        (10, Action.DROP),
    ]
    assert parsed.lines[1].note == "test data"


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.text(max_size=200), max_size=5))
def test_any_file_text_parses_without_raising(lines: list[str]) -> None:
    parsed = parse_repairs(lines)
    assert len(parsed.errors) + len(parsed.lines) <= len(lines)
