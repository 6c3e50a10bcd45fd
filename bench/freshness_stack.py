"""Freshness through the gateway on a fresh stack of its own: the last step of ``make bench``.

The stack: the embedded broker and redis-server (``bench.stack.Stack``, as
every variant gets them), one real worker started exactly as the
``backbone`` variant starts it (``streams.devstack.start_worker`` with the
same environment), and one real gateway (``streams.devstack.start_gateway``)
with a random token key made for this run and never written anywhere but
the gateway's environment. A ``service`` token issued with that key
(``streams.gateway.auth.issue``) opens the streams.

Before measuring, one probe event must reach a subscriber through the whole
path (Kafka, the worker's fold and commit, the Redis notice, the gateway's
SSE write): the worker's group join takes seconds, and a measurement that
started before it would time the join, not the path. Then
``bench.freshness.measure_freshness`` runs (its docstring says how it
measures), also timing the worker's commit notices on Redis, so the summary
says how much of the way is the worker's. The CPU each process spent over
the counted window is read from ``/proc``, and the load average before and
after is kept: on a small machine the figures depend on who else needed a
core, so the run says what it cost and how busy the machine was.

The gateway's own histogram (``continuity_freshness_seconds``: the record's
timestamp to the moment the gateway wrote the event, KIP-613's end-to-end
latency) is read from its ``/metrics`` before and after, and its quantiles
are printed beside the client's exact ones (which add the last loopback read).

The broker's CPU is also sampled every second: at a constant rate the
embedded broker's CPU grows with the record batches it holds
(docs/benchmarks.md), so it rises through the window; its share over the
first and the last fifth is printed.

Then the rate sweep: with the same subscribers' count, a shorter measurement
at each rate of ``sweep`` in turn, each on a fresh stack of its own (a broker
that carried the main measurement would time its history, not the rate),
until one misses p99 under ``SWEEP_P99_MS``, loses an append or cannot be
produced at its rate: the highest rate that held is what this machine
sustains.

The targets (the product's performance goals) hold at 1,000 events/s with
100 subscribers; a run at another rate or subscriber count is printed
without a verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import secrets
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from bench.freshness import (
    FreshnessResult,
    FreshnessSpec,
    measure_freshness,
    product_viewed,
    sse_events,
)
from bench.histogram import buckets, delta, quantile
from bench.procstat import cpu_seconds
from bench.stack import Stack
from schemas.topics import topic_for
from streams.dev import loopback
from streams.gateway.auth import Role, issue

Say = Callable[[str], None]

TARGET_RATE = 1_000.0
TARGET_SUBSCRIBERS = 100
TARGET_P50_MS = 15.0
TARGET_P99_MS = 30.0
# The original goals, kept as the stretch: printed, never a verdict.
STRETCH_P50_MS = 5.0
STRETCH_P99_MS = 20.0
SWEEP_P99_MS = 100.0
HISTOGRAM = "continuity_freshness_seconds"
STREAM_URL = "http://127.0.0.1:{port}/v1/sessions/{{key}}/stream"
# The worker joins its group in about 7 s on this broker (README: Benchmark);
# a stack that has not folded the probe after this long is broken, not slow.
PROBE_TIMEOUT = 120.0


@dataclass(frozen=True)
class FreshnessPlan:
    """How hard and how long to measure."""

    rate: float = TARGET_RATE
    subscribers: int = TARGET_SUBSCRIBERS
    seconds: float = 30.0
    """Counted seconds, after the warm-up."""
    warmup: float = 5.0
    sweep: tuple[float, ...] = (100.0, 250.0, 500.0, 750.0, 1_000.0, 1_500.0, 2_000.0, 3_000.0)
    """Rates tried after the main measurement, lowest first, until one does not hold: the
    last that held is the highest this machine sustains (from below, as load rises)."""
    sweep_seconds: float = 10.0

    @property
    def at_target_load(self) -> bool:
        """Whether the product's targets apply to this load."""
        return self.rate == TARGET_RATE and self.subscribers == TARGET_SUBSCRIBERS

    def spec(
        self,
        stream_url: str,
        bootstrap: str,
        headers: dict[str, str],
        notices_redis: str | None = None,
    ) -> FreshnessSpec:
        return FreshnessSpec(
            stream_url,
            bootstrap,
            subscribers=self.subscribers,
            rate=self.rate,
            seconds=self.warmup + self.seconds,
            warmup=self.warmup,
            headers=headers,
            notices_redis=notices_redis,
        )

    def sweep_spec(
        self, rate: float, stream_url: str, bootstrap: str, headers: dict[str, str]
    ) -> FreshnessSpec:
        """One step of the rate sweep: a shorter run at ``rate``."""
        warmup = min(self.warmup, 3.0)
        return FreshnessSpec(
            stream_url,
            bootstrap,
            subscribers=self.subscribers,
            rate=rate,
            seconds=warmup + self.sweep_seconds,
            warmup=warmup,
            headers=headers,
        )


