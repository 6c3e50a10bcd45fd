"""``python -m bench.steady``: what one worker costs per event at a steady rate, not a backlog.

Draining a backlog, a worker folds batches of hundreds of records; at a
steady 1,000 events/s a fetch holds a handful, spread over the partitions,
so what is paid per batch (fetch, script calls, metrics, the planner's set-up)
is paid per few events. This measures that case.

Each round starts a fresh embedded broker and Redis (``bench.stack``) and one
real worker (``continuity worker``, the ``backbone`` variant's environment
plus a ``/metrics`` port). One record is produced and waited for (the group
join), then the rest of the seeded workload (``--mix``: the ``make bench``
shop mix by default) is produced at ``--rate`` events/s, paced every 10 ms.
After ``--warmup`` seconds the window opens and lasts ``--seconds``: the
worker's CPU (``/proc``, user + system, all threads), the broker's and
Redis's, the events the worker applied (its applied offsets in Redis), its
batches (``continuity_batch_duration_seconds``, one per partition folded)
and Redis's script calls (``INFO commandstats``) are read at both ends. In a
profiled round ``py-spy record --gil`` is attached for the window, and its
samples are put in ``bench.profile``'s categories.

``--backlog`` also drains the same records as a backlog (``bench.profile``'s
plain round), so the two CPU-per-event figures come from one command.
Results go to ``bench/results/steady-<time>/`` (``steady.json``, logs, raw
py-spy stacks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from bench import profile
from bench.procstat import cpu_seconds, machine
from bench.stack import Stack
from bench.workload import MIXES, Encoded, WorkloadSpec, encode, generate
from streams.dev import loopback

Say = Callable[[str], None]
TICK = 0.01


@dataclass
class Steady:
    """One round at the steady rate."""

    round: int
    profiled: bool
    rate: float = 0.0
    """Events/s the worker applied over the window."""
    events: int = 0
    seconds: float = 0.0
    worker_us_per_event: float = 0.0
    broker_us_per_event: float = 0.0
    redis_us_per_event: float = 0.0
    batches_per_s: float = 0.0
    """Partitions folded per second (a fetch spanning three partitions is three)."""
    events_per_batch: float = 0.0
    script_calls_per_event: float = 0.0
    behind: int = 0
    """Events produced but not applied at the window's end (a worker not keeping up)."""


@dataclass(frozen=True)
class _Mark:
    at: float
    applied: int
    worker: float
    broker: float
    redis: float
    batches: float
    scripts: int


