"""Seeded workloads and the oracle that says what every session must end as.

The oracle is the pure planner run over all events in publish order with an
empty snapshot: exactly what a single, never-failing worker would compute.
Workloads here keep each customer's events on one topic (cart events only),
so their order in Kafka equals publish order and the oracle is exact to the
byte; cross-topic races are tested separately, by what must commute.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from schemas.session import Session
from streams.core.decode import decode
from streams.core.fold import DEFAULT_LIMITS, Limits
from streams.core.placement import partition_of
from streams.core.plan import Record, Snapshot, plan_batch
from streams.core.session_codec import json_of
from streams.store.state import RedisState
from tests.support.clock import at as clock_at

SKUS = ("A-1", "B-2", "C-3", "D-4", "E-5")

# Fault workers remember no event ids (``CONTINUITY_DEDUP_WINDOW=0``): a record
# delivered again and not skipped by the applied offsets is applied twice and
# shows in the cart, instead of being dropped as a duplicate. The workloads send
# every event once, so this changes nothing else.
NO_DEDUP = Limits(dedup_window=0)
NO_DEDUP_ENV = {"CONTINUITY_DEDUP_WINDOW": "0"}


def cart_workload(
    seed: int, customers: int, per_customer: int, prefix: str
) -> list[dict[str, Any]]:
    """Adds, quantity changes and removals for many customers, interleaved."""
    rng = random.Random(seed)
    streams: list[list[dict[str, Any]]] = []
    for n in range(customers):
        cid = f"{prefix}-c{n:05d}"
        evs: list[dict[str, Any]] = []
        in_cart: set[str] = set()
        for i in range(per_customer):
            at = clock_at(seconds=i)
            base = {
                "event_id": f"{cid}-{i}",
                "occurred_at": at,
                "customer_id": cid,
                "channel": rng.choice(("web", "mobile_app", "pos", "kiosk")),
            }
            evs.append(_cart_change(rng, base, in_cart))
        streams.append(evs)
    return _interleave(rng, streams)


def _cart_change(rng: random.Random, base: dict[str, Any], in_cart: set[str]) -> dict[str, Any]:
    """One valid cart event on ``base`` (an envelope): a removal or a quantity change of a
    line ``in_cart`` holds, else an add; ``in_cart`` follows it."""
    roll = rng.random()
    if in_cart and roll < 0.15:
        sku = rng.choice(sorted(in_cart))
        in_cart.discard(sku)
        return {**base, "type": "cart.item_removed", "payload": {"sku": sku}}
    if in_cart and roll < 0.3:
        sku = rng.choice(sorted(in_cart))
        payload = {"sku": sku, "quantity": rng.randint(1, 5)}
        return {**base, "type": "cart.quantity_set", "payload": payload}
    sku = rng.choice(SKUS)
    in_cart.add(sku)
    payload = {"sku": sku, "quantity": rng.randint(1, 3), "unit_price": "9.99", "currency": "EUR"}
    return {**base, "type": "cart.item_added", "payload": payload}


def _interleave(rng: random.Random, streams: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The events of every stream in one list, each stream's in its own order."""
    out: list[dict[str, Any]] = []
    while any(streams):
        s = rng.choice([s for s in streams if s])
        out.append(s.pop(0))
    return out


@dataclass(frozen=True)
class SignIn:
    """One guest's sign-in in a ``sign_in_rounds`` workload, and where its two ids land."""

    guest: str
    customer: str
    guest_partition: int
    customer_partition: int


