"""The consumers compared, and how the harness starts, observes and checks each of them.

* ``ceiling``: plain aiokafka ``getmany`` + decode + one Redis pipeline per batch
  (``bench.runners.ceiling``): what the machine allows.
* ``faust-empty``: a Faust agent that only counts (``bench.runners.faust_empty``):
  the framework's floor.
* ``naive``: a Faust agent doing GET, fold, SET per event (``bench.runners.naive``).
* ``getset``: a Faust agent doing one GET and one SET of plain JSON per event
  (``bench.runners.getset``): no planner, no effects.
* ``backbone``: the real worker, ``python -m streams.cli worker``, untouched.
* ``backbone-2``: two real workers in one consumer group, on the same backlog.

Runners report their own first/last applied moments and CPU (``Tracker``). The
worker is observed from outside: the harness polls its applied offsets
(``cont:o``) every 20 ms, reads CPU from ``/proc`` at the first poll that sees
an applied event and when every partition is applied, and (two workers)
watches the consumer group until it is Stable with both members before it
starts counting.
"""

from __future__ import annotations

import asyncio
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from bench.check import Verdict, check_count, check_counts, check_json_counts, check_state
from bench.expect import Expectation
from bench.procstat import cpu_seconds
from bench.runners.tracker import Report
from bench.stack import Backlog, GroupWatch, Stack, script_commands
from bench.workload import Workload
from streams.dev import loopback

WORKER_PREFIX = "cont"
WORKER_GROUP = "continuity"
POLL = 0.02


class RunFailed(Exception):
    """The consumer died, stalled or never settled: the run does not count."""


@dataclass(frozen=True)
class Observation:
    """When the consumer applied its first batch and its last event, and its CPU at both."""

    started_at: float
    first_at: float
    first_count: int
    first_cpu: float
    last_at: float
    count: int
    last_cpu: float
    round_trips: int | None = None
    """Redis round trips the consumer counted itself; ``None``: derived from Redis's counts."""
    note: str = ""

    @property
    def start_s(self) -> float:
        return self.first_at - self.started_at

    @property
    def drain_s(self) -> float:
        return self.last_at - self.first_at

    @property
    def counted(self) -> int:
        """Events applied after the first observation: the ones the rate is computed over."""
        return self.count - self.first_count


class Variant(ABC):
    """One way of consuming the backlog."""

    name: str
    processes: int = 1
    cluster: bool = False
    """Whether it runs on a three-primary Redis Cluster rather than one server."""

    @abstractmethod
    def start(self, stack: Stack, run_dir: Path, backlog: Backlog) -> list[loopback.Child]:
        """Start the consumer's process(es)."""

    @abstractmethod
    async def observe(
        self, stack: Stack, children: list[loopback.Child], started_at: float, backlog: Backlog
    ) -> Observation:
        """Wait until every event of the backlog is applied."""

    @abstractmethod
    async def check(
        self, stack: Stack, workload: Workload, expected: Expectation, obs: Observation
    ) -> Verdict:
        """Is the final state right?"""

    def round_trips(self, obs: Observation, redis_calls: dict[str, int]) -> int:
        """Redis requests the consumer waited for (a pipeline counts once)."""
        assert obs.round_trips is not None
        return obs.round_trips


class Runner(Variant):
    """A bench runner module started as ``python -m bench.runners.<module>``."""

    def __init__(self, name: str, module: str, prefix: str, timeout: float) -> None:
        self.name = name
        self.module = module
        self.prefix = prefix
        self.timeout = timeout
        self._report: Path | None = None

    def start(self, stack: Stack, run_dir: Path, backlog: Backlog) -> list[loopback.Child]:
        self._report = run_dir / f"{self.name}.report.json"
        argv = [
            sys.executable,
            "-m",
            f"bench.runners.{self.module}",
            "--expect",
            str(backlog.events),
            "--report",
            str(self._report),
        ]
        env = stack.worker_env(
            CONTINUITY_APP_ID=f"bench-{self.name}", CONTINUITY_REDIS_PREFIX=self.prefix
        )
        return [loopback.spawn(self.name, argv, run_dir / f"{self.name}.log", env=env)]

    async def observe(
        self, stack: Stack, children: list[loopback.Child], started_at: float, backlog: Backlog
    ) -> Observation:
        assert self._report is not None
        deadline = time.monotonic() + self.timeout
        while not self._report.exists():
            _alive_or_fail(children)
            if time.monotonic() > deadline:
                raise RunFailed(f"not done after {self.timeout:.0f}s")
            await asyncio.sleep(POLL)
        r = Report.read(self._report)
        return Observation(
            started_at,
            r.first_at,
            r.first_count,
            r.first_cpu,
            r.last_at,
            r.count,
            r.last_cpu,
            r.round_trips,
        )

    async def check(
        self, stack: Stack, workload: Workload, expected: Expectation, obs: Observation
    ) -> Verdict:
        if self.module == "ceiling":
            return await check_counts(stack.redis, self.prefix, workload)
        if self.module == "getset":
            return await check_json_counts(stack.redis, self.prefix, workload)
        if self.module == "naive":
            return await check_state(stack.redis, self.prefix, False, workload, expected)
        return check_count(obs.count, len(workload.events))