async def steady_round(
    records: Sequence[Encoded],
    args: argparse.Namespace,
    round_no: int,
    out: Path,
    spy: list[str] | None,
    say: Say,
) -> tuple[Steady, profile.Round | None]:
    """Produce ``records`` at ``args.rate`` against one fresh worker; measure the window."""
    name = f"round{round_no}-steady-{'py-spy' if spy else 'plain'}"
    run_dir = out / name
    result = Steady(round_no, spy is not None)
    stack = await Stack.start(run_dir)
    worker: loopback.Child | None = None
    profiler: loopback.Child | None = None
    producing: asyncio.Task[int] | None = None
    raw = run_dir / "py-spy.raw.txt"
    try:
        port = loopback.free_port()
        env = stack.worker_env(
            CONTINUITY_METRICS_PORT=str(port), CONTINUITY_METRICS_HOST="127.0.0.1"
        )
        worker = loopback.start_worker("worker", env, run_dir)
        producer = AIOKafkaProducer(
            bootstrap_servers=stack.bootstrap, acks="all", linger_ms=0, enable_idempotence=False
        )
        await producer.start()
        try:
            first = records[0]
            await (await producer.send(first.topic, first.value, key=first.key))
            await profile.wait_applied(stack, worker, bool, "the worker's first applied event")
            sent = [1]
            producing = asyncio.create_task(_paced(producer, records[1:], args.rate, sent))
            await asyncio.sleep(args.warmup)
            before = await _mark(stack, worker, port)
            if spy is not None:
                argv = [*spy, "--pid", str(worker.pid), "--format", "raw", "-o", str(raw)]
                profiler = loopback.spawn("py-spy", argv, run_dir / "py-spy.log")
            await asyncio.sleep(args.seconds)
            after = await _mark(stack, worker, port)
            if profiler is not None:
                profiler.proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
                await asyncio.to_thread(profiler.proc.wait, 30)
            if producing.done():
                raise RuntimeError("the workload ran out before the window closed: more --events")
            result.behind = 1 + sent[0] - after.applied
        finally:
            if producing is not None:
                producing.cancel()
                await asyncio.gather(producing, return_exceptions=True)
            await producer.stop()
        _figures(result, before, after)
    finally:
        if profiler is not None:
            profiler.stop()
        if worker is not None:
            worker.stop()
        await stack.stop()
    spied: profile.Round | None = None
    if spy is not None:
        spied = profile.Round(round_no, True, events=result.events, seconds=result.seconds)
        spied.cpu_us_per_event = result.worker_us_per_event
        spied.leaves, spied.inclusive = await asyncio.to_thread(profile.classified, raw)
        for (category, _), n in spied.leaves.items():
            spied.samples[category] += n
    say(
        f"  {name}: {result.rate:,.0f} events/s applied, worker CPU "
        f"{result.worker_us_per_event:.0f} us/event (broker {result.broker_us_per_event:.0f}, "
        f"Redis {result.redis_us_per_event:.0f}), {result.events_per_batch:.1f} events per "
        f"partition batch, {result.script_calls_per_event:.2f} script calls/event, "
        f"{result.behind} behind at the end"
    )
    return result, spied


async def _paced(
    producer: AIOKafkaProducer, records: Sequence[Encoded], rate: float, sent: list[int]
) -> int:
    """Send ``records`` at ``rate`` per second, a tick's worth every 10 ms; count in ``sent``."""
    started = time.monotonic()
    for i, r in enumerate(records):
        due = started + i / rate
        delay = due - time.monotonic()
        if delay > TICK / 2:
            await asyncio.sleep(delay)
        await producer.send(r.topic, r.value, key=r.key)
        sent[0] += 1
    return sent[0]


async def _mark(stack: Stack, worker: loopback.Child, port: int) -> _Mark:
    metrics = await profile._scrape(port)
    calls = await stack.commandstats()
    return _Mark(
        time.monotonic(),
        await profile.applied_events(stack),
        cpu_seconds(worker.pid),
        cpu_seconds(stack.broker.pid),
        sum(map(cpu_seconds, stack.redis_pids)),
        metrics.get("continuity_batch_duration_seconds_count", 0.0),
        calls.get("evalsha", 0) + calls.get("eval", 0),
    )


def _figures(r: Steady, a: _Mark, b: _Mark) -> None:
    r.events = b.applied - a.applied
    r.seconds = b.at - a.at
    r.rate = r.events / r.seconds
    per = 1e6 / max(1, r.events)
    r.worker_us_per_event = (b.worker - a.worker) * per
    r.broker_us_per_event = (b.broker - a.broker) * per
    r.redis_us_per_event = (b.redis - a.redis) * per
    batches = b.batches - a.batches
    r.batches_per_s = batches / r.seconds
    r.events_per_batch = r.events / batches if batches else 0.0
    r.script_calls_per_event = (b.scripts - a.scripts) / max(1, r.events)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.steady", description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=1_000.0, help="events/s produced")
    p.add_argument("--seconds", type=float, default=30.0, help="the measured window")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds at the rate before it")
    p.add_argument("--mix", choices=MIXES, default="shop", help="the workload (bench.workload)")
    p.add_argument("--events", type=int, default=0, help="default: enough for the run")
    p.add_argument("--customers", type=int, default=0, help="default: events / 10")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--rounds", type=int, default=1, help="each: one plain round, one profiled")
    p.add_argument("--no-profile", action="store_true", help="plain rounds only")
    p.add_argument("--backlog", action="store_true", help="also drain the records as a backlog")
    p.add_argument("--sample-rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--py-spy", default=shutil.which("py-spy") or profile._venv_py_spy())
    p.add_argument("--top", type=int, default=0, help="also print each category's top functions")
    p.add_argument("--out", type=Path, default=profile.RESULTS)
    return p.parse_args(argv)


