"""Real parts for the tests: a Kafka-protocol broker, redis-server and worker loopback.

One broker and one Redis serve the whole session (isolation comes from unique
customer ids per test). Tests that need their own workers also get their own
consumer group and Redis key prefix, so their state never meets another's.

``TEST_BACKEND=containers`` swaps the embedded broker and redis-server for
testcontainers' Kafka and Redis where a Docker engine exists.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from hypothesis import settings as hypothesis_settings
from multidict import CIMultiDict
from redis.asyncio import Redis

from schemas.session import Session
from streams.dev import loopback
from streams.gateway.auth import Role, issue
from streams.kafka.publish import Publisher, prepare_dict
from streams.kafka.topics import ensure_topics
from streams.store.state import RedisState
from tests.clock import at as clock_at
from tests.fault_report import pytest_terminal_summary  # noqa: F401  (the fault table hook)

PARTITIONS = 4

# Property tests: ``make test`` draws the same examples on every machine and run
# (derandomized, so a red run is reproducible and a green one is not luck of the
# draw) with no deadline (a loaded 2-core machine is slow, not wrong);
# ``make test-faults`` searches at random (HYPOTHESIS_PROFILE=search) and keeps
# what it finds in .hypothesis/.
hypothesis_settings.register_profile("repeatable", derandomize=True, deadline=None)
hypothesis_settings.register_profile("search", deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


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


def _docker_engine_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The broker and Redis every test shares, started once per session."""
    log_dir = tmp_path_factory.mktemp("logs")
    if os.environ.get("TEST_BACKEND") == "containers":
        if not _docker_engine_available():
            pytest.skip("TEST_BACKEND=containers needs a Docker engine; none is reachable here")
        from testcontainers.kafka import KafkaContainer
        from testcontainers.redis import RedisContainer

        with KafkaContainer() as kafka, RedisContainer() as redis:
            host, port = redis.get_container_host_ip(), redis.get_exposed_port(6379)
            st = Stack(kafka.get_bootstrap_server(), f"redis://{host}:{port}/0", log_dir)
            asyncio.run(ensure_topics(st.bootstrap, PARTITIONS))
            yield st
            for w in st.workers:
                w.stop()
        return
    broker = loopback.start_broker(log_dir)
    redis = loopback.start_redis(tmp_path_factory.mktemp("redis"), log_dir)
    st = Stack(f"127.0.0.1:{broker.port}", f"redis://127.0.0.1:{redis.port}/0", log_dir, redis)
    asyncio.run(ensure_topics(st.bootstrap, PARTITIONS))
    try:
        yield st
    finally:
        for w in st.workers:
            w.stop()
        redis.stop()
        broker.stop()


@pytest.fixture
async def redis(stack: Stack) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
async def publisher(stack: Stack) -> AsyncIterator[Publisher]:
    async with Publisher(stack.bootstrap, linger_ms=1) as pub:
        yield pub


@pytest.fixture
def ids() -> Callable[[str], str]:
    """Unique ids per test, so tests can share the broker and Redis."""
    run = uuid.uuid4().hex[:8]
    return lambda name: f"t{run}-{name}"


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


async def wait_version(
    state: RedisState, some_id: str, version: int, timeout: float = 30
) -> Session:
    """Wait until the session of ``some_id`` reaches ``version``."""

    async def reached() -> Session | None:
        s = await state.get(some_id)
        return s if s is not None and s.version >= version else None

    result: Session = await wait_until(reached, timeout)
    return result


def event(
    type_: str,
    payload: dict[str, Any] | None = None,
    *,
    customer: str | None = None,
    anon: str | None = None,
    channel: str = "web",
    at: str | None = None,
    event_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One contract-valid event dict."""
    ev: dict[str, Any] = {
        "event_id": event_id or uuid.uuid4().hex,
        "type": type_,
        "occurred_at": at or clock_at(),
        "channel": channel,
        "payload": payload or {},
        **extra,
    }
    if customer:
        ev["customer_id"] = customer
    if anon:
        ev["anonymous_id"] = anon
    return ev


def added(
    sku: str, quantity: int = 1, price: str = "10.00", currency: str = "EUR"
) -> dict[str, Any]:
    return {"sku": sku, "quantity": quantity, "unit_price": price, "currency": currency}


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

    async def ready(self, pub: Publisher, timeout: float = 60) -> None:
        """Wait until the group folds a fresh probe event (proves assignment + Redis)."""
        probe = f"probe-{uuid.uuid4().hex[:10]}"
        await publish(pub, [event("browse.search", {"query": "probe"}, customer=probe)])
        await wait_version(self.state, probe, 1, timeout)


@pytest.fixture
async def group(stack: Stack, redis: Redis) -> AsyncIterator[WorkerGroup]:
    """A fresh consumer group + Redis prefix; its workers are stopped afterwards."""
    name = f"g{uuid.uuid4().hex[:8]}"
    wg = WorkerGroup(stack, name, name, RedisState(redis, name))
    started = len(stack.workers)
    yield wg
    for w in stack.workers[started:]:
        w.stop()


@pytest.fixture(scope="session")
async def shared_worker(stack: Stack, publisher: Publisher) -> AsyncIterator[RedisState]:
    """One worker (group ``continuity-tests``, prefix ``cont``) shared by read-only e2e tests."""
    client = Redis.from_url(stack.redis_url)
    wg = WorkerGroup(stack, "continuity-tests", "cont", RedisState(client, "cont"))
    wg.start("shared")
    await wg.ready(publisher)
    yield wg.state
    await client.aclose()


async def read_topic(bootstrap: str, topic: str, timeout: float = 5.0) -> list[Any]:
    """Every record currently in ``topic`` (reads to the end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or set())]
        if not parts:
            await consumer.force_metadata_update()
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for msgs in batch.values():
                records.extend(msgs)
            # The fetch high watermark is right where ListOffsets is not (embedded broker).
            marks = [consumer.highwater(tp) for tp in parts]
            positions = [await consumer.position(tp) for tp in parts]
            if not batch and all(
                m is not None and pos >= m for m, pos in zip(marks, positions, strict=True)
            ):
                break
        return records
    finally:
        await consumer.stop()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)
        sname, _, rest = series.partition("{")
        if sname != name:
            continue
        got = ",".join(sorted(p for p in rest.rstrip("}").split(",") if p))
        if got == want:
            return float(value)
    return 0.0


