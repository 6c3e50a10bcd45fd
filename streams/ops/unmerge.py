"""``continuity unmerge``: undo a login merge before checkout. Thin I/O shell.

Publishes one ``session.unmerged`` event (the undo is an event in the log like
any other, so a replay or a rebuild undoes it again), waits until the worker
has applied its position, and reports what the session says: the merge
marked undone, or refused (the reason is on ``events-dlq``: nothing to undo,
or a checkout began since the merge). The fold rule is ``streams/core/unmerge.py``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis, RedisCluster

from schemas.session import MergeRecord
from streams.kafka.publish import Publisher, prepare_dict
from streams.store.keys import Space
from streams.store.state import RedisState


@dataclass(frozen=True)
class Outcome:
    """Where the event went, and what the session shows once it was applied."""

    position: str
    applied: bool
    undone: MergeRecord | None


def unmerge_event(customer_id: str, anonymous_id: str, channel: str) -> dict[str, Any]:
    """The ``session.unmerged`` event an operator's undo publishes."""
    return {
        "event_id": f"unmerge-{uuid.uuid4().hex}",
        "type": "session.unmerged",
        "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "channel": channel,
        "customer_id": customer_id,
        "payload": {"anonymous_id": anonymous_id},
    }


async def unmerge(
    bootstrap: str,
    kafka: dict[str, Any],
    redis: Redis | RedisCluster,
    space: Space,
    event: dict[str, Any],
    timeout: float,
) -> Outcome:
    """Publish ``event`` and wait (up to ``timeout`` s) until a worker applied it."""
    out = prepare_dict(event)
    async with Publisher(bootstrap, kafka=kafka) as pub:
        (meta,) = await pub.send_all([out])
    tp, position = f"{meta.topic}:{meta.partition}", f"{meta.topic}:{meta.partition}@{meta.offset}"
    state = RedisState(redis, space)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await state.applied_offsets_of([tp])).get(tp, -1) >= meta.offset:
            session = await state.get(event["customer_id"])
            guest = event["payload"]["anonymous_id"]
            at = datetime.fromisoformat(event["occurred_at"])
            undone = next(
                (
                    m
                    for m in (session.merges if session else [])
                    if m.anonymous_id == guest and m.undone_at == at
                ),
                None,
            )
            return Outcome(position, True, undone)
        await asyncio.sleep(0.25)
    return Outcome(position, False, None)
