"""``continuity unmerge`` end to end: its own broker, Redis and worker.

Proves: the command publishes ``session.unmerged``, waits for the worker and
reports the lines given back; the customer's and the guest's sessions in
Redis show the undo; undoing it again is refused by the fold and the command
says so (exit 1) with where to look; bad ids are exit 2.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streams.kafka.publish import Publisher
from tests.support.events import added, event
from tests.support.private_stack import PrivateStack, private_stack
from tests.support.stack import applied_through, publish

pytestmark = pytest.mark.e2e


@pytest.fixture
async def st(tmp_path: Path) -> AsyncIterator[PrivateStack]:
    async with private_stack(tmp_path) as stack:
        yield stack


async def test_an_operator_undoes_a_merge_once(st: PrivateStack) -> None:
    st.start_worker("w")
    async with Publisher(st.bootstrap, linger_ms=1) as pub:
        await st.ready(pub)
        guest = [
            event("cart.item_added", added("A-1", 2), anon="g-1", channel="mobile_app"),
            event("cart.item_added", added("B-2"), customer="c-1", channel="web"),
        ]
        await applied_through(st.state, await publish(pub, guest))
        login = [event("session.identified", {}, customer="c-1", anon="g-1")]
        await applied_through(st.state, await publish(pub, login))
    merged = await st.state.get("c-1")
    assert merged is not None
    assert {ln.sku: ln.quantity for ln in merged.cart} == {"A-1": 2, "B-2": 1}

    code, out, err = await st.cli("unmerge", "--customer", "c-1", "--guest", "g-1")
    assert code == 0, err
    assert "published session.unmerged" in out
    assert 'undone: {"A-1": 2} back to guest' in out
    customer = await st.state.get("c-1")
    assert customer is not None
    assert {ln.sku: ln.quantity for ln in customer.cart} == {"B-2": 1}
    restored = await st.state.get("g-1")
    assert restored is not None
    assert restored.key == "g-1", "the guest id no longer points at the customer"
    assert {ln.sku: ln.quantity for ln in restored.cart} == {"A-1": 2}

    code, out, err = await st.cli("unmerge", "--customer", "c-1", "--guest", "g-1")
    assert code == 1
    assert "refused by the fold" in err
    assert "nothing_to_unmerge" in err

    code, _, err = await st.cli("unmerge", "--customer", "bad id!", "--guest", "g-1")
    assert code == 2
    assert "wire contract" in err
