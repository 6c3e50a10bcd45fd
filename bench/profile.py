"""``python -m bench.profile``: where the worker's time goes while it drains the bench backlog.

Each round starts a fresh embedded broker and Redis (``bench.stack``), writes
the same seeded backlog ``make bench`` uses, starts one real worker
(``continuity worker``, the ``backbone`` variant's environment plus a
``/metrics`` port) and, once the worker applied its first batch, attaches
``py-spy record --gil`` to it until every partition is applied. ``--gil``
keeps only samples of the thread holding the GIL: the worker is one Python
process, so that is its Python CPU time, and threads parked in ``epoll_wait``
(Faust's consumer thread between fetches) are left out instead of being
counted as busy.

Each sample is put in one category by the functions on its stack
(``classify``); a category's time per event is its samples / the sampling
rate / the events applied while py-spy was attached. The worker's own
histograms (``/metrics``, scraped before and after) give the wall time in
Redis round trips and in ``BatchProcessor.process``; ``/proc`` gives its CPU.
An unprofiled round runs first, each time, to show what attaching py-spy
costs. Raw stacks (collapsed format, for speedscope or flamegraph.pl) and a
JSON summary go to ``bench/results/profile-<time>/``.

py-spy must be able to ptrace the worker: root, or ``CAP_SYS_PTRACE``, or
``kernel.yama.ptrace_scope`` 0 for a child of the same user.
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
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.procstat import cpu_seconds, machine
from bench.stack import Stack
from bench.workload import MIXES, Encoded, WorkloadSpec, encode, generate
from schemas.topics import SESSION_FORWARDS
from streams.dev import loopback

RESULTS = Path(__file__).resolve().parent / "results"
PREFIX = "cont"
POLL = 0.02
TIMEOUT = 300.0

# Categories, in the order the table prints them.
DECODE = "decode: wire JSON -> event (pydantic validate_json)"
LOAD_PARSE = "Redis load: Session.model_validate_json of the sessions read"
LOAD_CALL = "Redis load: script call, reply parsing (redis-py)"
FOLD = "plan/fold: planner, fold, merge, fingerprints (without model_copy)"
MODEL_COPY = "plan/fold: pydantic model_copy (one per applied event)"
COMMIT_DUMP = "Redis commit: Session.model_dump_json of the sessions written"
COMMIT_CALL = "Redis commit: script arguments, call, reply (redis-py)"
METRICS = "metrics: labels, batch facts, Prometheus"
AGENT = "agent glue: Record per message, processor, reset guard"
ACK = "Faust: acks (stream.ack per event, or Fetched.ack's consumer.ack per record)"
TAKE = "Faust: noack_take hands the batch over"
FETCH_LOOP = "Faust: fetch loop, wait_first(callback, flow, stopped, crashed) per message"
CONDUCTOR = "Faust: conductor per message (Event object, channel queue)"
STREAM_ITER = "Faust: stream iteration (StreamIterator, sensors, take() buffering)"
CONSUMER_THREAD = "Faust consumer thread: aiokafka fetch, record parsing, heartbeats"
RELAY_CHANGELOG = "relays: session changelog (read the stream, publish, advance)"
RELAY_FORWARDS = "relays: session-forwards and notifications"
REDIS_IO = "redis-py socket callbacks outside load/commit"
FAUST_OTHER = "Faust/mode: other (offset commits, timers, services)"
LOOP = "asyncio: event loop, selector, socket callbacks"
CATEGORIES = (
    DECODE,
    LOAD_PARSE,
    LOAD_CALL,
    FOLD,
    MODEL_COPY,
    COMMIT_DUMP,
    COMMIT_CALL,
    METRICS,
    AGENT,
    ACK,
    TAKE,
    FETCH_LOOP,
    CONDUCTOR,
    STREAM_ITER,
    CONSUMER_THREAD,
    RELAY_CHANGELOG,
    RELAY_FORWARDS,
    REDIS_IO,
    FAUST_OTHER,
    LOOP,
)
_PLANNER_FILES = (
    "streams/core/plan.py",
    "streams/core/fold.py",
    "streams/core/merge.py",
    "streams/core/erasure.py",
    "streams/core/log_reset.py",
)

Say = Callable[[str], None]


@dataclass(frozen=True)
class Frame:
    name: str
    file: str


StackTest = Callable[[Sequence[Frame]], bool]


def _named(name: str) -> StackTest:
    return lambda frames: any(f.name == name for f in frames)


def _under(prefix: str) -> StackTest:
    return lambda frames: any(f.file.startswith(prefix) for f in frames)


# Costs that cut across the categories: samples whose stack contains the frame
# (each sample counted once per line).
INCLUSIVE: tuple[tuple[str, StackTest], ...] = (
    ("mode Service.wait_first (Faust's fetch loop, per message)", _named("Service.wait_first")),
    ("asyncio create_task (every caller)", _named("BaseEventLoop.create_task")),
    ("Faust App.create_event (one Event object per message)", _named("App.create_event")),
    ("Faust sensors (faust/sensors)", _under("faust/sensors/")),
    (
        "Faust take() buffer (noack_take's add_to_buffer)",
        _named("Stream.noack_take.<locals>.add_to_buffer"),
    ),
    ("pydantic BaseModel.model_validate_json", _named("BaseModel.model_validate_json")),
    ("pydantic TypeAdapter.validate_json (wire events)", _named("TypeAdapter.validate_json")),
    ("pydantic BaseModel.model_copy", _named("BaseModel.model_copy")),
    ("pydantic BaseModel.model_dump_json", _named("BaseModel.model_dump_json")),
    ("pydantic BaseModel.__init__ (models built in Python code)", _named("BaseModel.__init__")),
    ("prometheus_client", _under("prometheus_client/")),
    ("logging", _under("logging/")),
)


def parse_stack(line: str) -> tuple[str, list[Frame], int]:
    """One line of py-spy's raw output: thread, frames (outermost first), sample count."""
    stack, _, count = line.rstrip("\n").rpartition(" ")
    parts = stack.split(";")
    thread = parts[0].partition(": ")[2] or parts[0]
    frames = []
    for part in parts[1:]:
        name, _, where = part.partition(" (")
        frames.append(Frame(name, where.rpartition(":")[0]))
    return thread, frames, int(count)


