"""The gateway's Redis reads and handoff writes on a real Redis Cluster, per partition.

Proves, through a ``RedisCluster`` client (which refuses a command naming two
slots): the KPI totals and session counts are the sums of every partition's
hash and HyperLogLogs, a session counted once however many buckets saw it;
a key's freshness comes from its own partition's offsets and offset times; a
session, a merged guest's alias and applied positions on several partitions
are read; a handoff code drawn for a session shares the session's slot, so
the code, its seen marker and the session's code set are written and claimed
in one slot each time (a claim waiting for replicas sends ``WAIT`` on the
connection of the code's slot owner), while the failed-claim counters are
global keys, each reserved and given back by a script of its own; a code
held for the claimer whose publish failed is theirs alone, and issuing past a
session's bound revokes its oldest code, in the session's slot; the rate
limiter runs its windows on the cluster client; the fan-out subscribes every
partition's channel on its slot owner's connection, and follows a partition's
slot to another primary (a reshard drops the old owner's subscription) with
every follower re-reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from schemas.topics import SOURCE_TOPICS
from streams.core.activity import window
from streams.core.fold import new_session
from streams.core.session_codec import encode
from streams.dev.cluster import LocalCluster, slot_of
from streams.gateway import freshness, kpis
from streams.gateway.fanout import Fanout
from streams.gateway.handoff import code_in_partition
from streams.gateway.params import Position, ReadWait
from streams.gateway.rate_limit import Exceeded, RateLimiter
from streams.gateway.sessions import Sessions
from streams.store import keys
from streams.store.client import connect
from streams.store.handoffs import Guess, HandoffStore, Taken, Ticket, Unconfirmed
from streams.store.keys import Space
from tests.support.stack import wait_until

pytestmark = pytest.mark.e2e

PARTITIONS = 6


@pytest.fixture
def space() -> Space:
    return Space(f"gc{uuid.uuid4().hex[:6]}", PARTITIONS)


def spread(space: Space, count: int, stem: str) -> list[str]:
    """``count`` fresh ids covering every partition."""
    found: list[str] = []
    seen: set[int] = set()
    while len(found) < count or len(seen) < space.partitions:
        some = f"{stem}-{uuid.uuid4().hex[:8]}"
        if len(found) < count or space.partition(some) not in seen:
            found.append(some)
            seen.add(space.partition(some))
    return found


async def test_kpi_totals_and_session_counts_sum_every_partition(
    cluster_client: RedisCluster, space: Space
) -> None:
    now = time.time()
    buckets = window(now)
    assert len(buckets) >= 2
    sessions = spread(space, 40, "s")
    multichannel = sessions[::3]
    for n, key in enumerate(sessions):
        p = space.partition(key)
        # Every session in two buckets of the window: counted once all the same.
        for bucket in (buckets[0], buckets[-1]):
            await cluster_client.pfadd(keys.activity(space, p, bucket), key)
        if key in multichannel:
            await cluster_client.pfadd(keys.multichannel(space, p, buckets[n % len(buckets)]), key)
        await cluster_client.hincrby(keys.kpis(space, p), "carts_started:web", 1)
        await cluster_client.hincrby(keys.kpis(space, p), "converted:web", n % 2)
    inputs = await kpis.read(cluster_client, space, now)
    assert inputs.active == len(sessions)
    assert inputs.multichannel == len(multichannel)
    assert inputs.fields["carts_started:web"] == len(sessions)
    assert inputs.fields["converted:web"] == len(sessions) // 2
    web = inputs.report()["carts"]["by_start_channel"]["web"]
    assert (web["started"], web["converted"]) == (len(sessions), len(sessions) // 2)


async def test_a_keys_freshness_comes_from_its_own_partition(
    cluster_client: RedisCluster, space: Space
) -> None:
    key, other = spread(space, 2, "f")[:2]
    while space.partition(other) == space.partition(key):
        other = spread(space, 1, "f")[0]
    p, q = space.partition(key), space.partition(other)
    for topic in SOURCE_TOPICS:
        await cluster_client.hset(keys.offsets(space, p), f"{topic}:{p}", 41)
        await cluster_client.hset(keys.offset_times(space, p), f"{topic}:{p}", 1_700_000_000_000)
        # Another partition's offsets, under the same field names as a decoy.
        await cluster_client.hset(keys.offsets(space, q), f"{topic}:{p}", 999)
    await cluster_client.zadd(keys.heartbeats(space), {"w-1": 1_700_000_000_500})
    fresh = await freshness.read(cluster_client, space, key)
    assert fresh.applied == tuple((f"{t}:{p}", 41) for t in SOURCE_TOPICS)
    assert fresh.applied_at_ms == 1_700_000_000_000
    assert fresh.heartbeat_ms == 1_700_000_000_500


async def test_sessions_aliases_and_positions_on_several_partitions(
    cluster_client: RedisCluster, space: Space
) -> None:
    customer, guest = spread(space, 2, "c")[:2]
    await cluster_client.hset(
        keys.session(space, customer),
        mapping={"v": 1, "d": encode(new_session(customer, customer))},
    )
    await cluster_client.set(keys.alias(space, guest), customer)
    sessions = Sessions(cluster_client, space, Fanout(Redis(), space))
    view = await sessions.locate(guest)
    assert view.key == customer
    assert view.session is not None
    assert view.session.customer_id == customer
    assert (await sessions.view(guest)).merged_into == customer

    positions = tuple(Position(SOURCE_TOPICS[0], n, 10 + n) for n in range(PARTITIONS))
    for pos in positions:
        await cluster_client.hset(keys.offsets(space, pos.partition), pos.tp, pos.offset)
    assert await sessions.applied(positions)
    behind = (*positions[:-1], Position(SOURCE_TOPICS[0], PARTITIONS - 1, 99))
    assert not await sessions.applied(behind)


async def test_a_handoff_code_lives_in_its_sessions_slot(
    cluster_client: RedisCluster, space: Space
) -> None:
    store = HandoffStore(cluster_client, space)
    for key in spread(space, 12, "h"):
        code = code_in_partition(space.partition(key), space.partitions)
        assert await store.create(code, Ticket(key, key, None), ttl=60)
        names = (keys.handoff(space, code), keys.handoff_seen(space, code))
        assert {slot_of(n) for n in (*names, keys.handoff_by(space, key))} == {
            slot_of(keys.session(space, key))
        }
        assert await cluster_client.smembers(keys.handoff_by(space, key)) == {code.encode()}
        taken = await store.claim(code)
        assert isinstance(taken, Taken)
        assert taken.ticket.key == key
        gone: Any = await store.claim(code)
        assert gone.why == "claimed"
    key = spread(space, 1, "h")[0]
    wrong = code_in_partition((space.partition(key) + 1) % PARTITIONS, PARTITIONS)
    with pytest.raises(ValueError, match="not in the partition"):
        await store.create(wrong, Ticket(key, key, None), ttl=60)
    # Global counters in three slots, each compared and counted in a script of its own.
    counters = [
        store.token_counter("store-1", "till-1", 2),
        store.store_counter("store-1", 5),
        store.address_counter("10.0.0.1", 5),
    ]
    assert len({slot_of(c.key) for c in counters}) == 3
    guesses = [await store.reserve_guess(counters, 60) for _ in range(3)]
    assert [isinstance(g, Guess) for g in guesses] == [True, True, False]
    locked: Any = guesses[2]
    assert 0 < locked.ttl_ms <= 60_000
    assert [int(await cluster_client.get(c.key)) for c in counters] == [2, 2, 2]
    await store.release_guess(guesses[0])
    assert [int(await cluster_client.get(c.key)) for c in counters] == [1, 1, 1]


async def test_a_rate_limit_is_kept_on_the_cluster(
    cluster_client: RedisCluster, space: Space
) -> None:
    limiter = RateLimiter(cluster_client, space, {"ingest": "3/minute"})
    results = [await limiter.hit("ingest", "service:s:a") for _ in range(4)]
    assert results[:3] == [None, None, None]
    assert isinstance(results[3], Exceeded)
    assert await limiter.hit("ingest", "service:s:b") is None, "another identity's own budget"


async def test_a_claim_waiting_for_replicas_is_put_back_when_none_confirms(
    cluster: LocalCluster, cluster_client: RedisCluster, space: Space
) -> None:
    store = HandoffStore(cluster_client, space)
    key = spread(space, 1, "w")[0]
    code = code_in_partition(space.partition(key), space.partitions)
    assert await store.create(code, Ticket(key, key, None), ttl=60)
    # As a fresh or restarted node: no script loaded (a pipeline's EVALSHA would fail).
    for node in await cluster.primaries():
        await node.client.script_flush()
    # No primary here has a replica: WAIT, on the claim's own connection, counts none.
    assert await store.claim(code, replicas=1, timeout_ms=50) == Unconfirmed(0)
    taken = await store.claim(code)
    assert isinstance(taken, Taken), "put back, claimable again"


async def test_a_code_held_for_its_claimer_is_only_theirs_and_revoked_past_the_bound(
    cluster_client: RedisCluster, space: Space
) -> None:
    store = HandoffStore(cluster_client, space)
    key = spread(space, 1, "held")[0]
    codes = [code_in_partition(space.partition(key), space.partitions) for _ in range(3)]
    for code in codes:
        assert await store.create(code, Ticket(key, key, None, nonce="n1"), ttl=60, max_pending=2)
        # The oldest is the one with the least life left, told apart to the millisecond.
        await asyncio.sleep(0.005)
    assert await cluster_client.smembers(keys.handoff_by(space, key)) == {
        c.encode() for c in codes[1:]
    }, "the oldest was revoked, in the session's slot"
    taken = await store.claim(codes[2], "pos:s-1:till-1")
    assert isinstance(taken, Taken)
    await store.hold(codes[2], taken, "pos:s-1:till-1")
    gone: Any = await store.claim(codes[2], "pos:s-2:")
    assert gone.why == "claimed", "held for another claimer"
    again = await store.claim(codes[2], "pos:s-1:till-1")
    assert isinstance(again, Taken)
    assert (again.ticket.key, again.ticket.nonce) == (key, "n1"), "the same claim event id"


async def test_the_fanout_follows_a_partitions_slot_to_another_primary(
    cluster: LocalCluster, cluster_client: RedisCluster, space: Space
) -> None:
    fan = Fanout(connect(cluster.url, retry=Retry(NoBackoff(), 0)), space, max_backoff=0.2)
    await fan.start()
    try:
        await wait_until(lambda: _up(fan), timeout=30)
        owners = {(await cluster.owner(slot_of(c))).name for c in fan.channels}
        assert len(owners) > 1, "the partitions' channels live on several primaries"
        followed = spread(space, PARTITIONS, "n")
        async with contextlib.AsyncExitStack() as stack:
            subs = [await stack.enter_async_context(fan.subscribe(k)) for k in followed]
            for key, sub in zip(followed, subs, strict=True):
                notice = orjson.dumps({"key": key, "version": 1})
                assert await cluster_client.spublish(fan_channel(space, key), notice) == 1
                await asyncio.wait_for(sub.dirty.wait(), 10)
            key, sub = followed[0], subs[0]
            moved = fan_channel(space, key)
            source = await cluster.owner(slot_of(moved))
            to = next(p for p in await cluster.primaries() if p is not source)
            await cluster.reshard(slot_of(moved), to)
            sub.dirty.clear()

            async def subscribed_again() -> bool:
                notice = orjson.dumps({"key": key, "version": 2})
                return await cluster_client.spublish(moved, notice) == 1

            await wait_until(subscribed_again, timeout=30, interval=0.1)
            await asyncio.wait_for(sub.dirty.wait(), 10)
            assert all(s.dirty.is_set() for s in subs), "every follower re-reads"
    finally:
        await fan.stop()


async def _up(fan: Fanout) -> bool:
    return fan.up


def fan_channel(space: Space, key: str) -> str:
    return keys.updates(space, space.partition(key))


async def test_a_read_after_a_login_waits_while_the_customer_waits_for_its_merge(
    cluster_client: RedisCluster, space: Space
) -> None:
    """The login's offset is applied while the customer's session still waits for its
    guest's half on another partition: read-your-writes is not satisfied until the wait
    is cleared (with the merged session, in one commit)."""
    customer = spread(space, 1, "w")[0]
    part = space.partition(customer)
    login = Position(SOURCE_TOPICS[0], part, 7)
    await cluster_client.hset(keys.offsets(space, part), login.tp, login.offset)
    await cluster_client.hset(keys.waiting(space, part), customer, b"{}")
    sessions = Sessions(cluster_client, space, Fanout(Redis(), space))
    assert await sessions.applied((login,))
    _, satisfied = await sessions.wait(customer, ReadWait(after=(login,), timeout=0.3))
    assert not satisfied, "the merge has not landed"
    await cluster_client.hdel(keys.waiting(space, part), customer)
    await cluster_client.hset(
        keys.session(space, customer),
        mapping={"v": 2, "d": encode(new_session(customer, customer))},
    )
    view, satisfied = await sessions.wait(customer, ReadWait(after=(login,), timeout=0.3))
    assert satisfied
    assert view.session is not None
