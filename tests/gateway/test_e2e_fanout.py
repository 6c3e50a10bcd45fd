"""The shared pub/sub fan-out (``streams/gateway/fanout.py``) against the real redis-server
(on a cluster run, a three-primary cluster: one connection per primary owning a channel).

Proves: once up, the gateway's one connection is SSUBSCRIBEd to every
partition's sharded channel and following a key adds no subscription; a
notice (``SPUBLISH`` on the key's partition's channel, naming the key) marks
every follower of that key dirty and no one else, and a merged-guest notice
carries its customer; a notice for a key reaches it only through its own
partition's channel (not another partition's, not classic ``PUBLISH``); a
malformed notice wakes the followers of its partition; one key's followers
share one record whose announcement count rises once per notice, before they
wake; a notice lost while the connection was down (SPUBLISH reached no one) is
made up for: after the reconnect every key's count rises and every follower is
marked dirty and re-reads; a notice that carries its state (as a session
write's does) leaves it with the count it raised, byte for byte, and a
notice without one leaves the last carried state behind its count; with no Redis at all,
following fails cleanly instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from streams.dev import loopback
from streams.gateway.fanout import Carried, Fanout, FanoutUnavailable, Subscriber
from streams.store import keys
from streams.store.client import Client, connect
from streams.store.keys import Space
from tests.support.stack import Stack, node_urls, wait_until

pytestmark = pytest.mark.e2e

PARTITIONS = 4


def pubsub_client(url: str, name: str) -> Client:
    """The fan-out's client, as the gateway makes it (a cluster client on a cluster run)."""
    return connect(url, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0), client_name=name)


@pytest.fixture
async def nodes(stack: Stack) -> AsyncIterator[list[Redis]]:
    """A plain client of every node (one, or each primary of a cluster): a subscription
    and a client connection are a node's own."""
    made = [Redis.from_url(url) for url in node_urls(stack.redis_url)]
    yield made
    for each in made:
        await each.aclose()


@pytest.fixture
async def fanout(stack: Stack) -> AsyncIterator[tuple[Fanout, str]]:
    name = f"fanout-{uuid.uuid4().hex[:8]}"
    space = Space(f"tf{uuid.uuid4().hex[:6]}", PARTITIONS)
    # A one-second pause before reconnecting leaves a gap a test can publish into.
    fan = Fanout(pubsub_client(stack.redis_url, name), space, min_backoff=1.0, liveness=2.0)
    await fan.start()
    await wait_until(lambda: _up(fan))
    yield fan, name
    await fan.stop()


async def _up(fan: Fanout) -> bool:
    return fan.up


def space_of(fan: Fanout) -> Space:
    return fan._space  # the fixture's own, read back rather than passed around


def key_in(space: Space, partition: int, stem: str = "k") -> str:
    """A fresh key whose partition is ``partition``."""
    while True:
        key = f"{stem}-{uuid.uuid4().hex[:8]}"
        if space.partition(key) == partition:
            return key


def channel(space: Space, key: str) -> str:
    return keys.updates(space, space.partition(key))


@contextlib.asynccontextmanager
async def following(fan: Fanout, followed: list[str]) -> AsyncIterator[list[Subscriber]]:
    """Follow several keys at once; their subscribers in order."""
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(fan.subscribe(k)) for k in followed]


async def shard_subscribers(nodes: list[Redis], name: str) -> int:
    """Subscribers of a sharded channel, over every node (each counts its own)."""
    count = 0
    for node in nodes:
        ((_, here),) = await node.pubsub_shardnumsub(name)
        count += int(here)
    return count


async def every_channel_subscribed_once(nodes: list[Redis], fan: Fanout) -> bool:
    counts = [await shard_subscribers(nodes, c) for c in fan.channels]
    return counts == [1] * PARTITIONS


async def barrier(redis: Client, space: Space, partition: int, sub: Subscriber) -> None:
    """Wait for a notice to ``sub`` sent after everything published before: the
    connection delivers in publishing order, so earlier notices were dispatched."""
    sub.dirty.clear()
    notice = orjson.dumps({"key": sub.key, "version": 1})
    assert await redis.spublish(keys.updates(space, partition), notice) == 1
    await asyncio.wait_for(sub.dirty.wait(), 10)


async def test_one_connection_follows_every_partition_and_keys_add_no_subscription(
    fanout: tuple[Fanout, str], redis: Client, nodes: list[Redis]
) -> None:
    fan, _ = fanout
    space = space_of(fan)
    assert fan.channels == tuple(keys.updates(space, n) for n in range(PARTITIONS))
    assert await every_channel_subscribed_once(nodes, fan), "subscribed before up"
    key = key_in(space, 1)
    other = key_in(space, 1, "other")
    async with following(fan, [key, key, other]) as (first, second, bystander):
        assert await every_channel_subscribed_once(nodes, fan), "no subscription per key"
        assert first.followed is second.followed, "one key's followers share its record"
        assert first.followed is not None
        assert first.followed.announced == 0
        notice = orjson.dumps({"key": key, "version": 3})
        assert await redis.spublish(channel(space, key), notice) == 1
        await asyncio.wait_for(first.dirty.wait(), 10)
        await asyncio.wait_for(second.dirty.wait(), 10)
        assert first.followed.announced == 1, "counted once per notice, before the wake-up"
        assert first.merged_into is None
        assert not bystander.dirty.is_set(), "a notice wakes only its key's followers"
        assert bystander.followed is not None
        assert bystander.followed.announced == 0
    assert await every_channel_subscribed_once(nodes, fan), "kept with no follower left"


