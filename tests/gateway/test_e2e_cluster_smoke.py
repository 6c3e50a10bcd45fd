"""A worker and a gateway on a real Redis Cluster: a login across partitions, live.

One worker (forward mode) and one gateway, both given the three-primary
cluster's ``redis+cluster://`` URL, on a broker of their own. A customer
follows its session over SSE; a guest homed on a partition whose slot another
primary owns adds a line, then signs in to the customer. Proves, end to end on
the cluster: the gateway is ready (Redis, Kafka and its fan-out, one
SSUBSCRIBE connection per primary), the worker's per-partition commits and its
forward relay carry the login to the guest's partition and the merge back, and
the customer's stream shows the guest's line merged into its cart, the
customer's session holding no wait afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio.cluster import RedisCluster

from streams.dev import loopback
from streams.dev.cluster import LocalCluster, slot_of
from streams.kafka.publish import Publisher
from streams.kafka.topics import ensure_topics
from streams.store import keys
from streams.store.keys import Space
from streams.store.state import RedisState
from tests.support.events import added, event
from tests.support.gateway import (
    Gateway,
    bearer,
    next_event,
    post_events,
    read_session,
    sse_events,
    start_gateway,
)
from tests.support.stack import PARTITIONS, Stack, WorkerGroup, space, wait_until

pytestmark = pytest.mark.e2e


async def apart(cluster: LocalCluster, where: Space) -> tuple[str, str]:
    """A guest and a customer on partitions whose slots different primaries own."""
    owners = {n: (await cluster.owner(slot_of(where.tag(n) + ":x"))).name for n in range(4)}
    customer = f"c-{uuid.uuid4().hex[:8]}"
    home = owners[where.partition(customer)]
    while True:
        guest = f"g-{uuid.uuid4().hex[:8]}"
        if owners[where.partition(guest)] != home:
            return guest, customer


@pytest.fixture
async def on_cluster(
    cluster: LocalCluster, cluster_client: RedisCluster, tmp_path: Path
) -> AsyncIterator[tuple[Gateway, RedisState]]:
    """A broker, a worker and a gateway of their own on the cluster; stopped afterwards.

    The broker too: the worker's forwards go to ``session-forwards``, which every
    worker of a shared broker folds (another group's worker, in direct mode, would
    meet records it has no use for)."""
    broker = loopback.start_broker(tmp_path)
    own = Stack(f"127.0.0.1:{broker.port}", cluster.url, tmp_path)
    try:
        await ensure_topics(own.bootstrap, PARTITIONS)
        name = f"cl{uuid.uuid4().hex[:8]}"
        state = RedisState(cluster_client, space(name))
        group = WorkerGroup(own, name, name, state)
        group.start("w", CONTINUITY_CROSS_PARTITION="forward")
        gateway = start_gateway(own, f"{name}-gw", prefix=name)
        async with Publisher(own.bootstrap, linger_ms=1) as publisher:
            await group.ready(publisher)
        yield gateway, state
    finally:
        for child in own.workers:
            child.stop()
        broker.stop()


async def ready(http: aiohttp.ClientSession, gw: Gateway) -> bool:
    async with http.get(f"{gw.url}/readyz") as resp:
        return resp.status == 200


async def post(http: aiohttp.ClientSession, gw: Gateway, ev: dict[str, object]) -> str:
    status, body = await post_events(http, gw, ev, bearer("service"))
    assert status == 202, body
    return str(body["after"])


async def test_a_login_across_primaries_reaches_the_customers_stream(
    cluster: LocalCluster,
    on_cluster: tuple[Gateway, RedisState],
    http: aiohttp.ClientSession,
) -> None:
    gw, state = on_cluster
    guest, customer = await apart(cluster, state.space)
    await wait_until(lambda: ready(http, gw), timeout=30, interval=0.2)
    after = await post(http, gw, event("cart.item_added", added("C-1"), customer=customer))
    await read_session(http, gw, customer, bearer("service"), after=after)
    url = f"{gw.url}/v1/sessions/{customer}/stream"
    async with http.get(url, headers=bearer("customer", subject=customer)) as resp:
        assert resp.status == 200, await resp.text()
        events = sse_events(resp)
        first = await next_event(events)
        assert [line["sku"] for line in first.json()["cart"]] == ["C-1"]
        await post(http, gw, event("cart.item_added", added("G-1"), anon=guest))
        await post(http, gw, event("session.identified", customer=customer, anon=guest))

        async def merged() -> set[str] | None:
            skus = {line["sku"] for line in (await next_event(events, 30)).json()["cart"]}
            return skus if "G-1" in skus else None

        assert await wait_until(merged, timeout=30, interval=0) == {"C-1", "G-1"}
    assert await state.redis.get(keys.alias(state.space, guest)) == customer.encode()
    waiting = keys.waiting(state.space, state.space.partition(customer))
    assert await state.redis.hget(waiting, customer) is None


async def test_a_read_after_a_login_across_primaries_holds_the_merge(
    cluster: LocalCluster,
    on_cluster: tuple[Gateway, RedisState],
    http: aiohttp.ClientSession,
) -> None:
    """Read-your-writes: a read ``after`` a login whose guest lives on another primary
    answers once the merge landed, not when the customer's side began to wait for it
    (its offset moved then, with the session not yet merged or even there)."""
    gw, state = on_cluster
    guest, customer = await apart(cluster, state.space)
    await wait_until(lambda: ready(http, gw), timeout=30, interval=0.2)
    first = await post(http, gw, event("cart.item_added", added("G-2"), anon=guest))
    await read_session(http, gw, guest, bearer("service"), after=first)
    login = await post(http, gw, event("session.identified", customer=customer, anon=guest))
    status, body, _ = await read_session(http, gw, customer, bearer("service"), after=login)
    assert status == 200, body
    assert [line["sku"] for line in body["cart"]] == ["G-2"]
