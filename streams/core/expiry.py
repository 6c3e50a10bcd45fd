"""When a session has ended: idle longer than its TTL, on event time. Pure.

A guest session (no ``customer_id``) ends once it has been idle longer than
``Limits.guest_ttl`` seconds, a customer's once idle longer than
``Limits.session_ttl``. Idle is measured between the session's ``updated_at``
(the newest ``occurred_at`` it applied, never the wall clock) and the
``occurred_at`` of the event that finds it, so the live fold, a replay, a
rebuild and time travel, which fold the same records in the same order, all
decide the same. An event late by more than the TTL still folds into the
session it finds: only an event *newer* than ``updated_at + TTL`` ends it.

The event that finds a session ended does not fold into it: the planner
(``streams/core/plan.py``) first writes the session's successor, an empty
session one version on (the ending is a change of its own, as a merge is), and
then folds the event into that. So versions of a key never go backwards and a
client's ``Last-Event-ID`` or ``min_version`` stays meaningful. Nothing of the
ended session carries over: cart, set-aside lines, checkout, orders, recent
views and searches, channels, linked guest ids, the dedupe window.

Redis forgets an ended session physically with key TTLs (``commit.lua``): at
``physical end = max(end_ms, commit time) + grace``, never before the end the
fold decides on, so an event delivered within ``grace`` of its ``occurred_at``
always finds what the fold would.
"""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.session import Session

DAY = 86400
# A customer's saved cart is worth three times a guest's: a signed-in customer
# comes back on another device expecting it, and commercetools keeps carts 90 days.
DEFAULT_GUEST_TTL = 30 * DAY
DEFAULT_SESSION_TTL = 90 * DAY


def ttl_seconds(session: Session, guest_ttl: int, session_ttl: int) -> int:
    """Seconds ``session`` may stay idle: the guest TTL without a customer, else the session TTL."""
    return session_ttl if session.customer_id is not None else guest_ttl


def end_ms(session: Session, guest_ttl: int, session_ttl: int) -> int | None:
    """The last instant (Unix ms, event time) at which ``session`` is still alive;
    ``None`` for a session that never applied an event (nothing to measure from)."""
    if session.updated_at is None:
        return None
    return _ms(session.updated_at) + ttl_seconds(session, guest_ttl, session_ttl) * 1000


def ended(session: Session, at: datetime, guest_ttl: int, session_ttl: int) -> bool:
    """True if an event at ``at`` finds ``session`` ended: idle more than its TTL.

    Idle exactly the TTL is still alive; one millisecond more is not.
    """
    end = end_ms(session, guest_ttl, session_ttl)
    return end is not None and _ms(at) > end


def successor(session: Session) -> Session:
    """The empty session that follows an ended one under the same key and customer,
    one version on, so the ending itself is a version clients see."""
    return Session(key=session.key, customer_id=session.customer_id, version=session.version + 1)


def _ms(at: datetime) -> int:
    # Integer arithmetic on the timedelta: float seconds can lose the millisecond
    # the boundary is defined on. Event times are offset-aware (the contract's).
    delta = at - _EPOCH
    return (delta.days * DAY + delta.seconds) * 1000 + delta.microseconds // 1000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
