"""Metric facts of a batch, bounded labels, lag and the sessions-active buckets. Pure.

Proves: whatever bytes arrive, a label is one of the contract's channels or
types or ``unknown`` (never a copy of the input); rejected events keep the
channel and type they validly named; a batch's facts count every record once
by outcome and measure freshness only for applied events, never negatively;
lag is what the state lacks of the high watermark; the sessions window reads
the buckets the commit wrote; and with the partitions planned apart (forwards
between them, ``tests/support/saga.py``) every source record is still counted
once, by its event's labels and topic, with its own Kafka age, exactly as one
planner over every key counts it, and forwards count apart from events.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.topics import SESSION_FORWARDS
from streams.core.activity import BUCKET_SECONDS, WINDOW_SECONDS, bucket, window
from streams.core.decode import decode
from streams.core.facts import (
    CHANNELS,
    TYPES,
    UNKNOWN,
    BatchFacts,
    RecordLabels,
    batch_facts,
    labels_by_record,
    record_id,
    record_labels,
    settles,
)
from streams.core.fold import Limits
from streams.core.lag import consumer_lag, owned
from streams.core.plan import Kind, Plan, Record, Snapshot
from tests.core.test_partition_properties import PARTITIONS, histories, limits
from tests.support.pure import MemoryState, add, ev, routed
from tests.support.saga import Partitions

AT = "2026-11-24T10:00:00Z"
AT_S = datetime(2026, 11, 24, 10, tzinfo=UTC).timestamp()


def _labels(raw: bytes) -> RecordLabels:
    return record_labels(raw, decode(raw))


def test_a_valid_event_is_labelled_by_its_channel_type_and_id() -> None:
    raw = orjson.dumps(ev("cart.item_added", add("A"), customer="c", channel="pos", event_id="e1"))
    assert _labels(raw) == RecordLabels("pos", "cart.item_added", "e1")


def test_a_rejected_event_keeps_the_channel_and_type_it_validly_named() -> None:
    negative = ev("cart.item_added", add("A", -3), customer="c", channel="kiosk", event_id="e2")
    assert _labels(orjson.dumps(negative)) == RecordLabels("kiosk", "cart.item_added", "e2")
    teleport = ev("cart.teleported", {}, customer="c", channel="fax", event_id="e3")
    assert _labels(orjson.dumps(teleport)) == RecordLabels(UNKNOWN, UNKNOWN, "e3")


def test_unreadable_input_is_unknown_and_carries_no_event_id() -> None:
    assert _labels(b'{"type": "cart.item_added", "event_id": ') == RecordLabels()
    assert _labels(b"[1, 2]") == RecordLabels()
    assert record_labels(None, decode(None)) == RecordLabels()
    bad_id = ev("cart.item_added", add("A", 0), customer="c", event_id="x\ny")
    assert _labels(orjson.dumps(bad_id)).event_id is None, "only ids the contract accepts"
    big = ev("cart.item_added", add("A"), customer="c", name="x" * 70_000)
    assert _labels(orjson.dumps(big)) == RecordLabels(), "oversized input is not parsed"


@settings(max_examples=300, deadline=None)
@given(
    body=st.dictionaries(
        st.sampled_from(["type", "channel", "event_id", "payload", "occurred_at"]),
        st.one_of(
            st.text(max_size=40),
            st.integers(-(2**31), 2**31),
            st.none(),
            st.sampled_from(sorted(TYPES)),
        ),
    )
)
def test_labels_are_bounded_whatever_the_input(body: dict[str, Any]) -> None:
    lab = _labels(orjson.dumps(body))
    assert lab.channel in CHANNELS | {UNKNOWN}
    assert lab.type in TYPES | {UNKNOWN}


def _record(event: dict[str, Any] | bytes, offset: int, ts_ms: int | None = None) -> Record:
    raw = event if isinstance(event, bytes) else orjson.dumps(event)
    return Record("cart-events", 0, offset, None, raw, ts_ms)


def test_batch_facts_count_each_record_once_and_time_only_applied_events() -> None:
    state = MemoryState()
    first = ev("cart.item_added", add("A"), customer="c", channel="web", at=AT, event_id="e1")
    state.process([_record(first, 0)])
    batch = [
        _record(first, 0),  # redelivered: already applied
        _record({**first}, 1),  # same event id again: duplicate
        _record(b"{oops", 2),
        _record(
            ev("cart.item_added", add("B"), customer="c", channel="pos", at=AT, event_id="e4"),
            3,
            1_000,
        ),
        _record(
            ev("cart.item_added", add("C", 1, "1", "USD"), customer="c", at=AT, event_id="e5"), 4
        ),
    ]
    decoded = [decode(r.value) for r in batch]
    snapshot = state.snapshot()
    plan = state.process(batch)
    facts = batch_facts(plan, snapshot, labels_by_record(batch, decoded), AT_S + 2.5)
    assert facts.size == 5
    assert facts.processed == {
        ("web", "cart.item_added", "already_applied"): 1,
        ("web", "cart.item_added", "duplicate"): 1,
        (UNKNOWN, UNKNOWN, "rejected"): 1,
        ("pos", "cart.item_added", "applied"): 1,
        ("web", "cart.item_added", "rejected"): 1,
    }
    assert facts.by_topic == {
        ("cart-events", "already_applied"): 1,
        ("cart-events", "duplicate"): 1,
        ("cart-events", "rejected"): 2,
        ("cart-events", "applied"): 1,
    }
    assert facts.dead_letters == {
        ("cart-events", "malformed_json"): 1,
        ("cart-events", "currency_mismatch"): 1,
    }
    assert facts.event_ages == [("pos", 2.5)]
    assert facts.append_ages == [("cart-events", AT_S + 2.5 - 1.0)]


def test_freshness_is_never_negative() -> None:
    state = MemoryState()
    batch = [_record(ev("browse.search", {"query": "q"}, customer="c", at=AT), 0, 10**15)]
    snapshot = state.snapshot()
    plan = state.process(batch)
    facts = batch_facts(plan, snapshot, labels_by_record(batch, [decode(batch[0].value)]), 0.0)
    assert facts.event_ages == [("web", 0.0)]
    assert facts.append_ages == [("cart-events", 0.0)]


def test_lag_is_the_high_watermark_beyond_the_last_applied_offset() -> None:
    a, b, c, d = ("cart-events", 0), ("cart-events", 1), ("browse-events", 0), ("x", 0)
    lag = consumer_lag({a: 10, b: 0, c: 5, d: None}, {a: 9, c: 1})
    assert lag == {a: 0, b: 0, c: 3}, "unknown high watermark: no series, not a guess"
    assert consumer_lag({a: 3}, {a: 7}) == {a: 0}, "never negative"
    assert owned([d, b, a], ["cart-events"]) == [a, b]


def test_the_sessions_window_reads_the_buckets_commits_write() -> None:
    now = 1_800_000_123.0
    buckets = window(now)
    assert buckets[-1] == bucket(now), "the bucket being written is read"
    assert buckets[0] == bucket(now - WINDOW_SECONDS)
    assert len(buckets) == WINDOW_SECONDS // BUCKET_SECONDS + 1


@dataclass
class Counted:
    """What the metrics count of a run, summed over its batches."""

    processed: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    by_topic: Counter[tuple[str, str]] = field(default_factory=Counter)
    dead_letters: Counter[tuple[str, str]] = field(default_factory=Counter)
    event_ages: Counter[tuple[str, float]] = field(default_factory=Counter)
    append_ages: Counter[tuple[str, float]] = field(default_factory=Counter)
    deferred: Counter[tuple[str, str]] = field(default_factory=Counter)
    forwards: Counter[str] = field(default_factory=Counter)
    received: int = 0

    def add(self, facts: BatchFacts) -> None:
        self.processed.update(facts.processed)
        self.by_topic.update(facts.by_topic)
        self.dead_letters.update(facts.dead_letters)
        self.event_ages.update(facts.event_ages)
        self.append_ages.update(facts.append_ages)
        self.deferred.update(facts.deferred)
        self.forwards.update(facts.forwards)


COMMITTED_AT = AT_S + 7200.0


def _count(counted: Counted, batch: list[Record], snapshot: Snapshot, plan: Plan) -> None:
    labels = labels_by_record(batch, [decode(r.value) for r in batch])
    counted.add(batch_facts(plan, snapshot, labels, COMMITTED_AT, len(batch)))
    counted.received += sum(1 for r in batch if r.topic != SESSION_FORWARDS)


class CountingPartitions(Partitions):
    """The saga, counting each batch's facts as the worker does after its commit."""

    counted: Counted

    def process(self, partition: int, batch: Any) -> Plan:
        place = self.place(partition)
        snapshot = self.store.snapshot(place)
        plan = super().process(partition, batch)
        _count(self.counted, list(batch), snapshot, plan)
        return plan