@dataclass(frozen=True)
class SweepStep:
    """One rate of the sweep and what it gave."""

    rate: float
    produced_per_s: float
    result: FreshnessResult

    @property
    def held(self) -> bool:
        """p99 under the ceiling, nothing lost, and the rate actually produced."""
        r = self.result
        return (
            r.p99_ms is not None
            and r.p99_ms < SWEEP_P99_MS
            and r.lost == 0
            and self.produced_per_s >= 0.9 * self.rate
        )


@dataclass
class FreshnessRun:
    """One measurement on a fresh stack: the distribution, and what it cost."""

    plan: FreshnessPlan
    log_dir: str
    result: FreshnessResult | None = None
    failure: str = ""
    ready_s: float | None = None
    """Worker and gateway start -> the probe event arrived at a subscriber."""
    cpu_percent: dict[str, float] = field(default_factory=dict)
    """Per process, over the counted window: CPU seconds / wall seconds, in % of one core."""
    load_average: dict[str, list[float]] = field(default_factory=dict)
    gateway_histogram: dict[str, float | None] = field(default_factory=dict)
    """The gateway's own ``continuity_freshness_seconds`` over the run: samples, p50, p99 (ms)."""
    sweep: list[SweepStep] = field(default_factory=list)
    broker_trend: tuple[float, float] | None = None
    """The broker's CPU, % of one core, over the first and the last fifth of the window."""

    @property
    def sustained(self) -> SweepStep | None:
        """The highest rate of the sweep that held (the sweep stops at the first that did not)."""
        held = [s for s in self.sweep if s.held]
        return held[-1] if held else None

    def as_json(self) -> dict[str, Any]:
        return {
            "plan": asdict(self.plan),
            "result": asdict(self.result) if self.result is not None else None,
            "failure": self.failure,
            "targets": {
                "rate": TARGET_RATE,
                "subscribers": TARGET_SUBSCRIBERS,
                "p50_ms": TARGET_P50_MS,
                "p99_ms": TARGET_P99_MS,
                "applies": self.plan.at_target_load,
            },
            "stretch": {"p50_ms": STRETCH_P50_MS, "p99_ms": STRETCH_P99_MS},
            "gateway_histogram": self.gateway_histogram,
            "sweep": [
                {
                    **asdict(step.result),
                    "rate": step.rate,
                    "produced_per_s": step.produced_per_s,
                    "held": step.held,
                }
                for step in self.sweep
            ],
            "sweep_p99_ceiling_ms": SWEEP_P99_MS,
            "ready_s": self.ready_s,
            "cpu_percent_of_one_core": self.cpu_percent,
            "broker_cpu_first_last_fifth": self.broker_trend,
            "load_average": self.load_average,
            "logs": self.log_dir,
        }

    def lines(self) -> list[str]:
        """The summary printed next to the table."""
        p = self.plan
        head = (
            f"freshness through the gateway (Kafka record timestamp -> SSE event at a subscriber, "
            f"KIP-613): "
            f"{p.rate:,.0f} events/s, {p.subscribers} subscribers, {p.seconds:g} s counted after "
            f"a {p.warmup:g} s warm-up; 1 worker, 1 gateway, fresh stack"
        )
        r = self.result
        if r is None:
            return [head, f"  FAILED: {self.failure} (logs: {self.log_dir})"]
        counted = r.samples + r.lost
        out = [
            head,
            f"  p50 {_ms(r.p50_ms)}{self._target(r.p50_ms, TARGET_P50_MS)}, "
            f"p99 {_ms(r.p99_ms)}{self._target(r.p99_ms, TARGET_P99_MS)}, "
            f"p99.9 {_ms(r.p999_ms)}, max {_ms(r.max_ms)}; "
            f"{r.samples:,} of {counted:,} appends seen ({counted / p.seconds:,.0f}/s), "
            f"lost {r.lost:,}",
        ]
        h = self.gateway_histogram
        if h.get("samples"):
            out.append(
                f"  the gateway's own {HISTOGRAM} (record timestamp -> event written): "
                f"p50 {_ms(h.get('p50_ms'))}, p99 {_ms(h.get('p99_ms'))} "
                f"({h['samples']:,.0f} samples; interpolated within its buckets)"
            )
        if r.committed_p50_ms is not None:
            out.append(
                f"  the worker's part alone (record timestamp -> its commit notice on Redis "
                f"pub/sub): p50 {_ms(r.committed_p50_ms)}, p99 {_ms(r.committed_p99_ms)}; after "
                f"the notice, the gateway reads the session and writes the event"
            )
        if p.at_target_load:
            stretch = (
                r.p50_ms is not None
                and r.p50_ms <= STRETCH_P50_MS
                and r.p99_ms is not None
                and r.p99_ms <= STRETCH_P99_MS
            )
            out.append(
                f"  stretch goal p50 <= {STRETCH_P50_MS:g} ms, p99 <= {STRETCH_P99_MS:g} ms: "
                f"{'met' if stretch else 'not met'}"
            )
        for step in self.sweep:
            s = step.result
            out.append(
                f"  sweep {step.rate:,.0f} events/s (produced {step.produced_per_s:,.0f}/s): "
                f"p50 {_ms(s.p50_ms)}, p99 {_ms(s.p99_ms)}, p99.9 {_ms(s.p999_ms)}, "
                f"max {_ms(s.max_ms)}, lost {s.lost:,}; {'held' if step.held else 'did not hold'}"
            )
        if self.sweep:
            best = self.sustained
            out.append(
                f"  highest rate held with p99 < {SWEEP_P99_MS:g} ms: "
                + (
                    f"{best.rate:,.0f} events/s (p99 {_ms(best.result.p99_ms)})"
                    if best is not None
                    else f"none (not even {self.sweep[0].rate:,.0f} events/s)"
                )
            )
        if self.cpu_percent:
            cpu = ", ".join(f"{name} {pct:.0f}" for name, pct in self.cpu_percent.items())
            out.append(f"  CPU over the counted window, % of one core: {cpu}")
            per = {n: self.cpu_percent[n] / 100 / p.rate * 1000 for n in ("worker", "gateway")}
            out.append(
                f"  CPU per event at this rate: worker {per['worker']:.3f} ms, gateway "
                f"{per['gateway']:.3f} ms (one notice, one subscriber each)"
            )
        if self.broker_trend is not None:
            first, last = self.broker_trend
            out.append(
                f"  broker CPU, % of one core: {first:.0f} over the window's first fifth, "
                f"{last:.0f} over its last (the embedded broker's cost grows with the record "
                f"batches it holds)"
            )
        if self.load_average:
            loads = "; ".join(
                f"{when} {' '.join(f'{x:.2f}' for x in v)}" for when, v in self.load_average.items()
            )
            out.append(f"  load average (1, 5, 15 min): {loads}")
        if not p.at_target_load:
            out.append(
                f"  (targets p50 <= {TARGET_P50_MS:g} ms, p99 <= {TARGET_P99_MS:g} ms hold at "
                f"{TARGET_RATE:,.0f} events/s with {TARGET_SUBSCRIBERS} subscribers: not this load)"
            )
        return out

    def _target(self, value: float | None, target: float) -> str:
        if not self.plan.at_target_load:
            return ""
        verdict = "met" if value is not None and value <= target else "NOT met"
        return f" (target <= {target:g} ms: {verdict})"


