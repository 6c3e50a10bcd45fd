"""Handoff codes and failed-claim counters in Redis: the thin edge of ``handoff``.

Keys (declared in ``streams/store/keys.py``; ``{p<N>}`` is the session's
partition, which a code is drawn in, so a code's keys share its session's slot):

* ``<prefix>:{p<N>}:handoff:<code>``: the pending code, JSON of its ``Ticket``, with
  ``CONTINUITY_HANDOFF_TTL`` as Redis TTL; claiming takes it with ``GETDEL``,
  so exactly one claimer ever gets it, whichever gateway each one reaches;
* ``<prefix>:{p<N>}:handoff-seen:<code>``: ``issued`` or ``claimed``, kept an hour
  longer than the code, only so a late or repeated claim gets a clear 410
  instead of a bare 404;
* ``<prefix>:{p<N>}:handoff-by:<session key>``: the session's codes, expiring with
  the newest, so an erasure or the session's end can delete them;
* ``<prefix>:handoff-fail:store:<store>`` and ``...:addr:<address>`` (global, untagged):
  failed claims in the current window (``INCR``, expiring with the window).

With ``CONTINUITY_HANDOFF_MIN_REPLICAS`` the claim is followed by ``WAIT`` on
the same connection: a claim no replica confirmed in time is put back and
refused (503), because a failover to a replica that never saw it would make
the code claimable a second time.

The gateway keeps nothing in memory: any gateway can claim a code another
one created.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from redis.asyncio import RedisCluster

from streams.gateway.sessions import RedisUnavailable
from streams.store import keys
from streams.store.client import UNAVAILABLE, Client
from streams.store.keys import Space

# How long after its expiry a code is still known as issued or claimed.
SEEN_GRACE_SECONDS = 3600
ISSUED = "issued"
CLAIMED = "claimed"

# Atomic: take the code (GETDEL) and, if it was there, mark it claimed, so a
# second claimer can be told "already claimed" rather than "unknown".
# Returns {ticket, pttl before the take} or {false, the seen marker}.
_CLAIM = """
local pttl = redis.call('PTTL', KEYS[1])
local ticket = redis.call('GETDEL', KEYS[1])
if ticket then
  redis.call('SET', KEYS[2], 'claimed', 'KEEPTTL')
  return {ticket, pttl}
end
return {false, redis.call('GET', KEYS[2])}
"""


@dataclass(frozen=True)
class Ticket:
    """What a code stands for: the session key and the ids its claim event carries."""

    key: str
    customer_id: str | None
    anonymous_id: str | None

    def dumps(self) -> bytes:
        """The stored JSON."""
        return orjson.dumps(
            {"key": self.key, "customer_id": self.customer_id, "anonymous_id": self.anonymous_id}
        )

    @staticmethod
    def loads(raw: bytes | str) -> Ticket:
        """A stored ticket."""
        d = orjson.loads(raw)
        return Ticket(str(d["key"]), d.get("customer_id"), d.get("anonymous_id"))


@dataclass(frozen=True)
class Taken:
    """The code was pending and is now this claimer's."""

    ticket: Ticket
    pttl_ms: int


@dataclass(frozen=True)
class Gone:
    """No pending code: ``claimed`` before, ``expired``, or ``unknown``."""

    why: Literal["claimed", "expired", "unknown"]


@dataclass(frozen=True)
class Unconfirmed:
    """The code was taken, but too few replicas confirmed it in time: it was put back."""

    acked: int


