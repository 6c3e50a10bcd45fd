"""Helpers for the pure tests: contract-valid events and an in-memory stand-in for Redis.

``MemoryState`` applies a ``Plan`` exactly as ``streams/store/lua/commit.lua`` does
(writes, deletes, aliases, applied offsets and their fingerprints, journeys, KPIs,
the outbox, device sign-ins), so the planner's guarantees can be
checked by the thousand without any process. The Lua script itself is proven
against a real redis-server in ``tests/store/test_state.py`` and the e2e tests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

from schemas.events import EVENT_ADAPTER, AnyEvent
from schemas.forward import JourneyItem
from schemas.session import Session
from streams.core.crossing import Pending, Placement
from streams.core.decode import decode
from streams.core.erasure import Erasure
from streams.core.fold import DEFAULT_LIMITS, Limits, Rejected
from streams.core.outgoing import prepare_dict
from streams.core.placement import partition_of
from streams.core.plan import Plan, Record, Snapshot, plan_batch
from streams.core.shared_device import erased as erased_name
from streams.core.shared_device import linked
from tests.support.events import event


def ev(
    type_: str,
    payload: dict[str, Any] | None = None,
    *,
    customer: str | None = None,
    anon: str | None = None,
    channel: str = "web",
    at: str = "2026-11-24T10:00:00Z",
    event_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """``tests/support/events.py``'s ``event``, deterministic: a fixed time (pure tests
    compare event times with each other, never with a clock) and an id derived from
    the event, so a property test draws the same examples every run."""
    return event(
        type_,
        payload,
        customer=customer,
        anon=anon,
        channel=channel,
        at=at,
        event_id=event_id or f"e-{type_}-{at}-{customer or anon}",
        **extra,
    )


def model(event: dict[str, Any]) -> AnyEvent:
    """The validated model of an event dict (raises if it breaks the contract)."""
    parsed: AnyEvent = EVENT_ADAPTER.validate_python(event)
    return parsed


def add(sku: str, quantity: int = 1, price: str = "10.00", currency: str = "EUR") -> dict[str, Any]:
    return {"sku": sku, "quantity": quantity, "unit_price": price, "currency": currency}


def records(
    events: Sequence[dict[str, Any] | bytes], topic: str = "cart-events", partition: int = 0
) -> list[Record]:
    """Records at offsets 0.. of one partition, in the given order."""
    return [
        Record(topic, partition, i, None, e if isinstance(e, bytes) else orjson.dumps(e))
        for i, e in enumerate(events)
    ]


def routed(events: Sequence[dict[str, Any]], partitions: int) -> list[Record]:
    """The records a producer makes of ``events``, in the order sent: topic by type, key
    the customer key, partition by that key; offsets 0.. per partition of each topic.

    The source topics have the same partition count, so all of a customer's events
    (cart, browse, checkout) land on one partition number; a guest's land on the
    guest id's, which may or may not be the customer's it signs in to."""
    ends: Counter[tuple[str, int]] = Counter()
    out = []
    for e in events:
        addressed = prepare_dict(e)
        partition = partition_of(addressed.key, partitions)
        offset = ends[addressed.topic, partition]
        ends[addressed.topic, partition] += 1
        out.append(Record(addressed.topic, partition, offset, addressed.key, addressed.value))
    return out


@dataclass
class MemoryState:
    """What Redis holds, applied plan by plan as ``commit.lua`` would."""

    sessions: dict[str, Session] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)
    erasures: dict[str, Erasure] = field(default_factory=dict)
    links: dict[str, set[str]] = field(default_factory=dict)  # customer -> guests ever linked
    # key -> {entry json: score}, the KPI hash, the outbox: as commit.lua keeps them
    journeys: dict[str, dict[bytes, int]] = field(default_factory=dict)
    kpis: Counter[str] = field(default_factory=Counter)
    outbox: list[bytes] = field(default_factory=list)
    devices: dict[str, dict[str, int]] = field(default_factory=dict)
    # The fold's definition the plans are made with (the TTLs of streams/core/expiry.py).
    limits: Limits = DEFAULT_LIMITS
    # key -> version floor (``P:vf:{key}``), read only for a key with no session
    floors: dict[str, int] = field(default_factory=dict)
    # tp -> fingerprint of the record at the applied offset, as commit.lua keeps them
    fingerprints: dict[str, str] = field(default_factory=dict)
    # Sessions waiting for a merge from another partition (``cont:{pN}:w:<key>``), and
    # (destination, origin partition) -> the last forward applied (``cont:{pN}:fs``).
    pending: dict[str, Pending] = field(default_factory=dict)
    forwarded: dict[tuple[int, int], str] = field(default_factory=dict)

    def snapshot(self, place: Placement | None = None) -> Snapshot:
        """What a load reads: everything, or (``place``) only the keys of one partition,
        as a script on a Redis Cluster slot sees them."""
        here = (lambda _: True) if place is None else place.here
        return Snapshot(
            {a: t for a, t in self.aliases.items() if here(a)},
            dict(self.offsets),
            {k: s for k, s in self.sessions.items() if here(k)},
            {i: e for i, e in self.erasures.items() if here(i)},
            devices={anon: dict(links) for anon, links in self.devices.items() if here(anon)},
            floors={k: v for k, v in self.floors.items() if k not in self.sessions and here(k)},
            pending={k: p for k, p in self.pending.items() if here(k)},
            links={c: frozenset(g) for c, g in self.links.items() if here(c)},
            journeys={
                k: [JourneyItem(score_ms=v, member=m.decode()) for m, v in sorted(j.items())]
                for k, j in self.journeys.items()
                if here(k)
            },
            forwarded={
                o: seq
                for (d, o), seq in self.forwarded.items()
                if place is None or d == place.partition
            },
        )

    def erase(self, customer_id: str, ends: dict[str, int], at_ms: int = 1) -> Erasure:
        """Erase a customer as ``streams/store/lua/erase.lua`` does, linked guests found here."""
        guests = set(self.links.get(customer_id, set()))
        if customer_id in self.sessions:
            guests |= set(self.sessions[customer_id].anonymous_ids)
        ids = [customer_id, *sorted(guests - {customer_id})]
        upto = {tp: max(end, self.offsets.get(tp, -1) + 1) for tp, end in ends.items()}
        floors = {i: self.sessions[i].version for i in ids if i in self.sessions}
        erasure = Erasure(customer_id, tuple(ids), at_ms, upto, floors)
        for i in ids:
            self.erasures[i] = erasure
            self.sessions.pop(i, None)
            self.floors.pop(i, None)  # erase.lua moves it into the erasure record
            self.journeys.pop(i, None)
            signed = self.devices.get(i, {}).pop(customer_id, None)
            if signed is not None:
                self.devices[i] = linked(self.devices[i], erased_name(at_ms), signed)
            if self.aliases.get(i) in ids:
                del self.aliases[i]
        self.links.pop(customer_id, None)
        return erasure

    def apply(self, plan: Plan, place: Placement | None = None) -> None:
        """Commit ``plan`` (of partition ``place``, whose keys alone it may change)."""
        here = (lambda _: True) if place is None else place.here
        for key, version in plan.expected_versions.items():
            assert here(key), f"a plan of {place} expects {key} of another partition"
            current = self.sessions.get(key)
            assert (current.version if current else 0) == version, "plan built on a stale read"
        # As commit.lua: what ended sessions leave behind goes first (their journeys,
        # and the aliases of the guests linked to them, of this partition; another
        # partition's hear of it by a forward), then deletes before writes.
        for key in plan.cleared:
            self.journeys.pop(key, None)
            ended = self.sessions.get(key)
            for anon in self.links.pop(key, set()):
                # A guest the batch signs in elsewhere is no longer this session's.
                moved = plan.aliases.get(anon, key) != key
                if here(anon) and self.aliases.get(anon) == key and not moved:
                    del self.aliases[anon]
                    if ended is not None and anon not in self.sessions:
                        self.floors[anon] = max(self.floors.get(anon, 0), ended.version)
        # As commit.lua: deletes (merged guests) before writes. A guest whose journey
        # left with a forward, or merged into another partition's customer, takes none.
        for key, into in plan.deletes.items():
            self.sessions.pop(key, None)
            self.floors.pop(key, None)
            moved = self.journeys.pop(key, {})
            if key in plan.handed or not here(into):
                continue
            for member, score in moved.items():
                mine = self.journeys.setdefault(into, {})
                mine[member] = min(score, mine.get(member, score))
        self.sessions.update(plan.writes)
        for e in plan.journey:
            self.journeys.setdefault(e.key, {})[e.member] = e.score_ms
        self.kpis.update(plan.kpis.fields())
        self.outbox.extend(plan.notifications)
        for anon, customer, at_ms in plan.device_links:
            self.devices[anon] = linked(self.devices.get(anon, {}), customer, at_ms)
        self.aliases.update(plan.aliases)
        for anon in plan.alias_deletes:
            self.aliases.pop(anon, None)
        for anon, target in plan.links:
            self.links.setdefault(target, set()).add(anon)
        self.offsets.update(plan.offsets)
        for key, version in plan.floors.items():
            self.floors[key] = max(self.floors.get(key, 0), version)
        self.floors.update({k: s.version for k, s in plan.writes.items()})
        self.fingerprints.update(plan.fingerprints)
        for anon, customer, name in plan.device_renames:
            links = self.devices.get(anon, {})
            if customer in links:
                at_ms = links.pop(customer)
                self.devices[anon] = linked(links, name, at_ms)
        for key, waiting in plan.pending.items():
            if waiting is None:
                self.pending.pop(key, None)
            else:
                self.pending[key] = waiting
        for origin, seq in plan.forward_marks.items():
            assert place is not None
            self.forwarded[place.partition, origin] = seq

    def process(self, batch: Sequence[Record], limits: Limits | None = None) -> Plan:
        """Decode, plan against the current state and commit: one worker batch."""
        decoded: list[AnyEvent | Rejected] = [decode(r.value) for r in batch]
        plan = plan_batch(batch, decoded, self.snapshot(), limits or self.limits)
        self.apply(plan)
        return plan

    def contents(self) -> dict[str, Any]:
        """Everything this store holds, by name: what "the same state" compares."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def dump(self) -> dict[str, bytes]:
        """Every session's stored bytes, for byte-for-byte comparisons."""
        return {k: s.model_dump_json().encode() for k, s in sorted(self.sessions.items())}
