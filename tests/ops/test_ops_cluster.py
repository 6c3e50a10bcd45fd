"""The operator commands on a real Redis Cluster (three primaries) and a broker of the test's own.

The state is folded by the workers' own batch step in forward mode (every
commit in its partition's slot, ``tests/support/folder.py``), with a customer
and its guest on partitions of two different primaries, so every command meets
keys of several slots. Proves, through ``redis+cluster://``:

* ``continuity erase`` erases a customer and its guest on two primaries, one
  step per partition, records the same erasure under both ids and on Kafka,
  moves every partition's epoch once; and ``restore_lost_erasures`` finishes an
  erasure whose guest's step was lost (a crash between two partitions);
* a restore from the changelog (a key on it twice, an erased customer, an
  unrelayed tail) equals the live state, the erasure restored by partition;
  time travel answers from the cluster's links; a wipe reaches every primary;
* ``continuity rebuild`` restores into a fresh prefix on the cluster (an erasure
  restored first), and refuses a cluster in direct mode; ``--from-history``
  folds a login across two primaries, delivering its forwards in-process, to
  the live state, with no session left waiting, no forward left in an outbox and
  none of its own positions taken for the topic's;
* ``continuity unmerge`` waits on the cluster's applied offsets and reports the
  lines given back.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from redis.asyncio.cluster import RedisCluster

from schemas.topics import SOURCE_TOPICS
from streams.dev import loopback
from streams.dev.cluster import LocalCluster, slot_of
from streams.kafka.publish import Publisher
from streams.kafka.topics import ensure_topics
from streams.ops.erase import erase_customer, read_erasures, restore_lost_erasures
from streams.ops.rebuild import PrefixInUse, ensure_fresh, wipe
from streams.ops.restore import restore
from streams.ops.time_travel import session_as_of
from streams.store import keys
from streams.store.keys import Space
from streams.store.state import Erased, RedisState
from tests.support.changelog import restored_families
from tests.support.events import added, event
from tests.support.folder import Folder, relay_changelog
from tests.support.stack import PARTITIONS, publish, wait_until
from tests.system.test_cli import run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture
async def bootstrap(tmp_path: Path) -> AsyncIterator[str]:
    """A broker of the test's own, its topics created (nothing of other tests on them)."""
    broker = loopback.start_broker(tmp_path)
    try:
        address = f"127.0.0.1:{broker.port}"
        await ensure_topics(address, PARTITIONS)
        yield address
    finally:
        broker.stop()


def fresh_space() -> Space:
    return Space(f"oc{uuid.uuid4().hex[:8]}", PARTITIONS)


def env(bootstrap: str, cluster: LocalCluster, space: Space, **extra: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP": bootstrap,
        "REDIS_URL": cluster.url,
        "CONTINUITY_REDIS_PREFIX": space.prefix,
        "CONTINUITY_TOPIC_PARTITIONS": str(PARTITIONS),
        "CONTINUITY_STATE_DIR": "/nonexistent",
        **extra,
    }


async def apart(cluster: LocalCluster, space: Space) -> tuple[str, str]:
    """A customer id and a guest id on partitions whose slots two primaries serve."""
    owner = {n: (await cluster.owner(slot_of(space.tag(n) + ":o"))).port for n in range(4)}
    run = uuid.uuid4().hex[:6]
    customer = f"c{run}"
    guest = next(
        g
        for g in (f"g{run}-{i}" for i in range(1000))
        if owner[space.partition(g)] != owner[space.partition(customer)]
    )
    return customer, guest


def cart(session: object) -> dict[str, int]:
    return {line.sku: line.quantity for line in getattr(session, "cart", [])}


async def merged_pair(
    bootstrap: str, cluster: LocalCluster, state: RedisState
) -> tuple[str, str, Folder, int]:
    """A guest's cart merged into a customer of another primary, folded; and a moment
    (Unix ms) between the guest's event and the login."""
    customer, guest = await apart(cluster, state.space)
    folder = Folder(bootstrap, state)
    async with Publisher(bootstrap, linger_ms=1) as pub:
        await publish(
            pub, [event("cart.item_added", added("A-1", 2), anon=guest, channel="mobile_app")]
        )
        await asyncio.sleep(0.05)
        moment = int(time.time() * 1000)
        await asyncio.sleep(0.05)
        await publish(
            pub,
            [
                event("session.identified", customer=customer, anon=guest),
                event("cart.item_added", added("B-2"), customer=customer),
            ],
        )
    await folder.fold()
    assert cart(await state.get(customer)) == {"A-1": 2, "B-2": 1}
    assert await state.resolve(guest) == customer
    return customer, guest, folder, moment


async def epochs(cluster_client: RedisCluster, space: Space) -> list[int]:
    raw = [await cluster_client.get(keys.erasure_epoch(space, n)) for n in range(PARTITIONS)]
    return [int(v or 0) for v in raw]


