"""Event time bounded by the Kafka record's timestamp. Pure.

``occurred_at`` is what a producer claims; the record's timestamp is what the
log says (with ``message.timestamp.type=LogAppendTime``, as ``deploy/topics.sh``
creates the topics, the broker's append time; otherwise the producer's, which
for events from the gateway is its ingest time). The fold trusts event time
for the shared-device guard's window, journey order, the "newer wins" merge,
session expiry, KPIs and time travel, so a claim far from the log's time is
brought back to a bound before anything uses it:

* later than the timestamp plus ``Limits.event_time_max_ahead``: set to that
  bound (a future-dated event would keep a session alive, win every "newer
  wins" merge and escape the guard's window);
* earlier than the timestamp minus ``Limits.event_time_max_behind``: set to
  that bound (a back-dated sign-in would hide the device's earlier sign-ins
  from its own guard decision; an offline till's late events stay in, at the
  bound).

The timestamp is part of the record, so a replay, a rebuild and a forward to
another partition (which carries its origin's timestamp) bound the event as
the live fold did. A record with no timestamp, and a dead letter an operator
repaired (``continuity dlq replay``, published long after the event), keep
the time they claim.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.events import AnyEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def bounded(
    event: AnyEvent,
    timestamp_ms: int | None,
    max_ahead: int | None,
    max_behind: int | None,
    replayed: bool = False,
) -> AnyEvent:
    """``event`` with ``occurred_at`` brought within ``[ts - max_behind, ts + max_ahead]``
    (seconds; None: that side unbounded); unchanged without a timestamp or for a replay."""
    if timestamp_ms is None or replayed:
        return event
    claimed = event.occurred_at
    try:
        # Integer arithmetic: a float of the milliseconds can be a microsecond off.
        at = _EPOCH + timedelta(milliseconds=timestamp_ms)
        latest = None if max_ahead is None else at + timedelta(seconds=max_ahead)
        earliest = None if max_behind is None else at - timedelta(seconds=max_behind)
    except OverflowError:
        # A stamp beyond the years a datetime holds (a producer's CreateTime) bounds
        # nothing: the event keeps its own time, as with no stamp.
        return event
    if latest is not None and claimed > latest:
        return event.model_copy(update={"occurred_at": latest})
    if earliest is not None and claimed < earliest:
        return event.model_copy(update={"occurred_at": earliest})
    return event


def clamped(before: AnyEvent, after: AnyEvent) -> bool:
    """Whether :func:`bounded` moved the event's time."""
    return before is not after