async def test_a_merged_notice_names_the_customer(
    fanout: tuple[Fanout, str], redis: Client
) -> None:
    fan, _ = fanout
    space = space_of(fan)
    guest = key_in(space, 2, "guest")
    async with fan.subscribe(guest) as sub:
        notice = {"key": guest, "version": None, "merged_into": "cust-1"}
        await redis.spublish(channel(space, guest), orjson.dumps(notice))
        await asyncio.wait_for(sub.dirty.wait(), 10)
        assert sub.merged_into == "cust-1"


async def test_a_notice_leaves_the_state_it_carries_with_its_count(
    fanout: tuple[Fanout, str], redis: Client
) -> None:
    fan, _ = fanout
    space = space_of(fan)
    key = key_in(space, 1)
    # Stored values are zlib streams: any bytes, line breaks among them.
    stored = bytes(range(256)) + b"\n\r\n{"
    async with fan.subscribe(key) as sub:
        assert sub.followed is not None
        assert sub.followed.carried is None
        header = orjson.dumps({"key": key, "version": 3, "t": 1})
        await redis.spublish(channel(space, key), header + b"\n" + stored)
        await asyncio.wait_for(sub.dirty.wait(), 10)
        assert sub.followed.carried == Carried(1, stored)
        assert sub.appended_ms == 1
        sub.dirty.clear()
        await redis.spublish(channel(space, key), orjson.dumps({"key": key, "version": 4}))
        await asyncio.wait_for(sub.dirty.wait(), 10)
        assert sub.followed.announced == 2
        assert sub.followed.carried == Carried(1, stored), "news only: the follower reads"


@pytest.mark.parametrize("stem", ["a", "b", "c", "d", "e", "f"])
async def test_a_notice_reaches_its_key_only_through_its_partitions_channel(
    fanout: tuple[Fanout, str], redis: Client, stem: str
) -> None:
    fan, _ = fanout
    space = space_of(fan)
    key = f"{stem}-{uuid.uuid4().hex[:8]}"
    home = space.partition(key)
    notice = orjson.dumps({"key": key, "version": 5})
    # A follower in every other partition: each one's notice is the barrier behind
    # the misplaced notice published on its channel just before.
    others = {n: key_in(space, n, "bar") for n in range(PARTITIONS) if n != home}
    async with following(fan, [key, *others.values()]) as subs:
        sub, bars = subs[0], dict(zip(others, subs[1:], strict=True))
        for n, bar in bars.items():
            assert await redis.spublish(keys.updates(space, n), notice) == 1
            await barrier(redis, space, n, bar)
            assert not sub.dirty.is_set(), f"woken through partition {n}'s channel"
        # Classic pub/sub on the very name reaches no one: nothing listens there.
        assert await redis.publish(channel(space, key), notice) == 0
        assert await redis.spublish(channel(space, key), notice) == 1
        await asyncio.wait_for(sub.dirty.wait(), 10)


async def test_a_malformed_notice_wakes_the_followers_of_its_partition(
    fanout: tuple[Fanout, str], redis: Client
) -> None:
    fan, _ = fanout
    space = space_of(fan)
    here, elsewhere = key_in(space, 0), key_in(space, 3)
    async with fan.subscribe(here) as sub, fan.subscribe(elsewhere) as far:
        await redis.spublish(keys.updates(space, 0), b"not json")
        await asyncio.wait_for(sub.dirty.wait(), 10)
        await barrier(redis, space, 3, far)
        far.dirty.clear()
        await redis.spublish(keys.updates(space, 0), b'{"version": 2}')  # no key
        sub.dirty.clear()
        await asyncio.wait_for(sub.dirty.wait(), 10)
        await barrier(redis, space, 3, far)


async def test_a_notice_lost_during_a_reconnect_is_made_up_by_a_re_read(
    fanout: tuple[Fanout, str], redis: Client, nodes: list[Redis]
) -> None:
    fan, name = fanout
    space = space_of(fan)
    key = key_in(space, 1)
    async with fan.subscribe(key) as sub:
        # The connection subscribed to the key's channel: the one, or its slot owner's.
        (node,) = [n for n in nodes if await shard_subscribers([n], channel(space, key))]
        (ours,) = [c for c in await node.client_list(_type="pubsub") if c.get("name") == name]
        await node.client_kill_filter(_id=ours["id"])

        async def lost() -> bool:
            # An SPUBLISH that reaches no subscriber: this notice is gone for good.
            notice = orjson.dumps({"key": key, "version": 9})
            return await redis.spublish(channel(space, key), notice) == 0

        await wait_until(lost, timeout=10, interval=0.01)
        assert sub.followed is not None
        counted = sub.followed.announced
        sub.dirty.clear()
        await asyncio.wait_for(sub.dirty.wait(), 30)  # set by the reconnect, nothing else
        # Counted too: no read started before the reconnect serves the re-read.
        assert sub.followed.announced == counted + 1
        assert fan.up
        assert await every_channel_subscribed_once(nodes, fan), "re-subscribed"
        sub.dirty.clear()
        notice = orjson.dumps({"key": key, "version": 10})
        await redis.spublish(channel(space, key), notice)
        await asyncio.wait_for(sub.dirty.wait(), 10)


async def test_without_redis_subscribing_fails_cleanly() -> None:
    nowhere = f"redis://127.0.0.1:{loopback.free_port()}/0"
    fan = Fanout(pubsub_client(nowhere, "nowhere"), Space("tfx", 2), ack_timeout=0.5)
    await fan.start()
    try:
        assert not fan.up
        with pytest.raises(FanoutUnavailable):
            async with fan.subscribe("k"):
                pass
    finally:
        await fan.stop()
