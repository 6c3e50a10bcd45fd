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
  the newest, so an erasure or the session's end can delete them. Issuing a code
  (``handoff.lua``, one script in the session's slot) drops the codes no longer
  pending from it and revokes the oldest pending ones past the session's bound;
* ``<prefix>:handoff-fail:token:<store>[:<subject>]``, ``...:store:<store>`` and
  ``...:addr:<address>`` (global, untagged): failed claims in the current window.
  A claim reserves a guess on each counter first, in one script per counter that
  compares and increments (``reserve_guess``): of a concurrent burst exactly as many
  as the limit allows get to try a code. A claim that turns out not to be a failed
  guess gives its reservation back (``release_guess``).

A claim taken but not published (Kafka did not acknowledge) is *held* for its
claimer (``hold``): the code stays pending for that claimer only, so the till's
retry publishes the claim again under the same event id (the ticket's
``nonce``), which the fold skips if the first one landed after all, while any
other claimer is told the code is claimed.

With ``CONTINUITY_HANDOFF_MIN_REPLICAS`` the claim is followed by ``WAIT`` on
the same connection: a claim no replica confirmed in time is put back and
refused (503), because a failover to a replica that never saw it would make
the code claimable a second time.

The gateway keeps nothing in memory: any gateway can claim a code another
one created.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import orjson
from redis.asyncio import RedisCluster

from streams.gateway.sessions import RedisUnavailable
from streams.store import keys
from streams.store.client import UNAVAILABLE, Client
from streams.store.keys import Space
from streams.store.scripts import register

# How long after its expiry a code is still known as issued or claimed.
SEEN_GRACE_SECONDS = 3600
ISSUED = "issued"
CLAIMED = "claimed"

# Atomic: take the code and, if it was there, mark it claimed, so a second
# claimer can be told "already claimed" rather than "unknown". A code held for
# the claimer whose publish failed (its ticket's ``holder``) is only theirs to take.
# KEYS: the code, its seen marker. ARGV: the claimer.
# Returns {ticket, pttl before the take} or {false, the seen marker}.
_CLAIM = """
local pttl = redis.call('PTTL', KEYS[1])
local ticket = redis.call('GET', KEYS[1])
if ticket then
  local ok, t = pcall(cjson.decode, ticket)
  if ok and type(t) == 'table' and type(t['holder']) == 'string' and t['holder'] ~= ARGV[1] then
    return {false, 'claimed'}
  end
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], 'claimed', 'KEEPTTL')
  return {ticket, pttl}
end
return {false, redis.call('GET', KEYS[2])}
"""

# One failed-claim counter: compare and increment in one step, so concurrent claims
# cannot all read a count under the limit. KEYS: the counter. ARGV: limit, window (s).
# Returns {1, 0} (a guess reserved) or {0, ms left in the window} (locked out).
_RESERVE = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then
  return {0, redis.call('PTTL', KEYS[1])}
end
redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return {1, 0}
"""

# Give a reserved guess back; a window that ended meanwhile is left alone (no
# counter without expiry is ever created).
_RELEASE = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then
  redis.call('DECR', KEYS[1])
end
return n
"""


@dataclass(frozen=True)
class Ticket:
    """What a code stands for: the session key and the ids its claim event carries.

    ``nonce`` (drawn when the code is issued) makes the claim's event id, so every
    attempt to publish one code's claim carries the same id. ``holder`` is set only
    on a code held for the claimer whose publish failed.
    """

    key: str
    customer_id: str | None
    anonymous_id: str | None
    nonce: str | None = None
    holder: str | None = None

    def dumps(self) -> bytes:
        """The stored JSON."""
        d: dict[str, str | None] = {
            "key": self.key,
            "customer_id": self.customer_id,
            "anonymous_id": self.anonymous_id,
        }
        if self.nonce is not None:
            d["nonce"] = self.nonce
        if self.holder is not None:
            d["holder"] = self.holder
        return orjson.dumps(d)

    @staticmethod
    def loads(raw: bytes | str) -> Ticket:
        """A stored ticket (one written before nonces and holders existed too)."""
        d = orjson.loads(raw)
        return Ticket(
            str(d["key"]),
            d.get("customer_id"),
            d.get("anonymous_id"),
            d.get("nonce"),
            d.get("holder"),
        )


@dataclass(frozen=True)
class Issued:
    """A code was stored; these older codes of its session were revoked to make room."""

    revoked: tuple[str, ...]


@dataclass(frozen=True)
class FailureCounter:
    """A failed-claim counter a claim is counted on, and its limit per window."""

    key: str
    limit: int


@dataclass(frozen=True)
class Guess:
    """A claim's reservation: one count on each of these counters."""

    counters: tuple[str, ...]


@dataclass(frozen=True)
class LockedOut:
    """A counter is at its limit: no guess until its window ends."""

    ttl_ms: int


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
        self._reserve = redis.register_script(_RESERVE)
        self._release = redis.register_script(_RELEASE)
        self._issue = register(redis, "handoff.lua")

    async def create(
        self, code: str, ticket: Ticket, ttl: int, max_pending: int = 3
    ) -> Issued | None:
        """Store a new code; ``None`` if that code is pending already (draw another).

        At most ``max_pending`` of the session's codes stay pending: the oldest
        beyond are revoked (``Issued.revoked``). ``code`` must be of ``ticket.key``'s
        partition (``handoff.code_in_partition``).
        """
        if self._space.partition(code) != self._space.partition(ticket.key):
            raise ValueError(f"handoff code {code} is not in the partition of its session")
        names = [self._by(ticket.key), self._code(code), self._seen(code)]
        args: list[str | bytes | int] = [
            self._space.prefix,
            self._space.partitions,
            code,
            ticket.dumps(),
            ttl,
            ttl + SEEN_GRACE_SECONDS,
            max(1, max_pending),
        ]
        try:
            issued, *revoked = await self._issue(keys=names, args=args)
        except UNAVAILABLE as exc:
            raise RedisUnavailable(repr(exc)) from None
        if not int(issued):
            return None
        return Issued(tuple(c.decode() if isinstance(c, bytes) else str(c) for c in revoked))

    async def claim(
        self, code: str, claimer: str = "", replicas: int = 0, timeout_ms: int = 500
    ) -> Taken | Gone | Unconfirmed:
        """Take the code if it is pending (single use, atomic across gateways).

        A code held for another claimer (``hold``) is ``Gone("claimed")`` to
        ``claimer``. With ``replicas``, the take must reach that many replicas within
        ``timeout_ms``; if it does not, it is put back and ``Unconfirmed`` returned.
        """
        keys = [self._code(code), self._seen(code)]
        try:
            if replicas:
                # WAIT counts the writes of its own connection: one pipeline, one connection
                # (on a cluster, the one to the code's slot owner, which WAIT is sent to).
                # EVAL, not the registered EVALSHA: a cluster pipeline loads no script.
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.eval(_CLAIM, len(keys), *keys, claimer)
                    pipe.execute_command("WAIT", replicas, timeout_ms, **self._beside(keys[0]))
                    (found, extra), acked = await pipe.execute()
            else:
                found, extra = await self._claim(keys=keys, args=[claimer])
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

    async def hold(self, code: str, taken: Taken, claimer: str) -> None:
        """Make a taken code pending again for ``claimer`` alone (its claim's publish failed).

        The claim's event may have landed all the same: only the same claimer's
        retry, which publishes under the same event id, may take the code again.
        """
        held = replace(taken.ticket, holder=claimer)
        ttl_ms = max(taken.pttl_ms, 1000)
        try:
            await self._redis.set(self._code(code), held.dumps(), px=ttl_ms, nx=True)
        except UNAVAILABLE as exc:
            raise RedisUnavailable(repr(exc)) from None

    def token_counter(self, store: str, subject: str | None, limit: int) -> FailureCounter:
        """Failed claims of one pos token: its store and its ``sub`` (a terminal), if any."""
        return FailureCounter(keys.claim_failures_token(self._space, store, subject), limit)

    def store_counter(self, store: str, limit: int) -> FailureCounter:
        """Failed claims of every pos token of one store."""
        return FailureCounter(keys.claim_failures_store(self._space, store), limit)

    def address_counter(self, address: str, limit: int) -> FailureCounter:
        """Failed claims from one client address (only as a trusted proxy names it)."""
        return FailureCounter(keys.claim_failures_address(self._space, address), limit)

    async def reserve_guess(
        self, counters: Sequence[FailureCounter], window: int
    ) -> Guess | LockedOut:
        """Count one guess on every counter, or none if one of them is at its limit.

        Each counter compares and increments in one script, so of any number of
        concurrent claims exactly as many as the limit pass it; a counter's window
        (``window`` seconds) starts with its first guess and is never extended.
        """
        reserved: list[str] = []
        try:
            for c in counters:
                ok, ttl_ms = await self._reserve(keys=[c.key], args=[c.limit, window])
                if not int(ok):
                    await self._give_back(reserved)
                    return LockedOut(int(ttl_ms))
                reserved.append(c.key)
        except UNAVAILABLE as exc:
            raise RedisUnavailable(repr(exc)) from None
        return Guess(tuple(reserved))

    async def release_guess(self, guess: Guess) -> None:
        """Give a reserved guess back: the claim was not a failed one."""
        try:
            await self._give_back(guess.counters)
        except UNAVAILABLE as exc:
            raise RedisUnavailable(repr(exc)) from None

    async def _give_back(self, counters: Sequence[str]) -> None:
        # One script per counter: global keys, each in its own slot on a cluster.
        await asyncio.gather(*(self._release(keys=[k]) for k in counters))

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
