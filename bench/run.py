"""One measured run: a fresh stack, the backlog, one consumer draining it, the figures, the check.

Rates are computed over what happens after the consumer's first applied batch
(so start-up and the first fetch are not in them): events applied after it,
divided by the time from it to the last applied event. Consumer CPU covers
the same window. Redis figures (commands, CPU) cover the consumer's whole life
up to the last applied event and are divided by all events of the backlog.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.expect import Expectation
from bench.procstat import cpu_seconds, peak_rss_bytes
from bench.stack import Stack
from bench.variants import Observation, RunFailed, Variant
from bench.workload import Encoded, Workload
from streams.dev import loopback

Say = Callable[[str], None]
MB = 1024 * 1024


@dataclass
class RunResult:
    """The figures of one run of one variant. ``ok`` is False when the run does not count."""

    variant: str
    round: int
    ok: bool
    verdict: str
    events: int
    log_dir: str
    produce_s: float = 0.0
    start_s: float | None = None
    drain_s: float | None = None
    counted_events: int | None = None
    events_per_s: float | None = None
    cpu_s_per_m: float | None = None
    peak_rss_mb: float | None = None
    peak_rss_mb_each: list[float] = field(default_factory=list)
    redis_cmds_per_event: float | None = None
    redis_round_trips_per_event: float | None = None
    redis_cpu_s_per_m: float | None = None
    broker_cpu_s_per_m: float | None = None
    harness_cpu_s_per_m: float | None = None
    """This process's own (the polls, the group watch), over the same time as Redis's."""
    window_cpu_s_per_m: dict[str, float] = field(default_factory=dict)
    """CPU per million events over the counted window only (sampled every 0.1 s):
    ``consumer``, ``redis``, ``broker``, ``harness`` (this process: its polls, the group
    watch), and ``idle``: the cores' time nobody used."""
    note: str = ""

    def line(self) -> str:
        """The progress line printed when the run ends."""
        if self.events_per_s is None:
            return f"      -> {self.verdict}"
        figures = (
            f"{self.events_per_s:,.0f} events/s, start {self.start_s:.1f} s, "
            f"CPU {self.cpu_s_per_m:,.0f} s/M, peak RSS {self.peak_rss_mb:.0f} MB, "
            f"Redis {self.redis_round_trips_per_event:.3f} round trips/event"
        )
        note = f"\n         {self.note}" if self.note else ""
        return f"      -> {figures}; check {self.verdict}{note}"


async def run_once(
    variant: Variant,
    workload: Workload,
    records: Sequence[Encoded],
    expected: Expectation,
    round_no: int,
    logs: Path,
    say: Say,
) -> RunResult:
    """Drain the workload's backlog once with ``variant`` on a fresh broker and Redis."""
    run_dir = logs / f"round{round_no}-{variant.name}"
    result = RunResult(variant.name, round_no, False, "", len(records), str(run_dir))
    stack = await Stack.start(run_dir, cluster=variant.cluster)
    children: list[loopback.Child] = []
    try:
        backlog = await stack.produce(records)
        result.produce_s = backlog.seconds
        calls_before = await stack.commandstats()
        harness_before = dict(stack.harness_calls)
        redis_cpu = sum(map(cpu_seconds, stack.redis_pids))
        broker_cpu = cpu_seconds(stack.broker.pid)
        harness_cpu = cpu_seconds(os.getpid())
        samples: list[tuple[float, float, float, float]] = []
        sampling = asyncio.create_task(_sample(stack, samples))
        started = time.time()
        children = variant.start(stack, run_dir, backlog)
        pids = ", ".join(str(c.pid) for c in children)
        say(f"  round {round_no} {variant.name:<12} pid {pids}; logs {run_dir}")
        try:
            obs = await variant.observe(stack, children, started, backlog)
        finally:
            sampling.cancel()
        rss = [peak_rss_bytes(c.pid) / MB for c in children]
        redis_cpu = sum(map(cpu_seconds, stack.redis_pids)) - redis_cpu
        broker_cpu = cpu_seconds(stack.broker.pid) - broker_cpu
        harness_cpu = cpu_seconds(os.getpid()) - harness_cpu
        calls_after = await stack.commandstats()
        mine = {c: n - harness_before.get(c, 0) for c, n in stack.harness_calls.items()}
        calls = {
            cmd: delta
            for cmd, n in calls_after.items()
            if (delta := n - calls_before.get(cmd, 0) - mine.get(cmd, 0))
        }
        n = len(records)
        result.start_s = obs.start_s
        result.drain_s = obs.drain_s
        result.counted_events = obs.counted
        result.events_per_s = obs.counted / obs.drain_s if obs.drain_s > 0 else None
        result.cpu_s_per_m = (obs.last_cpu - obs.first_cpu) / obs.counted * 1e6
        result.peak_rss_mb = max(rss)
        result.peak_rss_mb_each = [round(r, 1) for r in rss]
        result.redis_cmds_per_event = sum(calls.values()) / n
        result.redis_round_trips_per_event = variant.round_trips(obs, calls) / n
        result.redis_cpu_s_per_m = redis_cpu / n * 1e6
        result.broker_cpu_s_per_m = broker_cpu / n * 1e6
        result.harness_cpu_s_per_m = harness_cpu / n * 1e6
        result.window_cpu_s_per_m = _window(samples, obs)
        result.note = obs.note
        verdict = await variant.check(stack, workload, expected, obs)
        result.ok = verdict.ok
        result.verdict = str(verdict)
    except RunFailed as exc:
        result.verdict = f"FAILED: {exc}"
    finally:
        _stop(children)
        await stack.stop()
    say(result.line())
    return result


async def _sample(stack: Stack, into: list[tuple[float, float, float, float]]) -> None:
    """Every 0.1 s: the time, and Redis's, the broker's and this process's CPU."""
    while True:
        into.append(
            (
                time.time(),
                sum(map(cpu_seconds, stack.redis_pids)),
                cpu_seconds(stack.broker.pid),
                cpu_seconds(os.getpid()),
            )
        )
        await asyncio.sleep(0.1)


def _window(samples: list[tuple[float, float, float, float]], obs: Observation) -> dict[str, float]:
    """Each process's CPU per million events between the samples nearest the counted
    window's ends, and what was left idle of every core over it."""
    if obs.counted <= 0 or obs.drain_s <= 0 or len(samples) < 2:
        return {}
    a = min(samples, key=lambda s: abs(s[0] - obs.first_at))
    b = min(samples, key=lambda s: abs(s[0] - obs.last_at))
    if b[0] <= a[0]:
        return {}
    per = 1e6 / obs.counted
    out = {
        "consumer": (obs.last_cpu - obs.first_cpu) * per,
        "redis": (b[1] - a[1]) * per,
        "broker": (b[2] - a[2]) * per,
        "harness": (b[3] - a[3]) * per,
    }
    cores = (os.cpu_count() or 1) * (b[0] - a[0]) * per
    out["idle"] = max(0.0, cores - sum(out.values()))
    return {k: round(v, 1) for k, v in out.items()}


def _stop(children: list[loopback.Child]) -> None:
    for c in children:  # all at once: workers of one group leave together
        if c.alive():
            c.proc.send_signal(signal.SIGTERM)
    for c in children:
        c.stop()
