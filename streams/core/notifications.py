"""Notifications built from committed state, and their outbox form. Pure.

Notifications leave through a transactional outbox: the commit script (a
resume) and the abandonment sweep append them to their partition's Redis
stream ``cont:{pN}:n`` in the same atomic step as the state they describe,
and a relay publishes them to ``session-notifications``
(``streams/store/outbox.py``). An outbox entry is
either a ready notification (field ``n``) or an abandoned session (fields
``a``, ``v``, ``at``), turned into a ``cart.abandoned`` here, in Python,
rather than in Lua.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from schemas.events import AnyEvent, type_of
from schemas.notifications import (
    NOTIFICATION_ADAPTER,
    CartAbandoned,
    SessionResumedElsewhere,
)
from schemas.session import Session
from streams.core import session_codec
from streams.core.kpi_delta import ChannelPair


def resumed(key: str, after: Session, event: AnyEvent, pair: ChannelPair) -> bytes:
    """The ``session.resumed_elsewhere`` of ``event`` resuming the cart of ``key``."""
    note = SessionResumedElsewhere(
        notification_id=f"resumed:{key}:{after.version}",
        key=key,
        customer_id=after.customer_id,
        version=after.version,
        from_channel=pair[0],
        to_channel=pair[1],
        occurred_at=event.occurred_at,
        event_id=event.event_id,
        event_type=type_of(event),
        store_id=event.store_id,
        device_id=event.device_id,
        item_count=after.item_count,
        subtotal=after.subtotal,
        currency=after.currency,
    )
    return note.model_dump_json().encode()


def abandoned(session: Session, version: int, at_ms: int) -> CartAbandoned:
    """The ``cart.abandoned`` of a session swept at ``at_ms`` (Unix milliseconds).

    The id names the session version the timer ran out on: a new abandonment
    needs a new version, and a redelivery or a rebuild names the same one.
    """
    at = datetime.fromtimestamp(at_ms / 1000, UTC)
    idle = (at - session.updated_at).total_seconds() if session.updated_at else 0.0
    return CartAbandoned(
        notification_id=f"abandoned:{session.key}:{version}",
        key=session.key,
        customer_id=session.customer_id,
        version=version,
        abandoned_at=at,
        idle_seconds=max(0.0, idle),
        last_activity_at=session.updated_at,
        last_channel=session.last_channel,
        cart_path=session.cart_path,
        cart=session.cart,
        currency=session.currency,
        item_count=session.item_count,
        subtotal=session.subtotal,
    )


def from_outbox(fields: Mapping[bytes, bytes]) -> tuple[str, bytes, Session | None]:
    """(key, wire JSON, the abandoned session or None) of one outbox entry.

    Raises ``ValueError`` for an entry of neither form (never written by this
    code): the relay logs it and acknowledges it so it cannot block the outbox.
    """
    if b"n" in fields:
        note = NOTIFICATION_ADAPTER.validate_json(fields[b"n"])
        return note.key, fields[b"n"], None
    if b"a" in fields:
        session = session_codec.decode(fields[b"a"])
        cart = abandoned(session, int(fields[b"v"]), int(fields[b"at"]))
        return cart.key, cart.model_dump_json().encode(), session
    raise ValueError(f"outbox entry with fields {sorted(fields)!r}")