def _stamped(log: list[Record]) -> list[Record]:
    """Each record with a Kafka timestamp of its own (ms), as the broker gives one."""
    return [replace(r, timestamp_ms=1_000 * n + 17) for n, r in enumerate(log)]


def test_forwarded_records_count_once_as_one_planner_counts_them() -> None:
    """Planned apart, a record handed on (a login across partitions, a guest's event
    following its alias, a customer's record held while its session waited) counts
    once, where it is decided, by its event's channel and type, its source topic and
    its own Kafka timestamp; the forwards and the steps on the way count apart."""
    seen: Counter[str] = Counter()

    @settings(max_examples=300, deadline=None)
    @given(history=histories(), lim=limits(), partitions=st.sampled_from(PARTITIONS))
    def counts(history: list[dict[str, Any]], lim: Limits, partitions: int) -> None:
        log = _stamped(routed(history, partitions))
        single, one = MemoryState(), Counted()
        for record in log:
            snapshot = single.snapshot()
            _count(one, [record], snapshot, single.process([record], lim))
        world = CountingPartitions(partitions, lim)
        world.counted = apart = Counted()
        consumed: dict[int, int] = {}
        for record in log:
            world.process(record.partition, [record])
            world.drain(consumed)
        assert apart.processed == one.processed
        assert apart.by_topic == one.by_topic
        assert apart.dead_letters == one.dead_letters
        assert apart.event_ages == one.event_ages
        assert apart.append_ages == one.append_ages
        assert apart.received == one.received == sum(apart.processed.values())
        assert not one.deferred, "one planner hands nothing on"
        assert not one.forwards
        sent = sum(len(t) for t in world.topic.values())
        assert dict(apart.forwards) == ({Kind.APPLIED.value: sent} if sent else {})
        seen.update(step for (_, step), n in apart.deferred.items() if n)
        seen["erased or rejected"] += any(o in ("erased", "rejected") for *_, o in one.processed)

    counts()
    assert seen["forwarded"], seen
    assert seen["erased or rejected"], seen


