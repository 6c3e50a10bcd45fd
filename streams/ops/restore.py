"""Restore Redis from the session changelog, then fold only the source tail. Thin edge.

1. Erasures are restored from ``session-erasures`` first, as for any rebuild.
2. Each partition's newest watermark is read from that partition of
   ``session-changelog`` (a partition's watermarks cover the source topics'
   same partition); then the topic is streamed to its end (the bounded reader,
   no group) and each key's newest state so far written, replacing an older one
   (``streams/core/changelog.py``): memory holds a sequence number per key, not
   the states. A state an erasure covers (its version at or below the
   erasure's floor for the key) is not restored.
3. States are written as the commit writes them (session hash, alias,
   link set, device sign-ins, version floors, key TTLs, a session's wait for
   a merge across partitions), each partition's applied offsets and
   fingerprints from its watermark (``session-forwards`` among them), the last
   forward applied per origin, and each partition's changelog relay cursor at
   that watermark. A state reaches the changelog only once the forwards its
   commit sent are on ``session-forwards``, so none is lost with Redis.
4. Each source partition is checked against its watermark's fingerprint (the
   log-reset rule of ``streams/core/log_reset.py``): where it is still the
   same log, only the records after the watermark are folded, through the
   workers' planner and commit (a batch per partition, as the workers do),
   and a key whose restored state already holds a record skips it; where the
   log was reset (deleted and created again), the partition starts a new epoch
   and is folded from its beginning. With ``forward`` (the workers'
   ``CONTINUITY_CROSS_PARTITION=forward``) the tail is planned per partition as
   they plan it and takes in ``session-forwards`` too: the forwards published
   after a partition's watermark are applied there, and what the tail hands to
   other partitions waits in the forwards outbox for the workers' relays.

So the time a restore takes grows with the live sessions and the tail, not
with the history. Journeys and the KPI counters are not in the changelog:
journeys start again with the tail, and the KPI counters keep only what the
tail adds (README: Rebuild).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson
from redis.asyncio import Redis, RedisCluster

from schemas.changelog import SessionState, Watermark
from schemas.topics import SESSION_CHANGELOG, SESSION_FORWARDS
from streams.core import session_codec
from streams.core.changelog import Cursor, Ended, Restore, is_control, newest_watermark
from streams.core.crossing import seq_after
from streams.core.erasure import Erasure
from streams.core.expiry import ttl_seconds
from streams.core.fold import DEFAULT_LIMITS, Limits
from streams.core.log_reset import Applied, Verdict, judge
from streams.core.plan import Needs, Snapshot
from streams.kafka.log_probe import probe_logs
from streams.kafka.progress import ReadProgress
from streams.kafka.reader import TopicReader
from streams.kafka.records import from_kafka
from streams.ops.erase import read_erasures
from streams.ops.rebuild import no_dead_letters
from streams.store import keys
from streams.store.keys import Space
from streams.store.state import RedisState
from streams.worker.processor import BatchProcessor


@dataclass(frozen=True)
class Restored:
    """What a restore did: the changelog read, the states written, the tail folded."""

    changelog_records: int
    states: int
    skipped_erased: int
    tail: ReadProgress
    reset_partitions: tuple[str, ...]
    forwards: int = 0
    """Of the tail's records, those of ``session-forwards`` (the rest are source records)."""

    @property
    def sources(self) -> int:
        """The source records of the tail folded."""
        return self.tail.records - self.forwards


class _TailState(RedisState):
    """The workers' state adapter, which also tells the planner what keys already hold."""

    def __init__(self, base: RedisState, reflected: Mapping[str, Mapping[str, int]]) -> None:
        super().__init__(base.redis, base.space, base.effects)
        self._reflected = reflected

    async def load(self, needs: Needs, partition: int | None = None) -> Snapshot:
        snapshot = await super().load(needs, partition)
        held = {k: self._reflected[k] for k in needs.keys if k in self._reflected}
        return replace(snapshot, reflected=held) if held else snapshot


async def read_watermarks(
    bootstrap: str, kafka: dict[str, Any] | None = None
) -> dict[int, Watermark]:
    """Each changelog partition's newest watermark (``seq``), by partition: partition
    N's are on partition N."""
    reader = TopicReader(
        bootstrap, [SESSION_CHANGELOG], missing_ok=True, job="restore", kafka=kafka
    )
    values: dict[int, list[bytes]] = {}
    async with reader:
        async for batch in reader:
            for m in batch:
                if m.value and is_control(dict(m.headers or ())):
                    values.setdefault(m.partition, []).append(m.value)
    marks = {n: newest_watermark(found) for n, found in values.items()}
    return {n: mark for n, mark in marks.items() if mark is not None}


