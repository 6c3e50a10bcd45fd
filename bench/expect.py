"""What a correct consumer must leave in Redis for a workload: the oracle and its projection. Pure.

The oracle is the project's pure planner (``streams.batch.plan_batch``) run over
every event in publish order with an empty snapshot, exactly as
``tests/support/oracle.py`` computes it: what one never-failing worker would store.

Kafka orders a customer's events only within one topic, and a consumer that
drains a backlog reads the three topics in whatever order its fetches return,
so the bytes of a session whose events span topics (or a login merge of two
keys) legitimately depend on delivery order: ``last_channel``, ``updated_at``,
the order of lists, a merged session's ``version`` (a merge takes the larger of
the two versions), the cart left after a checkout (a cart event delivered after
the completion stays in the new cart). Runs are therefore compared on a
**projection** every delivery order reaches: applied event ids (a set), version
(sessions without a merge), channels, anonymous ids and viewed products (sets),
checkout status and order id, orders, and the cart's lines and quantities
(sessions without a completed checkout), plus the set of session keys and the
aliases. A session whose events all travel on one topic under one key has a
defined order, and is compared byte for byte.

``expect`` does not take this on trust: it folds the workload in several
delivery orders that Kafka allows (topic by topic, guests last, a random
interleaving) and fails if any projection differs.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from bench.workload import Event, Workload
from schemas.session import Session
from schemas.topics import BROWSE_EVENTS, CART_EVENTS, CHECKOUT_EVENTS, topic_for
from streams.core.decode import decode
from streams.core.plan import Kind, Record, Snapshot, plan_batch

Projection = dict[str, Any]

PROJECTION_NOTE = (
    "order-independent projection (events of one customer on different topics arrive in any "
    "order): applied event ids, version (sessions without a login merge), channels, anonymous "
    "ids, viewed products, checkout status/order id, orders, cart lines and quantities "
    "(sessions without a completed checkout), session keys and aliases; sessions whose events "
    "all travel on one topic under one key compared byte for byte"
)


@dataclass(frozen=True)
class Folded:
    """The state one sequential fold of the events leaves behind."""

    sessions: dict[str, Session]
    aliases: dict[str, str]


@dataclass(frozen=True)
class Expectation:
    """The oracle, its projection per session key, and which keys are compared exactly."""

    oracle: Folded
    projections: dict[str, Projection]
    exact: frozenset[str]
    orders_tried: tuple[str, ...]
    bytes_order_dependent: int
    """Sessions whose bytes differed between the delivery orders tried (projections did not)."""


def fold_in_order(events: Sequence[Event]) -> Folded:
    """Every session after folding ``events`` in this order; raises if any is not applied."""
    records = [Record("oracle", 0, i, None, orjson.dumps(e)) for i, e in enumerate(events)]
    plan = plan_batch(records, [decode(r.value) for r in records], Snapshot({}, {}, {}))
    refused = [o for o in plan.outcomes if o.kind is not Kind.APPLIED]
    if refused:
        o = refused[0]
        raise AssertionError(
            f"{len(refused)} workload events not applied, e.g. {o.kind.value} "
            f"{o.reason.value if o.reason else ''} {o.detail}"
        )
    return Folded(dict(plan.writes), dict(plan.aliases))


def project(session: Session, *, merged: bool, with_cart: bool) -> Projection:
    """The part of a session every delivery order of this workload agrees on."""
    out: Projection = {
        "customer_id": session.customer_id,
        "applied_event_ids": sorted(set(session.recent_event_ids)),
        "version": None if merged else session.version,
        "channels": sorted(set(session.channels)),
        "anonymous_ids": sorted(set(session.anonymous_ids)),
        "viewed": sorted({v.sku for v in session.recently_viewed}),
        "checkout": [session.checkout.status, session.checkout.order_id],
        "orders": list(session.orders),
    }
    if with_cart:
        out["cart"] = sorted((ln.sku, ln.quantity, str(ln.unit_price)) for ln in session.cart)
        out["cart_totals"] = [session.item_count, str(session.subtotal), session.currency]
    return out


def delivery_orders(workload: Workload, seed: int = 0) -> dict[str, list[Event]]:
    """Orders a consumer may see: each (topic, key) sequence kept, topics and keys interleaved."""
    events = list(workload.events)

    def by_topic(*topics: str) -> list[Event]:
        return [e for t in topics for e in events if topic_for(e["type"]) == t]

    queues: dict[tuple[str, str], list[Event]] = {}
    for e in events:
        queues.setdefault((topic_for(e["type"]), _key(e)), []).append(e)
    rng = random.Random(seed)
    pending = [list(q) for q in queues.values()]
    shuffled: list[Event] = []
    while pending:
        i = rng.randrange(len(pending))
        shuffled.append(pending[i].pop(0))
        if not pending[i]:
            pending[i] = pending[-1]
            pending.pop()
    return {
        "publish": events,
        "checkout,cart,browse": by_topic(CHECKOUT_EVENTS, CART_EVENTS, BROWSE_EVENTS),
        "browse,cart,checkout": by_topic(BROWSE_EVENTS, CART_EVENTS, CHECKOUT_EVENTS),
        "customers first, guests last": [e for e in events if "customer_id" in e]
        + [e for e in events if "customer_id" not in e],
        "random interleaving": shuffled,
    }


def expect(workload: Workload, orders: int = 5) -> Expectation:
    """Fold the workload in up to ``orders`` delivery orders; all must agree on the projection."""
    merged = {j.session_key for j in workload.journeys if j.merged}
    with_cart = {j.session_key for j in workload.journeys if not j.completed_checkout}
    exact = frozenset(
        j.session_key for j in workload.journeys if not j.merged and len(j.topics) == 1
    )
    tried = list(delivery_orders(workload).items())[:orders]
    oracle = fold_in_order(tried[0][1])
    projections = _projections(oracle, merged, with_cart)
    bytes_differ: set[str] = set()
    for name, order in tried[1:]:
        other = fold_in_order(order)
        if other.aliases != oracle.aliases or set(other.sessions) != set(oracle.sessions):
            raise AssertionError(f"delivery order {name!r} leaves other session keys or aliases")
        theirs = _projections(other, merged, with_cart)
        differ = sorted(k for k in projections if projections[k] != theirs[k])
        if differ:
            k = differ[0]
            raise AssertionError(
                f"projection not order-independent: {len(differ)} sessions differ under "
                f"{name!r}, e.g. {k}: {projections[k]} != {theirs[k]}"
            )
        bytes_differ.update(
            k
            for k, s in oracle.sessions.items()
            if s.model_dump_json() != other.sessions[k].model_dump_json()
        )
    if bytes_differ & exact:
        raise AssertionError(f"sessions with one order differ: {sorted(bytes_differ & exact)}")
    return Expectation(oracle, projections, exact, tuple(n for n, _ in tried), len(bytes_differ))


def _projections(folded: Folded, merged: set[str], with_cart: set[str]) -> dict[str, Projection]:
    return {
        k: project(s, merged=k in merged, with_cart=k in with_cart)
        for k, s in folded.sessions.items()
    }


def _key(event: Event) -> str:
    key = event.get("customer_id") or event["anonymous_id"]
    assert isinstance(key, str)
    return key