async def test_erase_and_a_lost_erasure_on_a_cluster(
    bootstrap: str, cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    space = fresh_space()
    state = RedisState(cluster_client, space)
    customer, guest, _, _ = await merged_pair(bootstrap, cluster, state)
    applied = await state.applied_offsets()

    code, out, err = await run_cli(
        "erase", "--customer", customer, env=env(bootstrap, cluster, space)
    )
    assert code == 0, err
    report = orjson.loads(out[out.index("{") :])
    assert report["erased_ids"] == [customer, guest]
    assert (report["sessions_deleted"], report["aliases_deleted"]) == (1, 1)
    assert await state.get(customer) is None
    assert await state.get(guest) is None
    for name in (keys.alias(space, guest), keys.links(space, customer)):
        assert await cluster_client.exists(name) == 0, name
    recorded = await state.erasure(customer)
    assert recorded is not None
    assert await state.erasure(guest) == recorded, "one record under each id's partition"
    # It covers everything the state held, on either partition.
    assert all(recorded.upto[tp] > offset for tp, offset in applied.items() if tp in recorded.upto)
    assert await epochs(cluster_client, space) == [1] * PARTITIONS
    assert (await read_erasures(bootstrap))[-1] == recorded, "Kafka holds what Redis recorded"

    # A crash between the partitions' steps: the guest's never ran.
    await cluster_client.delete(keys.erasure(space, guest))
    await cluster_client.set(keys.alias(space, guest), customer)
    assert await restore_lost_erasures(state, bootstrap) == 1
    assert await state.erasure(guest) == recorded
    assert await cluster_client.exists(keys.alias(space, guest)) == 0
    assert await restore_lost_erasures(state, bootstrap) == 0


async def test_restore_time_travel_and_wipe_on_a_cluster(
    bootstrap: str, cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    live = RedisState(cluster_client, fresh_space())
    customer, guest, folder, moment = await merged_pair(bootstrap, cluster, live)
    # Time travel finds the guest's records through its links on the customer's partition.
    before = await session_as_of(bootstrap, live, guest, moment)
    assert (before.result.key, cart(before.result.session)) == (guest, {"A-1": 2})
    gone, solo = f"e{uuid.uuid4().hex[:6]}", f"s{uuid.uuid4().hex[:6]}"
    async with Publisher(bootstrap, linger_ms=1) as pub:
        await publish(pub, [event("cart.item_added", added("X-9"), customer=gone)])
        await folder.fold()
        assert isinstance(await erase_customer(live, bootstrap, gone), Erased)
        assert await relay_changelog(bootstrap, live) > 0
        # The customer again (its key twice on the changelog), then a tail not relayed.
        # (The tail is folded as a rebuild folds, in one commit over every key: a key
        # linked across partitions would need the forward fold there.)
        await publish(pub, [event("cart.item_added", added("C-3"), customer=customer)])
        await folder.fold()
        assert await relay_changelog(bootstrap, live) > 0
        await publish(pub, [event("cart.item_added", added("D-4"), customer=solo)])
        await folder.fold()
    assert cart(await live.get(customer)) == {"A-1": 2, "B-2": 1, "C-3": 1}

    target = RedisState(cluster_client, fresh_space())
    done = await restore(bootstrap, target, SOURCE_TOPICS)
    assert done.tail.records == 1, "only the record the changelog does not hold"
    restored = await target.get(customer)
    current = await live.get(customer)
    assert restored is not None
    assert current is not None
    assert restored.model_dump() == current.model_dump()
    assert await target.resolve(guest) == customer
    assert await target.get(gone) is None
    assert cart(await target.get(solo)) == {"D-4": 1}
    assert await target.erasure(gone) == await live.erasure(gone)
    live_keys = await restored_families(cluster_client, live.space.prefix)  # type: ignore[arg-type]
    restored_keys = await restored_families(cluster_client, target.space.prefix)  # type: ignore[arg-type]
    assert restored_keys == live_keys
    tps = [f"{t}:{n}" for t in SOURCE_TOPICS for n in range(PARTITIONS)]
    assert await target.applied_offsets_of(tps) == await live.applied_offsets_of(tps)

    travelled = await session_as_of(bootstrap, target, guest, int(time.time() * 1000))
    assert travelled.result.key == customer
    assert cart(travelled.result.session) == cart(current)

    with pytest.raises(PrefixInUse):
        await ensure_fresh(cluster_client, target.space)
    assert await wipe(cluster_client, target.space) > 0
    await ensure_fresh(cluster_client, target.space)
    left = {
        key.split(b":", 2)[2].split(b":")[0]
        async for key in cluster_client.scan_iter(match=f"{target.space.prefix}:*")
    }
    folded = {b"s", b"a", b"l", b"j", b"dv", b"vf", b"o", b"f", b"ot", b"ab"}
    assert not left & folded, left
    assert {b"x", b"xs"} <= left, "erasures stay"


async def test_rebuild_command_on_a_cluster(
    bootstrap: str, cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    space = fresh_space()
    live = RedisState(cluster_client, space)
    run = uuid.uuid4().hex[:6]
    # One customer on each partition (ids drawn until every partition has one).
    first: dict[int, str] = {}
    for i in range(1000):
        first.setdefault(space.partition(f"r{run}-{i}"), f"r{run}-{i}")
    customers = [first[n] for n in range(PARTITIONS)]
    folder = Folder(bootstrap, live)
    async with Publisher(bootstrap, linger_ms=1) as pub:
        await publish(
            pub,
            [
                event("cart.item_added", added(f"S-{i}"), customer=c)
                for i, c in enumerate(customers)
            ],
        )
    await folder.fold()
    assert isinstance(await erase_customer(live, bootstrap, customers[0]), Erased)

    target = fresh_space()
    cli_env = env(bootstrap, cluster, space)
    code, _, err = await run_cli(
        "rebuild",
        "--prefix",
        target.prefix,
        env={**cli_env, "CONTINUITY_CROSS_PARTITION": "direct"},
    )
    assert code == 2
    assert "CONTINUITY_CROSS_PARTITION=forward" in err
    await relay_changelog(bootstrap, live)
    code, out, err = await run_cli("rebuild", "--prefix", target.prefix, env=cli_env)
    assert "restored" in out, out
    assert code == 0, err
    rebuilt = RedisState(cluster_client, target)
    assert await rebuilt.get(customers[0]) is None
    assert await rebuilt.erasure(customers[0]) == await live.erasure(customers[0])
    for c in customers[1:]:
        now, again = await live.get(c), await rebuilt.get(c)
        assert now is not None
        assert again is not None
        assert again.model_dump() == now.model_dump()
    code, _, err = await run_cli("rebuild", "--prefix", target.prefix, env=cli_env)
    assert code == 2
    assert "already holds state" in err


async def test_rebuild_from_history_on_a_cluster(
    bootstrap: str, cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    space = fresh_space()
    live = RedisState(cluster_client, space)
    customer, guest, folder, _ = await merged_pair(bootstrap, cluster, live)
    async with Publisher(bootstrap, linger_ms=1) as pub:
        # A guest event after the login follows its alias: one more forward.
        await publish(pub, [event("cart.item_added", added("C-3"), anon=guest)])
    await folder.fold()
    assert cart(await live.get(customer)) == {"A-1": 2, "B-2": 1, "C-3": 1}

    target = fresh_space()
    code, out, err = await run_cli(
        "rebuild", "--from-history", "--prefix", target.prefix, env=env(bootstrap, cluster, space)
    )
    assert code == 0, err
    # The login to the guest's side and its session back, at least (how the guest's later
    # event travels depends on where the batches cut).
    delivered = re.search(r"rebuilt 4 records and delivered (\d+) forwards between partitions", out)
    assert delivered, out
    assert int(delivered[1]) >= 2, out
    rebuilt = RedisState(cluster_client, target)
    assert await rebuilt.resolve(guest) == customer
    now, again = await live.get(customer), await rebuilt.get(customer)
    assert now is not None
    assert again is not None
    # Which of the guest's events the merge carried depends on where the batches cut
    # (README: Rebuild); what the customer holds does not.
    assert cart(again) == cart(now)
    assert sorted(again.recent_event_ids) == sorted(now.recent_event_ids)
    assert again.anonymous_ids == now.anonymous_ids
    for n in range(PARTITIONS):
        assert not await cluster_client.exists(keys.waiting(target, n)), n
        assert not await cluster_client.xlen(keys.forwards(target, n)), n
        applied = await cluster_client.hkeys(keys.offsets(target, n))
        assert f"session-forwards:{n}".encode() not in applied, (n, applied)


async def test_unmerge_command_on_a_cluster(
    bootstrap: str, cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    space = fresh_space()
    state = RedisState(cluster_client, space)
    customer, guest, folder, _ = await merged_pair(bootstrap, cluster, state)
    follower = asyncio.create_task(folder.follow())
    try:
        code, out, err = await run_cli(
            "unmerge", "--customer", customer, "--guest", guest, env=env(bootstrap, cluster, space)
        )
        assert code == 0, err
        assert 'undone: {"A-1": 2} back to guest' in out

        async def given_back() -> bool:
            session = await state.get(guest)
            return session is not None and session.key == guest

        await wait_until(given_back, 30)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    assert cart(await state.get(customer)) == {"B-2": 1}
    assert cart(await state.get(guest)) == {"A-1": 2}
