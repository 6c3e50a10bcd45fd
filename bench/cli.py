"""``python -m bench``: the whole benchmark, as ``make bench`` runs it.

1. Generate the seeded workload (``bench.workload``), decode every event, and
   compute the oracle and its order-independent projection, proven over several
   delivery orders (``bench.expect``).
2. Measure Redis bytes per session (``bench.memory``).
3. For each round, each variant (``bench.variants``) drains the backlog on a
   fresh broker and Redis (``bench.run``); one progress line per run.
4. The one-type mixes (``bench.mixes``): cart events only and views only, the
   worker against a plain GET+SET Faust agent, each round on a fresh stack.
5. Freshness through the gateway on a fresh stack with one worker and one
   gateway (``bench.freshness_stack``), then its rate sweep.
6. The gateway's CPU per commit notice at 100, 1,000 and 5,000 streams on a
   fresh stack with one gateway (``bench.fanout_cost``).
7. Print the medians as a table with the ratios and the freshness figures, and
   write everything to ``bench/results/bench-<time>.json`` (``bench.report``).

Flags make bigger runs (``--events``, ``--customers``, ``--runs``), the worker
memory check (``--memory-customers 10000,1000000``), Redis memory over months
of compressed event time (``--lifecycle-days 200``, ``bench.lifecycle``; off by
default: a simulated day lasts a second), change the freshness load
(``--freshness-rate``, ``--freshness-subscribers``, ``--freshness-seconds``)
or measure freshness alone against a running stack with a gateway
(``--freshness URL``), and change or skip the fan-out cost
(``--fanout-cost-subscribers``, ``--fanout-cost-rate``, ``--no-fanout-cost``)
and of the mixes (``--mix-events``, ``--mix-customers``, ``--no-mixes``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench import fanout_cost, freshness_stack, lifecycle, lifecycle_report, memory, mixes, report
from bench.expect import PROJECTION_NOTE, expect
from bench.freshness import measure_freshness
from bench.freshness_stack import FreshnessPlan
from bench.procstat import machine
from bench.run import RunResult, run_once
from bench.variants import all_variants
from bench.workload import WorkloadSpec, encode, generate, self_check

RESULTS = Path(__file__).resolve().parent / "results"


def say(line: str) -> None:
    print(line, flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=30_000, help="events in the backlog")
    p.add_argument("--customers", type=int, default=3_000, help="shoppers (Zipf-skewed)")
    p.add_argument("--runs", type=int, default=3, help="runs of every variant (median)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--variants",
        default=(
            "ceiling,faust-empty,naive,backbone,backbone-no-changelog,backbone-2,"
            "backbone-direct,backbone-cluster"
        ),
        help="comma-separated subset, run in this order each round",
    )
    p.add_argument("--orders", type=int, default=5, help="delivery orders the oracle is proven on")
    p.add_argument(
        "--mix-events",
        type=int,
        default=40_000,
        help="events of the one-type mixes (bench.mixes: the worker against a plain GET+SET "
        "agent on cart events, and its CPU per cart event against per view)",
    )
    p.add_argument("--mix-customers", type=int, default=4_000, help="members of the mixes")
    p.add_argument("--no-mixes", action="store_true", help="skip the one-type mixes")
    p.add_argument("--out", type=Path, default=RESULTS, help="where results and logs go")
    p.add_argument(
        "--memory-customers",
        default="",
        help="also fold one event per customer for each count, e.g. 10000,1000000, and report "
        "the worker's peak RSS (should stay flat) and Redis memory",
    )
    p.add_argument(
        "--lifecycle-days",
        type=int,
        default=0,
        help="also fold this many simulated days of guests, sign-ups and regulars through the "
        "commit path into a fresh Redis, a day per --lifecycle-day-seconds, TTLs scaled alike, "
        "and report Redis's memory and keys per day (e.g. 200; 0: skip)",
    )
    p.add_argument("--lifecycle-day-seconds", type=int, default=1, help="wall seconds per day")
    f = p.add_argument_group(
        "freshness through the gateway",
        "measured after the variants on a fresh stack (one worker, one gateway); with "
        "--freshness URL instead of the benchmark, against a running stack",
    )
    f.add_argument("--freshness-rate", type=float, default=1_000.0, help="events/s in total")
    f.add_argument("--freshness-subscribers", type=int, default=100)
    f.add_argument("--freshness-seconds", type=float, default=30.0, help="counted, after warm-up")
    f.add_argument("--freshness-warmup", type=float, default=5.0, help="seconds not counted")
    f.add_argument(
        "--freshness-sweep",
        default="100,250,500,750,1000,1500,2000,3000",
        help="rates tried after it, lowest first, until p99 >= 100 ms ('' to skip)",
    )
    f.add_argument("--freshness-sweep-seconds", type=float, default=10.0)
    f.add_argument("--no-freshness", action="store_true", help="skip it in the benchmark")
    f.add_argument("--freshness", metavar="URL", help="SSE URL of a session with {key}")
    f.add_argument("--freshness-header", action="append", default=[], help="'Name: value'")
    f.add_argument("--freshness-bootstrap", help="broker (default: KAFKA_BOOTSTRAP or dev.json)")
    fanout_cost.add_flags(p)
    p.add_argument("--no-fanout-cost", action="store_true", help="skip the fan-out cost")
    return p.parse_args(argv)


def freshness_plan(args: argparse.Namespace) -> FreshnessPlan:
    """The freshness load the flags ask for (both for the fresh stack and for ``--freshness``)."""
    return FreshnessPlan(
        rate=args.freshness_rate,
        subscribers=args.freshness_subscribers,
        seconds=args.freshness_seconds,
        warmup=args.freshness_warmup,
        sweep=tuple(float(r) for r in args.freshness_sweep.split(",") if r.strip()),
        sweep_seconds=args.freshness_sweep_seconds,
    )


async def benchmark(args: argparse.Namespace) -> int:
    began = time.monotonic()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    logs = args.out / "logs" / stamp
    host = machine()
    say(
        f"machine: {host['cpu_count']} CPUs ({host.get('cpu_model', '?')}), "
        f"{host.get('memory_gib', '?')} GiB, {host['platform']}, Python {host['python']}, "
        f"load average {host.get('load_average_at_start')}"
    )
    spec = WorkloadSpec(events=args.events, customers=args.customers, seed=args.seed)
    workload = generate(spec)
    self_check(workload)
    summary = workload.summary()
    say(
        f"workload: {spec.events:,} events, {spec.customers:,} customers "
        f"({_counts(summary['kinds'])}); every event decoded under the wire contract"
    )
    say(f"  topics: {_counts(summary['topics'])}")
    say(f"  types: {_counts(summary['types'])}")
    say(f"  channels: {_counts(summary['channels'])}")
    say(
        f"  Zipf: busiest customer {summary['events_per_customer_max']} events, median "
        f"{summary['events_per_customer_median']}, top 1% of customers "
        f"{summary['share_of_top_1pct_customers']:.0%} of events"
    )
    t = time.monotonic()
    expected = expect(workload, orders=args.orders)
    say(
        f"oracle: pure planner in publish order; projection identical under "
        f"{len(expected.orders_tried)} delivery orders ({', '.join(expected.orders_tried)}); "
        f"{expected.bytes_order_dependent:,} of {len(expected.oracle.sessions):,} sessions' bytes "
        f"depend on delivery order ({time.monotonic() - t:.0f} s)"
    )
    say(f"check: {PROJECTION_NOTE}")
    sizes = await memory.session_bytes(logs / "session-bytes")
    for row in sizes:
        say(
            f"session size: {row['session']}: {row['redis_bytes']:,} B in Redis "
            f"({row['json_bytes']:,} B JSON, stored as {row['stored_bytes']:,} B)"
        )
    records = encode(workload.events)
    wanted = [v.strip() for v in args.variants.split(",") if v.strip()]
    variants = [v for v in all_variants(len(records)) if v.name in wanted]
    unknown = set(wanted) - {v.name for v in variants}
    if unknown:
        raise SystemExit(f"unknown variants: {', '.join(sorted(unknown))}")
    say(f"runs: {args.runs} rounds x {len(variants)} consumers; logs under {logs}")
    results: list[RunResult] = []
    for round_no in range(1, args.runs + 1):
        for variant in variants:
            results.append(
                await run_once(variant, workload, records, expected, round_no, logs, say)
            )
    mixed: mixes.MixResults | None = None
    if not args.no_mixes:
        mixed = await mixes.run_mixes(
            args.mix_events, args.mix_customers, args.seed, args.runs, args.orders, logs, say
        )
    fresh = None
    if not args.no_freshness:
        fresh = await freshness_stack.measure(freshness_plan(args), logs / "freshness", say)
    fan = None
    if not args.no_fanout_cost:
        fan = await fanout_cost.measure(fanout_cost.plan_of(args), logs / "fanout-cost", say)
    med = report.medians(results)
    rat = report.ratios(med)
    if results:
        say("")
        say(report.table(med, len(records)))
        say("")
        say("ratios of events/s (medians):")
        say(report.ratio_lines(rat, med))
        start = med.get("backbone", {}).get("start_s")
        if start is not None:
            say(f"worker start (process start -> first event folded), median: {start:.1f} s")
        for r in results:
            if r.variant == "backbone-2" and r.note:
                say(f"two workers, round {r.round}: {r.note}")
        for r in results:
            if r.variant in ("backbone", "backbone-2") and r.window_cpu_s_per_m:
                shares = ", ".join(f"{k} {v:,.0f}" for k, v in r.window_cpu_s_per_m.items())
                say(f"CPU s / M events over the window, {r.variant}, round {r.round}: {shares}")
        for r in results:
            if not r.ok:
                say(f"FAILED: {r.variant}, round {r.round}: {r.verdict}")
        say("")
        say(report.LEGEND)
        say(f"check: {PROJECTION_NOTE}")
    if mixed is not None:
        say("")
        say(report.table(mixed.medians.get("cart", {}), args.mix_events, "cart events"))
        say(report.table(mixed.medians.get("browse", {}), args.mix_events, "views"))
        for line in mixed.lines():
            say(line)
        for r in mixed.runs:
            if not r.ok:
                say(f"FAILED: {r.variant} on a one-type mix, round {r.round}: {r.verdict}")
    if fresh is not None:
        say("")
        for line in fresh.lines():
            say(line)
    if fan is not None:
        say("")
        for line in fan.lines():
            say(line)
    rss_rows: list[dict[str, Any]] = []
    if args.memory_customers:
        counts = [int(c) for c in args.memory_customers.split(",") if c]
        rss_rows = await memory.rss_by_customers(counts, logs, say)
        say("")
        say(report.memory_table(rss_rows))
    aging: dict[str, Any] | None = None
    if args.lifecycle_days:
        months = lifecycle.LifecycleSpec(
            days=args.lifecycle_days, day_seconds=args.lifecycle_day_seconds
        )
        aging = await lifecycle.run(months, logs / "lifecycle", say)
        say("")
        say(f"Redis over {months.days} simulated days ({aging['mapping']}):")
        say(lifecycle_report.table(aging))
        say(lifecycle_report.summary(aging))
    path = report.write_json(
        args.out,
        {
            "machine": host,
            "workload": {"spec": spec.__dict__, "summary": summary},
            "oracle": {
                "orders_tried": expected.orders_tried,
                "sessions": len(expected.oracle.sessions),
                "aliases": len(expected.oracle.aliases),
                "byte_exact_sessions": len(expected.exact),
                "sessions_whose_bytes_depend_on_order": expected.bytes_order_dependent,
                "projection": PROJECTION_NOTE,
            },
            "session_bytes": sizes,
            "medians": med,
            "ratios": rat,
            "freshness": fresh.as_json() if fresh is not None else None,
            "fanout_cost": fan.as_json() if fan is not None else None,
            "mixes": mixed.as_json() if mixed is not None else None,
            "worker_rss_by_customers": rss_rows,
            "lifecycle": aging,
            "legend": report.LEGEND,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "logs": str(logs),
            "seconds": round(time.monotonic() - began, 1),
        },
        [*results, *(mixed.runs if mixed is not None else [])],
    )
    say(f"\nresults: {path} ({time.monotonic() - began:.0f} s in all)")
    fresh_ok = fresh is None or fresh.result is not None
    fan_ok = fan is None or fan.ok
    mixed_ok = mixed is None or all(r.ok for r in mixed.runs)
    return 0 if all(r.ok for r in results) and fresh_ok and fan_ok and mixed_ok else 1


async def freshness(args: argparse.Namespace) -> int:
    bootstrap = args.freshness_bootstrap or os.environ.get("KAFKA_BOOTSTRAP") or _dev_bootstrap()
    headers = dict(h.split(":", 1) for h in args.freshness_header)
    plan = freshness_plan(args)
    spec = plan.spec(args.freshness, bootstrap, {k.strip(): v.strip() for k, v in headers.items()})
    say(
        f"freshness: {spec.subscribers} subscribers, {spec.rate:g} events/s for {spec.seconds:g} s "
        f"({spec.warmup:g} s warm-up) via {bootstrap}"
    )
    result = await measure_freshness(spec)
    say(json.dumps(result.__dict__, indent=2))
    return 0


def _dev_bootstrap() -> str:
    dev = Path(".continuity/dev.json")
    if not dev.exists():
        raise SystemExit("no broker: pass --freshness-bootstrap or run `make run` first")
    return str(json.loads(dev.read_text())["kafka_bootstrap"])


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.freshness:
        return asyncio.run(freshness(args))
    return asyncio.run(benchmark(args))


if __name__ == "__main__":
    sys.exit(main())
