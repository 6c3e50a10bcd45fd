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

The targets (the product's performance goals) hold at 1,000 events/s with
100 subscribers; a run at another rate or subscriber count is printed
without a verdict.
"""

from __future__ import annotations

import asyncio
import gc
import os
import secrets
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from bench.freshness import (
    FreshnessResult,
    FreshnessSpec,
    measure_freshness,
    product_viewed,
    sse_events,
)
from bench.procstat import cpu_seconds
from bench.stack import Stack
from schemas.topics import topic_for
from streams.dev import loopback
from streams.gateway.auth import Role, issue

Say = Callable[[str], None]

TARGET_RATE = 1_000.0
TARGET_SUBSCRIBERS = 100
TARGET_P50_MS = 5.0
TARGET_P99_MS = 20.0
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
            "ready_s": self.ready_s,
            "cpu_percent_of_one_core": self.cpu_percent,
            "load_average": self.load_average,
            "logs": self.log_dir,
        }

    def lines(self) -> list[str]:
        """The summary printed next to the table."""
        p = self.plan
        head = (
            f"freshness through the gateway (Kafka append -> SSE event at a subscriber): "
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
        if r.committed_p50_ms is not None:
            out.append(
                f"  the worker's part alone (append -> its commit notice on Redis pub/sub): "
                f"p50 {_ms(r.committed_p50_ms)}, p99 {_ms(r.committed_p99_ms)}; after the "
                f"notice, the gateway re-reads the session and writes the event"
            )
        if self.cpu_percent:
            cpu = ", ".join(f"{name} {pct:.0f}" for name, pct in self.cpu_percent.items())
            out.append(f"  CPU over the counted window, % of one core: {cpu}")
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
    """Start the stack, wait for the probe, measure, stop every process; never raises."""
    run = FreshnessRun(plan, str(log_dir))
    say(f"  freshness: fresh stack with 1 worker and 1 gateway; logs {log_dir}")
    try:
        stack = await Stack.start(log_dir)
    except Exception as exc:
        run.failure = f"the broker or Redis did not start: {exc!r}"
        return run
    children: list[loopback.Child] = []
    try:
        await _measure_on(stack, children, run, say)
    except Exception as exc:
        run.failure = f"{type(exc).__name__}: {exc}"
    finally:
        _stop(children)
        await stack.stop()
    return run


async def _measure_on(
    stack: Stack, children: list[loopback.Child], run: FreshnessRun, say: Say
) -> None:
    plan = run.plan
    # The backbone variant's exact environment: the measured worker is the benchmarked one.
    children.append(loopback.start_worker("worker", stack.worker_env(), Path(run.log_dir)))
    started = time.monotonic()
    secret = secrets.token_urlsafe(48)
    gateway = await asyncio.to_thread(
        loopback.start_gateway,
        "gateway",
        stack.worker_env(CONTINUITY_AUTH_SECRET=secret),
        Path(run.log_dir),
    )
    children.append(gateway)
    ttl = plan.warmup + plan.seconds + PROBE_TIMEOUT + 600
    token = issue(secret, Role.SERVICE, subject="bench-freshness", ttl=ttl)
    headers = {"Authorization": f"Bearer {token}"}
    url = STREAM_URL.format(port=gateway.port)
    await _probe(stack, children, url, headers)
    run.ready_s = time.monotonic() - started
    say(
        f"  freshness: worker pid {children[0].pid}, gateway pid {gateway.pid}; path ready after "
        f"{run.ready_s:.1f} s; measuring {plan.warmup + plan.seconds:g} s"
    )
    pids = {
        "worker": children[0].pid,
        "gateway": gateway.pid,
        "broker": stack.broker.pid,
        "redis": stack.redis_servers[0].pid,
        "bench client": os.getpid(),
    }
    marks: dict[str, tuple[float, dict[str, float]]] = {}

    def on_phase(phase: str) -> None:
        marks[phase] = (time.monotonic(), {n: cpu_seconds(pid) for n, pid in pids.items()})

    run.load_average["before"] = _load()
    # The workload and the oracle this process still holds are hundreds of thousands
    # of objects: a full collection walking them in the middle of the run would be
    # timed as freshness. Frozen objects are left out of every collection.
    gc.collect()
    gc.freeze()
    try:
        run.result = await measure_freshness(
            plan.spec(url, stack.bootstrap, headers, stack.redis_url), on_phase=on_phase
        )
    finally:
        gc.unfreeze()
    run.load_average["after"] = _load()
    if "counting" in marks and "produced" in marks:
        (t0, cpu0), (t1, cpu1) = marks["counting"], marks["produced"]
        run.cpu_percent = {n: round((cpu1[n] - cpu0[n]) / (t1 - t0) * 100, 1) for n in pids}
    _alive_or_fail(children)


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


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"
