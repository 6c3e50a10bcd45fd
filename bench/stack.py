"""A fresh embedded broker and Redis per run, the backlog, and what they can tell us.

Each run gets its own broker (memory only) and Redis, started exactly as
``continuity dev`` starts them (``streams.dev.loopback``: Redis with AOF,
``appendfsync everysec``): one ``redis-server``, or for the cluster variants a
three-primary Redis Cluster of the same servers (``streams.dev.cluster``).
Redis's data directories are temporary and removed with the stack, the logs are
kept; Redis figures (commands, CPU) are summed over every node. The backlog is
written before any consumer starts, as pre-encoded records with the keys the wire
contract prescribes, so every consumer drains the same bytes from the same
partitions.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis, RedisCluster

from bench.workload import Encoded
from schemas.topics import SESSION_FORWARDS
from streams.dev import loopback
from streams.dev.cluster import LocalCluster, redis_cluster
from streams.kafka.reader import TopicReader
from streams.kafka.topics import ensure_topics
from streams.store import keys
from streams.store.client import connect
from streams.store.keys import Space
from streams.store.scripts import SCRIPTS, source

PARTITIONS = 8


# How far ahead of its records' timestamps the bench workload's events may lie.
WORKLOAD_AHEAD_S = 90 * 24 * 3600


@dataclass
class Stack:
    """One run's broker and Redis (one server, or every node of a cluster)."""

    broker: loopback.Child
    redis_servers: list[loopback.Child]
    redis_url: str
    redis: Redis | RedisCluster
    nodes: list[Redis]
    """A plain client of each server, for what a cluster client asks one node of."""
    data_dir: Path
    log_dir: Path
    closing: AsyncExitStack
    harness_calls: Counter[str] = field(default_factory=Counter)
    """Redis commands the harness itself sent, so they can be left out of the consumer's."""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker.port}"

    @property
    def redis_pids(self) -> list[int]:
        return [c.pid for c in self.redis_servers]

    @classmethod
    async def start(cls, log_dir: Path, cluster: bool = False) -> Stack:
        """Broker and Redis (a three-primary cluster with ``cluster``) on free loopback
        ports, with the event topics created."""
        await asyncio.to_thread(log_dir.mkdir, parents=True, exist_ok=True)
        data_dir = Path(tempfile.mkdtemp(prefix="continuity-bench-redis-"))
        closing = AsyncExitStack()
        broker = loopback.start_broker(log_dir)
        closing.callback(broker.stop)
        try:
            if cluster:
                running: LocalCluster = await closing.enter_async_context(redis_cluster(data_dir))
                servers = [n.child for n in running.nodes]
                url = running.url
            else:
                server = loopback.start_redis(data_dir, log_dir)
                closing.callback(server.stop)
                servers = [server]
                url = f"redis://127.0.0.1:{server.port}/0"
            client = connect(url)
            nodes = [Redis(host="127.0.0.1", port=s.port or 0) for s in servers]
            for c in (client, *nodes):
                closing.push_async_callback(c.aclose)
        except BaseException:
            await closing.aclose()
            shutil.rmtree(data_dir, ignore_errors=True)
            raise
        stack = cls(broker, servers, url, client, nodes, data_dir, log_dir, closing)
        try:
            await ensure_topics(stack.bootstrap, PARTITIONS)
        except BaseException:
            await stack.stop()
            raise
        return stack

    def worker_env(self, **extra: str) -> dict[str, str]:
        """The environment of a worker (or bench runner) on this stack."""
        return {
            "KAFKA_BOOTSTRAP": self.bootstrap,
            "REDIS_URL": self.redis_url,
            "CONTINUITY_TOPIC_PARTITIONS": str(PARTITIONS),
            "CONTINUITY_LOG_LEVEL": "warning",
            # The workload is a month of shopping starting yesterday (bench/workload.py),
            # produced now: its later events lie weeks after their records' timestamps.
            # The oracle folds their times as written, so the worker must not bring them
            # back to the default bound (docs/security.md, Time); the clamp still runs.
            "CONTINUITY_EVENT_TIME_MAX_AHEAD": str(WORKLOAD_AHEAD_S),
            **extra,
        }

    async def produce(self, records: Sequence[Encoded]) -> Backlog:
        """Write the backlog; return where every partition ends."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            linger_ms=20,
            max_batch_size=256 * 1024,
            enable_idempotence=False,
        )
        await producer.start()
        started = time.monotonic()
        try:
            futures = [await producer.send(r.topic, r.value, key=r.key) for r in records]
            written: dict[str, int] = {}
            for md in await asyncio.gather(*futures):
                tp = f"{md.topic}:{md.partition}"
                written[tp] = max(written.get(tp, -1), md.offset)
        finally:
            await producer.stop()
        return Backlog(len(records), written, time.monotonic() - started)

    async def applied_offsets(self, prefix: str) -> dict[str, int]:
        """The worker's applied offsets (every partition's ``<prefix>:{p<n>}:o``):
        ``topic:partition`` -> offset."""
        space = Space(prefix, PARTITIONS)
        out: dict[str, int] = {}
        for n in space.all_partitions():
            self.harness_calls["hgetall"] += 1
            raw = await self.redis.hgetall(keys.offsets(space, n))
            out.update((_text(k), int(v)) for k, v in raw.items())
        return out

    async def in_flight(self, prefix: str) -> bool:
        """Whether work is still in flight between partitions (forward mode): a session
        waits for a merge, a forward is not yet published, or one published is not yet
        applied. Asked only once the source topics are drained."""
        space = Space(prefix, PARTITIONS)
        for n in space.all_partitions():
            self.harness_calls["xlen"] += 1
            self.harness_calls["hlen"] += 1
            if await self.redis.xlen(keys.forwards(space, n)):
                return True
            if await self.redis.hlen(keys.waiting(space, n)):
                return True
        async with TopicReader(self.bootstrap, [SESSION_FORWARDS], missing_ok=True) as reader:
            ends = await reader.read_ends()
        applied = await self.applied_offsets(prefix)
        return any(applied.get(tp, -1) < end - 1 for tp, end in ends.items())

    async def commandstats(self) -> dict[str, int]:
        """Calls per Redis command so far on every node together (commands run inside
        Lua scripts included)."""
        calls: Counter[str] = Counter()
        for node in self.nodes:
            self.harness_calls["info"] += 1
            info: dict[str, Any] = await node.info("commandstats")
            calls.update(
                {
                    name.removeprefix("cmdstat_"): int(stats["calls"])
                    for name, stats in info.items()
                    if isinstance(stats, dict)
                }
            )
        return dict(calls)

    async def stop(self) -> None:
        await self.closing.aclose()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def script_commands() -> frozenset[str]:
    """Every Redis command the worker's Lua scripts can run (parsed from ``streams/store/lua``)."""
    names: set[str] = set()
    for name in SCRIPTS:
        text = source(name)
        names.update(m.lower() for m in re.findall(r"redis\.p?call\(\s*['\"](\w+)", text))
    return frozenset(names)


