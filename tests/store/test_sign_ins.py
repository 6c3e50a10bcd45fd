"""A guest's sign-ins and undos in one batch, committed by Redis as by the model.

Proves, against a real redis-server: a batch in which a guest signs in to one
customer, is undone and signs in to another leaves what the in-memory model
(``tests/support/pure.py``) and the same events in separate batches leave: both
customers' link sets name the guest (what an erasure of either finds), the
guest's committed journey went to the first customer with the first merge, the
sessions are the same bytes, on a device the guard counts as shared (its sign-ins
are read without an alias too) and on one it never does; a copy of the guest's
first event sent afterwards is a duplicate (the first customer's session, read
because the guest signed in to it, remembers it); and the merged notice names
where the guest is now.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from streams.core.decode import decode as decode_event
from streams.core.fold import Limits
from streams.core.plan import Kind, Record, RecordOutcome, needs, plan_batch
from streams.core.session_codec import decode
from streams.store import keys
from streams.store.state import RedisState
from tests.support.pure import MemoryState, add, ev, records
from tests.support.stack import space

pytestmark = pytest.mark.e2e


def signed_in_undone_and_elsewhere() -> list[dict[str, Any]]:
    """A guest's add, its sign-in to c-1, the undo of it, its sign-in to c-2, the add again."""
    first = ev("cart.item_added", add("A"), anon="g-1", at="2026-11-24T10:00:00Z", event_id="add")
    return [
        first,
        ev("session.identified", customer="c-1", anon="g-1", at="2026-11-24T10:01:00Z"),
        ev(
            "session.unmerged",
            {"anonymous_id": "g-1"},
            customer="c-1",
            at="2026-11-24T10:02:00Z",
            event_id="undo",
        ),
        ev("session.identified", customer="c-2", anon="g-1", at="2026-11-24T10:03:00Z"),
        first,
    ]


async def _no_dead_letters(outcomes: Sequence[RecordOutcome]) -> None:
    raise AssertionError(outcomes)


async def stored(client: Redis, prefix: str, ids: Sequence[str]) -> dict[str, Any]:
    """What Redis holds of ``ids``: sessions, aliases, link sets and journeys."""
    out: dict[str, Any] = {"sessions": {}, "aliases": {}, "links": {}, "journeys": {}}
    for i in ids:
        blob = await client.hget(keys.session(space(prefix), i), "d")
        if blob is not None:
            out["sessions"][i] = decode(blob)
        alias = await client.get(keys.alias(space(prefix), i))
        if alias is not None:
            out["aliases"][i] = alias.decode()
        linked = await client.smembers(keys.links(space(prefix), i))
        if linked:
            out["links"][i] = {m.decode() for m in linked}
        journey = await client.zrange(keys.journey(space(prefix), i), 0, -1, withscores=True)
        if journey:
            out["journeys"][i] = {m: int(s) for m, s in journey}
    return out


async def commit(
    client: Redis, prefix: str, batches: Sequence[Sequence[Record]], limits: Limits
) -> list[RecordOutcome]:
    """Plan every key together and commit, batch by batch: the one-step path a rebuild
    takes on one primary (the workers' path across partitions is the forwards', proven
    equal to this one in tests/core/test_merge_across_partitions.py)."""
    state = RedisState(client, space(prefix))
    outcomes: list[RecordOutcome] = []
    for batch in batches:
        decoded = [decode_event(r.value) for r in batch]
        plan = plan_batch(list(batch), decoded, await state.load(needs(batch, decoded)), limits)
        assert await state.commit(plan) is None
        outcomes += plan.outcomes
    return outcomes


