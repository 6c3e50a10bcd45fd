"""Script calls of one loop turn go to Redis as one pipeline, each answered as alone.

Against a real redis-server. Proves: eight concurrent calls get the replies
eight separate calls get, over one connection (separately, the pool opens one
per concurrent call); a call whose script fails gets its own error and the
others their replies; after ``SCRIPT FLUSH`` the calls load the script again
and succeed; a lone call and a cluster client go the ordinary way.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from streams.store.coalesce import Coalescer
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

ECHO = (
    "if ARGV[1] == 'fail' then return redis.error_reply('ERR asked to') end "
    "redis.call('INCR', KEYS[1]) return {KEYS[1], ARGV[1]}"
)


@pytest.fixture
async def plain(stack: Stack) -> AsyncIterator[Redis]:
    if "cluster" in stack.redis_url:
        pytest.skip("the coalescer sends cluster calls one by one")
    client = Redis.from_url(stack.redis_url)
    yield client
    await client.aclose()


def _connections(client: Redis) -> int:
    pool = client.connection_pool
    return len(pool._available_connections) + len(pool._in_use_connections)


async def test_concurrent_calls_share_one_connection(plain: Redis, stack: Stack) -> None:
    script = plain.register_script(ECHO)
    tag = uuid.uuid4().hex[:8]
    calls = [([f"co:{tag}:{i}"], [f"v{i}"]) for i in range(8)]
    coalescer = Coalescer(plain)
    replies = await asyncio.gather(*(coalescer.call(script, k, a) for k, a in calls))
    assert [[x.decode() for x in r] for r in replies] == [[k[0], a[0]] for k, a in calls]
    assert _connections(plain) == 1
    separate = Redis.from_url(stack.redis_url)
    try:
        own = separate.register_script(ECHO)
        again = await asyncio.gather(*(own(keys=k, args=a) for k, a in calls))
        assert [r[1] for r in again] == [r[1] for r in replies]
        assert _connections(separate) > 1
    finally:
        await separate.aclose()


async def test_a_failing_call_fails_alone(plain: Redis) -> None:
    script = plain.register_script(ECHO)
    tag = uuid.uuid4().hex[:8]
    coalescer = Coalescer(plain)
    ok, bad = await asyncio.gather(
        coalescer.call(script, [f"co:{tag}:a"], ["fine"]),
        coalescer.call(script, [f"co:{tag}:b"], ["fail"]),
        return_exceptions=True,
    )
    assert isinstance(bad, ResponseError)
    assert "asked to" in str(bad)
    assert isinstance(ok, list)
    assert ok[1] == b"fine"


async def test_flushed_scripts_are_loaded_again(plain: Redis) -> None:
    script = plain.register_script(ECHO)
    tag = uuid.uuid4().hex[:8]
    coalescer = Coalescer(plain)
    await plain.script_flush()
    replies = await asyncio.gather(
        *(coalescer.call(script, [f"co:{tag}:{i}"], [str(i)]) for i in range(3))
    )
    assert [r[1] for r in replies] == [b"0", b"1", b"2"]
    assert await coalescer.call(script, [f"co:{tag}:x"], ["alone"]) == [
        f"co:{tag}:x".encode(),
        b"alone",
    ]