@dataclass(frozen=True)
class Backlog:
    """What was written before the consumer started."""

    events: int
    last_offsets: dict[str, int]
    seconds: float

    def drained(self, applied: dict[str, int]) -> bool:
        """Whether ``applied`` (``topic:partition`` -> offset) reaches every partition's end."""
        return all(applied.get(tp, -1) >= off for tp, off in self.last_offsets.items())


@dataclass
class GroupWatch:
    """Polls a consumer group's state and membership; remembers every change with its time."""

    bootstrap: str
    group: str
    changes: list[tuple[float, str, int]] = field(default_factory=list)
    interval: float = 0.1
    """Seconds between two looks; the harness slows it once counting starts (each look
    is a broker request, and the broker shares the cores with the workers)."""
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def stable_since(self, members: int) -> float | None:
        """When the group last became Stable with ``members`` members, if it is now."""
        if self.changes and self.changes[-1][1:] == ("Stable", members):
            return self.changes[-1][0]
        return None

    def story(self, since: float) -> str:
        """The group's changes as ``+2.1s Stable/2`` steps, relative to ``since``."""
        return ", ".join(f"+{t - since:.1f}s {state}/{n}" for t, state, n in self.changes)

    async def _watch(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            while True:
                try:
                    described = await admin.describe_consumer_groups([self.group])
                    state, n = _group_state(described)
                except Exception:  # the broker is busy or the group not known yet: ask again
                    state, n = "?", 0
                if not self.changes or self.changes[-1][1:] != (state, n):
                    self.changes.append((time.time(), state, n))
                await asyncio.sleep(self.interval)
        finally:
            await admin.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _group_state(described: list[Any]) -> tuple[str, int]:
    for response in described:
        for group in response.groups:
            # (error_code, group, state, protocol_type, protocol, members)
            return str(group[2]), len(group[5])
    return "?", 0