async def measure(plan: FreshnessPlan, log_dir: Path, say: Say) -> FreshnessRun:
    """Measure on a fresh stack, then each sweep rate on a fresh stack of its own; stop every
    process; never raises."""
    run = FreshnessRun(plan, str(log_dir))
    say(f"  freshness: fresh stack with 1 worker and 1 gateway; logs {log_dir}")
    try:
        async with _path(log_dir, plan.warmup + plan.seconds) as path:
            run.ready_s = path.ready_s
            say(
                f"  freshness: worker pid {path.pids['worker']}, gateway pid "
                f"{path.pids['gateway']}; path ready after {path.ready_s:.1f} s; "
                f"measuring {plan.warmup + plan.seconds:g} s"
            )
            await _measure_main(path, run)
    except Exception as exc:
        run.failure = f"{type(exc).__name__}: {exc}"
        return run
    for rate in plan.sweep:
        try:
            step = await _sweep_step(plan, rate, log_dir / f"sweep-{rate:g}")
        except Exception as exc:
            run.failure = f"sweep at {rate:g} events/s: {type(exc).__name__}: {exc}"
            break
        run.sweep.append(step)
        say(
            f"  freshness sweep: {rate:,.0f} events/s on a fresh stack: p99 "
            f"{_ms(step.result.p99_ms)}, lost {step.result.lost:,}; "
            f"{'held' if step.held else 'did not hold, stopping'}"
        )
        if not step.held:
            break
    return run


