"""Erasures and log resets on the partition-aligned layout, on one primary and on a cluster.

Proves: an erasure of a customer and a guest homed on different partitions
records the erasure under each id's own partition (``x:<id>``, that
partition's ``xs``), deletes both ids' state, raises its log ends to what
each partition's offsets hash says was applied, tombstones each key in its own
partition's changelog, notifies on each key's shard channel, and moves EVERY
partition's erasure epoch (a commit checks only its own); a commit changing an
erased id between the erasure's look and its step makes it look again, so its
log ends cover that commit's record; a log reset compares-and-deletes on its
partition alone, bumps that partition's epoch and drops the reset partition's
old log end from erasures held on every partition, keeping the others;
erasures restored from Kafka land by partition and move every epoch. Each runs
on a real redis-server (folded in one commit over every key, ``direct``) and
on a real three-primary Redis Cluster, the two ids on two primaries (folded by
forwards, every commit and every erasure step in one slot).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from streams.core.decode import decode
from streams.core.erasure import Erasure
from streams.core.plan import Record, needs, plan_batch
from streams.dev.cluster import slot_of
from streams.ops.inline_forwards import InlineForwards
from streams.store import keys
from streams.store.keys import Space
from streams.store.state import Erased, RedisState, Unnamed
from streams.worker.processor import BatchProcessor
from tests.support.events import added, event

pytestmark = pytest.mark.e2e

PARTITIONS = 8


@dataclass
class Deployment:
    """A Redis, a key space of the test's own in it, and how the workers fold there."""

    redis: Any  # Redis | RedisCluster: what the tests call, both have
    space: Space
    forward: bool  # by forwards (a cluster), else one commit over every key

    def state(self) -> RedisState:
        return RedisState(self.redis, self.space)


@pytest.fixture(params=["one primary", "cluster"])
def d(request: pytest.FixtureRequest) -> Deployment:
    space = Space(f"t{uuid.uuid4().hex[:6]}", PARTITIONS)
    if request.param == "cluster":
        cluster: RedisCluster = request.getfixturevalue("cluster_client")
        return Deployment(cluster, space, forward=True)
    primary: Redis = request.getfixturevalue("client")
    return Deployment(primary, space, forward=False)


def ids_on_two_partitions(space: Space) -> tuple[str, str]:
    """A customer and a guest id on different partitions, whose slots two primaries of a
    three-primary cluster serve (slots split in thirds, as ``--cluster create`` does)."""
    customer = "c-1"
    third = 16384 // 3 + 1
    home = slot_of(space.tag(7)) // third
    guest = next(
        g
        for g in (f"g-{i}" for i in range(100))
        if slot_of(space.tag(space.partition(g))) // third != home
    )
    assert space.partition(customer) == 7
    return customer, guest


async def fold(d: Deployment, topic: str, offset: int, body: dict[str, object]) -> None:
    """Commit one record on the partition of its key, as the worker would."""
    state = d.state()
    key = str(body.get("customer_id") or body.get("anonymous_id"))
    batch = [Record(topic, d.space.partition(key), offset, key.encode(), orjson.dumps(body))]
    if d.forward:
        processor = BatchProcessor(state, _no_dead_letters, forward=True)
        await processor.process(batch)
        await InlineForwards(d.redis, d.space, processor).drain()
        return
    decoded = [decode(r.value) for r in batch]
    plan = plan_batch(batch, decoded, await state.load(needs(batch, decoded)))
    assert await state.commit(plan) is None


async def _no_dead_letters(_: object) -> None:
    raise AssertionError("nothing here is dead-lettered")


async def epochs(d: Deployment) -> list[int]:
    raw = [await d.redis.get(keys.erasure_epoch(d.space, n)) for n in range(PARTITIONS)]
    return [int(v or 0) for v in raw]


