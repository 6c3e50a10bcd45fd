"""Redis memory over months of traffic: does it level off at the TTL horizon?

Sessions expire (``streams/core/expiry.py``): on event time the fold ends a
session idle longer than its TTL, and ``commit.lua`` lets Redis drop its keys
at ``max(end, commit time) + grace`` by Redis's own clock. So Redis should
hold what the last TTL-plus-grace of traffic left, not everything ever seen.

Months cannot pass in a benchmark, so time is compressed: **one simulated day
lasts ``day_seconds`` of wall time, and event time is Redis's clock** (events
are stamped with the simulated instant, read from Redis's ``TIME`` at the
start and advanced with the monotonic clock). Every duration the fold and the
commit know is scaled the same way: the guest and session TTLs, the grace, the
journey's max age and the shared-device window of ``d`` days become
``d * day_seconds`` seconds. Fold, commit and Redis's expiry then see one
clock, as in production, only faster; what a day of traffic costs does not
depend on how long the day lasts. The run is paced: a batch is committed once
Redis's clock has reached its newest event (never before it happened), and
the lag behind event time is reported; it must stay well below the grace,
or sessions would be forgotten by Redis before the fold ends them.

Each batch (at most 500 events, an eighth of a day) goes through the real
commit path, per partition as the workers do: ``RedisState.load``, the
workers' pure planner (``plan_batch``), ``RedisState.commit``
(``commit.lua``), against a fresh ``redis-server`` started as ``continuity
dev`` starts it. After every batch the changelog
relay's Redis side runs as a worker's would (``ChangelogOutbox.sweep`` on
Redis's clock, turning the keys Redis forgot into tombstones, then
``publish_round``, per partition), publishing into a counter instead of
Kafka: each partition's changelog outbox ``cont:{pN}:cl`` and expiry index
``cont:{pN}:ex`` hold what they would in production. Not exercised:
abandonment timers and the notification outbox (its relay does not run), so
neither is written. At the end of every simulated day the bench records Redis's
``used_memory``, ``DBSIZE``, the sessions alive by event time (from the
plans' ends) and the bytes per live session; every ``census_every`` days it
counts the keys by family (``SCAN``, which never returns an expired key).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka.partitioner import murmur2
from redis.asyncio import Redis

from bench import lifecycle_report
from bench.lifecycle_traffic import Shoppers, Traffic
from schemas.topics import topic_for
from streams.core.decode import decode
from streams.core.fold import Limits
from streams.core.journey import JourneyLimits
from streams.core.plan import Kind, Plan, Record, needs, plan_batch
from streams.dev import loopback
from streams.store.changelog import ChangelogOutbox, every_partition
from streams.store.keys import Space
from streams.store.state import Effects, RedisState
from streams.worker.changelog_relay import publish_round

Say = Callable[[str], None]
DAY = 86400
PARTITIONS = 8
BATCH = 500
SLICES_PER_DAY = 8
PREFIX = "cont"
SPACE = Space(PREFIX, PARTITIONS)


@dataclass(frozen=True)
class LifecycleSpec:
    """The run: its length, the time compression, the TTLs in simulated days, the traffic."""

    days: int = 200
    day_seconds: int = 1
    guest_ttl_days: int = 30
    session_ttl_days: int = 90
    grace_days: int = 7
    journey_days: int = 90
    shared_device_days: int = 30
    census_every: int = 10
    traffic: Traffic = field(default_factory=Traffic)

    def limits(self) -> Limits:
        """The fold's limits with every duration scaled to the compressed day."""
        return Limits(
            guest_ttl=self.guest_ttl_days * self.day_seconds,
            session_ttl=self.session_ttl_days * self.day_seconds,
            shared_device_window=self.shared_device_days * self.day_seconds,
        )

    def effects(self) -> Effects:
        """What the commit writes besides the state, scaled likewise (no timers, no outbox)."""
        return Effects(
            abandon_after=None,
            journey=JourneyLimits(max_age_seconds=self.journey_days * self.day_seconds),
            notify=False,
            expiry_grace=self.grace_days * self.day_seconds,
        )

    def mapping(self) -> str:
        """The time compression in words, for the output."""
        s = self.day_seconds
        return (
            f"1 simulated day = {s} s of Redis's clock; guest TTL {self.guest_ttl_days} d = "
            f"{self.guest_ttl_days * s} s, session TTL {self.session_ttl_days} d = "
            f"{self.session_ttl_days * s} s, grace {self.grace_days} d = {self.grace_days * s} s, "
            f"journey max age {self.journey_days} d, shared-device window "
            f"{self.shared_device_days} d"
        )


