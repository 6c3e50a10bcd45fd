"""The gateway's CPU per commit notice, at 100, 1,000 and 5,000 subscribers: part of ``make bench``.

``python -m bench.fanout_cost`` runs it alone; ``python -m bench`` runs it
after the freshness measurement (``--no-fanout-cost`` skips it).

The stack: the embedded broker and one redis-server (``bench.stack.Stack``)
and one real gateway process (``streams.dev.loopback.start_gateway``) with a
token key made for this run; a ``service`` token opens the streams (bounded
by the gateway's ``CONTINUITY_SSE_MAX_CONNECTIONS`` only, set above the
largest count). No worker: this process commits through the worker's own
commit path (``RedisState.load``, the pure planner ``plan_batch``,
``RedisState.commit``: ``commit.lua``), so every notice is the one a worker
publishes, on the sharded channel of the key's partition.

Each case:

* sets up its sessions: a typical session per key (``typical_session_events``:
  20 products viewed, 5 cart lines, ~4.3 KB of JSON), committed as above;
* opens ``subscribers`` SSE streams (``bench.freshness.sse_events``), each
  following one key (``1 per key``) or ``followers`` of them per key
  (``N per key``), and waits until each has its session's first state;
* commits one ``browse.product_viewed`` per key, round robin over the keys,
  at ``rate`` notices per second for ``seconds``: every commit of a key
  announces one new version;
* waits until every stream has its key's last version, checking that no
  stream ever got a version it had already passed (the ids rise strictly);
* reads the gateway's CPU (user + system, ``/proc``) over that window.

Reported: gateway CPU per notice (a notice is one committed version of one
key; with ``N per key`` it serves N streams) and per delivered event (one
``session`` event written to one stream). The window includes the streams'
keep-alive comments (one per stream every ``CONTINUITY_SSE_HEARTBEAT``,
15 s): at 5,000 streams that is ~330 writes/s besides the notices. The bench
client, Redis and the gateway share the machine, so a busy machine inflates
the figures a little (cache, scheduling), never the CPU the gateway did not
use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import resource
import secrets
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from bench.freshness import product_viewed, sse_events
from bench.procstat import cpu_seconds
from bench.stack import PARTITIONS, Stack
from bench.workload import typical_session_events
from schemas.topics import topic_for
from streams.core.decode import decode
from streams.core.fold import DEFAULT_LIMITS
from streams.core.plan import Record, needs, plan_batch
from streams.dev import loopback
from streams.gateway.auth import Role, issue
from streams.store.keys import DEFAULT_PREFIX, Space
from streams.store.state import RedisState

Say = Callable[[str], None]

STREAM_URL = "http://127.0.0.1:{port}/v1/sessions/{key}/stream"
# Streams opening at once: the gateway's listen backlog and read gate take them in turn.
OPENING = 100
SETUP_BATCH = 500
DELIVERY_TIMEOUT = 60.0
OPEN_TIMEOUT = 120.0


@dataclass(frozen=True)
class FanoutCostPlan:
    """Which cases, how hard and how long."""

    subscribers: tuple[int, ...] = (100, 1_000, 5_000)
    followers: int = 10
    """Streams per key in the shared case (``N per key``)."""
    rate: float = 200.0
    """Notices per second (committed versions, one key each)."""
    seconds: float = 10.0

    def cases(self) -> list[tuple[int, int]]:
        """(subscribers, streams per key), the distinct case first at each count."""
        return [(n, f) for n in self.subscribers for f in (1, self.followers) if n >= f]


@dataclass(frozen=True)
class CaseResult:
    """One case: what was published, what arrived, and what the gateway spent."""

    subscribers: int
    per_key: int
    keys: int
    notices: int
    delivered: int
    """``session`` events written to the streams over the window."""
    window_s: float
    gateway_cpu_s: float
    redis_cpu_s: float
    bench_cpu_s: float
    regressions: int
    """Events whose version was not above the stream's previous one (must be 0)."""
    behind: int
    """Streams without their key's last version at the end (must be 0)."""

    @property
    def ok(self) -> bool:
        return self.regressions == 0 and self.behind == 0

    @property
    def ms_per_notice(self) -> float:
        return self.gateway_cpu_s / max(self.notices, 1) * 1000

    @property
    def us_per_event(self) -> float:
        return self.gateway_cpu_s / max(self.delivered, 1) * 1e6

    def line(self) -> str:
        verdict = "" if self.ok else f"  FAILED: {self.regressions} repeats, {self.behind} behind"
        return (
            f"  {self.subscribers:>6,} streams, {self.per_key:>2} per key ({self.keys:,} keys): "
            f"{self.notices:,} notices, {self.delivered:,} events in {self.window_s:.1f} s; "
            f"gateway {self.gateway_cpu_s:.2f} CPU s = {self.ms_per_notice:.3f} ms/notice, "
            f"{self.us_per_event:.0f} us/event (redis {self.redis_cpu_s:.2f} s, "
            f"bench client {self.bench_cpu_s:.2f} s){verdict}"
        )


