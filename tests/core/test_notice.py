"""The commit notice and the record timestamps it carries. Pure.

Proves: a notice names the key and version (or the customer a guest merged
into) and, when given, ``t``; the oldest applied record's Kafka timestamp is
found per session key, a guest's events folded into its customer counted
under the customer, and records that were not applied (duplicates, rejected)
or carry no timestamp are left out; the key's ``t`` never postdates any
record its new state applied. Read back from the wire, a notice gives its
fields and the state after the header's line break byte for byte (any bytes,
line breaks included), none without one, and an unreadable or keyless
header is a notice about no known key.
"""

from __future__ import annotations

from dataclasses import replace

import orjson
from hypothesis import given
from hypothesis import strategies as st

from streams.core.notice import Heard, notice, oldest_appends, read
from streams.core.plan import Kind
from tests.support.pure import MemoryState, add, ev, records


def test_a_notice_names_the_key_the_version_and_the_oldest_records_time() -> None:
    assert orjson.loads(notice("c-1", 3)) == {"key": "c-1", "version": 3}
    assert orjson.loads(notice("c-1", 3, appended_ms=1_700_000_000_123)) == {
        "key": "c-1",
        "version": 3,
        "t": 1_700_000_000_123,
    }
    assert orjson.loads(notice("g-1", None, merged_into="c-1")) == {
        "key": "g-1",
        "version": None,
        "merged_into": "c-1",
    }


def test_the_oldest_applied_record_of_each_key_is_found() -> None:
    batch = records(
        [
            ev("cart.item_added", add("A"), customer="c-1", event_id="e1"),
            ev("cart.item_added", add("B"), anon="g-1", event_id="e2"),
            ev("cart.item_added", add("A"), customer="c-1", event_id="e1"),  # a duplicate
            ev("session.identified", customer="c-1", anon="g-1", event_id="e3"),
            ev("cart.item_added", add("C"), anon="g-1", event_id="e4"),  # into c-1 now
            b"not json",
        ]
    )
    stamped = [
        replace(r, timestamp_ms=ms) for r, ms in zip(batch, [50, 40, 10, 60, 30, 5], strict=True)
    ]
    plan = MemoryState().process(stamped)
    kinds = [o.kind for o in plan.outcomes]
    assert Kind.DUPLICATE in kinds
    assert Kind.REJECTED in kinds
    # c-1: e1 (50), e3 (60), e4 (30, a guest event following the alias); the duplicate
    # (10) and the rejected record (5) changed nothing.
    assert oldest_appends(plan.outcomes) == {"c-1": 30, "g-1": 40}


def test_records_without_a_timestamp_are_left_out() -> None:
    plan = MemoryState().process(records([ev("browse.search", {"query": "q"}, customer="c")]))
    assert oldest_appends(plan.outcomes) == {}


@given(st.lists(st.integers(min_value=0, max_value=10**13), min_size=1, max_size=12))
def test_a_keys_time_is_the_minimum_of_its_applied_records(times: list[int]) -> None:
    batch = records(
        [
            ev("browse.search", {"query": f"q{i}"}, customer="c", event_id=f"e{i}")
            for i in range(len(times))
        ]
    )
    plan = MemoryState().process(
        [replace(r, timestamp_ms=t) for r, t in zip(batch, times, strict=True)]
    )
    assert oldest_appends(plan.outcomes) == {"c": min(times)}


@given(
    st.text(min_size=1, max_size=40),
    st.none() | st.integers(min_value=0, max_value=10**13),
    st.binary(max_size=300),
)
def test_a_notice_reads_back_with_the_state_after_it(key: str, t: int | None, state: bytes) -> None:
    # As the commit script sends it: the header, a line break, the stored value.
    wire = notice(key, 7, appended_ms=t) + b"\n" + state
    assert read(wire) == Heard(key, 7, None, t, state or None)
    assert read(notice(key, 7, appended_ms=t)) == Heard(key, 7, None, t, None)


def test_a_merge_notice_reads_back_with_its_customer() -> None:
    assert read(notice("g-1", None, merged_into="c-1")) == Heard("g-1", None, "c-1")
    assert read(notice("g-1", None, merged_into="c-1").decode()) == Heard("g-1", None, "c-1")


def test_an_unreadable_notice_is_about_no_known_key() -> None:
    for wire in (b"", b"not json", b"[1]", b'{"version": 2}', b'{"key": 5}', b"\n{}"):
        assert read(wire) == Heard(None), wire
    assert read(b'{"key": "k", "version": "2", "t": true, "merged_into": 3}') == Heard("k")