def classify(thread: str, frames: Sequence[Frame]) -> str:
    """The category of one sample: the first rule its stack matches."""
    if thread != "MainThread":
        return CONSUMER_THREAD
    names = [f.name for f in frames]
    files = [f.file for f in frames]
    # A batch's partitions are folded in tasks of their own (BatchProcessor's task
    # group): their stacks start at the task, not at the agent.
    if any(
        n.startswith("create_app.<locals>.fold_sessions") or n.startswith("BatchProcessor.")
        for n in names
    ):
        return _agent_category(names, files)
    if "run_changelog_relay" in names or "run_changelog_relays" in names:
        return RELAY_CHANGELOG
    if any(n in ("run_forward_relay", "run_forward_relays", "run_relay") for n in names):
        return RELAY_FORWARDS
    # What runs on the main loop: the frames of one callback or task step. Every
    # stack starts in mode's Worker (it runs the loop), so only these tell whose work it is.
    if "Handle._run" not in names:
        return LOOP
    start = names.index("Handle._run") + 1
    task, task_files = names[start:], files[start:]
    # Faust's fetch loop awaits wait_first(callback(message), suspend_flow.wait()) per
    # message: four tasks (the callback, the flow, stopped and crashed events' waits),
    # and the waits run as tasks of their own.
    # With batched delivery (streams/worker/batch_delivery.py) the loop is the same task, one
    # wait_first per fetch.
    if any(n in ("Consumer._drain_messages", "_wait.<locals>._on_completion") for n in task):
        return FETCH_LOOP
    if task[:1] == ["Event.wait"] and task_files[0] in ("asyncio/locks.py", "mode/utils/locks.py"):
        return FETCH_LOOP
    if any(n.startswith("Conductor.") for n in task):
        return CONDUCTOR
    if any(n in ("Stream._passive_drainer", "Stream._c_aiter", "Stream._py_aiter") for n in task):
        return STREAM_ITER
    if any(f.startswith("redis/") for f in task_files):
        return REDIS_IO
    if any(f.startswith(("faust/", "mode/", "aiokafka/")) for f in task_files):
        return FAUST_OTHER
    return LOOP


def _agent_category(names: list[str], files: list[str]) -> str:
    if "streams/core/decode.py" in files:
        return DECODE
    if "RedisState.load" in names:
        return LOAD_PARSE if "BaseModel.model_validate_json" in names else LOAD_CALL
    if "RedisState.commit" in names:
        return COMMIT_DUMP if "BaseModel.model_dump_json" in names else COMMIT_CALL
    if "BaseModel.model_copy" in names:
        return MODEL_COPY
    if any(f in _PLANNER_FILES for f in files):
        return FOLD
    if any(f in ("streams/core/facts.py", "streams/worker/metrics.py") for f in files) or any(
        f.startswith("prometheus_client/") for f in files
    ):
        return METRICS
    if "Stream.ack" in names or "Fetched.ack" in names:
        return ACK
    if "Stream.noack_take" in names:
        return TAKE
    return AGENT


