"""Undoing a login merge (``session.unmerged``, ``streams/core/unmerge.py``). Pure, no processes.

Proves: under ``combine`` and ``higher_quantity`` the customer's cart goes back
to its own quantities with changes made since kept on top, and the guest gets
its lines back as a session of its own; the guest id stops pointing at the
customer, so the guest's later events are its own again; the merge record is
marked undone and cannot be undone twice; an undo after a checkout began, or
of a merge that never happened, is refused with its reason; a redelivered
undo is a duplicate; versions of both keys only rise.
"""

from __future__ import annotations

from typing import Any

import pytest

from streams.core.decode import decode
from streams.core.fold import Limits, MergePolicy, Reason
from streams.core.plan import Kind, plan_batch
from tests.support.pure import MemoryState, add, ev, records

C, G = "c-1", "g-1"


def at(minute: int) -> str:
    return f"2026-11-24T10:{minute:02d}:00Z"


def merged_history() -> list[dict[str, Any]]:
    """Customer cart {A: 1, B: 1}, guest cart {A: 2, C: 1}, the login, then C changed."""
    return [
        ev("cart.item_added", add("A", 1), customer=C, at=at(0), event_id="c1"),
        ev("cart.item_added", add("B", 1), customer=C, at=at(1), event_id="c2"),
        ev("cart.item_added", add("A", 2), anon=G, channel="mobile_app", at=at(2), event_id="g1"),
        ev("cart.item_added", add("C", 1), anon=G, channel="mobile_app", at=at(3), event_id="g2"),
        ev("session.identified", customer=C, anon=G, at=at(4), event_id="login"),
        ev("cart.item_added", add("B", 2), customer=C, at=at(5), event_id="c3"),
    ]


def undo(minute: int = 10, event_id: str = "undo") -> dict[str, Any]:
    return ev(
        "session.unmerged",
        {"anonymous_id": G},
        customer=C,
        channel="call_center",
        at=at(minute),
        event_id=event_id,
    )


def run(events: list[dict[str, Any]], policy: MergePolicy = MergePolicy.COMBINE) -> MemoryState:
    state = MemoryState()
    limits = Limits(merge_policy=policy)
    versions: dict[str, int] = {}
    for rec in records(events):
        plan = plan_batch([rec], [decode(rec.value)], state.snapshot(), limits)
        state.apply(plan)
        state.last_plan = plan  # type: ignore[attr-defined]
        for key, session in plan.writes.items():
            assert session.version > versions.get(key, 0), key
            versions[key] = session.version
    return state


def cart(state: MemoryState, key: str) -> dict[str, int]:
    return {ln.sku: ln.quantity for ln in state.sessions[key].cart}


@pytest.mark.parametrize(
    ("policy", "merged", "after"),
    [
        (MergePolicy.COMBINE, {"A": 3, "B": 3, "C": 1}, {"A": 1, "B": 3}),
        (MergePolicy.HIGHER_QUANTITY, {"A": 2, "B": 3, "C": 1}, {"A": 1, "B": 3}),
    ],
)
def test_an_undo_gives_the_guest_its_lines_back_and_keeps_later_changes(
    policy: MergePolicy, merged: dict[str, int], after: dict[str, int]
) -> None:
    before = run(merged_history(), policy)
    assert cart(before, C) == merged
    state = run([*merged_history(), undo()], policy)
    assert cart(state, C) == after, "the customer's own quantities, B's later add on top"
    assert cart(state, G) == {"A": 2, "C": 1}, "the guest's own quantities"
    assert G not in state.aliases
    assert G not in state.sessions[C].anonymous_ids
    (record,) = state.sessions[C].merges
    assert record.undone_at is not None
    assert record.undone_at.minute == 10


def test_an_undo_of_a_keep_separate_merge_gives_back_the_lines_set_aside() -> None:
    state = run([*merged_history(), undo()], MergePolicy.KEEP_SEPARATE)
    assert cart(state, C) == {"A": 1, "B": 3}
    assert state.sessions[C].set_aside == []
    assert cart(state, G) == {"A": 2, "C": 1}


def test_the_guests_later_events_are_its_own_again() -> None:
    later = ev("cart.item_added", add("D", 1), anon=G, channel="web", at=at(11), event_id="g3")
    state = run([*merged_history(), undo(), later])
    assert cart(state, G) == {"A": 2, "C": 1, "D": 1}
    assert "D" not in cart(state, C)


def test_an_undo_after_a_checkout_began_or_of_no_merge_is_refused() -> None:
    checkout = ev("checkout.started", {}, customer=C, at=at(6), event_id="co")
    state = run([*merged_history(), checkout, undo()])
    (outcome,) = state.last_plan.outcomes  # type: ignore[attr-defined]
    assert (outcome.kind, outcome.reason) == (Kind.REJECTED, Reason.MERGE_CHECKED_OUT)
    assert cart(state, C) == {"A": 3, "B": 3, "C": 1}

    state = run([*merged_history(), undo(), undo(11, "undo-again")])
    (outcome,) = state.last_plan.outcomes  # type: ignore[attr-defined]
    assert (outcome.kind, outcome.reason) == (Kind.REJECTED, Reason.NOTHING_TO_UNMERGE)


def test_a_redelivered_undo_is_a_duplicate() -> None:
    state = run([*merged_history(), undo(), undo()])
    (outcome,) = state.last_plan.outcomes  # type: ignore[attr-defined]
    assert outcome.kind is Kind.DUPLICATE
    assert cart(state, G) == {"A": 2, "C": 1}