def test_with_forwards_delivered_late_each_source_record_settles_once() -> None:
    """Forwards relayed only now and then (a customer's records held while its session
    waits, a guest's event meeting a merge under way): every source record still has
    exactly one outcome the metrics count, its labels are its event's, and every
    forward record is counted once among the forwards."""
    seen: Counter[str] = Counter()

    @settings(max_examples=300, deadline=None)
    @given(
        history=histories(),
        lim=limits(),
        partitions=st.sampled_from(PARTITIONS),
        data=st.data(),
    )
    def late(history: list[dict[str, Any]], lim: Limits, partitions: int, data: Any) -> None:
        log = _stamped(routed(history, partitions))
        world = CountingPartitions(partitions, lim)
        world.counted = apart = Counted()
        settled: Counter[tuple[str, int, int]] = Counter()
        consumed: dict[int, int] = {}
        for record in log:
            plan = world.process(record.partition, [record])
            settled.update(record_id(o.record) for o in plan.outcomes if settles(o))
            if data.draw(st.booleans(), label="relay now"):
                before = len(world.plans)
                world.drain(consumed)
                for plan in world.plans[before:]:
                    settled.update(record_id(o.record) for o in plan.outcomes if settles(o))
        before = len(world.plans)
        world.drain(consumed)
        for plan in world.plans[before:]:
            settled.update(record_id(o.record) for o in plan.outcomes if settles(o))
        assert settled == Counter(record_id(r) for r in log)
        assert apart.received == len(log) == sum(apart.processed.values())
        sent = sum(len(t) for t in world.topic.values())
        assert sum(apart.forwards.values()) == sent
        wanted = Counter(
            (lab.channel, lab.type)
            for lab in labels_by_record(log, [decode(r.value) for r in log]).values()
        )
        assert Counter((c, t) for (c, t, _), n in apart.processed.items() for _ in range(n)) == (
            wanted
        )
        seen.update(step for (_, step), n in apart.deferred.items() if n)

    late()
    assert seen["forwarded"], seen
    assert seen["held"], seen
