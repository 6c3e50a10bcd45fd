"""The notification, changelog and forward relays on a real Redis Cluster (three primaries).

Proves: every command and script of the relays names one partition's slot, so
a cluster runs them with partitions spread over every primary. Carts armed on
every partition are swept into their partition's outbox, read, published and
acknowledged, each KPI counted in its own partition's hash; two changelog
relays holding two different partitions' leases each publish their
partition's entries (records on their keys' partition, the watermark on the
partition itself), move that partition's cursor and trim its stream, and a key
Redis forgot becomes a tombstone of its partition; two forward relays on
partitions of two primaries each publish their partition's forward records to
their destinations, in order and marked with origin and id, move its cursor
and trim its stream.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import orjson
import pytest
from redis.asyncio.cluster import RedisCluster

from schemas.changelog import CONTROL_HEADER, WATERMARK_ADAPTER
from schemas.session import Session
from streams.core import session_codec
from streams.core.changelog import Cursor, Out
from streams.dev.cluster import LocalCluster, slot_of
from streams.store import keys
from streams.store.changelog import ChangelogOutbox
from streams.store.forwards import START, ForwardOutbox
from streams.store.keys import Space
from streams.store.outbox import Outbox
from streams.worker import forward_relay
from streams.worker.changelog_relay import publish_round
from streams.worker.relay import relay_once
from tests.store.test_outbox import Kafka, _session

pytestmark = pytest.mark.e2e

SPACE = Space("rc", 6)


async def _primaries_of(cluster: LocalCluster, partitions: range) -> set[int]:
    """The ports of the primaries holding ``partitions``' slots."""
    owners = [await cluster.owner(slot_of(keys.offsets(SPACE, n))) for n in partitions]
    return {node.port for node in owners}