@dataclass(frozen=True)
class _Path:
    """A started stack's measured path: where to subscribe and whose CPU to read."""

    stack: Stack
    children: list[loopback.Child]
    url: str
    headers: dict[str, str]
    metrics_url: str
    pids: dict[str, int]
    ready_s: float


@contextlib.asynccontextmanager
async def _path(log_dir: Path, seconds: float) -> AsyncIterator[_Path]:
    """A fresh broker and Redis, one worker and one gateway, the probe through them."""
    try:
        stack = await Stack.start(log_dir)
    except Exception as exc:
        raise RuntimeError(f"the broker or Redis did not start: {exc!r}") from exc
    children: list[loopback.Child] = []
    try:
        # The backbone variant's exact environment: the measured worker is the benchmarked one.
        children.append(loopback.start_worker("worker", stack.worker_env(), log_dir))
        started = time.monotonic()
        secret = secrets.token_urlsafe(48)
        gateway = await asyncio.to_thread(
            loopback.start_gateway,
            "gateway",
            stack.worker_env(CONTINUITY_AUTH_SECRET=secret),
            log_dir,
        )
        children.append(gateway)
        token = issue(
            secret, Role.SERVICE, subject="bench-freshness", ttl=seconds + PROBE_TIMEOUT + 600
        )
        headers = {"Authorization": f"Bearer {token}"}
        url = STREAM_URL.format(port=gateway.port)
        await _probe(stack, children, url, headers)
        yield _Path(
            stack,
            children,
            url,
            headers,
            f"http://127.0.0.1:{loopback.gateway_metrics_port(gateway)}/metrics",
            {
                "worker": children[0].pid,
                "gateway": gateway.pid,
                "broker": stack.broker.pid,
                "redis": stack.redis_servers[0].pid,
                "bench client": os.getpid(),
            },
            time.monotonic() - started,
        )
        _alive_or_fail(children)
    finally:
        _stop(children)
        await stack.stop()


