"""The session as of a moment (``streams/core/time_travel.py``). Pure, no processes.

The property: for any history spread over the three topics and any moment,
the refolded session equals what a worker holds after committing, batch by
batch, exactly the records stamped at or before the moment in the merged
order (``tests/pure.MemoryState``, which applies plans as ``commit.lua``
does). The key pre-filter changes nothing for the ids Redis would name, and
an erased customer's past is never refolded.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import MultiDict

from schemas.topics import topic_for
from streams.core.plan import Record
from streams.core.time_travel import (
    BadMoment,
    PartitionCut,
    cut,
    iso_ms,
    merged,
    parse_moment,
    relevant,
    session_as_of,
)
from streams.gateway.errors import ApiError
from streams.gateway.params import read_as_of
from tests.core.test_fold_properties import CUSTOMERS, GUESTS, one_event
from tests.support.pure import MemoryState, add, ev

PARTITIONS = 2
T0 = 1_790_000_000_000


def _partition(event: dict[str, Any]) -> int:
    key = event.get("customer_id") or event.get("anonymous_id") or ""
    return zlib.crc32(key.encode()) % PARTITIONS


def log_of(events: Sequence[dict[str, Any]], gaps: Sequence[int]) -> list[Record]:
    """Records as the broker appends them: topic by type, partition by key, offsets in
    order, LogAppendTime stamps from one clock (so never going down in a partition)."""
    next_offset: dict[str, int] = {}
    out: list[Record] = []
    now = T0
    for event, gap in zip(events, gaps, strict=True):
        now += gap
        topic, partition = topic_for(event["type"]), _partition(event)
        tp = f"{topic}:{partition}"
        offset = next_offset.get(tp, 0)
        next_offset[tp] = offset + 1
        key = (event.get("customer_id") or event.get("anonymous_id") or "").encode()
        out.append(Record(topic, partition, offset, key, orjson.dumps(event), now))
    return out


def reference(
    records: Sequence[Record], moment: int, bounds: Sequence[int], state: MemoryState | None = None
) -> MemoryState:
    """A worker's state after the records stamped <= ``moment``, in the merged order."""
    prefix = sorted(
        (r for r in records if (r.timestamp_ms or 0) <= moment),
        key=lambda r: (r.timestamp_ms, r.topic, r.partition, r.offset),
    )
    state = state or MemoryState()
    edges = [0, *[b for b in bounds if 0 < b < len(prefix)], len(prefix)]
    for lo, hi in itertools.pairwise(edges):
        if hi > lo:
            state.process(prefix[lo:hi])
    return state


@st.composite
def histories(draw: st.DrawFn, max_size: int = 40) -> tuple[list[Record], int]:
    """A log and a moment somewhere in (or around) it."""
    size = draw(st.integers(1, max_size))
    events = [draw(one_event(n)) for n in range(size)]
    gaps = draw(st.lists(st.sampled_from((0, 1, 7)), min_size=size, max_size=size))
    records = log_of(events, gaps)
    last = max(r.timestamp_ms or 0 for r in records)
    moment = draw(st.integers(T0 - 1, last + 1))
    return records, moment


IDS = (*CUSTOMERS, *GUESTS)


@given(histories(), st.lists(st.integers(1, 40), max_size=4), st.sampled_from(IDS))
@settings(max_examples=400, deadline=None)
def test_the_session_as_of_a_moment_is_the_fold_of_the_records_up_to_it(
    history: tuple[list[Record], int], bounds: list[int], some_id: str
) -> None:
    records, moment = history
    live = reference(records, moment, sorted(set(bounds)))
    # Handed over in any interleaving: each partition is put back in offset order.
    got = session_as_of(list(reversed(records)), moment, some_id, batch=3)
    key = live.aliases.get(some_id, some_id)
    assert got.key == key
    assert got.session == live.sessions.get(key)
    assert got.folded == sum(1 for r in records if (r.timestamp_ms or 0) <= moment)


