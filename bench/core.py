"""Measure the core backbone on this machine: worker start time and events folded per second.

Starts the embedded broker, a private redis-server and real worker processes
(exactly what ``continuity dev`` runs), pre-loads a seeded workload into the
topics, then starts the worker and times (1) start -> first event folded and
(2) the whole backlog folded. Repeats ``--runs`` times and reports medians.
Results: printed as a table and written to ``bench/results/core-<time>.json``.

    python bench/core.py --events 30000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis

from streams import devstack
from streams.publish import Publisher, prepare_dict
from streams.redis_state import RedisState
from streams.topics_admin import ensure_topics
from tests.oracle import cart_workload, mismatches, oracle

PARTITIONS = 8


async def one_run(n_events: int, run: int, tmp: Path) -> dict[str, float]:
    logs = tmp / f"run{run}"
    broker = devstack.start_broker(logs)
    redis_child = devstack.start_redis(logs / "redis", logs)
    bootstrap = f"127.0.0.1:{broker.port}"
    redis_url = f"redis://127.0.0.1:{redis_child.port}/0"
    client = Redis.from_url(redis_url)
    worker = None
    try:
        await ensure_topics(bootstrap, PARTITIONS)
        per_customer = 20
        events = cart_workload(
            seed=run,
            customers=max(1, n_events // per_customer),
            per_customer=per_customer,
            prefix=f"b{run}",
        )
        expected = oracle(events)
        written: dict[str, int] = {}
        async with Publisher(bootstrap, linger_ms=20) as pub:
            for md in await pub.send_all([prepare_dict(e) for e in events]):
                tp = f"{md.topic}:{md.partition}"
                written[tp] = max(written.get(tp, -1), md.offset)
        print(f"  run {run}: {len(events)} events in the topics; starting a worker", flush=True)
        state = RedisState(client, "cont")
        started = time.monotonic()
        worker = devstack.start_worker(
            "worker",
            {
                "KAFKA_BOOTSTRAP": bootstrap,
                "REDIS_URL": redis_url,
                "CONTINUITY_TOPIC_PARTITIONS": str(PARTITIONS),
                "CONTINUITY_LOG_LEVEL": "warning",
            },
            logs,
        )
        first = None
        while True:
            applied = await state.applied_offsets()
            if first is None and applied:
                first = time.monotonic()
            if all(applied.get(tp, -1) >= off for tp, off in written.items()):
                break
            await asyncio.sleep(0.05)
        done = time.monotonic()
        assert first is not None
        wrong = await mismatches(state, expected)
        if wrong:
            raise SystemExit(f"run {run}: {len(wrong)} sessions differ from the oracle")
        return {
            "events": len(events),
            "start_to_first_fold_s": first - started,
            "fold_s": done - first,
            "events_per_s": len(events) / (done - first),
        }
    finally:
        if worker is not None:
            worker.stop()
        await client.aclose()
        redis_child.stop()
        broker.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            results.append(await one_run(args.events, run, Path(tmp)))
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(f"\n| measure (median of {len(results)} runs) | value |")
    print("|---|---|")
    print(f"| events folded | {int(med['events'])} |")
    print(f"| worker start -> first event folded | {med['start_to_first_fold_s']:.1f} s |")
    print(f"| backlog folded, events/s (1 worker) | {med['events_per_s']:,.0f} |")
    print(f"\nwritten to {write_results(results, med)}")


def write_results(results: list[dict[str, float]], med: dict[str, float]) -> Path:
    """Keep the raw runs beside the medians, with the machine they ran on."""
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"core-{time.strftime('%Y%m%dT%H%M%S')}.json"
    info = {"machine": platform.platform(), "python": sys.version, "runs": results, "median": med}
    path.write_text(json.dumps(info, indent=2))
    return path


if __name__ == "__main__":
    asyncio.run(main())
