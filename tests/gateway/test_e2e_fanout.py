"""The shared pub/sub fan-out (``streams/gateway/fanout.py``) against the real redis-server.

Proves: ``subscribe`` returns only once Redis confirmed the SUBSCRIBE (so a
read after it misses nothing); local followers of one key share one
subscription, which goes away with the last of them; a notice marks every
follower dirty and a merged-guest notice carries its customer; a notice
lost while the connection was down (PUBLISH reached no one) is made up for:
after the reconnect every follower is marked dirty and re-reads; with no
Redis at all, subscribing fails cleanly instead of hanging.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from streams.dev import loopback
from streams.gateway.fanout import Fanout, FanoutUnavailable
from tests.support.stack import Stack, wait_until

pytestmark = pytest.mark.e2e


def channel(key: str) -> str:
    return f"tfan:u:{{{key}}}"


def pubsub_client(url: str, name: str) -> Redis:
    return Redis.from_url(
        url, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0), client_name=name
    )


@pytest.fixture
async def fanout(stack: Stack) -> AsyncIterator[tuple[Fanout, str]]:
    name = f"fanout-{uuid.uuid4().hex[:8]}"
    # A one-second pause before reconnecting leaves a gap a test can publish into.
    fan = Fanout(pubsub_client(stack.redis_url, name), channel, min_backoff=1.0, liveness=2.0)
    await fan.start()
    await wait_until(lambda: _up(fan))
    yield fan, name
    await fan.stop()


async def _up(fan: Fanout) -> bool:
    return fan.up


async def subscribers(redis: Redis, key: str) -> int:
    ((_, count),) = await redis.pubsub_numsub(channel(key))
    return int(count)


async def test_followers_share_one_confirmed_subscription(
    fanout: tuple[Fanout, str], redis: Redis
) -> None:
    fan, _ = fanout
    key = f"k-{uuid.uuid4().hex[:6]}"
    async with fan.subscribe(key) as first:
        assert await subscribers(redis, key) == 1, "confirmed before subscribe() returns"
        async with fan.subscribe(key) as second:
            assert await subscribers(redis, key) == 1, (
                "one subscription per gateway, not per client"
            )
            await redis.publish(channel(key), orjson.dumps({"key": key, "version": 3}))
            await asyncio.wait_for(first.dirty.wait(), 10)
            await asyncio.wait_for(second.dirty.wait(), 10)
            assert first.merged_into is None
        assert await subscribers(redis, key) == 1, "still followed by the first"
    await wait_until(lambda: _none_left(redis, key))


async def _none_left(redis: Redis, key: str) -> bool:
    return await subscribers(redis, key) == 0


async def test_a_merged_notice_names_the_customer(fanout: tuple[Fanout, str], redis: Redis) -> None:
    fan, _ = fanout
    async with fan.subscribe("guest-1") as sub:
        notice = {"key": "guest-1", "version": None, "merged_into": "cust-1"}
        await redis.publish(channel("guest-1"), orjson.dumps(notice))
        await asyncio.wait_for(sub.dirty.wait(), 10)
        assert sub.merged_into == "cust-1"
        await redis.publish(channel("guest-1"), b"not json")  # a malformed notice just wakes


async def test_a_notice_lost_during_a_reconnect_is_made_up_by_a_re_read(
    fanout: tuple[Fanout, str], redis: Redis
) -> None:
    fan, name = fanout
    key = f"k-{uuid.uuid4().hex[:6]}"
    async with fan.subscribe(key) as sub:
        clients = await redis.client_list()
        (ours,) = [c for c in clients if c.get("name") == name]
        await redis.client_kill_filter(_id=ours["id"])

        async def lost() -> bool:
            # A PUBLISH that reaches no subscriber: this notice is gone for good.
            return await redis.publish(channel(key), b'{"version": 9}') == 0

        await wait_until(lost, timeout=10, interval=0.01)
        sub.dirty.clear()
        await asyncio.wait_for(sub.dirty.wait(), 30)  # set by the reconnect, nothing else
        assert fan.up
        assert await subscribers(redis, key) == 1, "re-subscribed"
        sub.dirty.clear()
        await redis.publish(channel(key), b'{"version": 10}')
        await asyncio.wait_for(sub.dirty.wait(), 10)


async def test_without_redis_subscribing_fails_cleanly() -> None:
    nowhere = f"redis://127.0.0.1:{loopback.free_port()}/0"
    fan = Fanout(pubsub_client(nowhere, "nowhere"), channel, ack_timeout=0.5)
    await fan.start()
    try:
        assert not fan.up
        with pytest.raises(FanoutUnavailable):
            async with fan.subscribe("k"):
                pass
    finally:
        await fan.stop()
