"""The notification outbox against a real redis-server: sweep, claim, acknowledge.

Proves: two sweeps racing claim each due cart once, each into its own
partition's outbox, and a cart not yet due stays armed; a relay serves every
partition's outbox and counts each entry's KPIs in its own partition's hash,
and a read waiting for new entries finds one written meanwhile; an entry whose
relay died unacknowledged is claimed by another relay, and when both
acknowledge it the KPIs count it once; the relay turns
entries into wire notifications and publishes before acknowledging; a relay
whose publish failed reads its own entries again on its very next read, while
a dead relay's entries are claimed only once idle ``claim_after_ms`` (thresholds
set from the idle time Redis reports, never from a clock here); ``run_relay``
retries a failed round on its own with a claim time of an hour.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from schemas.session import CartLine, Session
from streams.store import keys
from streams.store.keys import Space
from streams.store.outbox import Entry, Outbox
from streams.worker.relay import relay_once, run_relay

pytestmark = pytest.mark.e2e

HOUR_MS = 3_600_000
SPACE = Space("t", 4)


def _session(key: str, version: int) -> bytes:
    line = CartLine(
        sku="A-1",
        quantity=2,
        unit_price="5.00",  # type: ignore[arg-type]
        currency="EUR",
        channel="mobile_app",  # type: ignore[arg-type]
        updated_at="2026-11-24T10:00:00Z",  # type: ignore[arg-type]
    )
    session = Session(
        key=key,
        customer_id=key,
        cart=[line],
        currency="EUR",
        item_count=2,
        subtotal="10.00",  # type: ignore[arg-type]
        cart_path=["mobile_app"],  # type: ignore[list-item]
        last_channel="mobile_app",  # type: ignore[arg-type]
        version=version,
        updated_at="2026-11-24T10:00:00Z",  # type: ignore[arg-type]
    )
    return session.model_dump_json().encode()


def _outbox(redis: Redis, consumer: str, claim_after_ms: int = 30_000) -> Outbox:
    return Outbox(redis, SPACE, consumer, claim_after_ms)


async def _arm(redis: Redis, key: str, version: int, deadline_ms: int) -> None:
    """A cart with items and its abandonment deadline, as the commit leaves them."""
    await redis.hset(keys.session(SPACE, key), mapping={"v": version, "d": _session(key, version)})
    await redis.zadd(keys.abandonment(SPACE, SPACE.partition(key)), {key: deadline_ms})


def _stream(key: str) -> str:
    """The outbox stream of ``key``'s partition."""
    return keys.outbox(SPACE, SPACE.partition(key))


async def _lengths(redis: Redis) -> dict[int, int]:
    """Entries in each partition's outbox stream (absent streams counted 0)."""
    return {n: int(await redis.xlen(keys.outbox(SPACE, n))) for n in SPACE.all_partitions()}


async def _kpis(redis: Redis) -> dict[int, dict[Any, Any]]:
    """Each partition's KPI hash, the empty ones left out."""
    out = {n: await redis.hgetall(keys.kpis(SPACE, n)) for n in SPACE.all_partitions()}
    return {n: h for n, h in out.items() if h}


async def test_racing_sweeps_claim_each_due_cart_once(client: Redis) -> None:
    for n in range(50):
        await _arm(client, f"c{n}", 3, 1_000)
    await _arm(client, "later", 1, 5_000)
    a, b = _outbox(client, "a"), _outbox(client, "b")
    claimed = await asyncio.gather(*(o.sweep(2_000, limit=3) for o in (a, b) for _ in range(10)))
    assert sum(claimed) == 50
    homes = Counter(SPACE.partition(f"c{n}") for n in range(50))
    assert len(homes) == SPACE.partitions, "the carts spread over every partition"
    assert await _lengths(client) == {n: homes[n] for n in SPACE.all_partitions()}
    timers = {n: keys.abandonment(SPACE, n) for n in SPACE.all_partitions()}
    left = {n: await client.zrange(name, 0, -1) for n, name in timers.items()}
    assert {n: k for n, k in left.items() if k} == {SPACE.partition("later"): [b"later"]}


