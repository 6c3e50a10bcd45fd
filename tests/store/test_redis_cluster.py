"""A real Redis Cluster (streams/dev/cluster.py) and ``redis+cluster://`` URLs.

Proves: the fixture forms a cluster of three primaries covering every slot;
``connect`` gives a cluster client that reaches every primary; a script over
one hash tag runs and one over two slots is refused (CROSSSLOT); a key
outlives a manual failover and a reshard of its slot, read through the same
client. With the partition-aligned layout the worker's own path (per-partition
load and commit, ``BatchProcessor``) runs on the cluster for customers spread
over every primary, exactly once; and a login whose guest is on another
partition (another primary's slot) merges through forwards, each partition's
script touching its own slot only. A script starting with the settled-slot
probe is refused (TRYAGAIN) on a slot half moved, on either side, before it
writes anything.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ClusterCrossSlotError, ClusterError, TryAgainError

from streams.core.decode import decode
from streams.core.fold import Limits
from streams.core.plan import Kind, Record, needs, plan_batch
from streams.dev.cluster import SLOTS, LocalCluster, redis_cluster, slot_of
from streams.ops.inline_forwards import InlineForwards
from streams.store import keys
from streams.store.client import connect, transient
from streams.store.keys import Space
from streams.store.scripts import SETTLED_SLOT_PROBE
from streams.store.state import RedisState
from streams.worker.processor import BatchProcessor
from tests.support.events import added, event

pytestmark = pytest.mark.e2e

TWO_KEYS = "return {redis.call('SET', KEYS[1], ARGV[1]), redis.call('SET', KEYS[2], ARGV[1])}"


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def test_three_primaries_cover_every_slot(cluster: LocalCluster) -> None:
    primaries = await cluster.primaries()
    assert len(primaries) == 3
    for node in cluster.nodes:
        info = await node.cluster_info()
        assert info["cluster_state"] == "ok"
        assert info["cluster_slots_assigned"] == str(SLOTS)
        view = await node.view()
        owned = [view[p.id].slots for p in primaries]
        assert all(owned), "every primary owns slots"
        assert set().union(*owned) == set(range(SLOTS))


async def test_a_cluster_url_reaches_every_primary(
    cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    primaries = await cluster.primaries()
    home: dict[str, str] = {}  # node name -> a key of a slot it owns
    while len(home) < len(primaries):
        key = unique("spread")
        home.setdefault((await cluster.owner(slot_of(key))).name, key)
    for name, key in home.items():
        assert await cluster_client.set(key, name)
    for node in primaries:
        key = home[node.name]
        assert await cluster_client.get(key) == node.name.encode()
        assert await node.client.get(key) == node.name, "stored on the slot's own primary"


async def test_a_script_over_one_hash_tag_runs(cluster_client: RedisCluster) -> None:
    tag = "{" + unique("customer") + "}"
    keys = [f"{tag}:session", f"{tag}:journey"]
    assert slot_of(keys[0]) == slot_of(keys[1])
    script = cluster_client.register_script(TWO_KEYS)
    assert await script(keys=keys, args=["v"]) == [b"OK", b"OK"]
    assert await cluster_client.mget(keys) == [b"v", b"v"]


async def test_a_script_over_two_slots_is_refused(
    cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    keys = ["{" + unique("a") + "}:k", "{" + unique("b") + "}:k"]
    while slot_of(keys[0]) == slot_of(keys[1]):
        keys[1] = "{" + unique("b") + "}:k"
    # Through the cluster client and straight to the first key's node alike.
    with pytest.raises(ClusterCrossSlotError):
        await cluster_client.eval(TWO_KEYS, 2, *keys, "v")
    node = await cluster.owner(slot_of(keys[0]))
    with pytest.raises(ClusterCrossSlotError):
        await node.client.eval(TWO_KEYS, 2, *keys, "v")
    assert await node.client.exists(keys[0]) == 0, "the refused script wrote nothing"


def on_home(events: list[dict[str, object]], space: Space) -> list[Record]:
    """Each event as a record of its key's own partition, as Kafka's producer places it."""
    out = []
    for i, e in enumerate(events):
        key = str(e.get("customer_id") or e["anonymous_id"])
        out.append(Record("cart-events", space.partition(key), i, key.encode(), orjson.dumps(e)))
    return out


async def _no_dead_letters(_: object) -> None:
    raise AssertionError("nothing here is dead-lettered")


async def test_a_batch_over_many_partitions_commits_one_script_per_slot(
    cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    """Customers spread over every primary: each partition's records load and commit in
    their partition's slot, so the cluster takes the worker's own path."""
    space = Space(unique("t"), 12)
    names = [unique("c") for _ in range(24)]
    owners = {(await cluster.owner(slot_of(space.tag(space.partition(n))))).name for n in names}
    assert len(owners) == 3, "the batch reaches every primary"
    state = RedisState(cluster_client, space)
    processor = BatchProcessor(state, _no_dead_letters)
    events = [event("cart.item_added", added("A-1"), customer=name) for name in names]
    plan = await processor.process(on_home(events, space))
    assert [o.kind for o in plan.outcomes] == [Kind.APPLIED] * len(names)
    for name in names:
        stored = await state.get(name)
        assert stored is not None
        assert [line.sku for line in stored.cart] == ["A-1"]
    # Exactly once per partition: the same records again change nothing.
    again = await processor.process(on_home(events, space))
    assert {o.kind for o in again.outcomes} == {Kind.ALREADY_APPLIED}
    applied = await state.applied_offsets()
    assert set(applied) == {f"cart-events:{space.partition(n)}" for n in names}


async def test_a_login_across_partitions_runs_on_a_cluster(cluster_client: RedisCluster) -> None:
    space = Space(unique("t"), 12)
    guest, customer = unique("g"), unique("c")
    while slot_of(space.tag(space.partition(guest))) == slot_of(
        space.tag(space.partition(customer))
    ):
        customer = unique("c")
    processor = BatchProcessor(RedisState(cluster_client, space), _no_dead_letters, forward=True)
    pump = InlineForwards(cluster_client, space, processor)
    await processor.process(on_home([event("cart.item_added", added("A-1"), anon=guest)], space))
    login = event("session.identified", customer=customer, anon=guest)
    first = await processor.process(on_home([login], space))
    # The customer's script touches its own slot only: the guest side goes by a forward.
    assert [o.kind for o in first.outcomes] == [Kind.FORWARDED]
    assert await RedisState(cluster_client, space).get(customer) is None
    assert await pump.drain() == 2  # the login to the guest side, its merge back
    merged = await RedisState(cluster_client, space).get(customer)
    assert merged is not None
    assert [line.sku for line in merged.cart] == ["A-1"]
    assert await cluster_client.get(keys.alias(space, guest)) == customer.encode()
    assert await cluster_client.hlen(keys.waiting(space, space.partition(customer))) == 0


async def test_a_key_outlives_a_manual_failover(tmp_path: Path) -> None:
    async with redis_cluster(tmp_path, replicas=1) as cl:
        cluster_client = connect(cl.url, socket_timeout=5, socket_connect_timeout=5)
        try:
            key = "{" + unique("failover") + "}:k"
            await cluster_client.set(key, "before")
            owner = await cl.owner(slot_of(key))
            [replica] = await cl.replicas_of(owner)
            # A manual failover waits until the replica has the primary's last write.
            await cl.failover(replica)
            assert await cl.owner(slot_of(key)) is replica
            assert await cl.replicas_of(replica) == [owner]
            assert await cluster_client.get(key) == b"before"
            await cluster_client.set(key, "after")
            assert await replica.client.get(key) == "after", "written on the new primary"
        finally:
            await cluster_client.aclose()


async def test_a_key_follows_its_slot_to_another_primary(
    cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    key = "{" + unique("reshard") + "}:k"
    await cluster_client.set(key, "kept")
    slot = slot_of(key)
    source = await cluster.owner(slot)
    target = next(p for p in await cluster.primaries() if p is not source)
    await cluster.reshard(slot, target)
    assert await cluster.owner(slot) is target
    assert await target.client.get(key) == "kept", "the key itself moved"
    # The client's slot map still names the source: it follows the MOVED reply.
    assert await cluster_client.get(key) == b"kept"


async def test_a_commit_meeting_its_slot_mid_move_waits_instead_of_half_applying(
    cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    """A partition's slot being moved, with the customer's journey already on the new
    primary and its session still on the old: the next commit (planned before) is
    answered TRYAGAIN and writes nothing; once the move ends it commits. Without the
    settled-slot probe (streams/store/scripts.py) the script ran on the old primary,
    wrote the session, and failed at the journey: a half-applied batch."""
    space = Space(unique("t"), 12)
    customer = unique("c")
    part = space.partition(customer)
    state = RedisState(cluster_client, space)
    first = on_home([event("cart.item_added", added("A-1"), customer=customer)], space)
    assert await BatchProcessor(state, _no_dead_letters).process(first)
    second = Record("cart-events", part, 1, customer.encode(), orjson.dumps(
        event("cart.item_added", added("B-2"), customer=customer)))  # fmt: skip
    decoded = [decode(second.value)]
    plan = plan_batch([second], decoded, await state.load(needs([second], decoded)), Limits())

    slot = slot_of(keys.offsets(space, part))
    source = await cluster.owner(slot)
    target = next(p for p in await cluster.primaries() if p is not source)
    await target.client.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.id)
    await source.client.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.id)
    journey = keys.journey(space, customer)
    moved = await source.client.execute_command(
        "MIGRATE", "127.0.0.1", target.port, journey, 0, 5000
    )
    assert moved == "OK"
    # TRYAGAIN, retried by the client until its attempts ran out (the worker goes on).
    with pytest.raises(ClusterError) as refused:
        await state.commit(plan)
    assert transient(refused.value)
    assert (await state.get(customer)).version == 1  # type: ignore[union-attr]

    await cluster.reshard(slot, target)
    assert await state.commit(plan) is None
    stored = await state.get(customer)
    assert stored is not None
    assert [line.sku for line in stored.cart] == ["A-1", "B-2"]
    assert await cluster_client.zcard(journey) == 2


async def test_a_script_on_a_slot_being_moved_stops_before_it_writes(
    cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    tag = "{" + unique("moving") + "}"
    here, moved = f"{tag}:here", f"{tag}:moved"  # one on the old primary, one not there
    await cluster_client.set(here, "1")
    slot = slot_of(here)
    source = await cluster.owner(slot)
    target = next(p for p in await cluster.primaries() if p is not source)
    writes = SETTLED_SLOT_PROBE + "redis.call('SET', KEYS[1] .. ':w', 'x') return 1"
    script = cluster_client.register_script(writes)
    await target.client.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.id)
    await source.client.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.id)
    try:
        # Run on the old primary (its key is there), then on the new one (sent by ASK).
        for key in (here, moved):
            with pytest.raises((TryAgainError, ClusterError)):  # TRYAGAIN, till the TTL
                await script(keys=[key])
        # Each node's keys of the slot, asked so that no node redirects: nothing written.
        held = [
            await n.client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10)
            for n in (source, target)
        ]
        assert held == [[here], []], "refused before writing"
    finally:
        for node in (target, source):
            await node.client.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
    assert await script(keys=[here]) == 1, "a settled slot runs it"
