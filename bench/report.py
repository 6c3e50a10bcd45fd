"""Medians, the printed table, the ratios, and the JSON file of a benchmark."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.run import RunResult

TITLES = {
    "ceiling": "ceiling (aiokafka getmany + decode + Redis pipeline)",
    "faust-empty": "faust-empty (Faust agent, take(2000), no work)",
    "naive": "naive (Faust agent, GET + fold + SET per event)",
    "getset": "getset (Faust agent, one GET and one SET of JSON per event)",
    "backbone": "backbone (continuity worker, 1 process)",
    "backbone-no-changelog": "backbone with CONTINUITY_CHANGELOG=false (no session changelog)",
    "backbone-2": "backbone, 2 worker processes (one group)",
}
FIGURES = (
    "events_per_s",
    "start_s",
    "cpu_s_per_m",
    "peak_rss_mb",
    "redis_round_trips_per_event",
    "redis_cmds_per_event",
    "redis_cpu_s_per_m",
    "broker_cpu_s_per_m",
    "drain_s",
)
RATIOS = (
    ("backbone / ceiling", "backbone", "ceiling"),
    ("backbone / faust-empty", "backbone", "faust-empty"),
    ("backbone / naive", "backbone", "naive"),
    ("backbone / getset", "backbone", "getset"),
    ("changelog on / off", "backbone", "backbone-no-changelog"),
    ("two workers / one worker", "backbone-2", "backbone"),
)
LEGEND = """\
events/s: events applied after the consumer's first applied batch / time from that batch to the
  last applied event (a backlog drained; start-up excluded). Median of the runs that passed.
start: consumer process start -> first batch applied (for the backbone: first event folded).
CPU: user+sys seconds of the consumer process(es) over the same window, per million events.
RSS: peak resident set (VmHWM) per process; with two workers, the larger of the two.
Redis round trips: requests the consumer waited for (a pipeline counts once): counted by the
  runner itself; for the worker, the commands it sent (it never pipelines), i.e. Redis's
  commandstats minus the commands its Lua scripts run inside Redis.
Redis cmds: every command Redis executed for the consumer (INFO commandstats delta, commands
  run inside Lua scripts included, the harness's own polls excluded), per event.
Redis CPU: redis-server user+sys seconds from consumer start to the last event, per million.
broker CPU: the broker's, over the same time (it serves the consumer's fetches and commits, and
  the worker's relays' produce requests)."""


def medians(results: Sequence[RunResult]) -> dict[str, dict[str, Any]]:
    """Per variant: the median of every figure over the runs that passed, and the tally."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r.variant for r in results):
        runs = [r for r in results if r.variant == name]
        ok = [r for r in runs if r.ok]
        row: dict[str, Any] = {"runs": len(runs), "passed": len(ok)}
        for figure in FIGURES:
            values = [v for r in ok if (v := getattr(r, figure)) is not None]
            row[figure] = statistics.median(values) if values else None
        out[name] = row
    return out


def ratios(med: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """Events per second of one variant over another's (medians)."""
    out: dict[str, float | None] = {}
    for label, a, b in RATIOS:
        x = med.get(a, {}).get("events_per_s")
        y = med.get(b, {}).get("events_per_s")
        out[label] = x / y if x and y else None
    return out


def table(med: dict[str, dict[str, Any]], events: int, what: str = "events") -> str:
    """The results as a Markdown table (what the README's Benchmark section shows)."""
    runs = max((row["runs"] for row in med.values()), default=0)
    lines = [
        f"| consumer (median of {runs} runs, {events:,} {what}) | events/s | start s "
        "| CPU s / M events | peak RSS MB | Redis round trips / event | Redis cmds / event "
        "| Redis CPU s / M events | broker CPU s / M events | state check |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in med.items():
        check = f"ok {row['passed']}/{row['runs']}"
        if row["passed"] < row["runs"]:
            check = f"FAILED {row['runs'] - row['passed']}/{row['runs']}"
        if not row["passed"]:
            lines.append(f"| {TITLES.get(name, name)} | FAILED | | | | | | | | {check} |")
            continue
        lines.append(
            f"| {TITLES.get(name, name)} | {_n(row['events_per_s'], 0)} | {_n(row['start_s'], 1)} "
            f"| {_n(row['cpu_s_per_m'], 0)} | {_n(row['peak_rss_mb'], 0)} "
            f"| {_n(row['redis_round_trips_per_event'], 4)} | {_n(row['redis_cmds_per_event'], 2)} "
            f"| {_n(row['redis_cpu_s_per_m'], 0)} | {_n(row['broker_cpu_s_per_m'], 0)} | {check} |"
        )
    return "\n".join(lines)


def memory_table(rows: Sequence[dict[str, Any]]) -> str:
    """The worker's peak RSS and Redis's memory, by number of customers (same backlog)."""
    lines = [
        "| customers | events | worker peak RSS MB | worker RSS MB at 10/25/50/75/100% "
        "| Redis used memory MB | Redis keys |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['customers']:,} | {r['events']:,} | {r['worker_peak_rss_mb']:.0f} "
        f"| {' / '.join(f'{v:.0f}' for v in r['worker_rss_mb_at'].values())} "
        f"| {r['redis_used_memory_mb']:,.0f} | {r['redis_keys']:,} |"
        for r in rows
    ]
    return "\n".join(lines)


def ratio_lines(rat: dict[str, float | None], med: dict[str, dict[str, Any]]) -> str:
    """One line per ratio; says so when a side rests on fewer runs because some FAILED."""
    lines = []
    for label, a, b in RATIOS:
        value = rat.get(label)
        text = "n/a" if value is None else f"{value:.2f}"
        short = [
            f"{name}: {med[name]['passed']} of {med[name]['runs']} runs passed"
            for name in (a, b)
            if name in med and med[name]["passed"] < med[name]["runs"]
        ]
        lines.append(f"  {label:<26} {text}" + (f"  ({'; '.join(short)})" if short else ""))
    return "\n".join(lines)


def write_json(out_dir: Path, payload: dict[str, Any], results: Sequence[RunResult]) -> Path:
    """``bench/results/bench-<time>.json``: machine, workload, every run, medians, ratios."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bench-{time.strftime('%Y%m%dT%H%M%S')}.json"
    body = {**payload, "runs": [asdict(r) for r in results]}
    path.write_text(json.dumps(body, indent=2, default=str))
    return path


def _n(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:,.{digits}f}"
