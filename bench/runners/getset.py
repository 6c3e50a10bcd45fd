"""getset: a plain Faust agent doing one GET and one SET of JSON per event, nothing else.

The floor of any per-event read-modify-write over Redis: per event, parse the
JSON value (``json.loads``, no schema), ``GET <prefix>:j:{key}``, update a
small JSON document (events counted, the last type, cart lines added, the
last 20 products viewed), ``SET`` it back. No validation, no planner, no
aliases or merges, no timers, journey or KPIs, no compare-and-set, no applied
offsets; Faust acknowledges each event after the loop body. Invariant checked
by the harness: the stored counts add up to the events sent, every key present.

    python -m bench.runners.getset --expect N --report PATH
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from bench.runners.faust_app import bench_app, run
from bench.runners.tracker import Tracker, arguments
from streams.settings import Settings

VIEWED = 20


def folded(doc: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with one more event counted in it (changed in place and returned)."""
    doc["n"] = doc.get("n", 0) + 1
    doc["last"] = event.get("type")
    payload = event.get("payload") or {}
    if event.get("type") == "cart.item_added":
        lines = doc.setdefault("cart", {})
        lines[payload["sku"]] = lines.get(payload["sku"], 0) + int(payload["quantity"])
    elif event.get("type") == "browse.product_viewed":
        doc["viewed"] = [payload["sku"], *doc.get("viewed", [])][:VIEWED]
    return doc


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    settings = Settings()
    tracker = Tracker(args.expect, args.report)
    app, source = bench_app(settings)
    prefix = settings.redis_prefix

    async def get_and_set(stream: Any) -> None:
        redis = Redis.from_url(settings.redis_dsn())
        try:
            async for event in stream.events():
                m = event.message
                name = f"{prefix}:j:{{{m.key.decode()}}}"
                blob = await redis.get(name)
                doc = json.loads(blob) if blob is not None else {}
                await redis.set(name, json.dumps(folded(doc, json.loads(m.value))))
                tracker.applied(1, 2)
        finally:
            await redis.aclose()

    app.agent(source, name="get_and_set", concurrency=1)(get_and_set)
    run(app, settings)


if __name__ == "__main__":
    main()
