"""The forwards outbox against a real redis-server: lease, read in order, advance.

Proves: entries come back in stream order after the cursor (``0-0`` before
anything was published), each with its destination partition, key and value
bytes, and an entry that is no forward record is reported, not raised; the
holder's advance stores the cursor and trims the stream up to it in one step;
a relay without the lease cannot take it while it is held, and its advance
changes nothing; once the lease expired another relay takes it, and the old
holder's advance is refused. A rebuild's in-process delivery waits out the
lease a killed worker left, and refuses (``OutboxBusy``) one a relay renews.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from schemas.topics import SESSION_FORWARDS
from streams.core.plan import Kind
from streams.ops.inline_forwards import InlineForwards, OutboxBusy
from streams.store import keys
from streams.store.forwards import START, ForwardEntry, ForwardOutbox, Unreadable, parse_entry
from streams.store.keys import Space
from streams.store.state import RedisState
from streams.worker.processor import BatchProcessor
from tests.support.forwards import homed
from tests.support.pure import add, ev
from tests.support.pure import records as records_of

pytestmark = pytest.mark.e2e

SPACE = Space("fw", 4)


async def _append(redis: Redis, origin: int, destination: int, key: str, value: bytes) -> str:
    """A forward record as the commit appends it; its id."""
    fields: Any = {"p": destination, "k": key, "v": value}
    return str((await redis.xadd(keys.forwards(SPACE, origin), fields)).decode())


async def test_the_holder_reads_in_order_and_advance_moves_the_cursor_and_trims(
    client: Redis,
) -> None:
    ids = [await _append(client, 1, n % 4, f"c-{n}", f"v{n}".encode()) for n in range(5)]
    outbox = ForwardOutbox(client, SPACE, 1, "worker-a")
    assert await outbox.hold()
    assert await outbox.cursor() == START
    entries = await outbox.read(START, 3)
    assert entries == [
        ForwardEntry(ids[n], n % 4, f"c-{n}".encode(), f"v{n}".encode()) for n in range(3)
    ]

    assert await outbox.advance(ids[2])
    assert await outbox.cursor() == ids[2]
    assert await outbox.pending() == 2, "entries up to the cursor left the stream"
    rest = await outbox.read(await outbox.cursor(), 10)
    assert [e.id for e in rest] == ids[3:]
    # The lease names its holder; the cursor and the lease are the partition's own keys.
    lease: Any = await client.get(keys.forwards_lease(SPACE, 1))
    assert lease.decode().startswith("worker-a:")
    assert await client.get(keys.forwards_cursor(SPACE, 1)) == ids[2].encode()
    await outbox.release()
    assert await client.get(keys.forwards_lease(SPACE, 1)) is None


async def test_a_relay_without_the_lease_changes_nothing(client: Redis) -> None:
    last = [await _append(client, 2, 0, f"c-{n}", b"x") for n in range(3)][-1]
    holder = ForwardOutbox(client, SPACE, 2, "worker-a")
    other = ForwardOutbox(client, SPACE, 2, "worker-b")
    assert await holder.hold()
    assert not await other.hold()
    assert not await other.advance(last), "never held: no token to advance with"
    # A token of its own, but not the lease's: the script refuses it.
    other.lease.local.token = other.token.encode()
    assert not await other.advance(last)
    assert await holder.cursor() == START
    assert await holder.pending() == 3


async def test_an_expired_lease_moves_to_another_relay_and_the_old_holder_is_refused(
    client: Redis,
) -> None:
    first = await _append(client, 3, 1, "c-1", b"one")
    second = await _append(client, 3, 1, "c-2", b"two")
    old = ForwardOutbox(client, SPACE, 3, "worker-a", lease_seconds=0.3)
    new = ForwardOutbox(client, SPACE, 3, "worker-b", lease_seconds=10)
    assert await old.hold()
    assert not await new.hold()
    await asyncio.sleep(0.5)  # the old holder stalls past its lease
    assert await new.hold()
    assert not await old.advance(second), "the lease is the new holder's"
    assert await old.cursor() == START
    assert await new.advance(first)
    assert [e.id for e in await new.read(await new.cursor(), 10)] == [second]
    assert not await old.hold(), "it is held again"


def test_an_entry_that_is_no_forward_record_is_reported() -> None:
    good = parse_entry("1-0", {b"p": b"3", b"k": b"c-1", b"v": b"{}"}, 4)
    assert good == ForwardEntry("1-0", 3, b"c-1", b"{}")
    for fields in (
        {b"k": b"c-1", b"v": b"{}"},
        {b"p": b"x", b"k": b"c-1", b"v": b"{}"},
        {b"p": b"4", b"k": b"c-1", b"v": b"{}"},
        {b"p": b"1", b"v": b"{}"},
    ):
        assert isinstance(parse_entry("2-0", fields, 4), Unreadable), fields


def test_a_partition_outside_the_space_is_refused(client: Redis) -> None:
    with pytest.raises(ValueError, match="partition 4"):
        ForwardOutbox(client, SPACE, 4)


async def test_another_deployments_forwards_are_skipped(client: Redis) -> None:
    """Two key prefixes folding the same topics (a rebuild beside the live state, a
    blue/green switch) share ``session-forwards``: a forward the blue relay sent is
    skipped by green's worker (its position taken, nothing changed)."""
    blue, green = Space("blue", 4), Space("green", 4)
    guest, customer = "g-1", "c-1"
    while blue.partition(guest) == blue.partition(customer):
        customer += "x"

    async def fail(_: object) -> None:
        raise AssertionError("nothing here is dead-lettered")

    folding = BatchProcessor(RedisState(client, blue), fail, forward=True)
    other = BatchProcessor(RedisState(client, green), fail, forward=True)
    records = homed(
        records_of(
            [
                ev("cart.item_added", add("A-1"), anon=guest),
                ev("session.identified", customer=customer, anon=guest),
            ]
        ),
        blue,
    )
    for record in records:
        await folding.process([record])
    astray = InlineForwards(client, blue, other, sender="blue")
    assert await astray.drain() == 1, "blue's login forward, handed to green's worker"
    (skipped,) = [o for plan in astray.plans for o in plan.outcomes]
    assert (skipped.kind, skipped.detail) == (Kind.ALREADY_APPLIED, "another deployment's forward")
    assert await RedisState(client, green).applied_offsets() == {
        f"{SESSION_FORWARDS}:{blue.partition(guest)}": 0
    }
    assert await client.keys("green:*:s:*") == []
    # Blue's customer still waits for that merge: it is blue's, not green's, to finish
    # (blue's own forwards fold: every other test's pump names its own prefix).
    assert await client.hlen(keys.waiting(blue, blue.partition(customer))) == 1


async def test_a_rebuild_waits_out_a_dead_holders_lease_and_refuses_a_live_one(
    client: Redis,
) -> None:
    space = Space("wait", 4)

    async def fail(_: object) -> None:
        raise AssertionError("nothing here is dead-lettered")

    rebuild = InlineForwards(
        client, space, BatchProcessor(RedisState(client, space), fail), lease_seconds=1.0
    )
    # A worker killed while it held partition 2's lease: nobody renews it.
    assert await ForwardOutbox(client, space, 2, "killed", lease_seconds=1.0).hold()
    assert await rebuild.drain() == 0, "delivered once the lease ran out"
    assert await client.get(keys.forwards_lease(space, 2)) is None, "and released"

    live = ForwardOutbox(client, space, 3, "running", lease_seconds=1.0)

    async def renew() -> None:
        while True:
            assert await live.hold()
            await asyncio.sleep(0.2)

    renewing = asyncio.create_task(renew())
    try:
        with pytest.raises(OutboxBusy, match="partition 3"):
            await rebuild.drain()
    finally:
        renewing.cancel()
