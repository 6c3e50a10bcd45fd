"""Freshness through the gateway: Kafka record timestamp -> Server-Sent Event at a subscriber.

``make bench`` measures it on a fresh stack of its own after the variants
(``bench.freshness_stack``: broker, Redis, one worker, one gateway); against
any running stack with a gateway, such as ``continuity dev``, it is
``python -m bench --freshness URL``.

How it measures:

* ``subscribers`` SSE connections, each following one fresh customer
  (``URL`` with ``{key}``, e.g. ``http://127.0.0.1:8080/v1/sessions/{key}/stream?token=...``,
  or a header such as ``Authorization: Bearer ...``);
* a producer appends ``browse.product_viewed`` events at a fixed total
  ``rate``, round robin over those customers; one customer's events share a
  topic and a key, so the n-th becomes version n; each record's timestamp is
  set by the producer when it sends it (``CreateTime``), and freshness is
  measured from it, as Kafka's KIP-613 defines end-to-end latency (the
  record's timestamp to the moment its effect is seen); an append the broker
  did not acknowledge is not counted;
* a ``session`` event carries the version as its SSE ``id``; the first event of
  a customer with an id at or above n delivers version n (the gateway may
  coalesce versions under a burst); freshness = its arrival - the record's
  timestamp (the gateway wrote it at most one loopback read earlier: its own
  ``continuity_freshness_seconds`` times the write, ``bench.freshness_stack``);
* after ``warmup`` seconds, every append counts: p50, p99, p99.9 and max, and
  the appends no event ever covered (``lost``);
* with ``notices_redis`` (the worker's Redis), the worker's pub/sub notices
  (one per committed version, on the sharded channel of the key's partition,
  ``<prefix>:{p<n>}:u``) are timed the same way:
  record timestamp -> commit notice is the worker's share, the rest the gateway's.

The subscribers and the producer run in the measuring process, so its own
scheduling delays are in the figures: a stream read late inflates a sample,
an acknowledgement callback run late shrinks one.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from urllib.parse import urlsplit

import orjson
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from schemas.topics import topic_for
from streams.core import notice
from streams.store import keys as redis_keys
from streams.store.keys import Space


@dataclass(frozen=True)
class FreshnessSpec:
    """Where and how hard to measure."""

    stream_url: str
    """SSE URL of one session, with ``{key}`` where the customer id goes."""
    bootstrap: str
    subscribers: int = 200
    rate: float = 200.0
    seconds: float = 30.0
    warmup: float = 3.0
    headers: Mapping[str, str] = field(default_factory=dict)
    notices_redis: str | None = None
    """Redis URL of the worker's state, to time its commit notices too (optional)."""
    notices_space: Space = field(default_factory=lambda: Space(redis_keys.DEFAULT_PREFIX, 8))
    """The worker's key space (prefix, partition count: the defaults'), placing its channels."""


@dataclass(frozen=True)
class FreshnessResult:
    samples: int
    lost: int
    p50_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None
    committed_p50_ms: float | None = None
    """Append -> the worker's commit notice of that version (or a newer one) arrived here."""
    committed_p99_ms: float | None = None


@dataclass(frozen=True)
class SseEvent:
    event: str
    id: str | None
    data: str


async def measure_freshness(
    spec: FreshnessSpec, on_phase: Callable[[str], None] | None = None
) -> FreshnessResult:
    """Subscribe, produce at the fixed rate for ``seconds``, and return the distribution.

    ``on_phase`` is called with ``"counting"`` when the warm-up ends and with
    ``"produced"`` after the last append, so a caller can read what the stack's
    processes spent over exactly the counted window.
    """
    run = uuid.uuid4().hex[:8]
    keys = [f"fresh-{run}-{i:05d}" for i in range(spec.subscribers)]
    arrivals: dict[str, list[tuple[int, float]]] = {k: [] for k in keys}
    followers = [asyncio.create_task(_follow(spec, k, arrivals[k])) for k in keys]
    notices: dict[str, list[tuple[int, float]]] = {k: [] for k in keys}
    if spec.notices_redis is not None:
        # The run's keys' partitions' channels; other keys' notices there are skipped.
        space = spec.notices_space
        channels = sorted({redis_keys.updates(space, space.partition(k)) for k in keys})
        followers.append(asyncio.create_task(_notices(spec.notices_redis, channels, notices)))
    appended: dict[tuple[str, int], float] = {}
    timer: asyncio.TimerHandle | None = None
    try:
        await asyncio.sleep(1.0)  # let the streams open
        _streams_alive(followers)
        started = time.time()
        if on_phase is not None:
            timer = asyncio.get_running_loop().call_later(spec.warmup, on_phase, "counting")
        await _produce(spec, keys, appended)
        if on_phase is not None:
            on_phase("produced")
        await asyncio.sleep(2.0)  # the last events' way through
        # A stream that ended early would show up as lost appends: say why instead.
        _streams_alive(followers)
    finally:
        if timer is not None:
            timer.cancel()
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
    counted = {kv: t for kv, t in appended.items() if t >= started + spec.warmup}
    result = summarize(counted, arrivals)
    if spec.notices_redis is None:
        return result
    committed = summarize(counted, notices)
    return replace(result, committed_p50_ms=committed.p50_ms, committed_p99_ms=committed.p99_ms)


