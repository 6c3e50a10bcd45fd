"""The customer's cross-channel journey: one compact entry per applied event. Pure.

Stored per session key as a sorted set ``P:j:{<key>}`` (score: the event's
``occurred_at`` in milliseconds, member: the entry's JSON), written by the
same atomic commit that applies the event, so an entry exists exactly once
for every applied event, however often Kafka redelivers it. A login moves the
guest's entries into the customer's journey. Bounded by count and by age; an
erasure deletes it with the session.

An entry is what support staff need to follow a customer across channels and
nothing more: time, channel, event type, and the sku, quantity, store,
device, associate, order or search it names. The event id makes each member unique and the same in a
rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from schemas.events import (
    AnyEvent,
    BrowseProductViewed,
    BrowseSearch,
    CartItemAdded,
    CartItemRemoved,
    CartQuantitySet,
    CheckoutCompletedEvent,
    type_of,
)


@dataclass(frozen=True)
class JourneyLimits:
    """How much journey one session keeps (``CONTINUITY_JOURNEY_*``)."""

    max_entries: int = 200
    max_age_seconds: int = 90 * 86400


DEFAULT_JOURNEY = JourneyLimits()


@dataclass(frozen=True)
class Entry:
    """One journey entry bound for the session ``key``."""

    key: str
    score_ms: int
    member: bytes


def entry(key: str, event: AnyEvent, replayed_from: str | None = None) -> Entry:
    """The journey entry of ``event`` applied to session ``key``.

    ``replayed_from``: the dead letter a repaired event was replayed from; the
    entry says so (``applied_late``), at the event's own time.
    """
    body: dict[str, object] = {
        "at": event.occurred_at,
        "channel": event.channel.value,
        "type": type_of(event),
        "event_id": event.event_id,
    }
    if event.store_id is not None:
        body["store_id"] = event.store_id
    if event.device_id is not None:
        body["device_id"] = event.device_id
    if event.associate_id is not None:
        body["associate_id"] = event.associate_id
    if replayed_from is not None:
        body["applied_late"] = True
        body["replayed_from"] = replayed_from
    match event:
        case CartItemAdded() | CartQuantitySet():
            body["sku"] = event.payload.sku
            body["quantity"] = event.payload.quantity
        case CartItemRemoved() | BrowseProductViewed():
            body["sku"] = event.payload.sku
        case BrowseSearch():
            body["query"] = event.payload.query
        case CheckoutCompletedEvent():
            body["order_id"] = event.payload.order_id
    return Entry(key, int(event.occurred_at.timestamp() * 1000), orjson.dumps(body))


def moved(entries: list[Entry], guest: str, customer: str) -> list[Entry]:
    """``entries`` with the guest's moved to the customer (a login within one batch)."""
    return [Entry(customer, e.score_ms, e.member) if e.key == guest else e for e in entries]


def decode(member: bytes | str) -> dict[str, object]:
    """A stored entry as served by ``GET /v1/sessions/{id}/journey``."""
    loaded: dict[str, object] = orjson.loads(member)
    return loaded
