"""Rate limits per token identity, shared by every gateway through Redis.

Built on the ``limits`` library (sliding window counters kept in Redis,
redis-py client sharing the gateway's connection pool), so any number of
gateways enforce one budget. A limit is written as ``limits`` parses it:
``"50/second;2000/minute"`` (every window must allow the request); an empty
string switches the limit off.

Who is counted: the verified token's role and subject (a customer key, a
POS store and terminal, a service name), never the client address, which a
store's NAT or a mobile carrier shares between many people.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisClusterStorage, RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import RedisCluster

from streams.gateway.auth import Principal
from streams.store import keys
from streams.store.client import Client
from streams.store.keys import Space


def parse(spec: str) -> list[RateLimitItem]:
    """The windows of a limit (``[]`` for an empty spec); raises ``ValueError`` if malformed."""
    spec = spec.strip()
    return list(parse_many(spec)) if spec else []


def identity(principal: Principal) -> str:
    """The bucket a request is counted in."""
    return f"{principal.role.value}:{principal.store or ''}:{principal.subject or ''}"


@dataclass(frozen=True)
class Exceeded:
    """A refused request: which limit, and when to retry."""

    limit: str
    retry_after: int


class RateLimiter:
    """Named limits (``ingest``, ``claim`` ...) checked and consumed in Redis."""

    def __init__(self, redis: Client, space: Space, limits: dict[str, str]) -> None:
        prefix = keys.rate_limits(space)
        storage: RedisStorage
        if isinstance(redis, RedisCluster):
            storage = _SharedCluster(redis, prefix)
        else:
            # The gateway's own pool (its URL, TLS and credentials).
            shared: dict[str, Any] = {"connection_pool": redis.connection_pool}
            storage = RedisStorage(
                "async+redis://", implementation="redispy", key_prefix=prefix, **shared
            )
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._limits = {name: parse(spec) for name, spec in limits.items()}

    async def hit(self, name: str, who: str, cost: int = 1) -> Exceeded | None:
        """Consume ``cost`` from every window of limit ``name``, or say why not.

        Nothing is consumed from any window when one of them would be exceeded.
        Raises the Redis client's errors (the caller decides what an outage means).
        """
        items = self._limits.get(name, [])
        for item in items:
            if not await self._limiter.test(item, name, who, cost=cost):
                stats = await self._limiter.get_window_stats(item, name, who)
                wait = max(1, math.ceil(stats.reset_time - time.time()))
                return Exceeded(str(item), wait)
        for item in items:
            await self._limiter.hit(item, name, who, cost=cost)
        return None


class _SharedCluster(RedisClusterStorage):
    """``limits``' cluster storage on the gateway's own ``RedisCluster`` client.

    The library would build a second cluster client from a URL of its own (its
    own pools, without the gateway's TLS and timeouts); its bridge is pointed at
    the gateway's client instead, before it registers its scripts. A window's
    two keys share one hash tag (``<prefix>:{<window>}`` and ``.../-1``), so
    each of its scripts runs in one slot.
    """

    def __init__(self, client: RedisCluster, key_prefix: str) -> None:
        self._client = client
        # The URL only names the scheme: the bridge never connects through it.
        super().__init__(
            "async+redis+cluster://shared:1", implementation="redispy", key_prefix=key_prefix
        )

    def configure_bridge(self) -> None:
        bridge: Any = self.bridge
        bridge.storage = self._client
        bridge.connection_getter = lambda _readonly: self._client
