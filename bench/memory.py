"""Memory: Redis bytes per session, and the worker's RSS as the number of customers grows.

``session_bytes`` folds a typical session (20 products viewed, 5 cart lines)
and a long-lived one (its 256-id duplicate window full) with the pure
planner, stores them exactly as ``commit.lua`` does (hash: ``v``, ``d``) in a
fresh redis-server and asks ``MEMORY USAGE``.

``rss_by_customers`` runs the real worker over the same number of events
(product views) spread over each number of customers, and reports its peak
RSS and Redis's memory: the worker keeps no per-customer state, so its RSS
should stay flat while Redis grows with the sessions.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.expect import fold_in_order
from bench.procstat import peak_rss_bytes, rss_bytes
from bench.stack import PARTITIONS, Stack
from bench.workload import CATALOG, START, encode, typical_session_events, views_spread
from streams.core import session_codec
from streams.dev import loopback
from streams.store import keys
from streams.store.keys import Space

Say = Callable[[str], None]
MB = 1024 * 1024


def long_lived_events(customer_id: str = "regular-0001", events: int = 300) -> list[dict[str, Any]]:
    """A regular's session after ``events`` views and adds: every bounded list is full."""
    out = typical_session_events(customer_id)
    for i in range(len(out), events):
        sku, name, category, _ = CATALOG[(i * 7) % len(CATALOG)]
        out.append(
            {
                "event_id": f"{customer_id}-{i:04d}",
                "type": "browse.search" if i % 5 == 0 else "browse.product_viewed",
                "occurred_at": (START + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
                "channel": "web",
                "customer_id": customer_id,
                "payload": {"query": category}
                if i % 5 == 0
                else {"sku": sku, "name": name, "category": category},
            }
        )
    return out


async def session_bytes(log_dir: Path) -> list[dict[str, Any]]:
    """Redis bytes (``MEMORY USAGE``) and JSON bytes of a typical and a long-lived session."""
    cases = {
        "typical: 20 products viewed, 5 cart lines (25 events)": typical_session_events(),
        "long-lived: 300 events (256 applied ids, 20 viewed, 10 searches)": long_lived_events(),
    }
    data_dir = Path(tempfile.mkdtemp(prefix="continuity-bench-mem-"))
    server = loopback.start_redis(data_dir, log_dir)
    redis = Redis.from_url(f"redis://127.0.0.1:{server.port}/0")
    rows = []
    try:
        for label, events in cases.items():
            (key, session), *_ = fold_in_order(events).sessions.items()
            name = keys.session(Space(keys.DEFAULT_PREFIX, PARTITIONS), key)
            blob = session.model_dump_json()
            # Stored as the worker stores it (compressed by default).
            stored = session_codec.encode(session)
            await redis.hset(name, mapping={"v": session.version, "d": stored})
            used = await redis.memory_usage(name, samples=0)
            rows.append(
                {
                    "session": label,
                    "json_bytes": len(blob),
                    "stored_bytes": len(stored),
                    "redis_bytes": used,
                }
            )
    finally:
        await redis.aclose()
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return rows


async def rss_by_customers(
    counts: Sequence[int], logs: Path, say: Say, timeout: float = 3600
) -> list[dict[str, Any]]:
    """Peak worker RSS and Redis memory after folding the same backlog over ``n`` customers."""
    events = max(counts)
    rows = []
    for n in counts:
        run_dir = logs / f"memory-{n}"
        stack = await Stack.start(run_dir)
        worker = None
        try:
            backlog = await stack.produce(encode(views_spread(n, events)))
            say(f"  memory: {events:,} events over {n:,} customers in {backlog.seconds:.0f} s")
            started = time.monotonic()
            worker = loopback.start_worker("worker", stack.worker_env(), run_dir)
            say(f"  memory: worker pid {worker.pid} folding; logs {run_dir}")
            # (events applied, RSS now): does RSS climb as more customers are seen?
            trace: list[tuple[int, float]] = []
            while True:
                applied = await stack.applied_offsets("cont")
                trace.append((sum(o + 1 for o in applied.values()), rss_bytes(worker.pid) / MB))
                if backlog.drained(applied):
                    break
                if not worker.alive() or time.monotonic() - started > timeout:
                    raise RuntimeError(f"worker did not fold {n} customers (log: {run_dir})")
                await asyncio.sleep(0.5)
            info = await stack.nodes[0].info("memory")
            sessions = await stack.nodes[0].dbsize()
            rows.append(
                {
                    "customers": n,
                    "events": events,
                    "worker_peak_rss_mb": round(peak_rss_bytes(worker.pid) / MB, 1),
                    "worker_rss_mb_at": _rss_at(trace, events, (0.1, 0.25, 0.5, 0.75, 1.0)),
                    "redis_used_memory_mb": round(int(info["used_memory"]) / MB, 1),
                    "redis_keys": sessions,
                    "seconds": round(time.monotonic() - started, 1),
                }
            )
            say(f"      -> {rows[-1]}")
        finally:
            if worker is not None:
                worker.stop()
            await stack.stop()
    return rows


def _rss_at(
    trace: list[tuple[int, float]], events: int, shares: tuple[float, ...]
) -> dict[str, float]:
    """RSS (MB) when the first sample at or past each share of the events was taken."""
    out = {}
    for share in shares:
        rss = next((r for applied, r in trace if applied >= share * events), trace[-1][1])
        out[f"{share:.0%}"] = round(rss, 1)
    return out
