"""Seeded workloads and the oracle that says what every session must end as.

The oracle is the pure planner run over all events in publish order with an
empty snapshot: exactly what a single, never-failing worker would compute.
Workloads here keep each customer's events on one topic (cart events only),
so their order in Kafka equals publish order and the oracle is exact to the
byte; cross-topic races are tested separately, by what must commute.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import orjson
from redis.asyncio import Redis

from schemas.session import Session
from streams.core.decode import decode
from streams.core.fold import DEFAULT_LIMITS, Limits
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
            roll = rng.random()
            if in_cart and roll < 0.15:
                sku = rng.choice(sorted(in_cart))
                evs.append({**base, "type": "cart.item_removed", "payload": {"sku": sku}})
                in_cart.discard(sku)
            elif in_cart and roll < 0.3:
                sku = rng.choice(sorted(in_cart))
                evs.append(
                    {
                        **base,
                        "type": "cart.quantity_set",
                        "payload": {"sku": sku, "quantity": rng.randint(1, 5)},
                    }
                )
            else:
                sku = rng.choice(SKUS)
                evs.append(
                    {
                        **base,
                        "type": "cart.item_added",
                        "payload": {
                            "sku": sku,
                            "quantity": rng.randint(1, 3),
                            "unit_price": "9.99",
                            "currency": "EUR",
                        },
                    }
                )
                in_cart.add(sku)
        streams.append(evs)
    out: list[dict[str, Any]] = []
    while any(streams):
        s = rng.choice([s for s in streams if s])
        out.append(s.pop(0))
    return out


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