async def test_the_notification_relay_serves_partitions_on_every_primary(
    cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    assert len(await _primaries_of(cluster, SPACE.all_partitions())) == 3
    carts = [f"cart-{n}" for n in range(30)]
    for key in carts:
        session = {"v": 1, "d": _session(key, 1)}
        await cluster_client.hset(keys.session(SPACE, key), mapping=session)  # type: ignore[arg-type]
        await cluster_client.zadd(keys.abandonment(SPACE, SPACE.partition(key)), {key: 1_000})
    relay = Outbox(cluster_client, SPACE, "r", claim_after_ms=3_600_000)
    await relay.ensure_group()
    await relay.heartbeat(5_000)
    assert await relay.sweep(2_000) == len(carts)
    kafka = Kafka()
    assert await relay_once(relay, kafka.publish, 50, 50) == len(carts)
    assert sorted(kafka.acked) == sorted(f"abandoned:{k}:1" for k in carts)
    homes = Counter(SPACE.partition(k) for k in carts)
    assert len(homes) == SPACE.partitions
    counted = {
        n: await cluster_client.hget(keys.kpis(SPACE, n), "abandoned:mobile_app")
        for n in SPACE.all_partitions()
    }
    assert {n: int(v or 0) for n, v in counted.items()} == dict(homes)
    assert await relay.pending() == 0


def _entry(offsets: dict[str, tuple[int, str]], *sessions: Session) -> dict[Any, Any]:
    """A changelog entry as the commit writes it: the batch's offsets, then each key."""
    fields: dict[Any, Any] = {"o": orjson.dumps({tp: list(v) for tp, v in offsets.items()})}
    for i, s in enumerate(sessions, start=1):
        fields |= {
            f"k{i}": s.key,
            f"v{i}": s.version,
            f"d{i}": session_codec.encode(s),
            f"a{i}": "",
            f"dv{i}": "[]",
            f"f{i}": "",
            f"x{i}": "-1,-2,-2",
        }
    return fields


async def test_two_partitions_changelogs_are_published_under_two_leases(
    cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    # Two partitions on different primaries, each with a key of its own.
    owners = {
        n: (await cluster.owner(slot_of(keys.offsets(SPACE, n)))).port
        for n in SPACE.all_partitions()
    }
    first = 0
    second = next(n for n in SPACE.all_partitions() if owners[n] != owners[first])
    key_of = {
        n: next(f"c-{i}" for i in range(1000) if SPACE.partition(f"c-{i}") == n)
        for n in (first, second)
    }
    for n, key in key_of.items():
        entry = _entry({f"cart-events:{n}": (7, "ff")}, Session(key=key, version=3))
        await cluster_client.xadd(keys.changelog(SPACE, n), entry)
    # A key Redis forgot (nothing left of it, its expiry due): the sweep's tombstone.
    gone = next(f"g-{i}" for i in range(1000) if SPACE.partition(f"g-{i}") == first)
    await cluster_client.zadd(keys.changelog_expiry(SPACE, first), {gone: 1_000})
    relays = {
        first: ChangelogOutbox(cluster_client, SPACE, first, "worker-a"),
        second: ChangelogOutbox(cluster_client, SPACE, second, "worker-b"),
    }
    sent: list[Out] = []

    async def publish(
        key: str, value: bytes | None, headers: list[tuple[str, bytes]], partition: int
    ) -> Any:
        sent.append(Out(key, value, headers, partition))
        return asyncio.sleep(0)

    for n, relay in relays.items():
        assert await relay.hold()
        # The other partition's relay cannot take this lease while it is held.
        other = ChangelogOutbox(cluster_client, SPACE, n, "intruder")
        assert not await other.hold()
    assert await relays[first].sweep(2_000) == 1
    for relay in relays.values():
        waiting = await relay.pending()
        assert waiting == (2 if relay.partition == first else 1)
        assert await publish_round(relay, publish, 100) == waiting
    for n, relay in relays.items():
        lease: Any = await cluster_client.get(keys.changelog_lease(SPACE, n))
        assert lease.decode().startswith(f"worker-{'a' if n == first else 'b'}:")
        assert await relay.pending() == 0, "published entries leave the stream"
        cursor = await relay.cursor()
        assert cursor.offsets == {f"cart-events:{n}": 7}
    states = [o for o in sent if CONTROL_HEADER not in dict(o.headers)]
    assert {(o.key, o.partition) for o in states} == {
        (key_of[first], first),
        (key_of[second], second),
        (gone, first),
    }
    assert [o.value for o in states if o.key == gone] == [None], "a tombstone"
    marks = [o for o in sent if CONTROL_HEADER in dict(o.headers)]
    assert sorted(o.partition for o in marks) == sorted((first, second))
    for mark in marks:
        assert mark.value is not None
        watermark = WATERMARK_ADAPTER.validate_json(mark.value)
        assert watermark.seq == (await relays[mark.partition].cursor()).seq
        assert Cursor(watermark.seq).watermark(mark.partition).partition == mark.partition
        assert watermark.positions == {"cart-events": [-1] * mark.partition + [7]}
    for relay in relays.values():
        await relay.release()


async def test_two_partitions_forwards_are_published_under_two_leases(
    cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    owners = {
        n: (await cluster.owner(slot_of(keys.forwards(SPACE, n)))).port
        for n in SPACE.all_partitions()
    }
    first = 1
    second = next(n for n in SPACE.all_partitions() if owners[n] != owners[first])
    dests = {first: [0, second, 0, 5], second: [first, 0, 0]}
    ids: dict[int, list[str]] = {}
    for origin, targets in dests.items():
        ids[origin] = []
        for i, dest in enumerate(targets):
            fields: Any = {"p": dest, "k": f"k-{origin}-{i}", "v": f"v-{origin}-{i}"}
            added: Any = await cluster_client.xadd(keys.forwards(SPACE, origin), fields)
            ids[origin].append(added.decode())
    relays = {n: ForwardOutbox(cluster_client, SPACE, n, f"worker-{n}") for n in dests}
    sent: list[tuple[int, bytes, bytes, dict[str, bytes]]] = []

    async def publish(
        partition: int, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> Any:
        sent.append((partition, key, value, dict(headers)))
        return asyncio.sleep(0)

    for n, relay in relays.items():
        assert await relay.hold()
        assert not await ForwardOutbox(cluster_client, SPACE, n, "intruder").hold()
        assert await relay.cursor() == START
        assert await forward_relay.publish_round(relay, publish, 100) == len(dests[n])
        assert await relay.cursor() == ids[n][-1]
        assert await relay.pending() == 0, "published entries leave the stream"
        lease: Any = await cluster_client.get(keys.forwards_lease(SPACE, n))
        assert lease.decode().startswith(f"worker-{n}:")
    for origin, targets in dests.items():
        mine = [s for s in sent if s[3]["continuity.forward.origin"] == str(origin).encode()]
        # Destinations go concurrently; each destination's records in stream order.
        for dest in set(targets):
            assert [
                (k, h["continuity.forward.seq"].decode()) for d, k, _, h in mine if d == dest
            ] == [
                (f"k-{origin}-{i}".encode(), ids[origin][i])
                for i, d in enumerate(targets)
                if d == dest
            ]
        assert sorted(v for _, _, v, _ in mine) == sorted(
            f"v-{origin}-{i}".encode() for i in range(len(targets))
        )
    for relay in relays.values():
        await relay.release()
