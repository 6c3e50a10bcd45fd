"""What a commit in forward mode leaves in its partition's changelog stream, against a real
redis-server (``commit.lua``): the work in flight between partitions, for a restore.

Proves, over a login whose guest and customer live on different partitions (driven
by ``InlineForwards`` instead of the relay and the topic): the customer's entry names
the last forward it wrote (``f``) and carries its session's wait for the merge with
the record held meanwhile (``w<i>``), also while the customer has no session yet;
the guest's entry names the forward it applied (``m``) and the merge it wrote back;
the customer's entry when the merge lands clears the wait; a batch that moved
offsets without changing any key (a duplicate) still writes an entry, so the
watermark covers its offsets; a batch of records only redelivered writes none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from unittest.mock import ANY

import orjson
import pytest
from redis.asyncio import Redis

from streams.core.changelog import parse_entry, sent
from streams.core.crossing import Pending
from streams.core.plan import Kind, RecordOutcome
from streams.ops.inline_forwards import InlineForwards
from streams.store import keys
from streams.store.keys import Space
from streams.store.state import RedisState
from streams.worker.processor import BatchProcessor
from tests.support.events import added, event
from tests.support.forwards import homed
from tests.support.pure import records

pytestmark = pytest.mark.e2e

SPACE = Space("fc", 4)


async def _no_dead_letters(outcomes: Sequence[RecordOutcome]) -> None:
    raise AssertionError(outcomes)


async def _entries(client: Redis, partition: int) -> list[tuple[str, dict[bytes, bytes]]]:
    rows: Any = await client.xrange(keys.changelog(SPACE, partition))
    return [(i.decode(), dict(f)) for i, f in rows]


def _apart() -> tuple[str, str]:
    guest = "g-fc-1"
    customer = next(
        c for c in (f"c-fc-{n}" for n in range(99)) if SPACE.partition(c) != SPACE.partition(guest)
    )
    return guest, customer


async def test_a_commit_writes_its_work_in_flight_into_its_changelog_entry(client: Redis) -> None:
    guest, customer = _apart()
    home_g, home_c = SPACE.partition(guest), SPACE.partition(customer)
    processor = BatchProcessor(RedisState(client, SPACE), _no_dead_letters, forward=True)
    pump = InlineForwards(client, SPACE, processor)
    log = homed(
        records(
            [
                event("cart.item_added", added("A-1"), anon=guest),
                event("session.identified", customer=customer, anon=guest),
                event("cart.item_added", added("B-2"), customer=customer),
            ]
        ),
        SPACE,
    )
    await processor.process(log[:1])
    login = await processor.process([log[1]])
    assert [o.kind for o in login.outcomes] == [Kind.FORWARDED]
    [(_, first)] = await _entries(client, home_c)
    written: Any = await client.xrange(keys.forwards(SPACE, home_c))
    assert sent(first).last_written == written[-1][0].decode()
    _, [waiting] = parse_entry(first)
    assert (waiting.key, waiting.stored) == (customer, b""), "no session yet, yet a record"
    assert Pending.loads(waiting.waiting).held == ()
    held = await processor.process([log[2]])
    assert [o.kind for o in held.outcomes] == [Kind.HELD]
    [_, (_, second)] = await _entries(client, home_c)
    batch, [holding] = parse_entry(second)
    assert [o for o, _ in batch.values()] == [log[2].offset]
    assert len(Pending.loads(holding.waiting).held) == 1
    assert sent(second).last_written is None

    assert await pump.drain() == 2
    [*_, (_, guest_side)] = await _entries(client, home_g)
    assert sent(guest_side).forwarded == {str(home_c): written[-1][0].decode()}
    assert sent(guest_side).last_written is not None, "the merge it answered with"
    [*_, (_, landed)] = await _entries(client, home_c)
    assert set(sent(landed).forwarded) == {str(home_g)}
    _, states = parse_entry(landed)
    [merged] = [s for s in states if s.key == customer]
    assert merged.waiting == b"", "the wait ended with the merge"
    assert merged.stored

    before = len(await _entries(client, home_c))
    again = await processor.process([log[2]])
    assert [o.kind for o in again.outcomes] == [Kind.ALREADY_APPLIED]
    assert len(await _entries(client, home_c)) == before, "nothing moved: no entry"
    copy = replace(log[2], offset=log[2].offset + 1)
    duplicate = await processor.process([copy])
    assert [o.kind for o in duplicate.outcomes] == [Kind.DUPLICATE]
    [*_, (_, moved)] = await _entries(client, home_c)
    assert parse_entry(moved) == ({copy.tp: (copy.offset, ANY)}, []), "no key, yet an entry"
    assert [o for o, _ in orjson.loads(first[b"o"]).values()] == [log[1].offset]