class Backbone(Variant):
    """The real worker (``continuity worker``), one or more processes in one group."""

    def __init__(
        self,
        name: str,
        workers: int,
        timeout: float,
        env: dict[str, str] | None = None,
        cluster: bool = False,
    ) -> None:
        self.name = name
        self.processes = workers
        self.timeout = timeout
        self.env = env or {}
        self.cluster = cluster

    def start(self, stack: Stack, run_dir: Path, backlog: Backlog) -> list[loopback.Child]:
        env = stack.worker_env(**self.env)
        return [
            loopback.start_worker(f"worker{i + 1}", env, run_dir) for i in range(self.processes)
        ]

    async def observe(
        self, stack: Stack, children: list[loopback.Child], started_at: float, backlog: Backlog
    ) -> Observation:
        watch = GroupWatch(stack.bootstrap, WORKER_GROUP) if self.processes > 1 else None
        if watch is not None:
            watch.start()
        try:
            return await self._poll(stack, children, started_at, backlog, watch)
        finally:
            if watch is not None:
                await watch.stop()

    async def _poll(
        self,
        stack: Stack,
        children: list[loopback.Child],
        started_at: float,
        backlog: Backlog,
        watch: GroupWatch | None,
    ) -> Observation:
        deadline = time.monotonic() + self.timeout
        first: tuple[float, int, float] | None = None
        any_applied: float | None = None
        while True:
            applied = await stack.applied_offsets(WORKER_PREFIX)
            now = time.time()
            # Source records only: session-forwards records are the worker's own.
            count = sum(applied.get(tp, -1) + 1 for tp in backlog.last_offsets)
            if count and any_applied is None:
                any_applied = now
            settled = watch is None or watch.stable_since(self.processes) is not None
            if first is None and count and settled:
                first = (now, count, _cpu(children))
                if watch is not None:
                    watch.interval = 1.0  # a rebalance from now on is still seen
            # Drained: every source record applied, and (forward mode) every merge
            # across partitions landed.
            if backlog.drained(applied) and not await stack.in_flight(WORKER_PREFIX):
                if first is None:
                    story = watch.story(started_at) if watch else ""
                    raise RunFailed(f"backlog drained before the group settled ({story})")
                break
            _alive_or_fail(children)
            if time.monotonic() > deadline:
                raise RunFailed(f"{count} of {backlog.events} applied after {self.timeout:.0f}s")
            await asyncio.sleep(POLL)
        last_cpu = _cpu(children)
        note = ""
        if watch is not None:
            assert any_applied is not None
            note = (
                f"group: {watch.story(started_at)}; first event applied "
                f"+{any_applied - started_at:.1f}s, counted from +{first[0] - started_at:.1f}s"
            )
        return Observation(
            started_at, first[0], first[1], first[2], now, count, last_cpu, None, note
        )

    async def check(
        self, stack: Stack, workload: Workload, expected: Expectation, obs: Observation
    ) -> Verdict:
        return await check_state(stack.redis, WORKER_PREFIX, True, workload, expected)

    def round_trips(self, obs: Observation, redis_calls: dict[str, int]) -> int:
        # The worker never pipelines: each command it sends itself is one round trip.
        # Commands its Lua scripts run inside Redis are not sent by it.
        inner = script_commands()
        return sum(n for cmd, n in redis_calls.items() if cmd not in inner)


def all_variants(events: int) -> list[Variant]:
    """Every variant, in the order a round runs them."""
    timeout = 120 + events / 400  # generous: the slowest (naive) folds ~2,000+ events/s
    return [
        Runner("ceiling", "ceiling", "ceil", timeout),
        Runner("faust-empty", "faust_empty", "empty", timeout),
        Runner("naive", "naive", "naive", timeout),
        Runner("getset", "getset", "getset", timeout),
        Backbone("backbone", 1, timeout),
        # What the session changelog costs the worker: the same, with it switched off.
        Backbone("backbone-no-changelog", 1, timeout, {"CONTINUITY_CHANGELOG": "false"}),
        Backbone("backbone-2", 2, timeout),
        # A login across partitions in one commit (one primary only), against the
        # default's hop through session-forwards; and the default on a three-primary
        # Redis Cluster.
        Backbone("backbone-direct", 1, timeout, {"CONTINUITY_CROSS_PARTITION": "direct"}),
        Backbone("backbone-cluster", 1, timeout, cluster=True),
    ]


def _cpu(children: list[loopback.Child]) -> float:
    return sum(cpu_seconds(c.pid) for c in children)


def _alive_or_fail(children: list[loopback.Child]) -> None:
    for c in children:
        if not c.alive():
            raise RunFailed(f"{c.name} exited with {c.proc.returncode} (log: {c.log_path})")