async def test_a_stalled_entry_is_reclaimed_and_its_kpis_count_once(client: Redis) -> None:
    await _arm(client, "c", 4, 1_000)
    dead, alive = _outbox(client, "dead", claim_after_ms=0), _outbox(client, "alive", 0)
    await dead.ensure_group()
    await alive.ensure_group()  # a second relay finds the group there
    assert await dead.sweep(2_000) == 1
    (entry,) = await dead.read(10, 100)  # read, then the relay dies before acknowledging

    published: list[tuple[str, dict[str, Any]]] = []

    async def publish(key: str, value: bytes) -> Any:
        published.append((key, orjson.loads(value)))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    assert await relay_once(alive, publish, 10, 100) == 1
    ((key, note),) = published
    assert key == "c"
    assert note["type"] == "cart.abandoned"
    assert note["notification_id"] == "abandoned:c:4"
    assert (note["item_count"], note["subtotal"], note["cart_path"]) == (2, "10.00", ["mobile_app"])
    # The dead relay comes back and acknowledges what it had read: nothing counts twice.
    assert await dead.ack([(entry, {"abandoned:mobile_app": 1})]) == [False]
    assert await _kpis(client) == {
        SPACE.partition("c"): {b"abandoned:mobile_app": b"1", b"abandoned_path:mobile_app": b"1"}
    }
    assert await client.xlen(_stream("c")) == 0
    assert await alive.pending() == 0
    assert await relay_once(alive, publish, 10, 50) == 0


async def test_an_unreadable_entry_is_acknowledged_not_retried_forever(client: Redis) -> None:
    relay = _outbox(client, "r")
    await relay.ensure_group()
    await client.xadd(keys.outbox(SPACE, 2), {"junk": "1"})
    sent: list[str] = []

    async def publish(key: str, value: bytes) -> Any:
        sent.append(key)
        return asyncio.sleep(0)

    assert await relay_once(relay, publish, 10, 100) == 1
    assert sent == []
    assert await relay.pending() == 0


class Kafka:
    """A stand-in for the producer: while ``down``, every publish's acknowledgement
    fails, as Kafka's does when the broker cannot be reached."""

    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.acked: list[str] = []  # notification ids, in acknowledgement order
        self.failed: list[str] = []

    async def publish(self, key: str, value: bytes) -> Any:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        note_id = orjson.loads(value)["notification_id"]
        if self.down:
            self.failed.append(note_id)
            done.set_exception(ConnectionError("broker unreachable"))
        else:
            self.acked.append(note_id)
            done.set_result(None)
        return done


async def _idle_ms(redis: Redis, entry: Entry) -> int:
    """How long (ms) Redis says the pending entry has waited since it was last read."""
    stream = keys.outbox(SPACE, entry.partition)
    (row,) = await redis.xpending_range(stream, "relay", entry.id, entry.id, 1)
    return int(row["time_since_delivered"])


async def test_own_failed_entries_are_read_again_at_once_dead_ones_after_claim_time(
    client: Redis,
) -> None:
    await _arm(client, "gone", 2, 1_000)
    dead, live = _outbox(client, "dead", HOUR_MS), _outbox(client, "live", HOUR_MS)
    await dead.ensure_group()
    assert await dead.sweep(2_000) == 1
    (stalled,) = await dead.read(10, 50)  # read, then this relay dies
    await _arm(client, "mine", 3, 1_000)
    assert await live.sweep(2_000) == 1

    kafka = Kafka(down=True)
    with pytest.raises(ConnectionError):
        await relay_once(live, kafka.publish, 10, 50)
    assert kafka.failed == ["abandoned:mine:3"]
    kafka.down = False
    # The very next round publishes it again: its own entry, no idle time to wait.
    assert await relay_once(live, kafka.publish, 10, 50) == 1
    assert kafka.acked == ["abandoned:mine:3"]
    # The dead relay's entry stays its own: idle for less than the claim time.
    assert await relay_once(live, kafka.publish, 10, 50) == 0
    idle = await _idle_ms(client, stalled)
    assert await _outbox(client, "live", idle + HOUR_MS).read(10, 50) == []
    gone = _stream("gone")
    assert (await client.xpending(gone, "relay"))["consumers"] == [{"name": b"dead", "pending": 1}]
    # Idle for the claim time (Redis's own count, so only ever longer): claimed.
    due = _outbox(client, "live", max(1, idle))
    assert await relay_once(due, kafka.publish, 10, 50) == 1
    assert kafka.acked == ["abandoned:mine:3", "abandoned:gone:2"]
    counted = await _kpis(client)
    assert sum(int(h[b"abandoned:mobile_app"]) for h in counted.values()) == 2
    assert set(counted) == {SPACE.partition("gone"), SPACE.partition("mine")}
    assert sum((await _lengths(client)).values()) == 0
    assert (await client.xpending(gone, "relay"))["pending"] == 0


