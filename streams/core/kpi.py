"""Sessions reaching two channels in one committed batch: old snapshot vs new states. Pure.

The other KPIs are counted per applied event by the planner
(``streams/core/kpi_delta.py``). This one compares what Redis held before a batch
(the planner's ``Snapshot``) with what the batch committed (the ``Plan``): a
plan is committed exactly once (the commit is compare-and-set) and
redelivered records change nothing, so counting per committed plan counts
every session once across all workers and every replay. Exact at batch
granularity because channel sets only grow.
"""

from __future__ import annotations

from collections.abc import Iterator

from schemas.session import Session
from streams.core.plan import Plan, Snapshot

MULTICHANNEL = 2


def multichannel_sessions(plan: Plan, snapshot: Snapshot) -> int:
    """Sessions whose channel set reached two or more channels in this batch.

    A login merge counts the guest sessions it absorbed as the customer's past,
    so a guest that already reached two channels is not counted again when it
    becomes the customer's session.
    """
    reached = 0
    for key, new in plan.writes.items():
        before = max((len(s.channels) for s in _sources(key, plan, snapshot)), default=0)
        if before < MULTICHANNEL <= len(new.channels):
            reached += 1
    return reached


def _sources(key: str, plan: Plan, snapshot: Snapshot) -> Iterator[Session]:
    """What session ``key`` was before the batch: its own state, then guests merged into it."""
    own = snapshot.sessions.get(key)
    if own is not None:
        yield own
    for guest, target in plan.deletes.items():
        merged = snapshot.sessions.get(guest)
        if target == key and merged is not None:
            yield merged
