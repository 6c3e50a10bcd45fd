"""The shared broker and Redis, worker groups, and waiting on what they apply."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from schemas.session import Session
from schemas.topics import FOLDED_TOPICS, SESSION_FORWARDS, SOURCE_TOPICS
from streams.dev import loopback
from streams.kafka.publish import Publisher, prepare_dict
from streams.kafka.reader import TopicReader, read_all
from streams.store import keys
from streams.store.client import Client, connect, is_cluster_url, parse_cluster_url
from streams.store.keys import Space
from streams.store.state import RedisState
from tests.support.events import event
from tests.support.metrics_text import samples, scrape

PARTITIONS = 4
# ``TEST_REDIS=cluster``: the session's stack and the private stacks run on a
# three-primary Redis Cluster (``make test-cluster``), their workers in forward mode.
REDIS_BACKEND = os.environ.get("TEST_REDIS", "single")


def on_cluster() -> bool:
    """Whether this run's stacks are on a Redis Cluster."""
    return REDIS_BACKEND == "cluster"


def single_primary(reason: str) -> pytest.MarkDecorator:
    """Skip a test on a cluster run: it needs one Redis primary, for ``reason``."""
    return pytest.mark.skipif(on_cluster(), reason=f"needs one Redis primary: {reason}")


def redis_env(redis_url: str) -> dict[str, str]:
    """What a worker needs besides ``REDIS_URL`` for that Redis: forward mode on a cluster."""
    return {"CONTINUITY_CROSS_PARTITION": "forward"} if is_cluster_url(redis_url) else {}


def client(redis_url: str, **kwargs: Any) -> Client:
    """A test's own client of the stack's Redis: a cluster client on a cluster run."""
    return connect(redis_url, **kwargs)


def node_urls(redis_url: str) -> list[str]:
    """A plain ``redis://`` URL of every node behind ``redis_url``: itself for one
    primary, each startup node of a cluster (a test's look at one node's clients)."""
    if not is_cluster_url(redis_url):
        return [redis_url]
    return [f"redis://{host}:{port}/0" for host, port in parse_cluster_url(redis_url).nodes]


def space(prefix: str) -> Space:
    """The key space of a test prefix: the test topics' partition count places its keys."""
    return Space(prefix, PARTITIONS)


@dataclass
class Stack:
    """Addresses of the shared broker and Redis."""

    bootstrap: str
    redis_url: str
    log_dir: Path
    redis_child: loopback.Child | None = None
    workers: list[loopback.Child] = field(default_factory=list)

    def worker_env(self, group: str, prefix: str, **extra: str) -> dict[str, str]:
        return {
            **redis_env(self.redis_url),
            "KAFKA_BOOTSTRAP": self.bootstrap,
            "REDIS_URL": self.redis_url,
            "CONTINUITY_APP_ID": group,
            "CONTINUITY_REDIS_PREFIX": prefix,
            "CONTINUITY_TOPIC_PARTITIONS": str(PARTITIONS),
            "CONTINUITY_METRICS_HOST": "127.0.0.1",
            "CONTINUITY_SESSION_TIMEOUT": "6",
            "CONTINUITY_LOG_LEVEL": "info",
            **extra,
        }

    def start_worker(self, name: str, group: str, prefix: str, **extra: str) -> loopback.Child:
        child = loopback.start_worker(name, self.worker_env(group, prefix, **extra), self.log_dir)
        self.workers.append(child)
        return child


@dataclass
class WorkerGroup:
    """Workers of one consumer group with their own Redis prefix."""

    stack: Stack
    group: str
    prefix: str
    state: RedisState

    def start(self, name: str, **extra: str) -> loopback.Child:
        port = loopback.free_port()
        child = self.stack.start_worker(
            f"{self.group}-{name}",
            self.group,
            self.prefix,
            CONTINUITY_METRICS_PORT=str(port),
            **extra,
        )
        child.port = port
        return child

    def restart(self, child: loopback.Child) -> loopback.Child:
        """Start a stopped or killed worker again (same command and metrics port), kept
        on the stack's list so it is stopped with the test whatever happens."""
        again = child.restart()
        self.stack.workers.append(again)
        return again

    async def ready(self, pub: Publisher, timeout: float = 60) -> None:
        """Wait until the group folds a fresh probe event (proves assignment + Redis)."""
        probe = f"probe-{uuid.uuid4().hex[:10]}"
        await publish(pub, [event("browse.search", {"query": "probe"}, customer=probe)])
        await wait_version(self.state, probe, 1, timeout)