@dataclass
class Round:
    """One drain of the backlog, with or without py-spy attached."""

    round: int
    profiled: bool
    events: int = 0
    """Events applied between the two marks (py-spy attached in between, if profiled)."""
    seconds: float = 0.0
    events_per_s: float = 0.0
    cpu_us_per_event: float = 0.0
    batches: float = 0.0
    batch_us_per_event: float = 0.0
    """Wall time inside ``BatchProcessor.process`` (decode .. commit), per event."""
    redis_load_us_per_event: float = 0.0
    redis_commit_us_per_event: float = 0.0
    """Wall time of the Redis round trips (request, Lua script, reply), per event."""
    samples: Counter[str] = field(default_factory=Counter)
    leaves: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Samples per (category, innermost function): where in a category the time is spent."""
    inclusive: Counter[str] = field(default_factory=Counter)
    """Samples per ``INCLUSIVE`` line."""
    raw: str = ""


async def drain(
    records: Sequence[Encoded], round_no: int, out: Path, spy: list[str] | None, say: Say
) -> Round:
    """Drain the backlog once with a fresh worker; with ``spy``, under py-spy."""
    name = f"round{round_no}-{'py-spy' if spy else 'plain'}"
    run_dir = out / name
    result = Round(round_no, spy is not None)
    stack = await Stack.start(run_dir)
    worker: loopback.Child | None = None
    profiler: loopback.Child | None = None
    try:
        backlog = await stack.produce(records)
        port = loopback.free_port()
        env = stack.worker_env(
            CONTINUITY_METRICS_PORT=str(port), CONTINUITY_METRICS_HOST="127.0.0.1"
        )
        worker = loopback.start_worker("worker", env, run_dir)
        await wait_applied(stack, worker, bool, "the worker's first applied event")
        before = await _mark(stack, worker, port)
        if spy is not None:
            result.raw = str(run_dir / "py-spy.raw.txt")
            argv = [*spy, "--pid", str(worker.pid), "--format", "raw", "-o", result.raw]
            profiler = loopback.spawn("py-spy", argv, run_dir / "py-spy.log")
        await wait_applied(stack, worker, backlog.drained, "the backlog drained")
        after = await _mark(stack, worker, port)
        if profiler is not None:
            profiler.proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            await asyncio.to_thread(profiler.proc.wait, 30)
        _figures(result, before, after)
    finally:
        if profiler is not None:
            profiler.stop()
        if worker is not None:
            worker.stop()
        await stack.stop()
    if result.raw:
        result.leaves, result.inclusive = await asyncio.to_thread(classified, Path(result.raw))
        for (category, _), n in result.leaves.items():
            result.samples[category] += n
    say(
        f"  {name}: {result.events:,} events in {result.seconds:.2f} s, "
        f"{result.events_per_s:,.0f} events/s, CPU {result.cpu_us_per_event:.0f} us/event"
        + (f", {sum(result.samples.values()):,} samples" if result.samples else "")
    )
    return result


def classified(raw: Path) -> tuple[Counter[tuple[str, str]], Counter[str]]:
    """Samples per (category, innermost function) and per ``INCLUSIVE`` line in one
    py-spy raw (collapsed stacks) file."""
    samples: Counter[tuple[str, str]] = Counter()
    inclusive: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        if line.strip():
            thread, frames, n = parse_stack(line)
            leaf = f"{frames[-1].name} ({frames[-1].file})" if frames else "?"
            samples[classify(thread, frames), leaf] += n
            for label, test in INCLUSIVE:
                if test(frames):
                    inclusive[label] += n
    return samples, inclusive


def inclusive_table(rounds: Sequence[Round]) -> str:
    """The ``INCLUSIVE`` lines: share of all samples and CPU per event, as ``breakdown``."""
    profiled = [r for r in rounds if r.profiled]
    counts: Counter[str] = Counter()
    for r in profiled:
        counts.update(r.inclusive)
    total = sum(sum(r.samples.values()) for r in profiled)
    events = sum(r.events for r in profiled)
    if not total or not events:
        return ""
    cpu_us = sum(r.cpu_us_per_event * r.events for r in profiled) / events
    lines = [
        "| stacks containing (across categories) | samples | share | CPU us / event |",
        "|---|---:|---:|---:|",
    ]
    for label, _ in INCLUSIVE:
        n = counts[label]
        lines.append(f"| {label} | {n:,} | {n / total:.1%} | {n / total * cpu_us:.1f} |")
    return "\n".join(lines)


def top_leaves(rounds: Sequence[Round], n: int) -> str:
    """The ``n`` innermost functions with the most samples in each category."""
    leaves: Counter[tuple[str, str]] = Counter()
    for r in rounds:
        leaves.update(r.leaves)
    lines = []
    for category in CATEGORIES:
        mine = [(leaf, k) for (c, leaf), k in leaves.items() if c == category]
        total = sum(k for _, k in mine)
        if not total:
            continue
        lines.append(f"{category}:")
        for leaf, k in sorted(mine, key=lambda x: -x[1])[:n]:
            lines.append(f"  {k / total:4.0%} {leaf}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Mark:
    at: float
    applied: int
    cpu: float
    metrics: dict[str, float]


async def _mark(stack: Stack, worker: loopback.Child, port: int) -> Mark:
    applied = await applied_events(stack)
    return Mark(time.monotonic(), applied, cpu_seconds(worker.pid), await _scrape(port))


async def applied_events(stack: Stack) -> int:
    """Source records the worker applied: its positions past the source topics' starts
    (``session-forwards`` positions are hops of events already counted, not events)."""
    offsets = await stack.applied_offsets(PREFIX)
    return sum(o + 1 for tp, o in offsets.items() if not tp.startswith(f"{SESSION_FORWARDS}:"))


async def wait_applied(
    stack: Stack, worker: loopback.Child, done: Callable[[dict[str, int]], bool], what: str
) -> None:
    """Poll the applied positions until ``done`` holds; fail if the worker exits or
    ``TIMEOUT`` passes first (``what`` names what was awaited)."""
    deadline = time.monotonic() + TIMEOUT
    while not done(await stack.applied_offsets(PREFIX)):
        _alive(worker)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not in {TIMEOUT:.0f} s")
        await asyncio.sleep(POLL)


async def _scrape(port: int) -> dict[str, float]:
    """The worker's batch and Redis histograms' sums and counts."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        text = await resp.text()
    wanted = {
        "continuity_batch_duration_seconds",
        "continuity_redis_command_duration_seconds",
    }
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in wanted:
            continue
        for s in family.samples:
            if s.name.endswith(("_sum", "_count")):
                label = s.labels.get("operation", "")
                out[f"{s.name}{':' + label if label else ''}"] = s.value
    return out


