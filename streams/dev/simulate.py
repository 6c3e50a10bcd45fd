"""Seeded, simulated multi-channel shopping journeys. Pure: no I/O, no clock.

A journey is one shopper moving across channels the way the product promises
they can: discover on social, browse and fill a cart as a guest in the app,
log in on the web (the guest cart merges), change the cart, and finish at a
store's POS, at the call center or on the web; some abandon along the way.
The same seed always yields the same events, so the demo, the tests and the
benchmark share one workload and an oracle can recompute every session.
Times start at ``START`` unless a caller passes another ``start`` (the live
demo starts near the present, so journeys are within their retention age).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

CATALOG: tuple[tuple[str, str, str, str], ...] = (
    # sku, name, category, unit price (EUR)
    ("JKT-TRAIL-M", "Trail jacket", "outerwear", "149.90"),
    ("SCK-WOOL-42", "Merino socks", "accessories", "14.95"),
    ("BT-HIKE-43", "Hiking boots", "footwear", "189.00"),
    ("CAP-SUN", "Sun cap", "accessories", "24.50"),
    ("TEE-ORG-L", "Organic tee", "tops", "29.00"),
    ("BAG-DAY-20", "Day pack 20 l", "bags", "79.99"),
    ("BTL-STEEL", "Steel bottle", "accessories", "19.90"),
    ("PNT-ZIP-32", "Zip-off trousers", "bottoms", "89.00"),
)
START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)

Event = dict[str, Any]


@dataclass
class _Shopper:
    n: int
    customer_id: str
    anonymous_id: str
    phone: str
    laptop: str
    store: str
    clock: datetime
    rng: random.Random
    seq: int = 0

    def event(
        self,
        type_: str,
        channel: str,
        payload: dict[str, Any],
        *,
        guest: bool,
        device: str | None = None,
        store: str | None = None,
        both: bool = False,
    ) -> Event:
        self.seq += 1
        self.clock += timedelta(seconds=self.rng.randint(5, 90))
        ev: Event = {
            "event_id": f"{self.customer_id}-{self.seq:04d}",
            "type": type_,
            "occurred_at": self.clock.isoformat().replace("+00:00", "Z"),
            "channel": channel,
            "payload": payload,
        }
        if guest or both:
            ev["anonymous_id"] = self.anonymous_id
        if not guest or both:
            ev["customer_id"] = self.customer_id
        if device:
            ev["device_id"] = device
        if store:
            ev["store_id"] = store
        return ev


def journey(seed: int, n: int, prefix: str = "cust", start: datetime = START) -> list[Event]:
    """The events of shopper ``n`` of the run seeded ``seed``, in the order they happen."""
    rng = random.Random(f"{seed}:{n}")
    s = _Shopper(
        n=n,
        customer_id=f"{prefix}-{n:05d}",
        anonymous_id=f"anon-{prefix}-{n:05d}-{rng.randrange(16**6):06x}",
        phone=f"phone-{n:05d}",
        laptop=f"laptop-{n:05d}",
        store=f"store-{rng.randint(1, 12):02d}",
        clock=start + timedelta(seconds=rng.randint(0, 3600)),
        rng=rng,
    )
    picks = rng.sample(CATALOG, k=rng.randint(2, 4))
    evs = [
        s.event("browse.product_viewed", "social", _viewed(picks[0]), guest=True),
        s.event("browse.search", "mobile_app", {"query": picks[0][2]}, guest=True, device=s.phone),
    ]
    for item in picks[:-1]:
        evs.append(
            s.event(
                "browse.product_viewed", "mobile_app", _viewed(item), guest=True, device=s.phone
            )
        )
        evs.append(
            s.event(
                "cart.item_added",
                "mobile_app",
                _added(item, rng.randint(1, 2)),
                guest=True,
                device=s.phone,
            )
        )
    if rng.random() < 0.15:
        return evs  # abandoned as a guest
    evs.append(s.event("session.identified", "web", {}, guest=False, device=s.laptop, both=True))
    last = picks[-1]
    evs.append(s.event("cart.item_added", "web", _added(last, 1), guest=False, device=s.laptop))
    evs.append(
        s.event(
            "cart.quantity_set",
            "web",
            {"sku": picks[0][0], "quantity": 2},
            guest=False,
            device=s.laptop,
        )
    )
    if rng.random() < 0.25:
        evs.append(s.event("cart.item_removed", "call_center", {"sku": last[0]}, guest=False))
    if rng.random() < 0.2:
        return evs  # abandoned after login
    channel = rng.choice(("pos", "pos", "web", "call_center", "kiosk"))
    store = s.store if channel in ("pos", "kiosk") else None
    evs.append(s.event("checkout.started", channel, {}, guest=False, store=store))
    evs.append(
        s.event(
            "checkout.completed",
            channel,
            {"order_id": f"ord-{s.customer_id}-1"},
            guest=False,
            store=store,
        )
    )
    return evs


def workload(
    seed: int, customers: int, prefix: str = "cust", start: datetime = START
) -> list[Event]:
    """Every shopper's journey, interleaved in time order (each shopper's own order kept)."""
    events = [e for n in range(customers) for e in journey(seed, n, prefix, start)]
    return sorted(events, key=lambda e: (e["occurred_at"], e["event_id"]))


def endless(
    seed: int, prefix: str = "demo", customers: int = 40, start: datetime = START
) -> Iterator[Event]:
    """Journeys without end for the live demo, a few shoppers at a time."""
    round_ = 0
    while True:
        yield from workload(seed + round_, customers, f"{prefix}{round_}", start)
        round_ += 1


def _viewed(item: tuple[str, str, str, str]) -> dict[str, Any]:
    return {"sku": item[0], "name": item[1], "category": item[2]}


def _added(item: tuple[str, str, str, str], quantity: int) -> dict[str, Any]:
    return {
        "sku": item[0],
        "name": item[1],
        "quantity": quantity,
        "unit_price": item[3],
        "currency": "EUR",
    }