async def wait_until(
    check: Callable[[], Awaitable[Any]], timeout: float = 30.0, interval: float = 0.1
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


async def publish(pub: Publisher, events: list[dict[str, Any]]) -> dict[str, int]:
    """Publish events in order, addressed by the contract, and wait for the broker.

    Returns ``topic:partition`` -> highest offset written, to wait on the worker with.
    (The embedded broker answers ListOffsets wrongly, so end offsets cannot be asked.)
    """
    written: dict[str, int] = {}
    for md in await pub.send_all([prepare_dict(e) for e in events]):
        tp = f"{md.topic}:{md.partition}"
        written[tp] = max(written.get(tp, -1), md.offset)
    return written


async def applied_through(state: RedisState, written: dict[str, int], timeout: float = 90) -> None:
    """Wait until the worker group behind ``state`` applied every offset in ``written``."""

    async def done() -> bool:
        applied = await state.applied_offsets()
        return all(applied.get(tp, -1) >= off for tp, off in written.items())

    await wait_until(done, timeout, interval=0.25)


async def settled(state: RedisState, bootstrap: str, timeout: float = 90) -> None:
    """Wait until no forward is in flight for the group behind ``state``.

    In forward mode the source offsets applied are not the end of a login across
    partitions: its forwards (and the merge they carry) come after. Settled means
    every partition's forwards outbox is empty (published and acknowledged), no
    session waits for one, every ``session-forwards`` record on the topic is
    applied, and every changelog outbox is published (its entries wait for their
    commits' forwards, so they trail them). On one primary in direct mode it holds
    once the changelog relay has caught up.
    """

    async def done() -> bool:
        for n in state.space.all_partitions():
            if await state.redis.xlen(keys.forwards(state.space, n)):
                return False
            if await state.redis.xlen(keys.changelog(state.space, n)):
                return False
            if await state.redis.hlen(keys.waiting(state.space, n)):
                return False
        async with TopicReader(bootstrap, [SESSION_FORWARDS], job="tests") as reader:
            ends = await reader.read_ends()
        applied = await state.applied_offsets()
        return all(applied.get(tp, -1) >= end - 1 for tp, end in ends.items() if end > 0)

    await wait_until(done, timeout, interval=0.25)


async def wait_version(
    state: RedisState, some_id: str, version: int, timeout: float = 30
) -> Session:
    """Wait until the session of ``some_id`` reaches ``version``."""

    async def reached() -> Session | None:
        s = await state.get(some_id)
        return s if s is not None and s.version >= version else None

    result: Session = await wait_until(reached, timeout)
    return result


async def read_topic(bootstrap: str, topic: str, timeout: float = 5.0) -> list[Any]:
    """Every record currently in ``topic``, to the end it had when the read began."""
    return await read_all(bootstrap, [topic], stall_timeout=timeout, job="tests")


async def committed_offsets(bootstrap: str, group: str) -> dict[str, int]:
    """``topic:partition`` -> the group's committed offset (the next record to read).

    Read with OffsetFetch by a client that never joins the group (the embedded
    broker does not answer the admin client's listing).
    """
    client = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await client.start()
    try:
        committed: dict[str, int] = {}
        for topic in SOURCE_TOPICS:
            for partition in range(PARTITIONS):
                offset = await client.committed(TopicPartition(topic, partition))
                if offset is not None:
                    committed[f"{topic}:{partition}"] = offset
        return committed
    finally:
        await client.stop()


async def balanced(workers: list[loopback.Child], timeout: float = 60) -> None:
    """Wait until a rebalance among ``workers`` has settled: each reports lag for at
    least one source partition, none reports one another does, and together they
    report every source partition (the lag gauge follows assignment and revocation)."""
    everything = {(t, str(p)) for t in SOURCE_TOPICS for p in range(PARTITIONS)}

    async def settled() -> bool:
        owned: list[set[tuple[str, str]]] = []
        for w in workers:
            assert w.port is not None, f"{w.name} has no metrics port"
            try:
                text = await scrape(w.port)
            except OSError:
                return False  # still starting: its metrics listener is not up yet
            lag = {
                (dict(labels)["topic"], dict(labels)["partition"])
                for (name, labels) in samples(text)
                if name == "continuity_consumer_lag_records"
            }
            owned.append(lag & everything)
        union = set().union(*owned)
        return all(owned) and sum(map(len, owned)) == len(union) and union == everything

    await wait_until(settled, timeout, interval=0.2)


def in_flight(applied: dict[str, int], committed: dict[str, int]) -> int:
    """Records Redis holds as applied that Kafka has not committed: what a worker that
    dies now leaves to be delivered again (and skipped by the applied offsets)."""
    return sum(max(0, offset + 1 - committed.get(tp, 0)) for tp, offset in applied.items())


async def applied_since(state: RedisState, before: dict[str, int], timeout: float = 60) -> None:
    """Wait until the group behind ``state`` applied an offset beyond ``before``: a
    restarted worker has rejoined, fetched and committed at least one batch."""

    async def moved() -> bool:
        now = await state.applied_offsets()
        return any(offset > before.get(tp, -1) for tp, offset in now.items())

    await wait_until(moved, timeout, interval=0.05)


async def skip_history(bootstrap: str, state: RedisState, group: str) -> dict[str, int]:
    """Start a fresh group and prefix at the log's end: what ``state`` and ``group`` would
    hold after folding every record already in the shared source topics.

    The topics (the source topics and ``session-forwards``) are shared by the
    whole test session, and a new group reads them
    from the start: it would fold every earlier test's events again (into its
    counters, its journeys, the shared ``events-dlq``) and make tests depend on
    the order they run in. Redis gets the applied offsets (no fingerprints: the
    reset check trusts an offset it cannot prove), Kafka the group's committed
    offsets at the same place, so the workers neither refold nor re-read it.
    Returns the ends (``topic:partition`` -> next offset).
    """
    # The forwards too: the workers fold them with the sources.
    async with TopicReader(bootstrap, FOLDED_TOPICS, job="tests") as reader:
        ends = await reader.read_ends()
    written = {tp: end for tp, end in ends.items() if end > 0}
    if not written:
        return ends
    # ``<topic>:N`` is applied in partition N's own offsets hash.
    for tp, end in written.items():
        await state.redis.hset(keys.offsets(state.space, int(tp.rsplit(":", 1)[1])), tp, end - 1)
    client = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await client.start()
    try:
        offsets = {_tp(tp): OffsetAndMetadata(end, "") for tp, end in written.items()}
        client.assign(list(offsets))
        await client.commit(offsets)
    finally:
        await client.stop()
    return ends


def _tp(name: str) -> TopicPartition:
    topic, _, partition = name.rpartition(":")
    return TopicPartition(topic, int(partition))