@pytest.mark.parametrize("customers", [1, 3], ids=["shared-device", "never-shared"])
async def test_one_batch_commits_what_the_model_and_separate_batches_do(
    client: Redis, customers: int
) -> None:
    limits = Limits(shared_device_customers=customers)
    log = records(signed_in_undone_and_elsewhere())
    batches = [log[:1], log[1:4], log[4:]]
    ids = ("g-1", "c-1", "c-2")
    pubsub = client.pubsub()
    one_space = space("one")
    await pubsub.ssubscribe(keys.updates(one_space, one_space.partition("g-1")))
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    one_batch = await commit(client, "one", batches, limits)
    apart = await commit(client, "apart", [[r] for r in log], limits)
    model = MemoryState(limits=limits)
    kinds = [o.kind for batch in batches for o in model.process(batch).outcomes]
    assert kinds == [Kind.APPLIED] * 4 + [Kind.DUPLICATE], "the add sent again applies once"
    assert [o.kind for o in one_batch] == [o.kind for o in apart] == kinds
    one = await stored(client, "one", ids)
    assert one == await stored(client, "apart", ids)
    assert one == {
        "sessions": model.sessions,
        "aliases": model.aliases,
        "links": model.links,
        "journeys": model.journeys,
    }
    assert one["links"] == {"c-1": {"g-1"}, "c-2": {"g-1"}}
    assert one["aliases"] == {"g-1": "c-2"}
    added = [m for m in one["journeys"]["c-1"] if orjson.loads(m)["event_id"] == "add"]
    assert added, "the guest's committed add went to the first customer's journey"
    # On the shared device the second sign-in leaves the guest its lines; else c-2 takes them.
    carts = {k: [line.sku for line in s.cart] for k, s in one["sessions"].items()}
    shared = customers == 1
    assert carts == ({"g-1": ["A"], "c-1": [], "c-2": []} if shared else {"c-1": [], "c-2": ["A"]})
    notices = []
    while (
        message := await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
    ) is not None:
        # The header only: a session write's notice carries its state after a line break.
        notice = orjson.loads(message["data"].partition(b"\n")[0])
        if notice["key"] == "g-1":  # the channel carries every key of g-1's partition
            notices.append(notice)
    # g-1's notices: its first version, then its merge naming where it is now (and the
    # version the undo gave it back, when the second sign-in left it its session).
    merged = {"key": "g-1", "version": None, "merged_into": "c-2"}
    back = [{"key": "g-1", "version": one["sessions"]["g-1"].version}] if shared else []
    assert notices == [{"key": "g-1", "version": 1}, merged, *back]
    await pubsub.aclose()


async def floors(client: Redis, prefix: str, ids: Sequence[str]) -> dict[str, int]:
    """The version floors Redis keeps for ``ids``."""
    out = {}
    for i in ids:
        floor = await client.get(keys.version_floor(space(prefix), i))
        if floor is not None:
            out[i] = int(floor)
    return out


async def test_a_guest_signed_in_elsewhere_keeps_no_floor_of_a_session_the_batch_ends(
    client: Redis,
) -> None:
    """g-3 signs in to c-2, then (its device now shared) to c-6; c-2's session then ends
    (the third sign-in comes 100 minutes on). Committed in one batch after the first,
    the ending must leave g-3 alone, as separate commits do: its alias leads to c-6 by
    then. The commit once ended the stored alias (still c-2) and kept c-2's version as
    g-3's floor."""
    limits = Limits(guest_ttl=20 * 60, session_ttl=40 * 60)
    at = "2026-11-24T10:{:02d}:00Z"
    log = records(
        [
            ev("session.identified", customer="c-2", anon="g-3", at=at.format(0)),
            ev("session.identified", customer="c-6", anon="g-3", at=at.format(1)),
            ev("session.identified", customer="c-2", anon="g-8", at="2026-11-24T11:40:00Z"),
        ]
    )
    ids = ("g-3", "g-8", "c-2", "c-6")
    await commit(client, "moved-one", [log[:1], log[1:]], limits)
    await commit(client, "moved-apart", [[r] for r in log], limits)
    model = MemoryState(limits=limits)
    model.process(log[:1])
    model.process(log[1:])
    one = await stored(client, "moved-one", ids)
    assert one["aliases"] == {"g-3": "c-6", "g-8": "c-2"} == model.aliases
    assert one == await stored(client, "moved-apart", ids)
    kept = await floors(client, "moved-one", ids)
    assert kept == await floors(client, "moved-apart", ids)
    assert "g-3" not in kept
    assert "g-3" not in model.floors
