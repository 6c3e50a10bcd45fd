"""The benchmark's seeded workload: many shoppers on all seven channels. Pure: no I/O, no clock.

Activity is Zipf-skewed: shopper ``c000000`` is the most active, a long tail
does one or two things. Every shopper is one of three kinds:

* ``member``: signed in throughout (every event carries ``customer_id``);
  the busiest shoppers are members, visiting again and again and ordering.
* ``guest_login``: browses and fills a cart as a guest (``anonymous_id``),
  then logs in (``session.identified``) and goes on as the customer; the
  guest session merges into the customer's.
* ``guest``: never signs in; mostly a bounce (a view or two on social or the
  web), sometimes an abandoned guest cart.

Events of one customer travel on three topics, and Kafka orders a key's
records only within one topic, so a consumer draining a backlog may apply a
checkout before the cart events that preceded it, or a login before the guest
events it merges. The generator keeps the workload inside what the fold makes
order-independent, so that ``bench.expect`` can state a final state every
delivery order must reach (and proves it, folding the workload in several
orders):

* no event can be rejected in any order: one currency; at most 60 distinct
  skus and at most 250 events per journey (so the cart never fills, no line
  reaches 999, and the fold's 256-id duplicate window holds every event id);
  ``cart.quantity_set`` is used only by journeys without a checkout (a
  completed checkout delivered early may have bought the line it sets);
* after a login the customer never touches the skus the guest put in the
  cart, and never clears the cart (a late guest event could land either side);
* a merged journey views at most 20 distinct products (the recently viewed
  list keeps 20, and guest views delivered after the login are newest).

Every event is valid under the wire contract (``self_check`` decodes them all).

``WorkloadSpec.mix`` ``"cart"`` and ``"browse"`` write one-type workloads:
every shopper a member, every event a ``cart.item_added`` (resp. a
``browse.product_viewed``) on one topic, so one key's records arrive in order,
with the same Zipf skew. Side by side they measure what a cart event costs
(an abandonment timer, a journey entry and KPI increments in each commit)
against a view.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from schemas.topics import topic_for
from streams.core.decode import decode
from streams.core.fold import Rejected

Event = dict[str, Any]

CHANNELS: tuple[str, ...] = (
    "web",
    "mobile_app",
    "pos",
    "call_center",
    "kiosk",
    "social",
    "voice",
)
# Share of visits per channel (a visit is one sitting on one channel).
_VISIT_CHANNELS: dict[str, float] = {
    "web": 0.30,
    "mobile_app": 0.33,
    "pos": 0.08,
    "call_center": 0.05,
    "kiosk": 0.06,
    "social": 0.11,
    "voice": 0.07,
}
# Guests cannot be served at a till or by the call center without identifying.
_GUEST_CHANNELS = ("web", "mobile_app", "kiosk", "social", "voice")
# What a shopper does on each channel: view, search, add, remove, set quantity, clear, check out.
_ACTIONS = ("view", "search", "add", "remove", "set", "clear", "checkout")
_ACTION_WEIGHTS: dict[str, tuple[int, ...]] = {
    "web": (44, 10, 24, 6, 6, 1, 10),
    "mobile_app": (46, 10, 24, 5, 6, 1, 9),
    "pos": (4, 0, 55, 6, 5, 0, 30),
    "call_center": (8, 4, 40, 14, 14, 2, 20),
    "kiosk": (40, 22, 30, 4, 0, 0, 4),
    "social": (86, 6, 8, 0, 0, 0, 0),
    "voice": (8, 44, 40, 4, 4, 0, 0),
}
_CATEGORIES = ("outerwear", "footwear", "tops", "bottoms", "bags", "accessories", "home", "toys")
CATALOG: tuple[tuple[str, str, str, str], ...] = tuple(
    (
        f"SKU-{i:04d}",
        f"Product {i}",
        _CATEGORIES[i % len(_CATEGORIES)],
        f"{(i * 7919) % 20000 / 100 + 1:.2f}",
    )
    for i in range(400)
)
"""sku, name, category, unit price (EUR). Prices never change, so line prices are order-free."""

# Yesterday at 07:00 UTC: the first events lie within the worker's bound behind the
# records' timestamps (CONTINUITY_EVENT_TIME_MAX_BEHIND, 7 days); the workload then runs
# about a month ahead, which the bench's workers allow (bench/stack.py), so they fold
# the times the oracle folds (the oracle's records carry no timestamp).
START = (datetime.now(UTC) - timedelta(days=1)).replace(hour=7, minute=0, second=0, microsecond=0)
MAX_EVENTS_PER_JOURNEY = 250
MAX_VIEWED_WHEN_MERGED = 20
MAX_DISTINCT_SKUS = 60
MIXES = ("shop", "cart", "browse")


class Kind(StrEnum):
    MEMBER = "member"
    GUEST_LOGIN = "guest_login"
    GUEST = "guest"


@dataclass(frozen=True)
class WorkloadSpec:
    """What to generate. The same spec always yields the same events."""

    events: int = 30_000
    customers: int = 3_000
    seed: int = 7
    zipf_s: float = 1.1
    prefix: str = "bench"
    mix: str = "shop"
    """``shop``: browse, carts, logins and checkouts; ``cart``: only ``cart.item_added``;
    ``browse``: only ``browse.product_viewed``."""

    def __post_init__(self) -> None:
        if self.mix not in MIXES:
            raise ValueError(f"mix must be one of {', '.join(MIXES)}")
        if self.customers < 1 or self.events < self.customers:
            raise ValueError("need at least one customer and one event per customer")
        if self.events > self.customers * MAX_EVENTS_PER_JOURNEY:
            raise ValueError(f"at most {MAX_EVENTS_PER_JOURNEY} events per customer")


@dataclass(frozen=True)
class Journey:
    """Everything one shopper did, in the order it happened."""

    n: int
    kind: Kind
    customer_id: str | None
    anonymous_id: str | None
    events: tuple[Event, ...]

    @property
    def session_key(self) -> str:
        """Where the journey's session ends up: the customer, or the guest."""
        key = self.customer_id or self.anonymous_id
        assert key is not None
        return key

    @property
    def merged(self) -> bool:
        return self.kind is Kind.GUEST_LOGIN

    @property
    def completed_checkout(self) -> bool:
        return any(e["type"] == "checkout.completed" for e in self.events)

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(topic_for(e["type"]) for e in self.events)