@dataclass
class FanoutCostRun:
    plan: FanoutCostPlan
    log_dir: str
    cases: list[CaseResult] = field(default_factory=list)
    failure: str = ""
    load_average: dict[str, list[float]] = field(default_factory=dict)
    """Before and after: on a small machine the figures depend on who else needs a core."""

    @property
    def ok(self) -> bool:
        return not self.failure and all(c.ok for c in self.cases)

    def as_json(self) -> dict[str, Any]:
        return {
            "plan": asdict(self.plan),
            "cases": [
                {**asdict(c), "ms_per_notice": c.ms_per_notice, "us_per_event": c.us_per_event}
                for c in self.cases
            ],
            "failure": self.failure,
            "load_average": self.load_average,
            "logs": self.log_dir,
        }

    def lines(self) -> list[str]:
        p = self.plan
        out = [
            f"gateway CPU per commit notice (1 gateway, no worker: commits through the "
            f"worker's commit path at {p.rate:g} notices/s for {p.seconds:g} s per case)"
        ]
        out += [c.line() for c in self.cases]
        if self.load_average:
            loads = "; ".join(
                f"{when} {' '.join(f'{x:.2f}' for x in v)}" for when, v in self.load_average.items()
            )
            out.append(f"  load average (1, 5, 15 min): {loads}")
        if self.failure:
            out.append(f"  FAILED: {self.failure} (logs: {self.log_dir})")
        return out


class _Committer:
    """Commits events as a worker does, one plan per partition; remembers each key's version."""

    def __init__(self, state: RedisState) -> None:
        self._state = state
        self._offsets: Counter[str] = Counter()
        self.versions: dict[str, int] = {}
        self.notices = 0

    async def commit(self, events: Sequence[dict[str, Any]]) -> None:
        groups: dict[int, list[Record]] = {}
        for event in events:
            record = self._record(event)
            groups.setdefault(record.partition, []).append(record)
        for partition, group in sorted(groups.items()):
            decoded = [decode(r.value) for r in group]
            snapshot = await self._state.load(needs(group, decoded), partition)
            plan = plan_batch(group, decoded, snapshot, DEFAULT_LIMITS)
            conflict = await self._state.commit(plan, time.time(), partition)
            if conflict is not None:  # the only writer: nothing can change under it
                raise RuntimeError(f"commit refused: {conflict}")
            # Every written key is announced once, with its new version.
            self.notices += len(plan.writes)
            for key, session in plan.writes.items():
                self.versions[key] = session.version

    def _record(self, event: dict[str, Any]) -> Record:
        key = str(event["customer_id"]).encode()
        topic = topic_for(str(event["type"]))
        partition = (murmur2(key) & 0x7FFFFFFF) % PARTITIONS
        tp = f"{topic}:{partition}"
        offset = self._offsets[tp]
        self._offsets[tp] += 1
        return Record(topic, partition, offset, key, orjson.dumps(event))


@dataclass
class _Stream:
    key: str
    last: int = 0
    events: int = 0
    regressions: int = 0
    first: asyncio.Event = field(default_factory=asyncio.Event)


