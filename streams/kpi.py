"""Omnichannel KPIs of one committed batch: old snapshot vs new states. Pure.

Every function here compares what Redis held before a batch (the planner's
``Snapshot``) with what the batch committed (the ``Plan``). A plan is committed
exactly once (the commit is compare-and-set) and redelivered records change
nothing, so counting per committed plan counts every fact once across all
workers and every replay.

The comparison is at batch granularity: a batch sees where a session started
and where it ended, not every step in between. That is exact for the
thresholds below (channel sets only grow) and, for resumes, exact whenever one
line is changed at most once per batch (live traffic, where a customer's
actions are seconds apart); a backlog that folds two changes of the same line
in one batch counts the change from where the line was to where it ended.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from schemas.events import Channel, CheckoutCompletedEvent
from schemas.session import CartLine, Session
from streams.batch import Kind, Plan, Snapshot

MULTICHANNEL = 2
ChannelPair = tuple[Channel, Channel]


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


def cross_channel_resumes(plan: Plan, snapshot: Snapshot) -> Counter[ChannelPair]:
    """Cart lines last changed on one channel and now changed on another, by channel pair.

    A line is changed when the batch left it different (channel or time of
    change) from every version of it the batch started from. The line it came
    from is the most recently changed of those versions (the customer's own on a
    tie, as the merge decides). Lines that only moved in a login merge, or that
    were removed, are not resumes.
    """
    resumes: Counter[ChannelPair] = Counter()
    for key, new in plan.writes.items():
        before: dict[str, list[CartLine]] = {}
        for session in _sources(key, plan, snapshot):
            for line in session.cart:
                before.setdefault(line.sku, []).append(line)
        for line in new.cart:
            olds = before.get(line.sku)
            if not olds or any(_same_change(old, line) for old in olds):
                continue
            # max() keeps the first of equals: the customer's own line comes first.
            origin = max(olds, key=lambda old: old.updated_at)
            if origin.channel != line.channel:
                resumes[(origin.channel, line.channel)] += 1
    return resumes


def checkouts_completed(plan: Plan) -> Counter[Channel]:
    """Completed checkouts applied in this batch, by the channel they completed on."""
    return Counter(
        o.event.channel
        for o in plan.outcomes
        if o.kind is Kind.APPLIED and isinstance(o.event, CheckoutCompletedEvent)
    )


def _sources(key: str, plan: Plan, snapshot: Snapshot) -> Iterator[Session]:
    """What session ``key`` was before the batch: its own state, then guests merged into it."""
    own = snapshot.sessions.get(key)
    if own is not None:
        yield own
    for guest, target in plan.deletes.items():
        merged = snapshot.sessions.get(guest)
        if target == key and merged is not None:
            yield merged


def _same_change(a: CartLine, b: CartLine) -> bool:
    return a.channel == b.channel and a.updated_at == b.updated_at
