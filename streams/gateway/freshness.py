"""How fresh a read is: when a session's partitions were last applied, and whether
any worker is folding. Read with the session, answered in headers.

The gateway keeps serving the last committed state while every worker is down
or rebalancing (it reads Redis only). These headers let a frontend tell the
customer the view may be behind:

* ``X-Continuity-Applied``: ``topic:partition@offset`` of the session key's
  partition in each source topic (the key's partition is Kafka's default
  partitioner's: murmur2 of the key), the positions the state holds;
* ``X-Continuity-Applied-At``: when a worker last applied a batch on those
  partitions (RFC 3339, Redis's clock, written by the commit script);
* ``X-Continuity-Workers``: ``live`` if some worker's heartbeat (``<prefix>:hb``,
  every relay round, about once a second) is younger than
  ``CONTINUITY_WORKER_STALE_AFTER``, ``none`` otherwise: with ``none``,
  events are accepted and kept in Kafka but nothing is folded until a worker
  is back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.topics import SOURCE_TOPICS
from streams.store import keys
from streams.store.client import Client
from streams.store.keys import Space

APPLIED_HEADER = "X-Continuity-Applied"
APPLIED_AT_HEADER = "X-Continuity-Applied-At"
WORKERS_HEADER = "X-Continuity-Workers"


@dataclass(frozen=True)
class Freshness:
    """What the state holds for one session key's partitions, and the newest heartbeat."""

    applied: tuple[tuple[str, int | None], ...]  # (topic:partition, offset or None)
    applied_at_ms: int | None
    heartbeat_ms: int | None

    def headers(self, now_ms: int, stale_after: float) -> dict[str, str]:
        """The response headers (see the module docstring)."""
        out = {
            APPLIED_HEADER: ",".join(f"{tp}@{o}" for tp, o in self.applied if o is not None),
            WORKERS_HEADER: "live"
            if self.heartbeat_ms is not None and now_ms - self.heartbeat_ms <= stale_after * 1000
            else "none",
        }
        if self.applied_at_ms is not None:
            at = datetime.fromtimestamp(self.applied_at_ms / 1000, UTC)
            out[APPLIED_AT_HEADER] = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return out


async def read(
    redis: Client, space: Space, key: str, topics: Sequence[str] = SOURCE_TOPICS
) -> Freshness:
    """Read the freshness of session ``key`` in one round trip."""
    # The key's partition, in every co-partitioned topic, is applied in that
    # partition's own hashes (the session's slot).
    part = space.partition(key)
    tps = [f"{t}:{part}" for t in topics]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hmget(keys.offsets(space, part), tps)
        pipe.hmget(keys.offset_times(space, part), tps)
        pipe.zrange(keys.heartbeats(space), -1, -1, withscores=True)
        offsets, times, beat = await pipe.execute()
    stamps = [int(t) for t in times if t is not None]
    return Freshness(
        applied=tuple(
            (tp, int(o) if o is not None else None) for tp, o in zip(tps, offsets, strict=True)
        ),
        applied_at_ms=max(stamps) if stamps else None,
        heartbeat_ms=int(beat[0][1]) if beat else None,
    )