@asynccontextmanager
async def shard_notices(
    d: Deployment, channels: set[str]
) -> AsyncIterator[Callable[[int], Awaitable[dict[str, str]]]]:
    """Listen on sharded channels (on a cluster, each on the primary serving its slot);
    yields ``take(n)``: the first ``n`` erased-key notices as key -> channel."""
    own: list[Redis] = []  # clients of the cluster's nodes, closed after
    subs: list[tuple[Any, list[str]]] = []
    if isinstance(d.redis, RedisCluster):
        for channel in sorted(channels):
            node = d.redis.get_node_from_key(channel)
            own.append(Redis(host=node.host, port=node.port))
            subs.append((own[-1].pubsub(), [channel]))
    else:
        subs.append((d.redis.pubsub(), sorted(channels)))
    pubsubs = [sub for sub, _ in subs]
    for sub, names in subs:
        await sub.execute_command("SSUBSCRIBE", *names)

    async def take(count: int) -> dict[str, str]:
        notices: dict[str, str] = {}
        for _ in range(20):
            for sub in pubsubs:
                message = await sub.get_message(timeout=0.2)
                if message and message["type"] == "smessage":
                    body = orjson.loads(message["data"])
                    assert body["erased"] is True
                    notices[body["key"]] = message["channel"].decode()
            if len(notices) >= count:
                break
        return notices

    try:
        yield take
    finally:
        for sub in pubsubs:
            await sub.aclose()
        for node_client in own:
            await node_client.aclose()


async def test_an_erasure_is_recorded_by_partition_and_moves_every_epoch(d: Deployment) -> None:
    state, space = d.state(), d.space
    customer, guest = ids_on_two_partitions(space)
    pc, pg = space.partition(customer), space.partition(guest)
    await fold(d, "cart-events", 4, event("cart.item_added", added("A-1"), anon=guest))
    await fold(d, "cart-events", 9, event("session.identified", customer=customer, anon=guest))
    assert await state.get(customer) is not None
    for n in (pc, pg):  # a changelog stream per partition exists once a commit wrote one
        await d.redis.xadd(keys.changelog(space, n), {"seed": "1"})

    # Not naming the linked guest: nothing is written, the guest is named back.
    unnamed = await state.erase(Erasure(customer, (customer,), 1000, {}))
    assert unnamed == Unnamed((guest,))
    assert await epochs(d) == [0] * PARTITIONS

    channels = {keys.updates(space, pc), keys.updates(space, pg)}
    async with shard_notices(d, channels) as take:
        upto = {f"cart-events:{pg}": 2, f"cart-events:{pc}": 1, "browse-events:5": 3}
        done = await state.erase(Erasure(customer, (customer, guest), 1000, upto))
        # Each key's notice on its own shard channel.
        notices = await take(2)
    assert notices == {customer: keys.updates(space, pc), guest: keys.updates(space, pg)}
    assert isinstance(done, Erased), done
    # The log ends rise to what each partition's offsets hash holds (the guest's
    # record at 4 on its partition, the login at 9 on the customer's).
    assert done.erasure.upto == {
        f"cart-events:{pg}": 5,
        f"cart-events:{pc}": 10,
        "browse-events:5": 3,
    }

    for some_id, n in ((customer, pc), (guest, pg)):
        assert await state.erasure(some_id) == done.erasure
        assert await d.redis.get(keys.erasure(space, some_id)) is not None
        assert f"{{p{n}}}" in keys.erasure(space, some_id)
        assert await d.redis.smembers(keys.erased_ids(space, n)) == {some_id.encode()}
        assert not await d.redis.exists(keys.session(space, some_id))
    assert await state.get(customer) is None
    assert await epochs(d) == [1] * PARTITIONS, "every partition's epoch moves"

    # Each key's tombstone went to its own partition's changelog.
    for some_id, n in ((customer, pc), (guest, pg)):
        entries = await d.redis.xrange(keys.changelog(space, n))
        assert entries
        last = entries[-1][1]
        assert last is not None
        assert last[b"k1"] == some_id.encode()
        assert last[b"why1"] == b"erased"
        assert b"k2" not in last


