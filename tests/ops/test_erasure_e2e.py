"""Right to erasure through a real gateway, worker, broker and Redis.

Proves: only a ``service`` token may erase; ``DELETE /v1/sessions/{id}``
removes the customer's session, the merged guest's alias and pending handoff
codes; activity after the erasure starts a fresh session whose versions go on
from the erased one's; a rebuild from the topics into an empty prefix (what
follows the loss of Redis) restores the erasure from ``session-erasures``
first and ends with exactly the live state: nothing erased comes back. The
``continuity erase`` command does the same from a shell.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import aiohttp
import orjson
import pytest
from redis.asyncio import Redis

from schemas.topics import SOURCE_TOPICS
from streams.kafka.publish import Publisher
from streams.ops.rebuild import rebuild, wipe
from streams.ops.restore import restore
from streams.store import keys
from streams.store.state import RedisState
from tests.support.events import added, event
from tests.support.gateway import Gateway, bearer, read_session
from tests.support.stack import Stack, applied_through, publish, space, wait_version
from tests.system.test_cli import cli_env, run_cli

pytestmark = pytest.mark.e2e

SERVICE = bearer("service", subject="privacy-desk")


async def call(
    http: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str]
) -> tuple[int, dict[str, object]]:
    async with http.request(method, url, headers=headers) as resp:
        return resp.status, orjson.loads(await resp.read())


async def test_an_erased_customer_stays_erased_through_a_rebuild(
    stack: Stack,
    shared_worker: RedisState,
    gateways: list[Gateway],
    http: aiohttp.ClientSession,
    publisher: Publisher,
    redis: Redis,
    ids: Callable[[str], str],
) -> None:
    c, g, gw = ids("erase-c"), ids("erase-g"), gateways[0]
    written = await publish(
        publisher,
        [
            event("cart.item_added", added("GUEST-SKU"), anon=g, channel="mobile_app"),
            event("session.identified", customer=c, anon=g, channel="mobile_app"),
            event("cart.item_added", added("CUST-SKU"), customer=c, channel="web"),
        ],
    )
    await applied_through(shared_worker, written)
    erased_version = (await wait_version(shared_worker, c, 1)).version
    status, made = await call(
        http, "POST", f"{gw.url}/v1/sessions/{c}/handoff", bearer("customer", subject=c)
    )
    assert status == 201, made

    for who in (bearer("customer", subject=c), bearer("pos", store="s-1")):
        status, body = await call(http, "DELETE", f"{gw.url}/v1/sessions/{c}", who)
        assert (status, body["error"]) == (403, "forbidden"), body
    assert await shared_worker.get(c) is not None, "a refused erasure erases nothing"

    status, body = await call(http, "DELETE", f"{gw.url}/v1/sessions/{c}", SERVICE)
    assert status == 200, body
    assert body["erased_ids"] == [c, g]
    assert (body["sessions_deleted"], body["aliases_deleted"]) == (1, 1)
    assert body["handoff_codes_deleted"] == 1
    for sid in (c, g):
        status, body, _ = await read_session(http, gw, sid, SERVICE)
        assert (status, body["error"]) == (404, "not_found"), body
    status, body = await call(
        http, "POST", f"{gw.url}/v1/handoffs/{made['code']}/claim", bearer("pos", store="s-1")
    )
    assert (status, body["error"]) == (404, "handoff_not_found"), body
    live = space("cont")
    assert await redis.exists(keys.links(live, c)) == 0
    assert await redis.exists(keys.alias(live, g)) == 0

    # The customer comes back: new data, a fresh session, versions still rising.
    written = await publish(
        publisher, [event("cart.item_added", added("NEW-SKU"), customer=c, channel="pos")]
    )
    await applied_through(shared_worker, written)
    fresh = await wait_version(shared_worker, c, erased_version + 1)
    assert [line.sku for line in fresh.cart] == ["NEW-SKU"]
    assert fresh.version == erased_version + 1
    assert fresh.anonymous_ids == []

    # An empty prefix is Redis lost: only Kafka remembers the erasure.
    prefix = f"rb{uuid.uuid4().hex[:8]}"
    target = RedisState(redis, space(prefix))
    try:
        await rebuild(stack.bootstrap, target, SOURCE_TOPICS, forward=True)
        rebuilt = await target.get(c)
        assert rebuilt is not None
        assert rebuilt.model_dump() == fresh.model_dump()
        assert await target.get(g) is None
        assert (await target.erasure(c)) == (await shared_worker.erasure(c))
    finally:
        await wipe(redis, space(prefix))
        for key in await redis.keys(f"{prefix}:*"):
            await redis.delete(key)

    # The same from the changelog: the erased states (their tombstones relayed or not
    # yet) stay gone, and the customer's fresh session comes back.
    prefix = f"rs{uuid.uuid4().hex[:8]}"
    target = RedisState(redis, space(prefix))
    try:
        await restore(stack.bootstrap, target, SOURCE_TOPICS)
        restored = await target.get(c)
        assert restored is not None
        assert restored.model_dump() == fresh.model_dump()
        assert await target.get(g) is None
        assert await redis.exists(keys.alias(space(prefix), g)) == 0
        assert await redis.exists(keys.links(space(prefix), c)) == 0
        assert (await target.erasure(c)) == (await shared_worker.erasure(c))
    finally:
        await wipe(redis, space(prefix))
        for key in await redis.keys(f"{prefix}:*"):
            await redis.delete(key)


async def test_the_erase_command_reports_what_it_deleted(
    stack: Stack, shared_worker: RedisState, publisher: Publisher, ids: Callable[[str], str]
) -> None:
    c = ids("erase-cli")
    written = await publish(publisher, [event("cart.item_added", added("A"), customer=c)])
    await applied_through(shared_worker, written)
    env = {**cli_env(stack), "CONTINUITY_REDIS_PREFIX": "cont"}
    code, out, err = await run_cli("erase", "--customer", c, env=env)
    assert code == 0, err
    assert out.startswith(f"erasing customer '{c}'"), out
    report = orjson.loads(out[out.index("{") :])
    assert (report["customer_id"], report["sessions_deleted"]) == (c, 1)
    assert await shared_worker.get(c) is None

    code, _, err = await run_cli("erase", "--customer", "no}such", env=env)
    assert code == 2
    assert "id pattern" in err