async def main_async(args: argparse.Namespace) -> int:
    say: Say = print
    out = args.out / f"steady-{time.strftime('%Y%m%dT%H%M%S')}"
    host = machine()
    events = args.events or int(args.rate * (args.warmup + args.seconds + 15))
    customers = args.customers or max(1, events // 10)
    spec = WorkloadSpec(events=events, customers=customers, seed=args.seed, mix=args.mix)
    records = encode(generate(spec).events)
    say(
        f"machine: {host['cpu_count']} CPUs, load average {host.get('load_average_at_start')}; "
        f"{args.mix} mix, {events:,} events of {customers:,} customers at {args.rate:,.0f}/s; "
        f"output {out}"
    )
    spy = [args.py_spy, "record", "--gil", "--threads", "--rate", str(args.sample_rate)]
    rounds: list[Steady] = []
    spied: list[profile.Round] = []
    backlog: list[profile.Round] = []
    for n in range(1, args.rounds + 1):
        rounds.append((await steady_round(records, args, n, out, None, say))[0])
        if not args.no_profile:
            result, spied_round = await steady_round(records, args, n, out, spy, say)
            rounds.append(result)
            if spied_round is not None:
                spied.append(spied_round)
        if args.backlog:
            backlog.append(await profile.drain(records, n, out, None, say))
    if spied:
        rows = profile.breakdown(spied)
        say("")
        say(profile.table(rows))
        say("")
        say(profile.inclusive_table(spied))
        if args.top:
            say("")
            say(f"innermost functions, share of their category's samples (top {args.top}):")
            say(profile.top_leaves(spied, args.top))
    plain = [r for r in rounds if not r.profiled]
    med = {k: statistics.median(getattr(r, k) for r in plain) for k in _FIGURES}
    say("")
    say(
        f"steady {args.rate:,.0f} events/s, {args.mix} mix (median of {len(plain)} plain rounds): "
        f"worker CPU {med['worker_us_per_event']:.0f} us/event, broker "
        f"{med['broker_us_per_event']:.0f}, Redis {med['redis_us_per_event']:.0f}; "
        f"{med['events_per_batch']:.1f} events per partition batch, "
        f"{med['script_calls_per_event']:.2f} script calls/event"
    )
    if backlog:
        drained = statistics.median(r.cpu_us_per_event for r in backlog)
        say(
            f"backlog of the same records: worker CPU {drained:.0f} us/event, "
            f"{statistics.median(r.events_per_s for r in backlog):,.0f} events/s; "
            f"steady / backlog {med['worker_us_per_event'] / drained:.2f}"
        )
    body: dict[str, Any] = {
        "machine": host,
        "spec": asdict(spec),
        "rate": args.rate,
        "seconds": args.seconds,
        "rounds": [asdict(r) for r in rounds],
        "medians": med,
        "backlog": [
            {"events_per_s": r.events_per_s, "cpu_us_per_event": r.cpu_us_per_event}
            for r in backlog
        ],
        "breakdown": profile.breakdown(spied) if spied else [],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "steady.json").write_text(json.dumps(body, indent=2))
    say(f"results: {out / 'steady.json'}")
    return 0


_FIGURES = (
    "rate",
    "worker_us_per_event",
    "broker_us_per_event",
    "redis_us_per_event",
    "events_per_batch",
    "script_calls_per_event",
)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if shutil.which(args.py_spy) is None:
        raise SystemExit(f"py-spy not found ({args.py_spy}): pip install -e '.[dev]'")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
