"""Months of shoppers, one simulated day at a time, for ``bench.lifecycle``. Pure.

Three kinds of traffic, seeded:

* **one-visit guests**, every day new ones: a few product views on one channel,
  sometimes a line in the cart; they never come back, so their sessions can
  only end;
* **sign-ups**: a guest who browses, adds a line, signs in as a new customer
  (the guest's cart merges), looks on, and checks out half the time; never seen
  again either, so a customer session that ends after the customer TTL;
* **regulars**: a fixed population of customers who come back every few days
  (on average), view, add, and check out what is in their cart now and then.

Events are plain wire-contract dicts; times are given in simulated days since
the start and turned into ``occurred_at`` by the caller's ``stamp``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.workload import CATALOG, Event

MINUTE = 1 / 1440  # of a day
_GUEST_CHANNELS = ("web", "mobile_app", "social", "kiosk")
_CUSTOMER_CHANNELS = ("web", "mobile_app", "pos", "call_center")


@dataclass(frozen=True)
class Traffic:
    """How many shoppers of each kind a simulated day brings."""

    guests_per_day: int = 300
    signups_per_day: int = 30
    regulars: int = 1_500
    regular_every_days: float = 10.0
    """Mean days between a regular's visits."""
    seed: int = 7


@dataclass
class Shoppers:
    """What the generator remembers between days: the regulars' cart sizes and orders."""

    traffic: Traffic
    rng: random.Random = field(init=False)
    cart_lines: dict[str, int] = field(default_factory=dict)
    orders: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.traffic.seed)

    def day(self, day: int, stamp: Callable[[float], str]) -> list[Event]:
        """Every event of simulated ``day``, in event-time order."""
        timed: list[tuple[float, Event]] = []
        t = self.traffic
        for i in range(t.guests_per_day):
            timed += self._guest(f"g{day:03d}-{i:04d}", day + self._start())
        for i in range(t.signups_per_day):
            timed += self._signup(f"s{day:03d}-{i:03d}", f"n{day:03d}-{i:03d}", day + self._start())
        for j in range(t.regulars):
            if self.rng.random() < 1 / t.regular_every_days:
                timed += self._regular(f"r{j:05d}", day, day + self._start())
        timed.sort(key=lambda te: te[0])
        out = []
        for at, event in timed:
            event["occurred_at"] = stamp(at)
            out.append(event)
        return out

    def _start(self) -> float:
        # A visit starts some time in the day and lasts minutes: it stays in its day.
        return self.rng.uniform(0.0, 0.97)

    def _guest(self, anon: str, at: float) -> list[tuple[float, Event]]:
        channel = self.rng.choice(_GUEST_CHANNELS)
        visit = _Visit(self.rng, at, channel, anon=anon)
        for _ in range(self.rng.randint(1, 6)):
            visit.view()
        if self.rng.random() < 0.25:
            visit.add()
        return visit.events

    def _signup(self, anon: str, customer: str, at: float) -> list[tuple[float, Event]]:
        visit = _Visit(self.rng, at, self.rng.choice(("web", "mobile_app")), anon=anon)
        visit.view()
        visit.view()
        visit.add()
        visit.emit("session.identified", {}, customer_id=customer, anonymous_id=anon)
        visit.anon, visit.customer = None, customer
        visit.view()
        if self.rng.random() < 0.5:
            self.orders += 1
            visit.checkout(f"ord-{self.orders}")
        return visit.events

    def _regular(self, customer: str, day: int, at: float) -> list[tuple[float, Event]]:
        visit = _Visit(self.rng, at, self.rng.choice(_CUSTOMER_CHANNELS), customer=customer)
        visit.seq = day * 100  # event ids unique across the regular's visits
        lines = self.cart_lines.get(customer, 0)
        for _ in range(self.rng.randint(1, 4)):
            roll = self.rng.random()
            if roll < 0.1 and lines:
                self.orders += 1
                visit.checkout(f"ord-{self.orders}")
                lines = 0
            elif roll < 0.4 and lines < 20:
                visit.add()
                lines += 1
            else:
                visit.view()
        self.cart_lines[customer] = lines
        return visit.events


@dataclass
class _Visit:
    """One sitting on one channel: events a minute or three apart."""

    rng: random.Random
    at: float
    channel: str
    anon: str | None = None
    customer: str | None = None
    seq: int = 0
    events: list[tuple[float, Event]] = field(default_factory=list)

    def emit(self, type_: str, payload: dict[str, Any], **ids: str) -> None:
        self.seq += 1
        self.at += self.rng.uniform(0.5, 3.0) * MINUTE
        key = self.customer or self.anon
        event: Event = {
            "event_id": f"{key}-{self.seq:05d}",
            "type": type_,
            "channel": self.channel,
            "payload": payload,
        }
        event.update(ids or _ids(self.anon, self.customer))
        if self.channel in ("web", "mobile_app"):
            event["device_id"] = f"{self.channel}-{key}"
        self.events.append((self.at, event))

    def view(self) -> None:
        sku, name, category, _ = self.rng.choice(CATALOG)
        self.emit("browse.product_viewed", {"sku": sku, "name": name, "category": category})

    def add(self) -> None:
        sku, name, _, price = self.rng.choice(CATALOG)
        payload = {"sku": sku, "name": name, "quantity": 1, "unit_price": price, "currency": "EUR"}
        self.emit("cart.item_added", payload)

    def checkout(self, order_id: str) -> None:
        self.emit("checkout.started", {})
        self.emit("checkout.completed", {"order_id": order_id})


def _ids(anon: str | None, customer: str | None) -> dict[str, str]:
    return {"customer_id": customer} if customer is not None else {"anonymous_id": anon or ""}
