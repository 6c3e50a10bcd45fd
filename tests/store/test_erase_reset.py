"""Erasures and log resets on the partition-aligned layout, against a real redis-server.

Proves: an erasure of a customer and a guest homed on different partitions
records the erasure under each id's own partition (``x:<id>``, that
partition's ``xs``), deletes both ids' state, raises its log ends to what
each partition's offsets hash says was applied, tombstones each key in its own
partition's changelog, notifies on each key's shard channel, and moves EVERY
partition's erasure epoch (a commit checks only its own); a log reset
compares-and-deletes on its partition alone, bumps that partition's epoch and
drops the reset partition's old log end from erasures held on every
partition, keeping the others; erasures restored from Kafka land by partition
and move every epoch.
"""

from __future__ import annotations

import orjson
import pytest
from redis.asyncio import Redis

from streams.core.decode import decode
from streams.core.erasure import Erasure
from streams.core.plan import Record, needs, plan_batch
from streams.store import keys
from streams.store.keys import Space
from streams.store.state import Erased, RedisState, Unnamed
from tests.support.events import added, event

pytestmark = pytest.mark.e2e

SPACE = Space("t", 8)


def ids_on_two_partitions() -> tuple[str, str]:
    """A customer and a guest id Kafka's partitioner puts on different partitions."""
    customer = "c-1"
    guest = next(g for g in (f"g-{i}" for i in range(100)) if SPACE.partition(g) != 7)
    assert SPACE.partition(customer) == 7
    return customer, guest


async def fold(state: RedisState, topic: str, offset: int, body: dict[str, object]) -> None:
    """Commit one record on the partition of its key, as the worker would."""
    key = str(body.get("customer_id") or body.get("anonymous_id"))
    batch = [Record(topic, SPACE.partition(key), offset, key.encode(), orjson.dumps(body))]
    decoded = [decode(r.value) for r in batch]
    plan = plan_batch(batch, decoded, await state.load(needs(batch, decoded)))
    assert await state.commit(plan) is None


async def epochs(client: Redis) -> list[int]:
    raw = [await client.get(keys.erasure_epoch(SPACE, n)) for n in SPACE.all_partitions()]
    return [int(v or 0) for v in raw]


async def test_an_erasure_is_recorded_by_partition_and_moves_every_epoch(client: Redis) -> None:
    state = RedisState(client, SPACE)
    customer, guest = ids_on_two_partitions()
    pc, pg = SPACE.partition(customer), SPACE.partition(guest)
    await fold(state, "cart-events", 4, event("cart.item_added", added("A-1"), anon=guest))
    await fold(state, "cart-events", 9, event("session.identified", customer=customer, anon=guest))
    assert await state.get(customer) is not None
    for n in (pc, pg):  # a changelog stream per partition exists once a commit wrote one
        await client.xadd(keys.changelog(SPACE, n), {"seed": "1"})

    # Not naming the linked guest: nothing is written, the guest is named back.
    unnamed = await state.erase(Erasure(customer, (customer,), 1000, {}))
    assert unnamed == Unnamed((guest,))
    assert await epochs(client) == [0] * 8

    shard = client.pubsub()
    channels = {keys.updates(SPACE, pc), keys.updates(SPACE, pg)}
    await shard.execute_command("SSUBSCRIBE", *channels)
    upto = {f"cart-events:{pg}": 2, f"cart-events:{pc}": 1, "browse-events:5": 3}
    done = await state.erase(Erasure(customer, (customer, guest), 1000, upto))
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
        assert await client.get(keys.erasure(SPACE, some_id)) is not None
        assert f"{{p{n}}}" in keys.erasure(SPACE, some_id)
        assert await client.smembers(keys.erased_ids(SPACE, n)) == {some_id.encode()}
        assert not await client.exists(keys.session(SPACE, some_id))
    assert await state.get(customer) is None
    assert await epochs(client) == [1] * 8, "every partition's epoch moves"

    # Each key's tombstone went to its own partition's changelog.
    for some_id, n in ((customer, pc), (guest, pg)):
        entries = await client.xrange(keys.changelog(SPACE, n))
        assert entries
        last = entries[-1][1]
        assert last is not None
        assert last[b"k1"] == some_id.encode()
        assert last[b"why1"] == b"erased"
        assert b"k2" not in last
    # Each key's notice on its own shard channel.
    notices: dict[str, str] = {}
    for _ in range(20):
        message = await shard.get_message(timeout=0.5)
        if message and message["type"] == "smessage":
            body = orjson.loads(message["data"])
            assert body["erased"] is True
            notices[body["key"]] = message["channel"].decode()
        if len(notices) == 2:
            break
    assert notices == {customer: keys.updates(SPACE, pc), guest: keys.updates(SPACE, pg)}
    await shard.aclose()


async def test_a_log_reset_works_on_its_partition_and_drops_its_end_everywhere(
    client: Redis,
) -> None:
    state = RedisState(client, SPACE)
    customer, guest = ids_on_two_partitions()
    pc, pg = SPACE.partition(customer), SPACE.partition(guest)
    await fold(state, "cart-events", 6, event("cart.item_added", added("A-1"), customer=customer))
    tp, other = f"cart-events:{pc}", f"cart-events:{pg}"
    upto = {tp: 7, other: 3}
    done = await state.erase(Erasure(customer, (customer, guest), 1000, upto))
    assert isinstance(done, Erased), done
    before = await epochs(client)

    # Another offset than the one judged: nothing changes.
    assert not await state.reset_partition(tp, 5)
    assert await state.applied_offsets_of([tp]) == {tp: 6}
    assert await epochs(client) == before

    assert await state.reset_partition(tp, 6)
    assert await state.applied_offsets_of([tp]) == {}
    assert await client.hget(keys.fingerprints(SPACE, pc), tp) is None
    after = await epochs(client)
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


async def test_restored_erasures_land_by_partition_and_move_every_epoch(client: Redis) -> None:
    state = RedisState(client, SPACE)
    customer, guest = ids_on_two_partitions()
    erasure = Erasure(customer, (customer, guest), 1000, {"cart-events:0": 4})
    assert await state.restore_erasures([erasure]) == 2
    for some_id in (customer, guest):
        assert await state.erasure(some_id) == erasure
        members = await client.smembers(keys.erased_ids(SPACE, SPACE.partition(some_id)))
        assert some_id.encode() in members
    assert await epochs(client) == [1] * 8
