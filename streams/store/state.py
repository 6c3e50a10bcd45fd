"""Session state in Redis: one-round-trip reads and atomic commits.

The key layout (``P`` is ``CONTINUITY_REDIS_PREFIX``, default ``cont``) is
declared once, with every key's type, writers, readers and lifetime, in
``streams/store/keys.py`` (rendered as ``docs/redis-layout.md``); this module
names keys only through it, and loads its scripts through ``scripts.py``.

The commit script checks every version, alias and offset the plan was computed
from and writes nothing if one changed, so concurrent workers (a rebalance,
a guest and a customer on different partitions) can never interleave writes.
A batch is loaded and committed per partition: the script's own keys (applied
offsets, outbox, changelog, KPIs) are the partition's, in its slot. A plan made
for one partition (``forward`` mode: ``docs/merge-across-partitions.md``)
touches only that partition's keys, so its script runs in one Redis Cluster
slot; a plan made over every key (``direct``, the rebuild) may touch any key,
which only a single primary runs. Erasures and log resets run one script per
partition too (``erase``, ``reset_partition``; their docstrings say why that
is safe), so they run on a cluster as on one primary.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import orjson
from redis.asyncio import Redis, RedisCluster

from schemas.forward import JourneyItem
from schemas.session import Session
from streams.core import session_codec
from streams.core.abandonment import timers
from streams.core.activity import BUCKET_TTL_SECONDS, bucket
from streams.core.crossing import Pending
from streams.core.erasure import Erasure, latest
from streams.core.erasure import loads as load_erasure
from streams.core.journey import DEFAULT_JOURNEY, JourneyLimits
from streams.core.log_reset import Applied
from streams.core.notice import notice, oldest_appends
from streams.core.plan import Needs, Plan, Snapshot
from streams.store import keys
from streams.store.keys import Space
from streams.store.partitioned import Fill, ScriptCall, run_scripts, run_transactions
from streams.store.scripts import Arg, Row, commit_args, register

# Rounds of an erasure's look and step (``RedisState.erase``) before it gives up: a
# round is lost only to a commit changing an erased id between the two.
ERASE_ROUNDS = 5


@dataclass(frozen=True)
class Effects:
    """What a commit writes besides the state: the rebuild's differ from the workers'."""

    # Seconds without activity before a cart counts as abandoned; None sets no timers.
    abandon_after: float | None = None
    journey: JourneyLimits = DEFAULT_JOURNEY
    # Notifications into the outbox: off for a rebuild, whose events were announced live.
    notify: bool = True
    # Sessions stored zlib-compressed (streams/core/session_codec.py); readers take both forms.
    compress: bool = True
    # Seconds Redis keeps what a session wrote past its end (streams/core/expiry.py)
    # or the commit, whichever is later; None sets no key TTLs.
    expiry_grace: int | None = 7 * 86400
    # Every committed state into the changelog stream ``P:cl``, relayed to the
    # compacted ``session-changelog`` topic (streams/worker/changelog_relay.py).
    changelog: bool = True


@dataclass(frozen=True)
class Conflict:
    """Why a commit was refused: what changed since the snapshot."""

    what: str
    name: str


class RedisState:
    """Async adapter between the planner and Redis. Holds no state of its own."""

    def __init__(
        self, redis: Redis | RedisCluster, space: Space, effects: Effects | None = None
    ) -> None:
        self.redis = redis
        self.space = space
        self.prefix = space.prefix
        self.effects = effects or Effects()
        self._load = register(redis, "load.lua")
        self._commit = register(redis, "commit.lua")
        self._reset = register(redis, "reset.lua")
        self._erase = register(redis, "erase.lua")

    def session_key(self, key: str) -> str:
        """The session hash of ``key`` in this space."""
        return keys.session(self.space, key)

    def alias_key(self, anonymous_id: str) -> str:
        """The alias of a merged guest in this space."""
        return keys.alias(self.space, anonymous_id)

    def channel(self, key: str) -> str:
        """The sharded channel that announces every committed version of ``key``."""
        return keys.updates(self.space, self.space.partition(key))

    async def load(self, needs: Needs, partition: int | None = None) -> Snapshot:
        """Read the aliases, offsets and sessions one partition's records need, in one
        round trip (``partition``: the records', found from ``needs`` if not given)."""
        tps = sorted(needs.partitions)
        part = _partition(tps) if partition is None else partition
        args: list[Any] = [self.prefix, self.space.partitions, part, "1" if needs.local else "0"]
        for group in (
            sorted(needs.anonymous_ids), sorted(needs.keys), tps, sorted(needs.journeys),
            sorted(needs.links),
        ):  # fmt: skip
            args.append(len(group))
            args.extend(group)
        # Applied positions belong to the state, not to a consumer group: a second
        # group (a blue/green deploy, a rewound group) folding into the same state
        # must skip what the state already holds.
        reply = await self._load(keys=[keys.offsets(self.space, part)], args=args)
        (
            aliases_raw, offsets_raw, sessions_raw, erasures_raw, epoch, devices_raw, floors_raw,
            waiting_raw, journeys_raw, links_raw, marks_raw,
        ) = reply  # fmt: skip
        aliases = {
            _s(aliases_raw[i]): _s(aliases_raw[i + 1]) for i in range(0, len(aliases_raw), 2)
        }
        offsets = {tp: int(v) for tp, v in zip(tps, offsets_raw, strict=True) if v is not None}
        sessions = {
            _s(sessions_raw[i]): session_codec.decode(sessions_raw[i + 1])
            for i in range(0, len(sessions_raw), 2)
        }
        erasures = {
            _s(erasures_raw[i]): load_erasure(erasures_raw[i + 1])
            for i in range(0, len(erasures_raw), 2)
        }
        floors = {_s(floors_raw[i]): int(floors_raw[i + 1]) for i in range(0, len(floors_raw), 2)}
        return Snapshot(
            aliases,
            offsets,
            sessions,
            erasures,
            int(epoch),
            _devices(devices_raw),
            floors,
            pending={
                _s(waiting_raw[i]): Pending.loads(waiting_raw[i + 1])
                for i in range(0, len(waiting_raw), 2)
            },
            links={k: frozenset(_s(m) for m in v) for k, v in _counted(links_raw).items()},
            journeys={
                k: [
                    JourneyItem(score_ms=int(float(v[j + 1])), member=_s(v[j]))
                    for j in range(0, len(v), 2)
                ]
                for k, v in _counted(journeys_raw, 2).items()
            },
            forwarded={
                int(marks_raw[i]): _s(marks_raw[i + 1]) for i in range(0, len(marks_raw), 2)
            },
        )

    async def commit(
        self, plan: Plan, active_at: float | None = None, partition: int | None = None
    ) -> Conflict | None:
        """Write one partition's plan if nothing it read changed; return the conflict otherwise.

        ``partition`` is its records' (found from the plan's offsets if not given).
        With ``active_at`` (Unix seconds), the written keys are also counted in
        that time bucket's sessions-active HyperLogLog (``streams/core/activity.py``).
        """
        part = (
            _partition([*plan.offsets, *plan.expected_offsets]) if partition is None else partition
        )
        head = (
            self.prefix, self.space.partitions, part, plan.expected_erasure_epoch,
            "1" if plan.local else "0",
        )  # fmt: skip
        compress = self.effects.compress
        appended = oldest_appends(plan.outcomes)
        rows: dict[str, list[Row]] = {
            "expected_versions": list(plan.expected_versions.items()),
            "expected_aliases": [(k, v or "") for k, v in plan.expected_aliases.items()],
            "expected_offsets": list(plan.expected_offsets.items()),
            "writes": [
                (
                    k,
                    s.version,
                    session_codec.encode(s, compress),
                    notice(k, s.version, appended_ms=appended.get(k)),
                )
                for k, s in plan.writes.items()
            ],
            # The notice names where the guest is now: a later merge in the batch may
            # have moved it on from the customer its committed state went to.
            # A guest whose journey left with a forward, or merged into another
            # partition's customer, has its journey deleted, not moved ('' into).
            "deletes": [
                (
                    k,
                    ""
                    if k in plan.handed or (plan.local and self.space.partition(c) != part)
                    else c,
                    notice(k, None, merged_into=plan.aliases.get(k, c)),
                )
                for k, c in plan.deletes.items()
            ],
            "expired": [(k,) for k in plan.cleared],
            "alias_writes": list(plan.aliases.items()),
            "alias_deletes": [(anon,) for anon in sorted(plan.alias_deletes)],
            "links": sorted(plan.links),
            "offset_writes": [
                (tp, o, plan.fingerprints.get(tp, "")) for tp, o in plan.offsets.items()
            ],
            "activity": [],
            "multichannel": [],
        }
        if active_at is not None:
            number = bucket(active_at)
            rows["activity"] = [(number, BUCKET_TTL_SECONDS)]
            rows["multichannel"] = [
                (number, BUCKET_TTL_SECONDS, k)
                for k, s in plan.writes.items()
                if len(s.channels) > 1
            ]
        self._effect_rows(rows, plan, active_at)
        result = await self._commit(
            keys=[keys.offsets(self.space, part)], args=commit_args(head, rows)
        )
        if int(result[0]) == 1:
            return None
        return Conflict(_s(result[1]), _s(result[2]))

    def _effect_rows(self, rows: dict[str, list[Row]], plan: Plan, active_at: float | None) -> None:
        """The commit's sections after the state: KPIs, journey, timers, outbox, devices,
        key TTLs."""
        rows["kpis"] = list(plan.kpis.fields().items())
        now = active_at if active_at is not None else time.time()
        limits = self.effects.journey
        rows["journey_entries"] = [(e.key, e.score_ms, e.member) for e in plan.journey]
        min_score = int((now - limits.max_age_seconds) * 1000)
        rows["journey_bounds"] = [(limits.max_entries, min_score, limits.max_age_seconds)]
        after = self.effects.abandon_after
        rows["timers"] = list(timers(plan, now, after)) if after is not None else []
        rows["notifications"] = [(n,) for n in plan.notifications] if self.effects.notify else []
        rows["device_signins"] = list(plan.device_links)
        grace = self.effects.expiry_grace
        rows["expiry"] = [(grace * 1000, plan.floor_ms)] if grace is not None else []
        rows["floors"] = list(plan.floors.items())
        rows["lifetimes"] = [(k, end, ttl) for k, (end, ttl) in plan.lifetimes.items()]
        rows["device_lifetimes"] = list(plan.device_ends.items())
        rows["forwards"] = [(f.partition, f.key, f.value) for f in plan.forwards]
        rows["waiting"] = [(k, "" if p is None else p.dumps()) for k, p in plan.pending.items()]
        rows["forward_marks"] = list(plan.forward_marks.items())
        rows["device_renames"] = list(plan.device_renames)
        rows["changelog"] = []
        if self.effects.changelog:
            batch = {tp: [o, plan.fingerprints.get(tp, "")] for tp, o in plan.offsets.items()}
            rows["changelog"] = [(orjson.dumps(batch),)]

    async def resolve(self, some_id: str) -> str:
        """The session key for a customer or guest id (following a merged guest's alias)."""
        target = await self.redis.get(self.alias_key(some_id))
        return _s(target) if target is not None else some_id

    async def get(self, some_id: str) -> Session | None:
        """The current session of a customer or guest id, or ``None``."""
        blob = await self.redis.hget(self.session_key(await self.resolve(some_id)), "d")
        return None if blob is None else session_codec.decode(blob)

    async def applied_positions(self, tps: list[str]) -> dict[str, Applied]:
        """``topic:partition`` -> applied offset and fingerprint, for those of ``tps`` applied."""
        out: dict[str, Applied] = {}
        for part, group in _by_partition(tps).items():
            # One partition's offsets and fingerprints are one slot: one transaction.
            pipe = self.redis.pipeline(transaction=True)
            pipe.hmget(keys.offsets(self.space, part), group)
            pipe.hmget(keys.fingerprints(self.space, part), group)
            offsets, prints = await pipe.execute()
            out.update(
                (tp, Applied(int(o), _s(f) if f else None))
                for tp, o, f in zip(group, offsets, prints, strict=True)
                if o is not None
            )
        return out

    async def reset_partition(self, tp: str, old_offset: int) -> bool:
        """Forget ``tp``'s applied offset (a new log epoch) if it is still ``old_offset``.

        Every other partition first drops ``tp``'s old log ends from the erasures
        it holds (an erasure of an id homed there can name ``tp``); then an atomic
        compare-and-delete on ``tp``'s own partition forgets the offset and bumps
        its erasure epoch, so a worker that lost the partition meanwhile cannot
        erase what its new owner has applied since. In this order a crash in
        between leaves the offset standing, and the records those log ends covered
        are at or below it, skipped as applied anyway. True if reset.
        """
        space = self.space
        n = int(tp.rpartition(":")[2])
        head: list[str | int] = [space.prefix, space.partitions]
        for m in space.all_partitions():
            if m != n:
                await self._reset(keys=[keys.offsets(space, m)], args=[*head, m, tp, ""])
        done = await self._reset(keys=[keys.offsets(space, n)], args=[*head, n, tp, old_offset])
        return int(done) == 1

    async def linked_ids(self, customer_id: str) -> set[str]:
        """Guest ids linked to a customer: merged guests and the session's ``anonymous_ids``."""
        linked = {_s(m) for m in await self.redis.smembers(keys.links(self.space, customer_id))}
        session = await self.get(customer_id)
        if session is not None:
            linked.update(session.anonymous_ids)
        return linked

    async def erase(self, erasure: Erasure) -> Erased | Unnamed:
        """Delete the erasure's ids' state and record it, unless more ids are linked.

        ``Unnamed`` lists linked ids the erasure does not name (a login got
        in between): record a wider erasure and call again. Raises
        :class:`ErasureRaced` when the ids' state kept changing under it.

        ``erase.lua`` runs once per partition (its slot), in three rounds:

        1. **look**, on each partition an id is homed on: linked ids not named
           (then ``Unnamed``, nothing written), and each id's state and version;
        2. **the applied offsets** of every partition: the log ends rise to them,
           so the erasure covers everything the state holds (a replay erases what
           the live state erased, no less), and the versions become its floors;
        3. **erase**, on every partition (in one MULTI on a single primary, one
           after another on a cluster: ``streams/store/partitioned.py``): the
           partition's ids are erased with the one record, its timers cleared and
           its erasure epoch moved, unless an id's state moved since round 1. Then
           that partition writes nothing and the rounds run again.

        Why a step per partition is still safe: a record changes an id's state no
        earlier than the commit marking it applied on its own partition (that very
        commit, or for a record forwarded from another partition an earlier one).
        Round 1 reads states before round 2 reads offsets, so a record whose effect
        round 1 saw is at or below round 2's offsets and covered; a record applied
        to an id after round 1 changed its state, and its step refuses. Each step
        moves its partition's epoch with the erasure written, so that partition's
        batches planned before it re-plan and see the erasure; in ``forward`` mode those
        are the only batches that touch its ids, and in ``direct`` mode (one
        primary) the MULTI moves every epoch at once, as one script did. The
        steps are idempotent (the record is set, state deleted) and the erasure
        is on Kafka before they run: after a crash between two of them,
        erasing again (or ``restore_lost_erasures``, which checks every id)
        finishes it. A second round writes a record that covers at least as much
        over the first one's, and deletes again what was applied in between, so
        every id ends with the one record the caller publishes.
        """
        space = self.space
        flag = "1" if self.effects.changelog else "0"
        head: list[Arg] = [space.prefix, space.partitions]
        homes = sorted({space.partition(k) for k in erasure.ids})
        order = [*homes, *(n for n in space.all_partitions() if n not in homes)]
        record = erasure
        deleted = [0, 0, 0]
        for _ in range(ERASE_ROUNDS):
            asked = _pairs(record.ids, {})
            looks = [
                await self._erase(keys=[keys.offsets(space, n)], args=[*head, n, flag, "", *asked])
                for n in homes
            ]
            missing: dict[str, None] = {}
            states: dict[str, str] = {}
            # A second round finds an id the first erased without its session or
            # floor: the floor the first round recorded stands.
            floors = dict(record.floors)
            for unnamed, found in looks:
                missing.update((_s(m), None) for m in unnamed)
                for i in range(0, len(found), 3):
                    k, version = _s(found[i]), _s(found[i + 2])
                    states[k] = _s(found[i + 1])
                    if version:
                        floors[k] = max(floors.get(k, 0), int(version))
            if missing:
                return Unnamed(tuple(missing))
            tps = [tp for tp in record.upto if _tp_partition(tp) < space.partitions]
            applied = await self.applied_offsets_of(tps)
            upto = {tp: max(end, applied.get(tp, -1) + 1) for tp, end in record.upto.items()}
            record = replace(record, upto=upto, floors=floors)
            body: list[Arg] = [flag, record.dumps(), *_pairs(record.ids, states)]
            calls: list[ScriptCall] = [([keys.offsets(space, n)], [*head, n, *body]) for n in order]
            replies = await run_scripts(self.redis, self._erase, calls)
            for reply in replies:
                if int(reply[0]) == 1:
                    deleted = [d + int(r) for d, r in zip(deleted, reply[1:4], strict=True)]
            if all(int(reply[0]) == 1 for reply in replies):
                return Erased(deleted[0], deleted[1], deleted[2], record)
        raise ErasureRaced(f"the state of {', '.join(erasure.ids)} kept changing")

    async def erasure(self, some_id: str) -> Erasure | None:
        """The erasure recorded for an id, if any."""
        raw = await self.redis.get(keys.erasure(self.space, some_id))
        return None if raw is None else load_erasure(raw)

    async def restore_erasures(self, erasures: list[Erasure]) -> int:
        """Record erasures read back from Kafka (a rebuild); return how many ids they name.

        Each under its id's partition, with that partition's epoch moved in the
        same transaction (every partition's moves: a record on any partition may
        carry an erased id). One transaction per partition on a cluster, one for
        all on a single primary (``streams/store/partitioned.py``): each step sets
        the same records again when run again, and a rebuild restores them before
        it folds anything, so a crash between two steps is mended by running the
        rebuild again.
        """
        if not erasures:
            return 0
        space = self.space
        homed: dict[int, list[tuple[str, Erasure]]] = {}
        found = latest(erasures)
        for some_id, erasure in found.items():
            homed.setdefault(space.partition(some_id), []).append((some_id, erasure))

        def fill(n: int) -> Fill:
            def queue(pipe: Any) -> None:
                for some_id, erasure in homed.get(n, ()):
                    pipe.set(keys.erasure(space, some_id), erasure.dumps())
                    pipe.sadd(keys.erased_ids(space, n), some_id)
                pipe.incr(keys.erasure_epoch(space, n))

            return queue

        await run_transactions(self.redis, [fill(n) for n in space.all_partitions()])
        return len(found)

    async def applied_offsets_of(self, tps: list[str]) -> dict[str, int]:
        """``topic:partition`` -> last applied offset, for those of ``tps`` applied."""
        out: dict[str, int] = {}
        for part, group in _by_partition(tps).items():
            raw = await self.redis.hmget(keys.offsets(self.space, part), group)
            out.update((tp, int(v)) for tp, v in zip(group, raw, strict=True) if v is not None)
        return out

    async def applied_offsets(self) -> dict[str, int]:
        """``topic:partition`` -> last applied offset, as recorded with the states."""
        out: dict[str, int] = {}
        for part in self.space.all_partitions():
            raw = await self.redis.hgetall(keys.offsets(self.space, part))
            out.update((_s(k), int(v)) for k, v in raw.items())
        return out


@dataclass(frozen=True)
class Erased:
    """What an erasure deleted."""

    sessions: int
    aliases: int
    handoff_codes: int
    erasure: Erasure  # as recorded: log ends raised to what the state had applied


class ErasureRaced(RuntimeError):
    """An erasure's ids were changed by commits between its look and its step, round
    after round; nothing is half-done that erasing again would not finish."""


@dataclass(frozen=True)
class Unnamed:
    """Linked ids an erasure must also name before it can run."""

    ids: tuple[str, ...]


def _devices(raw: list[Any]) -> dict[str, dict[str, int]]:
    """load.lua's device sign-ins: anon, n, then n (customer, ms) pairs, repeated."""
    out: dict[str, dict[str, int]] = {}
    i = 0
    while i < len(raw):
        anon, n = _s(raw[i]), int(raw[i + 1])
        pairs = raw[i + 2 : i + 2 + 2 * n]
        out[anon] = {_s(pairs[j]): int(float(pairs[j + 1])) for j in range(0, len(pairs), 2)}
        i += 2 + 2 * n
    return out


def _counted(raw: list[Any], width: int = 1) -> dict[str, list[Any]]:
    """load.lua's counted groups: name, n, then n items of ``width`` values, repeated."""
    out: dict[str, list[Any]] = {}
    i = 0
    while i < len(raw):
        name, n = _s(raw[i]), int(raw[i + 1])
        out[name] = list(raw[i + 2 : i + 2 + width * n])
        i += 2 + width * n
    return out


def _partition(tps: list[str]) -> int:
    """The one partition number of ``tps`` (``topic:partition``); 0 for none."""
    numbers = {int(tp.rsplit(":", 1)[1]) for tp in tps}
    if len(numbers) > 1:
        raise ValueError(f"one partition's records at a time, not {sorted(numbers)}")
    return numbers.pop() if numbers else 0


def _by_partition(tps: list[str]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for tp in tps:
        out.setdefault(int(tp.rsplit(":", 1)[1]), []).append(tp)
    return out


def _pairs(ids: tuple[str, ...], states: dict[str, str]) -> list[Arg]:
    """erase.lua's (id, state) pairs: the state its look saw, '' where none."""
    out: list[Arg] = []
    for k in ids:
        out += [k, states.get(k, "")]
    return out


def _tp_partition(tp: str) -> int:
    return int(tp.rsplit(":", 1)[1])


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