def _figures(r: Round, a: Mark, b: Mark) -> None:
    r.events = b.applied - a.applied
    r.seconds = b.at - a.at
    r.events_per_s = r.events / r.seconds
    per_event = 1e6 / r.events

    def delta(name: str) -> float:
        return b.metrics.get(name, 0.0) - a.metrics.get(name, 0.0)

    r.cpu_us_per_event = (b.cpu - a.cpu) * per_event
    r.batches = delta("continuity_batch_duration_seconds_count")
    r.batch_us_per_event = delta("continuity_batch_duration_seconds_sum") * per_event
    hist = "continuity_redis_command_duration_seconds_sum"
    r.redis_load_us_per_event = delta(f"{hist}:load") * per_event
    r.redis_commit_us_per_event = delta(f"{hist}:commit") * per_event


def _alive(worker: loopback.Child) -> None:
    if not worker.alive():
        raise RuntimeError(f"the worker exited with {worker.proc.returncode} ({worker.log_path})")


def breakdown(rounds: Sequence[Round]) -> list[dict[str, Any]]:
    """Per category over all profiled rounds: share of the samples, and CPU per event.

    A category's CPU per event is its share of the samples times the worker's
    measured CPU per event (``/proc``) in those rounds, not samples / rate: on a
    busy machine a thread holding the GIL may be waiting for a core, so
    samples / rate would count that wait as work.
    """
    profiled = [r for r in rounds if r.profiled]
    samples: Counter[str] = Counter()
    for r in profiled:
        samples.update(r.samples)
    total = sum(samples.values())
    events = sum(r.events for r in profiled)
    cpu_us = sum(r.cpu_us_per_event * r.events for r in profiled) / events if events else 0.0
    return [
        {
            "category": c,
            "samples": samples[c],
            "share": samples[c] / total if total else 0.0,
            "cpu_us_per_event": samples[c] / total * cpu_us if total else 0.0,
        }
        for c in CATEGORIES
    ]


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| where the worker's CPU goes (py-spy --gil samples) | samples | share | CPU us / event |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['category']} | {r['samples']:,} | {r['share']:.1%} | {r['cpu_us_per_event']:.1f} |"
        for r in rows
    ]
    total = sum(r["samples"] for r in rows)
    us = sum(r["cpu_us_per_event"] for r in rows)
    lines.append(f"| **all** | {total:,} | 100% | {us:.1f} |")
    return "\n".join(lines)


