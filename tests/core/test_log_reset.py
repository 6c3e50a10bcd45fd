"""The pure reset decision: when a partition's log is judged intact, reset or unknown.

Proves: a matching fingerprint at the applied offset is intact, a different
one is a reset; a log ending at or before the applied offset is a reset
whatever else was seen; a record gone by retention or a missing fingerprint
proves nothing (the applied offset is trusted); the fingerprint separates key
from value; and the probe stops as soon as it has seen enough.
"""

from __future__ import annotations

import pytest

from streams.core.log_reset import Applied, Probe, Verdict, fingerprint, judge, probe_complete
from streams.core.plan import Record
from tests.support.pure import MemoryState, add, ev, records

FP = fingerprint(b"k", b"v")


@pytest.mark.parametrize(
    ("applied", "probe", "verdict"),
    [
        (Applied(500, FP), Probe(FP, 500, 900), Verdict.INTACT),
        (Applied(500, FP), Probe(fingerprint(b"k", b"w"), 500, 900), Verdict.RESET),
        (Applied(500, FP), Probe(None, 0, 120), Verdict.RESET),
        (Applied(500, FP), Probe(None, None, 0), Verdict.RESET),
        (Applied(500, FP), Probe(None, None, 500), Verdict.RESET),
        (Applied(500, FP), Probe(None, 800, 900), Verdict.UNKNOWN),  # deleted by retention
        (Applied(500, None), Probe(FP, 500, 900), Verdict.UNKNOWN),  # stored before fingerprints
        (Applied(500, None), Probe(None, 3, 4), Verdict.RESET),
        (Applied(500, FP), Probe(None, None, None), Verdict.UNKNOWN),  # no fetch answered
    ],
)
def test_judge(applied: Applied, probe: Probe, verdict: Verdict) -> None:
    assert judge(applied, probe) is verdict


def test_fingerprint_separates_key_from_value_and_none_from_empty() -> None:
    assert fingerprint(b"ab", b"c") != fingerprint(b"a", b"bc")
    assert fingerprint(None, b"x") != fingerprint(b"", b"x")
    assert len(fingerprint(b"k", b"v")) == 16


@pytest.mark.parametrize(
    ("probe", "complete"),
    [
        (Probe(FP, 500, None), True),
        (Probe(None, 501, 900), True),
        (Probe(None, 10, 400), True),
        (Probe(None, 10, 900), False),  # still reading towards the applied offset
        (Probe(None, None, None), False),
    ],
)
def test_probe_complete(probe: Probe, complete: bool) -> None:
    assert probe_complete(Applied(500, FP), probe) is complete


def test_plan_fingerprints_the_record_at_each_new_applied_offset() -> None:
    batch = records(
        [ev("cart.item_added", add("A-1"), customer="c", event_id=f"e{i}") for i in range(3)]
    )
    plan = MemoryState().process(batch)
    last: Record = batch[-1]
    assert plan.offsets == {"cart-events:0": 2}
    assert plan.fingerprints == {"cart-events:0": fingerprint(last.key, last.value)}