@given(histories(), st.sampled_from(IDS))
@settings(max_examples=300, deadline=None)
def test_the_prefilter_on_the_ids_redis_names_changes_nothing(
    history: tuple[list[Record], int], some_id: str
) -> None:
    records, moment = history
    now = reference(records, max(r.timestamp_ms or 0 for r in records), [])
    everything = session_as_of(records, moment, some_id)
    # As time_travel_io does: the ids Redis names; if the id resolved then to a key
    # outside them (a guest that signed in to another customer first), that key's too.
    ids = _named_by(now, some_id)
    filtered = session_as_of([r for r in records if relevant(r, ids)], moment, some_id)
    if filtered.key not in ids:
        ids |= _named_by(now, filtered.key)
        filtered = session_as_of([r for r in records if relevant(r, ids)], moment, some_id)
    assert filtered.key in ids, "two filtered rounds always suffice"
    assert filtered.key == everything.key
    assert filtered.session == everything.session


def _named_by(state: MemoryState, some_id: str) -> frozenset[str]:
    """What ``interested_ids`` reads from Redis: the id, its key, the key's guests."""
    key = state.aliases.get(some_id, some_id)
    ids = {some_id, key, *state.links.get(key, set())}
    if key in state.sessions:
        ids.update(state.sessions[key].anonymous_ids)
    return frozenset(ids)


@given(histories(max_size=30), st.data())
@settings(max_examples=300, deadline=None)
def test_an_erased_customer_is_never_refolded(
    history: tuple[list[Record], int], data: st.DataObject
) -> None:
    records, moment = history
    ordered = sorted(records, key=lambda r: (r.timestamp_ms, r.topic, r.partition, r.offset))
    at = data.draw(st.integers(0, len(ordered)))
    customer = data.draw(st.sampled_from(CUSTOMERS))
    live = MemoryState()
    if at:
        live.process(ordered[:at])
    ends: dict[str, int] = {}
    for r in ordered[:at]:
        ends[r.tp] = max(ends.get(r.tp, 0), r.offset + 1)
    erasure = live.erase(customer, ends)
    got = session_as_of(records, moment, customer, [erasure])
    assert got.erased
    if at == len(ordered) or moment < (ordered[at].timestamp_ms or 0):
        # Every record up to the moment predates the erasure: nothing is refolded.
        assert got.session is None
    # The same as a worker folding the prefix with the erasure already recorded.
    restored = MemoryState()
    for i in erasure.ids:
        restored.erasures[i] = erasure
    then = reference(records, moment, [], restored)
    assert got.session == then.sessions.get(then.aliases.get(customer, customer))


def test_a_partition_is_cut_at_its_first_record_after_the_moment() -> None:
    recs = [
        Record("cart-events", 0, 0, None, b"", 100),
        Record("cart-events", 0, 1, None, b"", None),  # no stamp: its predecessor's
        Record("cart-events", 0, 2, None, b"", 90),  # a producer clock behind: counts at 100
        Record("cart-events", 0, 3, None, b"", 150),
        Record("cart-events", 0, 4, None, b"", 120),  # behind a later record: not folded yet
    ]
    reader = PartitionCut(120)
    taken = reader.take(recs[:2])
    taken += reader.take(recs[2:])
    assert [r.offset for r in taken] == [0, 1, 2]
    assert [r.timestamp_ms for r in taken] == [100, 100, 100]
    assert reader.done
    assert reader.next_offset == 3
    assert reader.take([Record("cart-events", 0, 5, None, b"", 1)]) == []


def test_partitions_merge_by_timestamp_then_topic_partition_offset() -> None:
    a = [Record("cart-events", 1, 0, None, b"", 5), Record("cart-events", 1, 1, None, b"", 9)]
    b = [Record("browse-events", 0, 0, None, b"", 5), Record("browse-events", 0, 1, None, b"", 7)]
    parts = cut([*a, *b], 100)
    order = [(r.topic, r.offset) for r in merged(parts)]
    assert order == [
        ("browse-events", 0),
        ("cart-events", 0),
        ("browse-events", 1),
        ("cart-events", 1),
    ]


