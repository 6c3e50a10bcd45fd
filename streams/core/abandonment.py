"""When a cart counts as abandoned: the timers a commit sets and cancels. Pure.

A session with items in its cart is due ``abandon_after`` seconds after its
last commit; any later commit to it moves the deadline, an empty cart (cleared,
or checked out) cancels it, and a merged guest's timer goes with the guest.
Deadlines live in Redis (the sorted set ``cont:{pN}:ab`` of the session's
partition, written by the commit script in the same atomic step as the
session), so they survive worker restarts and rebalances; every worker's
sweep claims due sessions atomically (``streams/store/lua/sweep.lua``), so
each abandonment is claimed exactly once.

The clock is the commit's, not the events': a backlog or a rebuild folds old
events now, and must not find every cart in it long abandoned.
"""

from __future__ import annotations

from streams.core.plan import Plan

# A cancelled timer, as the commit script reads it.
CANCEL = "-"


def timers(plan: Plan, now: float, abandon_after: float) -> list[tuple[str, str]]:
    """(session key, deadline in Unix ms or ``CANCEL``) for every session the plan touches."""
    rows = [
        (key, str(int((now + abandon_after) * 1000)) if session.cart else CANCEL)
        for key, session in plan.writes.items()
    ]
    # A guest merged and started again in the batch keeps the timer of its new session.
    rows.extend((guest, CANCEL) for guest in plan.deletes if guest not in plan.writes)
    return rows