@dataclass
class _Clock:
    """Redis's clock in ms, read once and advanced with the monotonic clock."""

    redis_ms: int
    mono: float
    idle_s: float = 0.0
    """Time spent waiting for the clock: the rest of the run was work."""

    def now_ms(self) -> int:
        return self.redis_ms + int((time.monotonic() - self.mono) * 1000)

    async def until(self, at_ms: int) -> None:
        wait = (at_ms - self.now_ms()) / 1000
        if wait > 0:
            self.idle_s += wait
            await asyncio.sleep(wait)


@dataclass
class _Sink:
    """Where the changelog relay publishes here: counted, then dropped."""

    records: int = 0
    tombstones: int = 0
    size: int = 0

    async def __call__(
        self,
        key: str,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        partition: int,
    ) -> Awaitable[object]:
        self.records += 1
        self.tombstones += value is None
        self.size += len(key) + len(value or b"") + sum(len(k) + len(v) for k, v in headers)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def _commit(
    state: RedisState, records: list[Record], limits: Limits, active_at: float
) -> list[Plan]:
    """Load, plan and commit a batch as the workers do: each partition's records on
    their own, one script in that partition's slot."""
    groups: dict[int, list[Record]] = {}
    for r in records:
        groups.setdefault(r.partition, []).append(r)
    plans = []
    for partition, group in sorted(groups.items()):
        decoded = [decode(r.value) for r in group]
        snapshot = await state.load(needs(group, decoded), partition)
        plan = plan_batch(group, decoded, snapshot, limits)
        conflict = await state.commit(plan, active_at=active_at, partition=partition)
        if conflict is not None:  # one writer: nothing can change under it
            raise RuntimeError(f"commit refused: {conflict}")
        plans.append(plan)
    return plans


async def _relay(outboxes: list[ChangelogOutbox], sink: _Sink, now_ms: int) -> None:
    """One pass of the changelog relay over every partition: tombstones for what Redis
    forgot, then publish all."""
    for outbox in outboxes:
        if not await outbox.hold():
            raise RuntimeError(f"partition {outbox.partition}'s changelog lease is held")
        while await outbox.sweep(now_ms, BATCH) == BATCH:
            pass
        while await publish_round(outbox, sink, BATCH):
            pass