def _streams_alive(followers: list[asyncio.Task[None]]) -> None:
    ended = [t for t in followers if t.done()]
    if ended:
        first = ended[0].exception() if not ended[0].cancelled() else None
        raise RuntimeError(
            f"{len(ended)} of {len(followers)} streams ended early: {first or 'end of stream'}"
        )


def summarize(
    appended: Mapping[tuple[str, int], float], arrivals: Mapping[str, list[tuple[int, float]]]
) -> FreshnessResult:
    """Freshness of every append: the first arrival of its version or a newer one, minus it."""
    samples: list[float] = []
    lost = 0
    for (key, version), at in appended.items():
        seen = [t for v, t in arrivals.get(key, []) if v >= version]
        if not seen:
            lost += 1
            continue
        samples.append((min(seen) - at) * 1000)
    samples.sort()
    return FreshnessResult(
        len(samples),
        lost,
        percentile(samples, 0.50),
        percentile(samples, 0.99),
        percentile(samples, 0.999),
        samples[-1] if samples else None,
    )


def percentile(ordered: list[float], q: float) -> float | None:
    """The nearest-rank percentile of already sorted values."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def _produce(
    spec: FreshnessSpec, keys: list[str], appended: dict[tuple[str, int], float]
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=spec.bootstrap, acks="all", linger_ms=0, enable_idempotence=False
    )
    await producer.start()
    try:
        versions = dict.fromkeys(keys, 0)
        pending = []
        interval = 1.0 / spec.rate
        deadline = time.monotonic() + spec.seconds
        tick = time.monotonic()
        i = 0
        while time.monotonic() < deadline:
            key = keys[i % len(keys)]
            versions[key] += 1
            event = product_viewed(key, versions[key])
            topic = topic_for(str(event["type"]))
            ms = int(time.time() * 1000)
            fut = await producer.send(topic, orjson.dumps(event), key=key.encode(), timestamp_ms=ms)
            fut.add_done_callback(_stamp(appended, (key, versions[key]), ms / 1000))
            pending.append(fut)
            i += 1
            tick += interval
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _stamp(appended: dict[tuple[str, int], float], kv: tuple[str, int], at: float) -> object:
    def done(fut: asyncio.Future[object]) -> None:
        if not fut.exception():
            appended[kv] = at

    return done


def product_viewed(key: str, n: int) -> dict[str, object]:
    """The ``n``-th event of customer ``key``: a product view, valid under the wire contract."""
    return {
        "event_id": f"{key}-{n}",
        "type": "browse.product_viewed",
        "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "channel": "web",
        "customer_id": key,
        "payload": {"sku": f"SKU-{n % 400:04d}"},
    }


async def _follow(spec: FreshnessSpec, key: str, into: list[tuple[int, float]]) -> None:
    """Record (version, arrival time) of every ``session`` event of ``key``'s stream."""
    async for ev in sse_events(spec.stream_url.format(key=key), spec.headers):
        if ev.event == "session" and ev.id is not None and ev.id.isdigit():
            into.append((int(ev.id), time.time()))


async def _notices(url: str, channels: list[str], into: dict[str, list[tuple[int, float]]]) -> None:
    """Record (version, arrival time) of every commit notice of ``into``'s keys on the
    sharded ``channels``, by key."""
    redis = Redis.from_url(url)
    pubsub = redis.pubsub()
    try:
        await pubsub.ssubscribe(*channels)
        async for message in pubsub.listen():
            if message["type"] != "smessage":
                continue
            heard = notice.read(message["data"])
            if heard.version is not None and heard.key in into:
                into[heard.key].append((heard.version, time.time()))
    finally:
        await pubsub.aclose()
        await redis.aclose()


async def sse_events(url: str, headers: Mapping[str, str]) -> AsyncIterator[SseEvent]:
    """A minimal ``text/event-stream`` client over HTTP/1.1 (plain or chunked body)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise ValueError(f"only http:// stream URLs are supported: {url}")
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Accept: text/event-stream",
        "Cache-Control: no-cache",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    try:
        status = (await reader.readline()).decode().split()
        if len(status) < 2 or status[1] != "200":
            raise RuntimeError(f"stream {parts.path}: HTTP {' '.join(status[1:]) or 'no answer'}")
        chunked = False
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode().partition(":")
            if name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        body = _dechunk(reader) if chunked else _plain(reader)
        async for event in _parse(body):
            yield event
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _plain(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while chunk := await reader.read(65536):
        yield chunk


async def _dechunk(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return
        yield await reader.readexactly(size)
        await reader.readline()


async def _parse(body: AsyncIterator[bytes]) -> AsyncIterator[SseEvent]:
    buffer = b""
    event, id_, data = "message", None, list[str]()
    async for chunk in body:
        buffer += chunk
        while b"\n" in buffer:
            raw, buffer = buffer.split(b"\n", 1)
            line = raw.rstrip(b"\r").decode()
            if not line:
                if data:
                    yield SseEvent(event, id_, "\n".join(data))
                event, data = "message", []
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                id_ = value