@contextlib.contextmanager
def _frozen() -> Iterator[None]:
    # The workload and the oracle this process holds are hundreds of thousands of
    # objects: a full collection walking them in the middle of a run would be timed as
    # freshness. Frozen objects are left out of every collection.
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def _measure_main(path: _Path, run: FreshnessRun) -> None:
    plan = run.plan
    marks: dict[str, tuple[float, dict[str, float]]] = {}
    broker: list[tuple[float, float]] = []

    def on_phase(phase: str) -> None:
        marks[phase] = (time.monotonic(), {n: cpu_seconds(p) for n, p in path.pids.items()})

    async def sample_broker() -> None:
        while True:
            broker.append((time.monotonic(), cpu_seconds(path.pids["broker"])))
            await asyncio.sleep(1.0)

    run.load_average["before"] = _load()
    with _frozen():
        before = await _histogram(path.metrics_url)
        sampler = asyncio.create_task(sample_broker())
        try:
            run.result = await measure_freshness(
                plan.spec(path.url, path.stack.bootstrap, path.headers, path.stack.redis_url),
                on_phase=on_phase,
            )
        finally:
            sampler.cancel()
        added = delta(await _histogram(path.metrics_url), before)
    run.gateway_histogram = {
        "samples": max(added.values(), default=0.0),
        "p50_ms": _scaled(quantile(added, 0.50)),
        "p99_ms": _scaled(quantile(added, 0.99)),
    }
    run.load_average["after"] = _load()
    if "counting" in marks and "produced" in marks:
        (t0, cpu0), (t1, cpu1) = marks["counting"], marks["produced"]
        run.cpu_percent = {n: round((cpu1[n] - cpu0[n]) / (t1 - t0) * 100, 1) for n in path.pids}
        run.broker_trend = end_shares(broker, t0, t1)
    _alive_or_fail(path.children)


async def _sweep_step(plan: FreshnessPlan, rate: float, log_dir: Path) -> SweepStep:
    """One rate of the sweep, measured on a stack of its own: the embedded broker's cost
    grows with the record batches it holds (docs/benchmarks.md), so a stack that carried
    the main measurement would time the broker's history, not this rate."""
    async with _path(log_dir, plan.warmup + plan.sweep_seconds) as path:
        with _frozen():
            spec = plan.sweep_spec(rate, path.url, path.stack.bootstrap, path.headers)
            result = await measure_freshness(spec)
        return SweepStep(rate, (result.samples + result.lost) / plan.sweep_seconds, result)


def end_shares(
    samples: list[tuple[float, float]], t0: float, t1: float
) -> tuple[float, float] | None:
    """CPU % of one core over the first and the last fifth of the window [t0, t1]."""
    inside = [(t, c) for t, c in samples if t0 <= t <= t1]
    fifth = (t1 - t0) / 5
    first = [(t, c) for t, c in inside if t <= t0 + fifth]
    last = [(t, c) for t, c in inside if t >= t1 - fifth]
    if len(first) < 2 or len(last) < 2:
        return None

    def share(part: list[tuple[float, float]]) -> float:
        return round((part[-1][1] - part[0][1]) / (part[-1][0] - part[0][0]) * 100, 1)

    return share(first), share(last)


async def _probe(
    stack: Stack, children: list[loopback.Child], url: str, headers: dict[str, str]
) -> None:
    """Append one event and wait until a subscriber of its session gets it."""
    key = f"probe-{uuid.uuid4().hex[:8]}"
    arrived = asyncio.Event()

    async def follow() -> None:
        async for ev in sse_events(url.format(key=key), headers):
            if ev.event == "session":
                arrived.set()
                return

    follower = asyncio.create_task(follow())
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        event = product_viewed(key, 1)
        await producer.send_and_wait(
            topic_for(str(event["type"])), orjson.dumps(event), key=key.encode()
        )
        deadline = time.monotonic() + PROBE_TIMEOUT
        while not arrived.is_set():
            _alive_or_fail(children)
            if follower.done():
                follower.result()  # the stream's error, if it ended with one
                raise RuntimeError("the probe's stream ended before its event arrived")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the probe event did not arrive in {PROBE_TIMEOUT:.0f} s")
            await asyncio.sleep(0.05)
    finally:
        await producer.stop()
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)


def _alive_or_fail(children: list[loopback.Child]) -> None:
    for c in children:
        if not c.alive():
            raise RuntimeError(f"{c.name} exited with {c.proc.returncode} (log: {c.log_path})")


def _stop(children: list[loopback.Child]) -> None:
    # Signal every process first, so the gateway and the worker shut down in parallel.
    for c in children:
        if c.alive():
            c.proc.send_signal(signal.SIGTERM)
    for c in children:
        c.stop()


async def _histogram(url: str) -> dict[float, float]:
    """The gateway's freshness histogram, read from its ``/metrics``."""
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        resp.raise_for_status()
        return buckets(await resp.text(), HISTOGRAM)


def _scaled(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"