@dataclass(frozen=True)
class Workload:
    spec: WorkloadSpec
    journeys: tuple[Journey, ...]
    events: tuple[Event, ...]
    """Every event in publish order: journeys interleaved by time, each journey's order kept."""

    def summary(self) -> dict[str, Any]:
        """Counts worth printing: events per type, channel, topic; shoppers per kind."""
        sizes = sorted((len(j.events) for j in self.journeys), reverse=True)
        top = max(1, len(sizes) // 100)
        return {
            "events": len(self.events),
            "customers": len(self.journeys),
            "kinds": dict(Counter(j.kind.value for j in self.journeys)),
            "types": dict(Counter(e["type"] for e in self.events)),
            "channels": dict(Counter(e["channel"] for e in self.events)),
            "topics": dict(Counter(topic_for(e["type"]) for e in self.events)),
            "events_per_customer_max": sizes[0],
            "events_per_customer_median": sizes[len(sizes) // 2],
            "share_of_top_1pct_customers": round(sum(sizes[:top]) / len(self.events), 3),
        }


def zipf_budgets(spec: WorkloadSpec, rng: random.Random) -> list[int]:
    """Events per customer: one each, the rest Zipf(s) by rank, capped per journey."""
    weights = [1.0 / (rank + 1) ** spec.zipf_s for rank in range(spec.customers)]
    budgets = [1] * spec.customers
    left = spec.events - spec.customers
    while left > 0:
        open_ = [i for i, b in enumerate(budgets) if b < MAX_EVENTS_PER_JOURNEY]
        for i in rng.choices(open_, weights=[weights[i] for i in open_], k=left):
            if budgets[i] < MAX_EVENTS_PER_JOURNEY:
                budgets[i] += 1
                left -= 1
    return budgets


def generate(spec: WorkloadSpec) -> Workload:
    """The workload of ``spec``: every journey, and all events in publish order."""
    rng = random.Random(spec.seed)
    budgets = zipf_budgets(spec, rng)
    journeys = tuple(
        _journey(spec, n, budget, random.Random(f"{spec.seed}:{n}"))
        for n, budget in enumerate(budgets)
    )
    stamped = [(e["occurred_at"], e["event_id"], e) for j in journeys for e in j.events]
    stamped.sort(key=lambda t: (t[0], t[1]))
    return Workload(spec, journeys, tuple(e for _, _, e in stamped))


def self_check(workload: Workload) -> None:
    """Every event decodes under the wire contract, and ids are unique. Raises otherwise."""
    seen: set[str] = set()
    for raw in encode(workload.events):
        event = decode(raw.value)
        if isinstance(event, Rejected):
            raise AssertionError(f"workload event breaks the contract: {event.detail}")
        if event.event_id in seen:
            raise AssertionError(f"duplicate event_id {event.event_id}")
        seen.add(event.event_id)
    if len(seen) != workload.spec.events:
        raise AssertionError(f"{len(seen)} events generated, {workload.spec.events} asked")


@dataclass(frozen=True)
class Encoded:
    """One record ready for the broker: topic by type, key = customer key, JSON value."""

    topic: str
    key: bytes
    value: bytes


def encode(events: Sequence[Event]) -> list[Encoded]:
    """Address and serialise events exactly as the wire contract says."""
    import orjson

    out = []
    for e in events:
        key = e.get("customer_id") or e["anonymous_id"]
        out.append(Encoded(topic_for(e["type"]), key.encode(), orjson.dumps(e)))
    return out


def typical_session_events(customer_id: str = "typical-0001") -> list[Event]:
    """A typical active session: 20 products viewed, 5 lines in the cart, on three channels."""
    clock = START
    events: list[Event] = []
    for i in range(25):
        clock += timedelta(seconds=40)
        channel = ("mobile_app", "web", "kiosk")[i % 3]
        if i < 20:
            etype, payload = "browse.product_viewed", _viewed_payload(CATALOG[i])
        else:
            sku, name, _, price = CATALOG[i - 20]
            etype = "cart.item_added"
            payload = {
                "sku": sku,
                "name": name,
                "quantity": 1 + i % 3,
                "unit_price": price,
                "currency": "EUR",
            }
        events.append(
            {
                "event_id": f"{customer_id}-{i:04d}",
                "type": etype,
                "occurred_at": _stamp(clock),
                "channel": channel,
                "customer_id": customer_id,
                "device_id": f"dev-{channel}",
                "payload": payload,
            }
        )
    return events


def views_spread(customers: int, events: int, prefix: str = "mem") -> list[Event]:
    """``events`` product views spread round robin over ``customers``: for checking memory.

    Holding ``events`` fixed while ``customers`` grows separates what grows with
    customers from what grows with the backlog (consumer buffers).
    """
    out: list[Event] = []
    for i in range(events):
        n = i % customers
        out.append(
            {
                "event_id": f"{prefix}-{n:07d}-{i // customers}",
                "type": "browse.product_viewed",
                "occurred_at": _stamp(START + timedelta(seconds=i)),
                "channel": CHANNELS[i % len(CHANNELS)],
                "customer_id": f"{prefix}-{n:07d}",
                "payload": _viewed_payload(CATALOG[i % len(CATALOG)]),
            }
        )
    return out


# --- one journey -----------------------------------------------------------------------------


@dataclass
class _Cart:
    lines: dict[str, int] = field(default_factory=dict)


@dataclass
class _Shopper:
    """The generator's view of one shopper while writing their journey."""

    spec: WorkloadSpec
    n: int
    rng: random.Random
    kind: Kind
    can_set_quantity: bool
    interests: list[tuple[str, str, str, str]]
    clock: datetime
    customer_id: str | None = None
    anonymous_id: str | None = None
    signed_in: bool = False
    seq: int = 0
    cart: _Cart = field(default_factory=_Cart)
    guest_skus: set[str] = field(default_factory=set)
    orders: int = 0
    events: list[Event] = field(default_factory=list)

    def emit(
        self, type_: str, channel: str, payload: dict[str, Any], *, login: bool = False
    ) -> None:
        self.seq += 1
        self.clock += timedelta(seconds=self.rng.randint(4, 75))
        ev: Event = {
            "event_id": f"{self.spec.prefix}-{self.n:06d}-{self.seq:03d}",
            "type": type_,
            "occurred_at": _stamp(self.clock),
            "channel": channel,
            "payload": payload,
        }
        if self.signed_in or login:
            ev["customer_id"] = self.customer_id
        if not self.signed_in or login:
            ev["anonymous_id"] = self.anonymous_id
        if channel in ("web", "mobile_app", "voice"):
            ev["device_id"] = f"{channel}-{self.n:06d}"
        if channel in ("pos", "kiosk"):
            ev["store_id"] = f"store-{self.n % 40:02d}"
        self.events.append(ev)


def _journey(spec: WorkloadSpec, n: int, budget: int, rng: random.Random) -> Journey:
    if spec.mix != "shop":
        return _one_type_journey(spec, n, budget, rng)
    kind = _kind(budget, rng)
    merged = kind is Kind.GUEST_LOGIN
    may_checkout = kind is not Kind.GUEST and rng.random() < (0.9 if budget > 40 else 0.45)
    width = MAX_VIEWED_WHEN_MERGED if merged else min(MAX_DISTINCT_SKUS, 8 + budget // 4)
    s = _Shopper(
        spec=spec,
        n=n,
        rng=rng,
        kind=kind,
        can_set_quantity=not may_checkout,
        interests=rng.sample(CATALOG, k=width),
        clock=START + timedelta(seconds=rng.randint(0, 10 * 3600)),
        customer_id=None if kind is Kind.GUEST else f"{spec.prefix}-c{n:06d}",
        anonymous_id=None
        if kind is Kind.MEMBER
        else f"{spec.prefix}-a{n:06d}-{rng.randrange(16**6):06x}",
        signed_in=kind is Kind.MEMBER,
    )
    if kind is Kind.GUEST and budget <= 3:
        for _ in range(budget):  # a bounce: a look or two, then gone
            channel = rng.choice(("social", "web"))
            s.emit("browse.product_viewed", channel, _viewed_payload(rng.choice(s.interests)))
        return _done(s)
    guest_part = rng.randint(2, max(2, (budget - 1) * 2 // 3)) if merged else 0
    while len(s.events) < budget:
        left = budget - len(s.events)
        if merged and not s.signed_in and len(s.events) >= guest_part:
            s.signed_in = True
            s.emit("session.identified", rng.choice(("web", "mobile_app")), {}, login=True)
            continue
        _visit(s, left if not merged or s.signed_in else guest_part - len(s.events), may_checkout)
    return _done(s)


def _one_type_journey(spec: WorkloadSpec, n: int, budget: int, rng: random.Random) -> Journey:
    """A member who only adds to the cart (never buying), or only views, over a few visits.

    At most ``MAX_DISTINCT_SKUS`` lines of at most 3 x 250 each: the cart never fills.
    """
    action = "add" if spec.mix == "cart" else "view"
    s = _Shopper(
        spec=spec,
        n=n,
        rng=rng,
        kind=Kind.MEMBER,
        can_set_quantity=False,
        interests=rng.sample(CATALOG, k=min(MAX_DISTINCT_SKUS, 4 + budget // 4)),
        clock=START + timedelta(seconds=rng.randint(0, 10 * 3600)),
        customer_id=f"{spec.prefix}-c{n:06d}",
        signed_in=True,
    )
    while len(s.events) < budget:
        channels = list(_VISIT_CHANNELS)
        channel = rng.choices(channels, weights=[_VISIT_CHANNELS[c] for c in channels])[0]
        for _ in range(min(budget - len(s.events), rng.randint(2, 12))):
            _act(s, channel, action, False, budget - len(s.events))
        s.clock += timedelta(hours=rng.randint(2, 30))
    return _done(s)


def _kind(budget: int, rng: random.Random) -> Kind:
    if budget > 40:
        return Kind.MEMBER  # the regulars
    if budget < 4:
        return Kind.GUEST if rng.random() < 0.6 else Kind.MEMBER
    roll = rng.random()
    return Kind.MEMBER if roll < 0.45 else Kind.GUEST_LOGIN if roll < 0.8 else Kind.GUEST


def _visit(s: _Shopper, left: int, may_checkout: bool) -> None:
    """One sitting on one channel: a few actions (a checkout ends it), then a gap of hours."""
    rng = s.rng
    channels = list(_VISIT_CHANNELS) if s.signed_in else list(_GUEST_CHANNELS)
    channel = rng.choices(channels, weights=[_VISIT_CHANNELS[c] for c in channels])[0]
    limit = len(s.events) + left
    target = len(s.events) + min(left, rng.randint(2, 12))
    while len(s.events) < target:
        action = rng.choices(_ACTIONS, weights=_ACTION_WEIGHTS[channel])[0]
        _act(s, channel, action, may_checkout, limit - len(s.events))
        if s.events[-1]["type"].startswith("checkout."):
            break
    s.clock += timedelta(hours=rng.randint(2, 30))


def _act(s: _Shopper, channel: str, action: str, may_checkout: bool, left: int) -> None:
    rng = s.rng
    own = _own_lines(s)
    if action == "checkout" and may_checkout and s.signed_in and s.cart.lines and left >= 2:
        s.emit("checkout.started", channel, {})
        if rng.random() < 0.9:
            s.orders += 1
            s.emit("checkout.completed", channel, {"order_id": f"ord-{s.customer_id}-{s.orders}"})
            s.cart.lines.clear()
        return
    if action == "remove" and own:
        sku = rng.choice(own)
        s.cart.lines.pop(sku)
        s.emit("cart.item_removed", channel, {"sku": sku})
        return
    if action == "set" and own and s.can_set_quantity:
        sku = rng.choice(own)
        quantity = rng.randint(0, 4)
        if quantity:
            s.cart.lines[sku] = quantity
        else:
            s.cart.lines.pop(sku)
        s.emit("cart.quantity_set", channel, {"sku": sku, "quantity": quantity})
        return
    if action == "clear" and s.cart.lines and s.kind is not Kind.GUEST_LOGIN:
        s.cart.lines.clear()
        s.emit("cart.cleared", channel, {})
        return
    if action in ("add", "remove", "set", "clear", "checkout"):
        item = _addable(s)
        if item is not None:
            quantity = rng.randint(1, 3)
            s.cart.lines[item[0]] = s.cart.lines.get(item[0], 0) + quantity
            if not s.signed_in:
                s.guest_skus.add(item[0])
            payload = {
                "sku": item[0],
                "name": item[1],
                "quantity": quantity,
                "unit_price": item[3],
                "currency": "EUR",
            }
            s.emit("cart.item_added", channel, payload)
            return
    if action == "search":
        s.emit("browse.search", channel, {"query": rng.choice(s.interests)[2]})
        return
    s.emit("browse.product_viewed", channel, _viewed_payload(rng.choice(s.interests)))


def _own_lines(s: _Shopper) -> list[str]:
    """Cart lines this phase may change: after a login, never the guest's."""
    lines = [sku for sku in s.cart.lines if not (s.signed_in and sku in s.guest_skus)]
    return sorted(lines)


def _addable(s: _Shopper) -> tuple[str, str, str, str] | None:
    """A product to add: from the shopper's interests; after a login, none the guest added."""
    if s.signed_in and s.kind is Kind.GUEST_LOGIN:
        options = [i for i in s.interests if i[0] not in s.guest_skus]
    else:
        options = s.interests
    return s.rng.choice(options) if options else None


def _viewed_payload(item: tuple[str, str, str, str]) -> dict[str, Any]:
    return {"sku": item[0], "name": item[1], "category": item[2]}


def _done(s: _Shopper) -> Journey:
    return Journey(s.n, s.kind, s.customer_id, s.anonymous_id, tuple(s.events))


def _stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")