class HandoffStore:
    """Redis operations of the handoff routes. Holds no state of its own."""

    def __init__(self, redis: Client, space: Space) -> None:
        self._redis = redis
        self._space = space
        self._claim = redis.register_script(_CLAIM)

    async def create(self, code: str, ticket: Ticket, ttl: int) -> bool:
        """Store a new code; ``False`` if that code is pending already (draw another).

        ``code`` must be of ``ticket.key``'s partition (``handoff.code_in_partition``).
        """
        if self._space.partition(code) != self._space.partition(ticket.key):
            raise ValueError(f"handoff code {code} is not in the partition of its session")
        try:
            if not await self._redis.set(self._code(code), ticket.dumps(), ex=ttl, nx=True):
                return False
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self._seen(code), ISSUED, ex=ttl + SEEN_GRACE_SECONDS)
                # The session's pending codes, so an erasure can delete them (one
                # slot with the code's keys, so one MULTI on a cluster too).
                pipe.sadd(self._by(ticket.key), code)
                pipe.expire(self._by(ticket.key), ttl)
                await pipe.execute()
        except UNAVAILABLE as exc:
            raise RedisUnavailable(repr(exc)) from None
        return True

    async def claim(
        self, code: str, replicas: int = 0, timeout_ms: int = 500
    ) -> Taken | Gone | Unconfirmed:
        """Take the code if it is pending (single use, atomic across gateways).

        With ``replicas``, the take must reach that many replicas within
        ``timeout_ms``; if it does not, it is put back and ``Unconfirmed`` returned.
        """
        keys = [self._code(code), self._seen(code)]
        try:
            if replicas:
                # WAIT counts the writes of its own connection: one pipeline, one connection
                # (on a cluster, the one to the code's slot owner, which WAIT is sent to).
                # EVAL, not the registered EVALSHA: a cluster pipeline loads no script.
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.eval(_CLAIM, len(keys), *keys)
                    pipe.execute_command("WAIT", replicas, timeout_ms, **self._beside(keys[0]))
                    (found, extra), acked = await pipe.execute()
            else:
                found, extra = await self._claim(keys=keys)
                acked = 0
        except UNAVAILABLE as exc:
            raise RedisUnavailable(repr(exc)) from None
        if found:
            taken = Taken(Ticket.loads(found), int(extra))
            if int(acked) < replicas:
                await self.put_back(code, taken)
                return Unconfirmed(int(acked))
            return taken
        seen = extra.decode() if isinstance(extra, bytes) else extra
        if seen == CLAIMED:
            return Gone("claimed")
        if seen == ISSUED:
            return Gone("expired")
        return Gone("unknown")

    async def put_back(self, code: str, taken: Taken) -> None:
        """Make a taken code pending again for what was left of its life (a failed publish)."""
        ttl_ms = max(taken.pttl_ms, 1000)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self._code(code), taken.ticket.dumps(), px=ttl_ms, nx=True)
                pipe.set(self._seen(code), ISSUED, keepttl=True)
                await pipe.execute()
        except UNAVAILABLE as exc:
            raise RedisUnavailable(repr(exc)) from None

    async def failures(self, store: str, address: str) -> list[tuple[int, int]]:
        """(failed claims, ms left in the window) for the store and the address."""
        keys = [self._fail("store", store), self._fail("addr", address)]
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for k in keys:
                    pipe.get(k)
                    pipe.pttl(k)
                raw = await pipe.execute()
        except UNAVAILABLE as exc:
            raise RedisUnavailable(repr(exc)) from None
        return [(int(raw[i] or 0), int(raw[i + 1])) for i in range(0, len(raw), 2)]

    async def record_failure(self, store: str, address: str, window: int) -> None:
        """Count one failed claim against the store and the address."""
        try:
            # One MULTI per counter: the two are global keys (two slots on a cluster),
            # and only each counter's INCR and EXPIRE must go together.
            await asyncio.gather(
                self._count(self._fail("store", store), window),
                self._count(self._fail("addr", address), window),
            )
        except UNAVAILABLE as exc:
            raise RedisUnavailable(repr(exc)) from None

    async def _count(self, counter: str, window: int) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(counter)
            # NX: the window starts with its first failure and is not extended.
            pipe.expire(counter, window, nx=True)
            await pipe.execute()

    def _beside(self, key: str) -> dict[str, Any]:
        """Routing for a keyless command that must follow ``key``'s on one connection."""
        if isinstance(self._redis, RedisCluster):
            return {"target_nodes": self._redis.get_node_from_key(key)}
        return {}

    def _code(self, code: str) -> str:
        return keys.handoff(self._space, code)

    def _by(self, key: str) -> str:
        return keys.handoff_by(self._space, key)

    def _seen(self, code: str) -> str:
        return keys.handoff_seen(self._space, code)

    def _fail(self, kind: Literal["store", "addr"], who: str) -> str:
        return keys.claim_failures(self._space, kind, who)
