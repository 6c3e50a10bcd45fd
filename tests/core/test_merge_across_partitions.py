"""The login merge across partitions (streams/core/crossing.py). Pure, no processes.

Each partition is planned against its own keys only and commits only them; a
login whose guest lives elsewhere, a guest's event whose alias leads elsewhere,
an undo's give-back and an ended session's aliases travel as forwards
(``tests/support/saga.py`` runs the partitions, outboxes and relays in memory).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from streams.core.fold import Limits
from streams.core.plan import Kind
from tests.core.test_partition_properties import (
    PARTITIONS,
    histories,
    limits,
    stored,
)
from tests.support.pure import MemoryState, routed
from tests.support.saga import Partitions

# What only the saga's bookkeeping holds: positions of its own topic and its queues.
BOOKKEEPING = ("offsets", "fingerprints", "forwarded", "pending")


def comparable(state: MemoryState) -> dict[str, Any]:
    """The store as compared: without the saga's own bookkeeping, the outbox as a bag."""
    got = stored(state)
    for name in BOOKKEEPING:
        got.pop(name)
    got["outbox"] = Counter(got["outbox"])
    return got


def one_step(log: list[Any], lim: Limits) -> MemoryState:
    state = MemoryState()
    for record in log:
        state.process([record], lim)
    return state


@settings(max_examples=400, deadline=None)
@given(history=histories(), lim=limits(), partitions=st.sampled_from(PARTITIONS))
def test_forwards_delivered_at_once_leave_what_one_commit_would(
    history: list[dict[str, Any]], lim: Limits, partitions: int
) -> None:
    """With each record's forwards relayed and applied before the next record comes,
    the partitions planned apart leave exactly the store one planner over every key
    leaves: the saga changes where work is done, not what it does."""
    log = routed(history, partitions)
    world = Partitions(partitions, lim)
    consumed: dict[int, int] = {}
    for record in log:
        world.process(record.partition, [record])
        world.drain(consumed)
    want = comparable(one_step(log, lim))
    got = comparable(world.store)
    for name in want:
        assert got[name] == want[name], f"{name} differ"
    crossed = sum(1 for p in world.plans for o in p.outcomes if o.kind is Kind.FORWARDED)
    event(f"forwarded: {'yes' if crossed else 'no'}")