def summary(rounds: Sequence[Round]) -> dict[str, dict[str, float]]:
    """Medians of the figures, profiled and plain rounds apart."""
    out: dict[str, dict[str, float]] = {}
    for label, flag in (("plain", False), ("py-spy", True)):
        chosen = [r for r in rounds if r.profiled is flag]
        if not chosen:
            continue
        out[label] = {
            k: statistics.median(getattr(r, k) for r in chosen)
            for k in (
                "events_per_s",
                "cpu_us_per_event",
                "batch_us_per_event",
                "redis_load_us_per_event",
                "redis_commit_us_per_event",
                "batches",
            )
        }
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=30_000, help="events in the backlog")
    p.add_argument("--customers", type=int, default=3_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--mix", choices=MIXES, default="shop", help="the workload (bench.workload)")
    p.add_argument("--rounds", type=int, default=3, help="each: one plain drain, one profiled")
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--py-spy", default=shutil.which("py-spy") or _venv_py_spy())
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--top", type=int, default=0, help="also print each category's top functions")
    return p.parse_args(argv)


def _venv_py_spy() -> str:
    return str(Path(sys.executable).parent / "py-spy")


async def profile(args: argparse.Namespace) -> int:
    say = print
    out = args.out / f"profile-{time.strftime('%Y%m%dT%H%M%S')}"
    host = machine()
    say(
        f"machine: {host['cpu_count']} CPUs, Python {host['python']}, "
        f"load average {host.get('load_average_at_start')}; output {out}"
    )
    spec = WorkloadSpec(events=args.events, customers=args.customers, seed=args.seed, mix=args.mix)
    workload = generate(spec)
    records = encode(workload.events)
    spy = [args.py_spy, "record", "--gil", "--threads", "--rate", str(args.rate)]
    rounds: list[Round] = []
    for n in range(1, args.rounds + 1):
        rounds.append(await drain(records, n, out, None, say))
        rounds.append(await drain(records, n, out, spy, say))
    rows = breakdown(rounds)
    med = summary(rounds)
    say("")
    say(table(rows))
    say("")
    say(inclusive_table(rounds))
    if args.top:
        say("")
        say(f"innermost functions, share of their category's samples (top {args.top}):")
        say(top_leaves(rounds, args.top))
    for label, m in med.items():
        say(
            f"{label} (median of {args.rounds}): {m['events_per_s']:,.0f} events/s, "
            f"CPU {m['cpu_us_per_event']:.0f} us/event, inside process() "
            f"{m['batch_us_per_event']:.0f} us/event (Redis load {m['redis_load_us_per_event']:.0f}"
            f" + commit {m['redis_commit_us_per_event']:.0f} us/event round trips), "
            f"{m['batches']:.0f} batches"
        )
    load = [round(x, 2) for x in os.getloadavg()]
    say(f"load average at the end: {load}")
    body = {
        "machine": host,
        "workload": asdict(spec),
        "py_spy": " ".join(spy),
        "rounds": [
            {
                **asdict(r),
                "samples": dict(r.samples),
                "inclusive": dict(r.inclusive),
                "leaves": _leaf_rows(r),
            }
            for r in rounds
        ],
        "breakdown": rows,
        "medians": med,
        "load_average_at_end": load,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json").write_text(json.dumps(body, indent=2))
    say(f"results: {out / 'profile.json'}")
    return 0


def _leaf_rows(r: Round) -> list[dict[str, Any]]:
    return [{"category": c, "function": f, "samples": n} for (c, f), n in r.leaves.most_common()]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if shutil.which(args.py_spy) is None:
        raise SystemExit(f"py-spy not found ({args.py_spy}): pip install -e '.[dev]'")
    return asyncio.run(profile(args))


if __name__ == "__main__":
    sys.exit(main())