class Interleaved(RedisState):
    """Runs ``then`` once, right after an erasure read the applied offsets: a commit
    landing between the erasure's look and its step, at the worst moment."""

    def __init__(self, d: Deployment, then: Callable[[], Awaitable[None]]) -> None:
        super().__init__(d.redis, d.space)
        self.then: Callable[[], Awaitable[None]] | None = then
        self.reads = 0

    async def applied_offsets_of(self, tps: list[str]) -> dict[str, int]:
        found = await super().applied_offsets_of(tps)
        self.reads += 1
        then, self.then = self.then, None
        if then is not None:
            await then()
        return found


async def test_a_commit_between_look_and_step_makes_the_erasure_look_again(
    d: Deployment,
) -> None:
    space = d.space
    customer, guest = ids_on_two_partitions(space)
    tp = f"cart-events:{space.partition(customer)}"
    await fold(d, "cart-events", 6, event("cart.item_added", added("A-1"), customer=customer))
    late = event("cart.item_added", added("B-2"), customer=customer)
    state = Interleaved(d, lambda: fold(d, "cart-events", 7, late))
    done = await state.erase(Erasure(customer, (customer, guest), 1000, {tp: 3}))
    assert isinstance(done, Erased), done
    assert state.reads == 2, "the step refused once, the erasure looked again"
    # The record at 7 was applied before the state was deleted: the erasure covers it,
    # so a replay skips it as the live state lost it.
    assert done.erasure.upto == {tp: 8}
    assert done.erasure.covers(tp, 7)
    assert done.erasure.floors == {customer: 2}
    assert await state.get(customer) is None
    assert await state.erasure(customer) == done.erasure
    assert await state.erasure(guest) == done.erasure


async def test_a_log_reset_works_on_its_partition_and_drops_its_end_everywhere(
    d: Deployment,
) -> None:
    state, space = d.state(), d.space
    customer, guest = ids_on_two_partitions(space)
    pc, pg = space.partition(customer), space.partition(guest)
    await fold(d, "cart-events", 6, event("cart.item_added", added("A-1"), customer=customer))
    tp, other = f"cart-events:{pc}", f"cart-events:{pg}"
    upto = {tp: 7, other: 3}
    done = await state.erase(Erasure(customer, (customer, guest), 1000, upto))
    assert isinstance(done, Erased), done
    before = await epochs(d)

    # Another offset than the one judged: nothing changes.
    assert not await state.reset_partition(tp, 5)
    assert await state.applied_offsets_of([tp]) == {tp: 6}
    assert await epochs(d) == before

    assert await state.reset_partition(tp, 6)
    assert await state.applied_offsets_of([tp]) == {}
    assert await d.redis.hget(keys.fingerprints(space, pc), tp) is None
    after = await epochs(d)
    assert after[pc] == before[pc] + 1
    assert [e for n, e in enumerate(after) if n != pc] == [
        e for n, e in enumerate(before) if n != pc
    ]
    # Both erasures (on two partitions) forgot tp's old end and kept the other's.
    for some_id in (customer, guest):
        erasure = await state.erasure(some_id)
        assert erasure is not None
        assert tp not in erasure.upto
        assert erasure.upto[other] == 3


async def test_restored_erasures_land_by_partition_and_move_every_epoch(d: Deployment) -> None:
    state, space = d.state(), d.space
    customer, guest = ids_on_two_partitions(space)
    erasure = Erasure(customer, (customer, guest), 1000, {"cart-events:0": 4})
    assert await state.restore_erasures([erasure]) == 2
    for some_id in (customer, guest):
        assert await state.erasure(some_id) == erasure
        members = await d.redis.smembers(keys.erased_ids(space, space.partition(some_id)))
        assert some_id.encode() in members
    assert await epochs(d) == [1] * PARTITIONS