async def restore(
    bootstrap: str,
    state: RedisState,
    topics: Sequence[str],
    batch_max: int = 2000,
    report: Callable[[ReadProgress], None] | None = None,
    kafka: dict[str, Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    forward: bool = False,
) -> Restored:
    """Restore ``state``'s prefix from the changelog, then fold the source tail.

    ``forward``: the workers' ``CONTINUITY_CROSS_PARTITION=forward``: the tail is
    planned per partition as they plan it, ``session-forwards`` included from the
    watermarks on (the forwards in flight when Redis was lost)."""
    erasures = await read_erasures(bootstrap, kafka=kafka)
    await state.restore_erasures(erasures)
    found = Restore(await read_watermarks(bootstrap, kafka))
    writer = StateWriter(state.redis, state.space, erasures, limits, state.effects.compress)
    reader = TopicReader(
        bootstrap, [SESSION_CHANGELOG], missing_ok=True, job="restore", kafka=kafka, report=report
    )
    async with reader:
        async for batch in reader:
            for m in batch:
                key = (m.key or b"").decode()
                item = found.take(key, m.value, dict(m.headers or ()))
                if item is not None:
                    await writer.take(item)
    await writer.flush()
    start = found.start()
    fingerprints = found.fingerprints()
    reset = await _reset_partitions(bootstrap, start, fingerprints, kafka)
    kept = {tp: o for tp, o in start.items() if tp not in reset}
    await _write_positions(state, kept, fingerprints, found)
    await _write_forward_marks(state, found)
    reflected = {
        k: {tp: o for tp, o in held.items() if tp not in reset}
        for k, held in found.reflected().items()
    }
    tail = _TailState(state, reflected)
    # The topic's forwards are the restored deployment's whatever prefix it is
    # restored into (one deployment per Kafka: the changelog is shared the same way).
    processor = BatchProcessor(tail, no_dead_letters, limits, forward=forward, any_sender=True)
    first = {_partition(tp): o + 1 for tp, o in kept.items()}
    forwards = 0
    reader = TopicReader(
        bootstrap,
        [*topics, SESSION_FORWARDS] if forward else topics,
        start=first,
        batch_max=batch_max,
        job="rebuild",
        kafka=kafka,
        report=report,
    )
    async with reader:
        async for batch in reader:
            forwards += sum(1 for m in batch if m.topic == SESSION_FORWARDS)
            await processor.process([from_kafka(m) for m in batch])
    return Restored(
        found.read,
        writer.written,
        writer.skipped,
        reader.progress,
        tuple(sorted(reset)),
        forwards,
    )


class StateWriter:
    """Writes restored states as the commit would, in pipelined batches.

    A key's newer state replaces what an older one wrote (records of one key are
    in ``seq`` order within their partition, so this is rare: a re-sent round).
    A state an erasure covers (its version at or below the erasure's floor for
    the key) is not written.
    """

    def __init__(
        self,
        redis: Redis | RedisCluster,
        space: Space,
        erasures: Sequence[Erasure],
        limits: Limits,
        compress: bool = True,
    ) -> None:
        self.redis, self.space, self.limits, self.compress = redis, space, limits, compress
        self.floors: dict[str, int] = {}
        for erasure in erasures:
            for k, v in (erasure.floors or {}).items():
                self.floors[k] = max(self.floors.get(k, 0), v)
        self.now = int(time.time() * 1000)
        self.pipe = redis.pipeline(transaction=False)
        self.seen: set[str] = set()
        self.written = self.skipped = 0

    async def take(self, item: SessionState | Ended) -> None:
        """Write one key's newest state so far."""
        key = item.key
        if key in self.seen:
            await self.flush()
            await self._forget(key)
        self.seen.add(key)
        if key in self.floors and item.version <= self.floors[key]:
            self.skipped += 1
            return
        if isinstance(item, Ended):
            if item.reason != "erased" and item.version > 0:
                floor = keys.version_floor(self.space, key)
                self.pipe.set(floor, item.version, px=self.limits.session_ttl * 1000)
            return
        self.written += _write_one(
            self.pipe, self.space, item, self.now, self.compress, self.limits
        )
        if len(self.pipe) >= 1000:
            await self.flush()

    async def flush(self) -> None:
        """Send what is queued."""
        if len(self.pipe):
            await self.pipe.execute()

    async def _forget(self, key: str) -> None:
        """Undo what an older state of ``key`` wrote (all in the key's slot)."""
        space = self.space
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(
                keys.session(space, key),
                keys.alias(space, key),
                keys.links(space, key),
                keys.devices(space, key),
                keys.version_floor(space, key),
            )
            pipe.zrem(keys.changelog_expiry(space, space.partition(key)), key)
            pipe.hdel(keys.waiting(space, space.partition(key)), key)
            await pipe.execute()


def _write_one(
    pipe: Any, space: Space, item: SessionState, now: int, compress: bool, limits: Limits
) -> int:
    xs, xa, xd = item.expires_at_ms
    # The key's own partition indexes its expiry: its sweep publishes the tombstone.
    expiry = keys.changelog_expiry(space, space.partition(item.key))
    written = 0
    if item.session is not None and (xs < 0 or xs > now):
        name = keys.session(space, item.key)
        blob = session_codec.encode(item.session, compress)
        pipe.hset(name, mapping={"v": item.version, "d": blob})
        if xs > 0:
            pipe.pexpireat(name, xs)
            pipe.zadd(expiry, {item.key: xs})
            # As the commit keeps it: the key's next session goes on from this version
            # for one more TTL after Redis forgot this one.
            ttl = ttl_seconds(item.session, limits.guest_ttl, limits.session_ttl) * 1000
            pipe.set(keys.version_floor(space, item.key), item.version, pxat=xs + ttl)
        written = 1
    elif item.session is None and item.merged_into is None and item.version > 0:
        pipe.set(keys.version_floor(space, item.key), item.version)
    if item.merged_into is not None and (xa < 0 or xa > now):
        name = keys.alias(space, item.key)
        pipe.set(name, item.merged_into)
        if xa > 0:
            pipe.pexpireat(name, xa)
            pipe.zadd(expiry, {item.key: xa}, gt=True)
        written = 1
    if item.links and (xs < 0 or xs > now):
        # The link set lives and ends with its customer's session.
        name = keys.links(space, item.key)
        pipe.sadd(name, *item.links)
        if xs > 0:
            pipe.pexpireat(name, xs)
        written = 1
    if item.waiting is not None:
        # A wait for a merge across partitions: the merge, on session-forwards, ends it.
        waits = keys.waiting(space, space.partition(item.key))
        pipe.hset(waits, item.key, orjson.dumps(item.waiting))
        written = 1
    if item.devices and (xd < 0 or xd > now):
        name = keys.devices(space, item.key)
        pipe.zadd(name, {c: ms for c, ms in item.devices.items()})
        if xd > 0:
            pipe.pexpireat(name, xd)
            pipe.zadd(expiry, {item.key: xd}, gt=True)
        written = 1
    return written


async def _write_positions(
    state: RedisState, kept: Mapping[str, int], fingerprints: Mapping[str, str], found: Restore
) -> None:
    """Each partition's applied offsets and fingerprints from its watermark, and its
    changelog relay's cursor there (one transaction per partition: one slot each)."""
    space = state.space
    for n in space.all_partitions():
        mine = {tp: o for tp, o in kept.items() if _partition(tp)[1] == n}
        mark = found.watermarks.get(n)
        cursor = Cursor(
            mark.seq if mark else "0-0",
            mine,
            {tp: fingerprints[tp] for tp in mine if tp in fingerprints},
        )
        async with state.redis.pipeline(transaction=True) as pipe:
            if mine:
                offsets: dict[Any, Any] = dict(mine)
                pipe.hset(keys.offsets(space, n), mapping=offsets)
            if cursor.fingerprints:
                prints: dict[Any, Any] = dict(cursor.fingerprints)
                pipe.hset(keys.fingerprints(space, n), mapping=prints)
            pipe.set(keys.changelog_cursor(space, n), cursor.dumps())
            await pipe.execute()


async def _write_forward_marks(state: RedisState, found: Restore) -> None:
    """Each partition's last forward applied per origin, from its watermark; and each
    origin's forwards stream made to go on after the ids any partition has applied,
    so the first forward written after the restore is never taken for a re-send."""
    space, marks = state.space, found.forwarded()
    newest: dict[int, str] = {}
    for seen in marks.values():
        for origin, seq in seen.items():
            if seq_after(seq, newest.get(int(origin))):
                newest[int(origin)] = seq
    for n in space.all_partitions():
        async with state.redis.pipeline(transaction=True) as pipe:
            if marks.get(n):
                applied: dict[Any, Any] = dict(marks[n])
                pipe.hset(keys.forwards_seen(space, n), mapping=applied)
            if n in newest:
                # An entry at that id, removed at once, leaves the stream's last id
                # there; the relay's cursor with it (nothing before it is to send).
                stream, at = keys.forwards(space, n), newest[n]
                pipe.xadd(stream, {"p": "-1"}, id=at)
                pipe.xdel(stream, at)
                pipe.set(keys.forwards_cursor(space, n), at)
            if len(pipe):
                await pipe.execute()


async def _reset_partitions(
    bootstrap: str,
    start: Mapping[str, int],
    fingerprints: Mapping[str, str],
    kafka: dict[str, Any] | None,
) -> set[str]:
    """Partitions whose log is no longer the one the watermark counts in."""
    applied = {_partition(tp): Applied(o, fingerprints.get(tp)) for tp, o in start.items()}
    probes = await probe_logs(bootstrap, applied, kafka=kafka)
    return {
        f"{t}:{p}"
        for (t, p), probe in probes.items()
        if judge(applied[(t, p)], probe) is Verdict.RESET
    }


def _partition(tp: str) -> tuple[str, int]:
    topic, _, part = tp.rpartition(":")
    return topic, int(part)
