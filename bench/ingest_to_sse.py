"""Ingest -> SSE latency through a running gateway: ``POST /v1/events`` to the stream event.

Two "panes" of one customer, as in the demo page: one publishes with
``POST /v1/events``, another follows ``GET /v1/sessions/{id}/stream``. Each
event is posted only after the previous one arrived (no queueing), so each
sample is one event's whole way: HTTP ingest, Kafka ``acks=all``, the
worker's fold and commit, the Redis notice, the gateway's re-read and the
SSE write. Latency = arrival of the stream event carrying the new version
- the moment before the POST was sent.

    .venv/bin/python -m bench.ingest_to_sse --gateway http://127.0.0.1:8080 \\
        --customer c-1 --token "$(.venv/bin/continuity token --role service)"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
import uuid
from datetime import UTC, datetime

import aiohttp
import orjson

from bench.freshness import percentile, sse_events


async def measure(gateway: str, customer: str, token: str, events: int) -> list[float]:
    """Latencies (ms) of ``events`` sequential ingests, as seen by a stream subscriber."""
    headers = {"Authorization": f"Bearer {token}"}
    seen: asyncio.Queue[tuple[int, float]] = asyncio.Queue()

    async def follow() -> None:
        async for ev in sse_events(f"{gateway}/v1/sessions/{customer}/stream", headers):
            if ev.event == "session" and ev.id is not None and ev.id.isdigit():
                seen.put_nowait((int(ev.id), time.perf_counter()))

    follower = asyncio.create_task(follow())
    samples: list[float] = []
    try:
        async with aiohttp.ClientSession(headers=headers) as http:
            version = await _current_version(http, gateway, customer)
            while not seen.empty():
                seen.get_nowait()
            # One extra first event warms the path up (and makes sure the stream is open).
            for n in range(events + 1):
                event = {
                    "event_id": uuid.uuid4().hex,
                    "type": "browse.search",
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "channel": "mobile_app",
                    "customer_id": customer,
                    "payload": {"query": f"latency probe {n}"},
                }
                sent = time.perf_counter()
                async with http.post(f"{gateway}/v1/events", json=event) as resp:
                    if resp.status != 202:
                        raise RuntimeError(f"ingest answered {resp.status}: {await resp.text()}")
                version += 1
                while True:
                    got, at = await asyncio.wait_for(seen.get(), 30)
                    if got >= version:
                        samples.append((at - sent) * 1000)
                        break
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await follower
    return samples[1:]


async def _current_version(http: aiohttp.ClientSession, gateway: str, customer: str) -> int:
    async with http.get(f"{gateway}/v1/sessions/{customer}") as resp:
        return int(resp.headers.get("X-Continuity-Version", "0"))


def main() -> None:
    """Run once and print count, median and p99 in milliseconds."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gateway", required=True)
    p.add_argument("--customer", required=True)
    p.add_argument(
        "--token",
        required=True,
        help="a service token (a customer token would meet its ingest rate limit)",
    )
    p.add_argument("--events", type=int, default=300)
    args = p.parse_args()
    samples = sorted(asyncio.run(measure(args.gateway, args.customer, args.token, args.events)))
    print(
        orjson.dumps(
            {
                "events": len(samples),
                "median_ms": round(percentile(samples, 0.5) or 0, 2),
                "p99_ms": round(percentile(samples, 0.99) or 0, 2),
                "max_ms": round(samples[-1], 2) if samples else None,
            }
        ).decode()
    )


if __name__ == "__main__":
    main()