async def _follow(
    url: str, headers: dict[str, str], stream: _Stream, gate: asyncio.Semaphore
) -> None:
    await gate.acquire()
    held = True
    try:
        async for ev in sse_events(url, headers):
            if ev.event != "session" or ev.id is None:
                continue
            version = int(ev.id)
            if version <= stream.last:
                stream.regressions += 1
            stream.last = max(stream.last, version)
            stream.events += 1
            if held:
                held = False
                gate.release()
                stream.first.set()
        raise RuntimeError(f"the stream of {stream.key} ended")
    finally:
        if held:
            gate.release()


async def measure(plan: FanoutCostPlan, log_dir: Path, say: Say) -> FanoutCostRun:
    """Start the stack and the gateway, run every case, stop every process; never raises."""
    run = FanoutCostRun(plan, str(log_dir))
    need = max(plan.subscribers) + 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need + 1000:
        # Both ends of every stream are on this machine: this process and the gateway
        # (which inherits the limit) each hold one descriptor per stream.
        wanted = min(hard, need + 1000)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        if wanted < need + 1000:
            run.failure = f"open files limited to {hard}; {need + 1000} needed"
            return run
    say(f"  fanout cost: fresh stack and 1 gateway; logs {log_dir}")
    try:
        stack = await Stack.start(log_dir)
    except Exception as exc:
        run.failure = f"the broker or Redis did not start: {exc!r}"
        return run
    gateway: loopback.Child | None = None
    try:
        secret = secrets.token_urlsafe(48)
        env = stack.worker_env(
            CONTINUITY_AUTH_SECRET=secret, CONTINUITY_SSE_MAX_CONNECTIONS=str(need)
        )
        gateway = await asyncio.to_thread(loopback.start_gateway, "gateway", env, log_dir)
        token = issue(secret, Role.SERVICE, subject="bench-fanout-cost", ttl=3600)
        headers = {"Authorization": f"Bearer {token}"}
        # One committer for the run: its offsets go on rising, as a topic's do.
        committer = _Committer(RedisState(stack.redis, Space(DEFAULT_PREFIX, PARTITIONS)))
        pids = {"gateway": gateway.pid, "redis": stack.redis_pids[0], "bench": os.getpid()}
        run.load_average["before"] = _load()
        for subscribers, per_key in plan.cases():
            case = await _case(plan, subscribers, per_key, committer, gateway, headers, pids)
            run.cases.append(case)
            say(case.line())
            if not gateway.alive():
                raise RuntimeError(f"the gateway exited (log: {gateway.log_path})")
        run.load_average["after"] = _load()
    except Exception as exc:
        run.failure = f"{type(exc).__name__}: {exc}"
    finally:
        if gateway is not None:
            if gateway.alive():
                gateway.proc.send_signal(signal.SIGTERM)
            gateway.stop()
        await stack.stop()
    return run