async def test_run_relay_retries_its_failed_round_without_a_claim(client: Redis) -> None:
    for n in range(5):
        await _arm(client, f"c{n}", 1, 1_000)
    kafka = Kafka(down=True)
    relay = asyncio.create_task(
        run_relay(_outbox(client, "r", HOUR_MS), kafka.publish, sweep_interval=0.05)
    )
    try:
        async with asyncio.timeout(30):
            while len(kafka.failed) < 15:  # three rounds of the five failed, backing off
                await asyncio.sleep(0.01)
            kafka.down = False
            while sum((await _lengths(client)).values()):  # until every entry is acknowledged
                await asyncio.sleep(0.01)
    finally:
        await _stop(relay)
    assert set(kafka.acked) == {f"abandoned:c{n}:1" for n in range(5)}
    assert set(kafka.failed) == set(kafka.acked)
    counted = await _kpis(client)
    assert sum(int(h[b"abandoned:mobile_app"]) for h in counted.values()) == 5
    for n in SPACE.all_partitions():
        assert (await client.xpending(keys.outbox(SPACE, n), "relay"))["pending"] == 0


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` until it ends: redis-py swallows a cancellation that lands
    as a command starts, and the relay would go on."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)


async def test_an_own_entry_deleted_while_pending_leaves_the_pending_list(
    client: Redis,
) -> None:
    relay = _outbox(client, "r", HOUR_MS)
    await relay.ensure_group()
    stream = keys.outbox(SPACE, 3)
    await client.xadd(stream, {"junk": "1"})
    (entry,) = await relay.read(10, 50)
    assert entry.partition == 3
    await client.xdel(stream, entry.id)
    assert await relay.read(10, 50) == []
    assert (await client.xpending(stream, "relay"))["pending"] == 0


async def test_one_relay_serves_every_partition_and_counts_kpis_in_each(client: Redis) -> None:
    carts = [f"c{n}" for n in range(20)]
    for key in carts:
        await _arm(client, key, 1, 1_000)
    relay = _outbox(client, "r", HOUR_MS)
    await relay.ensure_group()
    assert await relay.sweep(2_000) == len(carts)
    kafka = Kafka()
    assert await relay_once(relay, kafka.publish, 50, 50) == len(carts)
    assert sorted(kafka.acked) == sorted(f"abandoned:{k}:1" for k in carts)
    homes = Counter(SPACE.partition(k) for k in carts)
    assert len(homes) > 1, "the carts spread over partitions"
    # Each acknowledgement counted in the partition the entry was in, nowhere else.
    counted = await _kpis(client)
    assert {n: int(h[b"abandoned:mobile_app"]) for n, h in counted.items()} == dict(homes)
    assert await relay.pending() == 0


async def test_a_read_finds_an_entry_written_while_it_waits(client: Redis) -> None:
    relay = _outbox(client, "r", HOUR_MS)
    await relay.ensure_group()
    waiting = asyncio.create_task(relay.read(10, 5_000))
    await asyncio.sleep(0.2)
    assert not waiting.done(), "nothing to read yet: the read waits"
    await client.xadd(keys.outbox(SPACE, 1), {"junk": "1"})
    async with asyncio.timeout(2):
        (entry,) = await waiting
    assert (entry.partition, dict(entry.fields)) == (1, {b"junk": b"1"})