def test_a_late_arriving_event_had_not_changed_the_cart_yet() -> None:
    """occurred_at says 10:00, the broker appended it at 10:30: at 10:15 it was not there."""
    early = ev("cart.item_added", add("A"), customer="c-1", at="2026-11-24T10:00:00Z")
    late = ev("cart.item_added", add("B"), customer="c-1", at="2026-11-24T10:00:00Z", event_id="x")
    ms = parse_moment("2026-11-24T10:00:00Z")
    records = [
        Record("cart-events", 0, 0, b"c-1", orjson.dumps(early), ms),
        Record("cart-events", 0, 1, b"c-1", orjson.dumps(late), ms + 30 * 60_000),
    ]
    then = session_as_of(records, ms + 15 * 60_000, "c-1")
    assert then.session is not None
    assert [ln.sku for ln in then.session.cart] == ["A"]
    later = session_as_of(records, ms + 30 * 60_000, "c-1")
    assert later.session is not None
    assert [ln.sku for ln in later.session.cart] == ["A", "B"]


def test_a_guest_signed_in_after_the_moment_is_still_a_guest_then() -> None:
    browse = ev("cart.item_added", add("A"), anon="g-1")
    login = ev("session.identified", customer="c-1", anon="g-1")
    records = [
        Record("cart-events", 0, 0, b"g-1", orjson.dumps(browse), 10),
        Record("cart-events", 1, 0, b"c-1", orjson.dumps(login), 20),
    ]
    guest = session_as_of(records, 15, "g-1")
    assert guest.key == "g-1"
    assert guest.session is not None
    assert guest.session.customer_id is None
    assert session_as_of(records, 15, "c-1").session is None
    merged_in = session_as_of(records, 20, "g-1")
    assert merged_in.key == "c-1"
    assert merged_in.session is not None
    assert [ln.sku for ln in merged_in.session.cart] == ["A"]


def test_relevant_records_name_an_id_by_key_or_in_the_value() -> None:
    ids = frozenset({"g-1", "c-1"})
    login = orjson.dumps(ev("session.identified", customer="c-9", anon="g-1"))
    assert relevant(Record("cart-events", 0, 0, b"c-1", b"{}"), ids)
    assert relevant(Record("cart-events", 0, 0, b"c-9", login), ids)
    other = orjson.dumps(ev("cart.cleared", customer="c-10"))
    assert not relevant(Record("cart-events", 0, 0, b"c-10", other), ids)
    assert not relevant(Record("cart-events", 0, 0, None, None), ids)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2026-11-24T10:15:00Z", 1795515300000),
        ("2026-11-24T11:15:00+01:00", 1795515300000),
        ("2026-11-24T11:15:00 01:00", 1795515300000),  # '+' decoded as a space
        ("2026-11-24T10:15:00", 1795515300000),  # no offset: UTC
        ("2026-11-24T10:15:00.1239Z", 1795515300123),
        ("1795515300000", 1795515300000),
    ],
)
def test_moments(text: str, ms: int) -> None:
    assert parse_moment(text) == ms


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01", "1e12", "x" * 100, "-5"])
def test_bad_moments(text: str) -> None:
    with pytest.raises(BadMoment):
        parse_moment(text)


def test_iso_ms() -> None:
    assert iso_ms(1795515300123) == "2026-11-24T10:15:00.123Z"


@pytest.mark.parametrize(
    "query",
    [
        [("as_of", "soon")],
        [("as_of", "2026-11-24T10:15:00Z"), ("as_of", "2026-11-24T10:16:00Z")],
        [("as_of", "2999-01-01T00:00:00Z")],
        [("as_of", "2026-11-24T10:15:00Z"), ("min_version", "3")],
        [("as_of", "2026-11-24T10:15:00Z"), ("wait", "5")],
    ],
)
def test_bad_as_of_is_a_400_naming_the_parameter(query: list[tuple[str, str]]) -> None:
    with pytest.raises(ApiError) as caught:
        read_as_of(MultiDict(query), now_ms=1800000000000)
    assert caught.value.status == 400
    assert caught.value.body()["parameter"] == "as_of"


def test_no_as_of_is_the_live_read() -> None:
    assert read_as_of(MultiDict([("min_version", "1")]), now_ms=1) is None
    assert read_as_of(MultiDict([("as_of", "1000")]), now_ms=2000) == 1000