async def _case(
    plan: FanoutCostPlan,
    subscribers: int,
    per_key: int,
    committer: _Committer,
    gateway: loopback.Child,
    headers: dict[str, str],
    pids: dict[str, int],
) -> CaseResult:
    run = uuid.uuid4().hex[:6]
    keys = [f"fan-{run}-{i:05d}" for i in range(subscribers // per_key)]
    setup: list[dict[str, Any]] = [e for k in keys for e in typical_session_events(k)]
    for i in range(0, len(setup), SETUP_BATCH):
        await committer.commit(setup[i : i + SETUP_BATCH])
    streams = [_Stream(k) for k in keys for _ in range(per_key)]
    gate = asyncio.Semaphore(OPENING)
    tasks = [
        asyncio.create_task(
            _follow(STREAM_URL.format(port=gateway.port, key=s.key), headers, s, gate)
        )
        for s in streams
    ]
    try:
        await _until(lambda: all(s.first.is_set() for s in streams), tasks, OPEN_TIMEOUT)
        before = {id(s): s.events for s in streams}
        notices_before = committer.notices
        gc.collect()
        gc.freeze()
        try:
            cpu0 = {n: cpu_seconds(p) for n, p in pids.items()}
            t0 = time.monotonic()
            await _publish(plan, keys, committer)
            final = dict(committer.versions)
            await _until(
                lambda: all(s.last >= final[s.key] for s in streams),
                tasks,
                DELIVERY_TIMEOUT,
                must=False,
            )
            t1 = time.monotonic()
            cpu1 = {n: cpu_seconds(p) for n, p in pids.items()}
        finally:
            gc.unfreeze()
        delivered = sum(s.events - before[id(s)] for s in streams)
        return CaseResult(
            subscribers=len(streams),
            per_key=per_key,
            keys=len(keys),
            notices=committer.notices - notices_before,
            delivered=delivered,
            window_s=round(t1 - t0, 2),
            gateway_cpu_s=round(cpu1["gateway"] - cpu0["gateway"], 3),
            redis_cpu_s=round(cpu1["redis"] - cpu0["redis"], 3),
            bench_cpu_s=round(cpu1["bench"] - cpu0["bench"], 3),
            regressions=sum(s.regressions for s in streams),
            behind=sum(1 for s in streams if s.last < final[s.key]),
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Let the gateway see every stream close before the next case opens its own.
        await asyncio.sleep(1.0)


async def _publish(plan: FanoutCostPlan, keys: list[str], committer: _Committer) -> None:
    """One new version per key, round robin, at ``plan.rate`` notices/s for ``plan.seconds``."""
    per_tick = min(len(keys), max(1, math.ceil(plan.rate * 0.05)))
    interval = per_tick / plan.rate
    ticks = max(1, round(plan.seconds / interval))
    notices_before = committer.notices
    n, next_at = 0, time.monotonic()
    for _ in range(ticks):
        batch = []
        for _ in range(per_tick):
            key = keys[n % len(keys)]
            batch.append(product_viewed(key, 1000 + n))
            n += 1
        await committer.commit(batch)
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    if committer.notices - notices_before != n:
        raise RuntimeError(f"{n} events committed, {committer.notices - notices_before} notices")


async def _until(
    done: Callable[[], bool], tasks: list[asyncio.Task[None]], timeout: float, must: bool = True
) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        ended = [t for t in tasks if t.done()]
        if ended:
            error = ended[0].exception() if not ended[0].cancelled() else None
            raise RuntimeError(f"{len(ended)} of {len(tasks)} streams ended: {error!r}")
        if time.monotonic() > deadline:
            if must:
                raise RuntimeError(f"not done after {timeout:g} s ({len(tasks)} streams open)")
            return
        await asyncio.sleep(0.05)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.fanout_cost", description=__doc__.splitlines()[0]
    )
    add_flags(p)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    return p.parse_args(argv)


def add_flags(p: argparse.ArgumentParser) -> None:
    """The flags of this measurement (also ``python -m bench``'s)."""
    g = p.add_argument_group("gateway CPU per commit notice")
    g.add_argument(
        "--fanout-cost-subscribers", default="100,1000,5000", help="comma-separated stream counts"
    )
    g.add_argument(
        "--fanout-cost-followers", type=int, default=10, help="streams per key, shared case"
    )
    g.add_argument("--fanout-cost-rate", type=float, default=200.0, help="notices/s")
    g.add_argument("--fanout-cost-seconds", type=float, default=10.0, help="per case")


def plan_of(args: argparse.Namespace) -> FanoutCostPlan:
    """The plan the flags ask for."""
    return FanoutCostPlan(
        subscribers=tuple(int(n) for n in args.fanout_cost_subscribers.split(",") if n),
        followers=args.fanout_cost_followers,
        rate=args.fanout_cost_rate,
        seconds=args.fanout_cost_seconds,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logs = args.out / "logs" / time.strftime("%Y%m%dT%H%M%S") / "fanout-cost"
    run = asyncio.run(measure(plan_of(args), logs, print))
    for line in run.lines():
        print(line, flush=True)
    print(orjson.dumps(run.as_json(), option=orjson.OPT_INDENT_2).decode())
    return 0 if run.ok else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
