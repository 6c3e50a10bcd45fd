"""naive: the Faust agent a tutorial would write. One event at a time: GET, fold, SET.

Per event, awaited one after the other: ``GET`` the guest's alias (events
carrying an ``anonymous_id``), ``GET`` the session JSON (two on a login),
fold with the project's own pure planner on a one-event batch (so routing,
login merges and the fold are exactly the worker's), ``SET`` what changed
(``DEL`` the merged guest, ``SET`` the alias). No batching, no pipelining, no
compare-and-set, no applied offsets; Faust acknowledges each event after the
loop body. Keys: the worker's names (``keys.session``: ``<prefix>:{p<n>}:s:<key>``,
a plain string of session JSON here) and ``keys.alias``. The harness checks the
final state against the same order-independent projection as the worker's.

    python -m bench.runners.naive --expect N --report PATH
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from bench.runners.faust_app import bench_app, run
from bench.runners.tracker import Tracker, arguments
from schemas.events import AnyEvent
from schemas.session import Session
from streams.core.decode import decode
from streams.core.fold import Rejected
from streams.core.plan import Record, Snapshot, needs, plan_batch
from streams.settings import Settings
from streams.store import keys
from streams.store.keys import Space


async def apply_one(redis: Redis, space: Space, record: Record, event: AnyEvent | Rejected) -> int:
    """Apply one event with plain GETs and SETs; return the round trips it took."""
    if isinstance(event, Rejected):
        return 0  # the workload has none; a tutorial would log and move on
    need = needs([record], [event])
    trips = 0
    aliases: dict[str, str] = {}
    for anon in sorted(need.anonymous_ids):
        target = await redis.get(keys.alias(space, anon))
        trips += 1
        if target is not None:
            aliases[anon] = target.decode() if isinstance(target, bytes) else target
    sessions: dict[str, Session] = {}
    for key in sorted(set(need.keys) | set(aliases.values())):
        blob = await redis.get(keys.session(space, key))
        trips += 1
        if blob is not None:
            sessions[key] = Session.model_validate_json(blob)
    plan = plan_batch([record], [event], Snapshot(aliases, {}, sessions))
    for key in plan.deletes:  # before writes, as commit.lua
        await redis.delete(keys.session(space, key))
        trips += 1
    for key, session in plan.writes.items():
        await redis.set(keys.session(space, key), session.model_dump_json())
        trips += 1
    for anon, customer in plan.aliases.items():
        await redis.set(keys.alias(space, anon), customer)
        trips += 1
    return trips


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    settings = Settings()
    tracker = Tracker(args.expect, args.report)
    app, source = bench_app(settings)

    async def fold_one_by_one(stream: Any) -> None:
        redis = Redis.from_url(settings.redis_dsn())
        try:
            async for event in stream.events():
                m = event.message
                record = Record(m.topic, m.partition, m.offset, m.key, m.value)
                trips = await apply_one(redis, settings.space(), record, decode(m.value))
                tracker.applied(1, trips)
        finally:
            await redis.aclose()

    app.agent(source, name="fold_naively", concurrency=1)(fold_one_by_one)
    run(app, settings)


if __name__ == "__main__":
    main()