async def scrape(port: int) -> str:
    """GET /metrics from a worker on 127.0.0.1."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    body = await reader.read()
    writer.close()
    await writer.wait_closed()
    return body.split(b"\r\n\r\n", 1)[1].decode()


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


# --- The gateway -----------------------------------------------------------------

GATEWAY_SECRET = "gateway-tests-secret-0123456789abcdef"


def token(role: str, **claims: Any) -> str:
    """A token for the test gateways (``subject=``, ``store=``, ``anon=``, ``ttl=``, ``now=``)."""
    return issue(GATEWAY_SECRET, Role(role), **claims)


def bearer(role: str, **claims: Any) -> dict[str, str]:
    """The Authorization header of a fresh token."""
    return {"Authorization": f"Bearer {token(role, **claims)}"}


@dataclass
class Gateway:
    """One ``continuity gateway`` process."""

    child: loopback.Child

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.child.port}"

    async def metrics(self) -> str:
        assert self.child.port is not None
        return await scrape(self.child.port)


def start_gateway(stack: Stack, name: str, prefix: str = "cont", **extra: str) -> Gateway:
    """A gateway on a free port over the shared broker and Redis (or those in ``extra``)."""
    env = {
        "KAFKA_BOOTSTRAP": stack.bootstrap,
        "REDIS_URL": stack.redis_url,
        "CONTINUITY_REDIS_PREFIX": prefix,
        "CONTINUITY_TOPIC_PARTITIONS": str(PARTITIONS),
        "CONTINUITY_AUTH_SECRET": GATEWAY_SECRET,
        "CONTINUITY_STATE_DIR": "/nonexistent",
        "CONTINUITY_LOG_LEVEL": "info",
        **extra,
    }
    child = loopback.start_gateway(name, env, stack.log_dir)
    stack.workers.append(child)  # stopped with the stack
    return Gateway(child)


@pytest.fixture(scope="session")
def gateways(stack: Stack, shared_worker: RedisState) -> list[Gateway]:
    """Two gateways over the shared worker's state (prefix ``cont``), for the whole session."""
    # A short heartbeat so the streams' keep-alive comments show up in tests.
    # A long wait cap, so a read-your-writes wait never times out on a slow machine.
    return [
        start_gateway(
            stack, f"gateway-{n}", CONTINUITY_SSE_HEARTBEAT="0.5", CONTINUITY_GATEWAY_MAX_WAIT="60"
        )
        for n in ("a", "b")
    ]


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """One HTTP client for the session (no connection reuse, so a killed server never
    leaves a stale pooled connection behind)."""
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
    ) as session:
        yield session


@dataclass
class SseEvent:
    """One dispatched Server-Sent Event, or a comment (``comment`` set, nothing else)."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    comment: str | None = None

    def json(self) -> Any:
        return orjson.loads(self.data)


async def sse_events(resp: aiohttp.ClientResponse) -> AsyncIterator[SseEvent]:
    """Parse ``text/event-stream`` as a browser does (fields per block, comments apart).

    Tests need the raw frames (ids, comments, the retry field, the exact moment
    a connection is dropped), which an EventSource-like client library hides.
    """
    fields: dict[str, str] = {}
    data: list[str] = []
    while True:
        raw = await resp.content.readline()
        if not raw:
            return
        line = raw.decode().rstrip("\r\n")
        if line.startswith(":"):
            yield SseEvent(comment=line[1:].strip())
            continue
        if line:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value
            continue
        if data or fields:
            yield SseEvent(
                event=fields.get("event", "message"),
                data="\n".join(data),
                id=fields.get("id"),
                retry=int(fields["retry"]) if "retry" in fields else None,
            )
        fields, data = {}, []


async def next_event(events: AsyncIterator[SseEvent], timeout: float = 30.0) -> SseEvent:
    """The next dispatched event (comments and field-only blocks skipped)."""

    async def first() -> SseEvent:
        async for ev in events:
            if ev.comment is None and ev.data:
                return ev
        raise AssertionError("the stream ended")

    return await asyncio.wait_for(first(), timeout)


async def post_events(
    http: aiohttp.ClientSession, gw: Gateway, body: Any, headers: dict[str, str]
) -> tuple[int, Any]:
    """POST /v1/events with a JSON body; (status, parsed body)."""
    async with http.post(
        f"{gw.url}/v1/events",
        data=orjson.dumps(body),
        headers={**headers, "Content-Type": "application/json"},
    ) as resp:
        return resp.status, orjson.loads(await resp.read())


async def read_session(
    http: aiohttp.ClientSession, gw: Gateway, sid: str, headers: dict[str, str], **query: str
) -> tuple[int, Any, CIMultiDict[str]]:
    """GET /v1/sessions/{sid}; (status, parsed body, headers)."""
    async with http.get(f"{gw.url}/v1/sessions/{sid}", headers=headers, params=query) as resp:
        return resp.status, orjson.loads(await resp.read()), CIMultiDict(resp.headers)