@dataclass
class SignInWorkload:
    """Rounds of events to publish one after another, and the sign-ins among them."""

    rounds: list[list[dict[str, Any]]]
    sign_ins: list[SignIn]

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event in publish order."""
        return [e for r in self.rounds for e in r]


def sign_in_rounds(
    seed: int, cohorts: int, per_cohort: int, prefix: str, partitions: int
) -> SignInWorkload:
    """Guests who shop, sign in, and shop on, in ``cohorts + 2`` rounds.

    Each story has a guest id and a customer id on two different partitions
    (every ordered pair of partitions is used): a login is keyed by its
    customer, a guest's own events by the guest id, so a sign-in reads and
    deletes a session that the owner of another partition wrote. Round ``r``
    holds cohort ``r``'s guests building carts (and their customers' own
    events), cohort ``r - 1``'s logins followed by customer events, and cohort
    ``r - 2``'s guests coming back under their anonymous id, which now follows
    the alias into the customer's session.

    Within a round no session is touched from two partitions, so when each
    round is published only after the previous one is applied, every session
    sees its events in publish order and the oracle stays exact to the byte.
    """
    rng = random.Random(seed)
    stages: list[list[list[dict[str, Any]]]] = [[] for _ in range(cohorts + 2)]
    sign_ins: list[SignIn] = []
    for c in range(cohorts):
        for n in range(per_cohort):
            story = c * per_cohort + n
            customer = f"{prefix}-c{story:05d}"
            home = partition_of(customer, partitions)
            target = (home + 1 + story % (partitions - 1)) % partitions
            guest = next(
                g
                for salt in range(10_000)
                if partition_of(g := f"{prefix}-g{story:05d}-{salt}", partitions) == target
            )
            sign_ins.append(SignIn(guest, customer, target, home))
            clock = itertools.count()
            guest_cart: set[str] = set()
            own_cart: set[str] = set()
            browsing = [
                _cart_change(rng, _envelope(clock, "web", None, guest), guest_cart)
                for _ in range(rng.randint(2, 5))
            ]
            saved = [
                _cart_change(rng, _envelope(clock, "pos", customer, None), own_cart)
                for _ in range(rng.randint(0, 3))
            ]
            merged = guest_cart | own_cart
            login = _envelope(clock, "mobile_app", customer, guest)
            login.update(type="session.identified", payload={})
            after = [
                _cart_change(rng, _envelope(clock, "mobile_app", customer, None), merged)
                for _ in range(rng.randint(1, 3))
            ]
            back = [
                _cart_change(rng, _envelope(clock, "web", None, guest), merged)
                for _ in range(rng.randint(1, 2))
            ]
            stages[c].extend([browsing, saved])
            stages[c + 1].append([login, *after])
            stages[c + 2].append(back)
    rounds = [_interleave(rng, [s for s in streams if s]) for streams in stages]
    return SignInWorkload(rounds, sign_ins)


def _envelope(
    ticks: Iterator[int], channel: str, customer: str | None, guest: str | None
) -> dict[str, Any]:
    """An event's envelope at the story's next second, with the ids it carries."""
    tick = next(ticks)
    ids = {"customer_id": customer, "anonymous_id": guest}
    return {
        "event_id": f"{customer or guest}-{tick}",
        "occurred_at": clock_at(seconds=tick),
        "channel": channel,
        **{k: v for k, v in ids.items() if v is not None},
    }


def oracle(events: Sequence[dict[str, Any]], limits: Limits = DEFAULT_LIMITS) -> dict[str, Session]:
    """Every session as one sequential, never-failing fold of ``events`` computes it."""
    records = [Record("oracle", 0, i, None, orjson.dumps(e)) for i, e in enumerate(events)]
    decoded = [decode(r.value) for r in records]
    plan = plan_batch(records, decoded, Snapshot({}, {}, {}), limits)
    return plan.writes


def oracle_versions(events: Sequence[dict[str, Any]]) -> dict[str, dict[int, Session]]:
    """Every state each session passes through, by version, in a one-event-at-a-time fold.

    What a client following a session may be shown: any of these, never anything
    else. The last state of each key is ``oracle(events)``'s (the tests check it).
    """
    sessions: dict[str, Session] = {}
    out: dict[str, dict[int, Session]] = {}
    for i, e in enumerate(events):
        record = Record("oracle", 0, i, None, orjson.dumps(e))
        plan = plan_batch([record], [decode(record.value)], Snapshot({}, {}, sessions))
        for key, session in plan.writes.items():
            sessions[key] = session
            out.setdefault(key, {})[session.version] = session
    return out


async def mismatches(state: RedisState, expected: dict[str, Session]) -> list[str]:
    """Keys whose stored JSON differs from the oracle's (missing counts as different)."""
    keys = sorted(expected)
    pipe = state.redis.pipeline(transaction=False)
    for key in keys:
        pipe.hget(state.session_key(key), "d")
    blobs = await pipe.execute()
    return [
        k
        for k, blob in zip(keys, blobs, strict=True)
        if blob is None or json_of(blob) != expected[k].model_dump_json().encode()
    ]


async def dump_prefix(redis: Redis, prefix: str) -> dict[bytes, Any]:
    """Every key under ``prefix:`` with its value (hash, string), for byte comparisons."""
    out: dict[bytes, Any] = {}
    async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
        kind = await redis.type(key)
        if kind == b"hash":
            out[key] = await redis.hgetall(key)
        elif kind == b"string":
            out[key] = await redis.get(key)
        else:
            out[key] = (kind, await redis.dump(key))
    return out
