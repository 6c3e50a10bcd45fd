"""Key TTLs of ended sessions (streams/core/expiry.py) against a real redis-server.

Proves: a commit gives every key a session wrote (the session, its journey, its
link set and its guests' aliases, the device's sign-ins) the expiry the fold's
end implies, ``max(end, commit time) + grace``, never sooner, and the version
floor one TTL beyond; a session Redis then forgets by itself continues its
versions from the floor; a session that ends takes its guests' aliases, its
links and its journey with it, and the guests keep the version floor.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from streams.core.decode import decode
from streams.core.fold import Limits
from streams.core.plan import Record, needs, plan_batch
from streams.store import keys
from streams.store.state import Effects, RedisState
from tests.support.events import added, event
from tests.support.stack import space, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.clock]

DAY_MS = 86400 * 1000
LIMITS = Limits(guest_ttl=2 * 86400, session_ttl=4 * 86400)
GRACE = 3600


class Fold:
    """Load, plan, commit: one worker batch at a time, offsets counting on."""

    def __init__(self, redis: Redis, grace: int = GRACE) -> None:
        self.state = RedisState(redis, space("t"), Effects(expiry_grace=grace))
        self.offset = 0

    async def __call__(self, *events: dict[str, Any]) -> None:
        batch = []
        for e in events:
            batch.append(Record("cart-events", 0, self.offset, b"k", orjson.dumps(e)))
            self.offset += 1
        decoded = [decode(r.value) for r in batch]
        snapshot = await self.state.load(needs(batch, decoded))
        plan = plan_batch(batch, decoded, snapshot, LIMITS)
        assert await self.state.commit(plan) is None


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


async def redis_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


def worker_ms() -> int:
    """The worker's clock, whole seconds: event times near it keep journeys, which the
    commit prunes by this clock (``make test-clock`` moves it, not redis-server's)."""
    return int(time.time()) * 1000


async def test_a_commit_sets_every_session_key_to_expire_at_its_end_plus_the_grace(
    client: Redis,
) -> None:
    fold = Fold(client)
    recent = worker_ms()
    old = recent - 100 * DAY_MS
    before = await redis_ms(client)
    await fold(
        event("cart.item_added", added("A"), anon="g", at=iso(recent)),
        event("cart.item_added", added("B"), customer="old", at=iso(old)),
        event("cart.item_added", added("C"), anon="h", at=iso(recent)),
        event("session.identified", customer="c", anon="h", at=iso(recent + 1000)),
    )
    after = await redis_ms(client)

    guest_end = recent + 2 * DAY_MS + GRACE * 1000
    assert await client.pexpiretime(keys.session(space("t"), "g")) == guest_end
    assert await client.pexpiretime(keys.version_floor(space("t"), "g")) == guest_end + 2 * DAY_MS
    # The journey expires with its session, or by its own max age (90 days after the
    # commit, Redis's clock) when that is sooner.
    journey = await client.pexpiretime(keys.journey(space("t"), "g"))
    own = (before + 90 * DAY_MS, after + 90 * DAY_MS)
    assert journey == guest_end or own[0] <= journey <= own[1]
    assert journey <= guest_end

    # Ended long ago by event time: kept from the commit on (Redis's clock), for the grace.
    old_end = old + 4 * DAY_MS
    kept = await client.pexpiretime(keys.session(space("t"), "old"))
    assert max(old_end, before) + GRACE * 1000 <= kept <= max(old_end, after) + GRACE * 1000

    customer_end = recent + 1000 + 4 * DAY_MS + GRACE * 1000
    assert await client.pexpiretime(keys.session(space("t"), "c")) == customer_end
    assert await client.pexpiretime(keys.links(space("t"), "c")) == customer_end
    assert await client.pexpiretime(keys.alias(space("t"), "h")) == customer_end
    assert (
        await client.pexpiretime(keys.version_floor(space("t"), "c")) == customer_end + 4 * DAY_MS
    )
    # The sign-in counts for the shared-device guard 30 days (the default window).
    assert await client.pexpiretime(keys.devices(space("t"), "h")) == (
        recent + 1000 + 30 * DAY_MS + GRACE * 1000
    )


async def test_a_session_redis_forgot_goes_on_from_its_version_floor(client: Redis) -> None:
    fold = Fold(client, grace=0)
    # Redis's clock: Redis itself must find the end past and delete the key.
    now = await redis_ms(client)
    old = now - now % 1000 - 100 * DAY_MS
    await fold(
        event("cart.item_added", added("A"), customer="c", at=iso(old)),
        event("cart.item_added", added("B"), customer="c", at=iso(old + 1000)),
    )

    async def forgotten() -> bool:
        return await client.exists(keys.session(space("t"), "c")) == 0

    await wait_until(forgotten, timeout=10)  # Redis deletes it: no grace, its end long past
    assert await client.get(keys.version_floor(space("t"), "c")) == b"2"
    await fold(event("cart.item_added", added("N"), customer="c", at=iso(now)))
    session = await fold.state.get("c")
    assert session is not None
    assert session.version == 4, "v3 the ending, v4 the new event"
    assert [line.sku for line in session.cart] == ["N"]


async def test_an_ending_takes_aliases_links_and_journey_and_leaves_the_guests_a_floor(
    client: Redis,
) -> None:
    fold = Fold(client)
    t0 = worker_ms() - 10 * DAY_MS
    await fold(
        event("cart.item_added", added("G"), anon="g", at=iso(t0)),
        event("session.identified", customer="c", anon="g", at=iso(t0 + 1000)),
    )
    await fold(event("browse.search", {"query": "x"}, anon="g", at=iso(t0 + 2000)))
    merged = await fold.state.get("c")
    assert merged is not None
    assert await client.get(keys.alias(space("t"), "g")) == b"c"
    assert await client.zcard(keys.journey(space("t"), "c")) == 3

    await fold(event("cart.item_added", added("N"), customer="c", at=iso(t0 + 5 * DAY_MS)))
    assert await client.get(keys.alias(space("t"), "g")) is None
    assert await client.exists(keys.links(space("t"), "c")) == 0
    assert await client.zcard(keys.journey(space("t"), "c")) == 1, "only the successor's event"
    assert await client.get(keys.version_floor(space("t"), "g")) == str(merged.version).encode()

    await fold(event("cart.item_added", added("H"), anon="g", at=iso(t0 + 5 * DAY_MS + 1000)))
    guest = await fold.state.get("g")
    assert guest is not None
    assert [line.sku for line in guest.cart] == ["H"]
    assert guest.version == merged.version + 2, "the guest's versions go on from the floor"