async def run(spec: LifecycleSpec, log_dir: Path, say: Say) -> dict[str, Any]:
    """Fold ``spec.days`` simulated days into a fresh Redis; the per-day figures and a census."""
    data_dir = Path(tempfile.mkdtemp(prefix="continuity-bench-lifecycle-"))
    await asyncio.to_thread(log_dir.mkdir, parents=True, exist_ok=True)
    server = loopback.start_redis(data_dir, log_dir)
    redis = Redis.from_url(f"redis://127.0.0.1:{server.port}/0")
    try:
        return await _run(spec, redis, say)
    finally:
        await redis.aclose()
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def _run(spec: LifecycleSpec, redis: Redis, say: Say) -> dict[str, Any]:
    seconds, micros = await redis.time()
    clock = _Clock(int(seconds) * 1000 + int(micros) // 1000, time.monotonic())
    baseline = int((await redis.info("memory"))["used_memory"])
    state = RedisState(redis, SPACE, spec.effects())
    outboxes, sink = every_partition(redis, SPACE), _Sink()
    limits = spec.limits()
    day_ms = spec.day_seconds * 1000
    t0 = clock.now_ms() + 200

    def stamp(days: float) -> str:
        return _iso(t0 + round(days * day_ms))

    shoppers = Shoppers(spec.traffic)
    offsets: Counter[str] = Counter()
    ends: dict[str, int] = {}  # session key -> its end (event time), from the plans
    ever: set[str] = set()
    outcomes: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    censuses: list[dict[str, Any]] = []
    events_total, lag_max_ms, started = 0, 0, time.monotonic()
    say(f"  lifecycle: {spec.mapping()}; {spec.days} days")
    for day in range(spec.days):
        events = shoppers.day(day, stamp)
        events_total += len(events)
        for batch in _batches(events, t0, day_ms):
            records = [_record(e, offsets) for e in batch]
            newest = max(_ms(e["occurred_at"]) for e in batch)
            await clock.until(newest)
            lag_max_ms = max(lag_max_ms, clock.now_ms() - newest)
            for plan in await _commit(state, records, limits, clock.now_ms() / 1000):
                outcomes.update(o.kind.value for o in plan.outcomes)
                for key in plan.deletes:
                    ends.pop(key, None)
                for key, (end, _) in plan.lifetimes.items():
                    ends[key] = end
                    ever.add(key)
            await _relay(outboxes, sink, clock.now_ms())
        day_end = t0 + (day + 1) * day_ms
        await clock.until(day_end)
        memory = int((await redis.info("memory"))["used_memory"])
        live = sum(1 for end in ends.values() if end >= day_end)
        rows.append(
            {
                "day": day + 1,
                "events": events_total,
                "sessions_ever": len(ever),
                "live_sessions": live,
                "keys": int(await redis.dbsize()),
                "used_memory": memory,
                "bytes_per_live_session": round((memory - baseline) / live) if live else None,
                "lag_max_s": round(lag_max_ms / 1000, 2),
            }
        )
        if (day + 1) % spec.census_every == 0 or day + 1 == spec.days:
            censuses.append({"day": day + 1, **await census(redis)})
            say("    " + lifecycle_report.line(rows[-1], censuses[-1]))
    applied = outcomes.get(Kind.APPLIED.value, 0)
    by_family = await family_memory(redis)
    return {
        "spec": {**spec.__dict__, "traffic": spec.traffic.__dict__},
        "mapping": spec.mapping(),
        "baseline_used_memory": baseline,
        "days": rows,
        "census": censuses,
        "mb_by_family": by_family,
        "changelog": {
            "records": sink.records,
            "tombstones": sink.tombstones,
            "mb": round(sink.size / 2**20, 1),
            "outbox_entries_left": sum([await o.pending() for o in outboxes]),
        },
        "outcomes": dict(outcomes),
        "applied": applied,
        "seconds": round(time.monotonic() - started, 1),
        "busy_share": round(1 - clock.idle_s / max(time.monotonic() - started, 1e-9), 2),
    }


async def family_memory(redis: Redis, sample: int = 300) -> dict[str, float]:
    """Estimated MB per key family: ``MEMORY USAGE`` of up to ``sample`` keys of each
    (every element counted), times the family's key count."""
    names: dict[str, list[bytes]] = {}
    counts: Counter[str] = Counter()
    async for name in redis.scan_iter(match=f"{PREFIX}:*", count=2000):
        family = _family(name)
        counts[family] += 1
        if len(names.setdefault(family, [])) < sample:
            names[family].append(name)
    out = {}
    for family, some in names.items():
        pipe = redis.pipeline(transaction=False)
        for name in some:
            pipe.memory_usage(name, samples=0)
        sizes = [s for s in await pipe.execute() if s is not None]
        if sizes:
            out[family] = round(sum(sizes) / len(sizes) * counts[family] / 2**20, 2)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


async def census(redis: Redis) -> dict[str, int]:
    """Keys by family (``cont:s``, ``cont:vf``, ...); SCAN skips keys already expired."""
    families: Counter[str] = Counter()
    async for name in redis.scan_iter(match=f"{PREFIX}:*", count=2000):
        families[_family(name)] += 1
    return dict(sorted(families.items()))


def _family(name: bytes | str) -> str:
    """A key's family as the census names it: ``s`` of ``cont:{p3}:s:c-1``, ``hb`` of
    the untagged ``cont:hb``."""
    parts = (name.decode() if isinstance(name, bytes) else str(name)).split(":")
    return parts[2] if parts[1].startswith("{p") else parts[1]


def _batches(events: list[dict[str, Any]], t0: int, day_ms: int) -> list[list[dict[str, Any]]]:
    """The day's events in batches of at most ``BATCH``, none spanning two slices of the day."""
    out: list[list[dict[str, Any]]] = []
    slice_ms = day_ms / SLICES_PER_DAY
    current: list[dict[str, Any]] = []
    current_slice = None
    for event in events:
        n = int((_ms(event["occurred_at"]) - t0) // slice_ms)
        if current and (n != current_slice or len(current) >= BATCH):
            out.append(current)
            current = []
        current.append(event)
        current_slice = n
    if current:
        out.append(current)
    return out


def _record(event: dict[str, Any], offsets: Counter[str]) -> Record:
    """The record a producer would have written: topic by type, partition by key (murmur2)."""
    key = (event.get("customer_id") or event["anonymous_id"]).encode()
    topic = topic_for(event["type"])
    partition = (murmur2(key) & 0x7FFFFFFF) % PARTITIONS
    tp = f"{topic}:{partition}"
    offset = offsets[tp]
    offsets[tp] += 1
    return Record(topic, partition, offset, key, orjson.dumps(event))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _ms(iso: str) -> int:
    # Integer arithmetic: a float timestamp can lose the millisecond.
    delta = datetime.fromisoformat(iso.replace("Z", "+00:00")) - _EPOCH
    return (delta.days * DAY + delta.seconds) * 1000 + delta.microseconds // 1000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
