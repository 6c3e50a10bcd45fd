"""The benchmark's one-type mixes, the plain GET+SET agent's fold, and the profile's
categories. Pure: no broker, no Redis.

Proves: the cart mix is only ``cart.item_added`` of members, the browse mix only
views, both valid under the wire contract and order-independent (the oracle's
projection is the same in every delivery order it tries); the ``shop`` mix is
unchanged by the option; ``getset``'s document counts every event; and
``bench.profile`` puts the stacks of a batch's partition tasks in the agent's
categories (they run in a task group, without the agent's frame) and the relays'
in their own.
"""

from __future__ import annotations

from collections import Counter

import pytest

from bench.expect import expect
from bench.profile import (
    COMMIT_CALL,
    FOLD,
    LOAD_PARSE,
    RELAY_CHANGELOG,
    RELAY_FORWARDS,
    classify,
    parse_stack,
)
from bench.runners.getset import folded
from bench.workload import WorkloadSpec, generate, self_check


@pytest.mark.parametrize(
    ("mix", "etype"), [("cart", "cart.item_added"), ("browse", "browse.product_viewed")]
)
def test_a_one_type_mix_is_that_type_only_of_members(mix: str, etype: str) -> None:
    workload = generate(WorkloadSpec(events=2_000, customers=200, seed=3, mix=mix))
    self_check(workload)
    assert {e["type"] for e in workload.events} == {etype}
    assert all(e.get("customer_id") and "anonymous_id" not in e for e in workload.events)
    assert len({e["customer_id"] for e in workload.events}) == 200
    expected = expect(workload, orders=3)
    assert len(expected.orders_tried) == 3


def test_the_shop_mix_is_the_default() -> None:
    spec = WorkloadSpec(events=500, customers=50, seed=5)
    assert spec.mix == "shop"
    assert generate(spec).events == generate(WorkloadSpec(500, 50, 5, mix="shop")).events
    with pytest.raises(ValueError, match="mix must be one of"):
        WorkloadSpec(events=500, customers=50, mix="nope")


def test_getset_counts_every_event_and_adds_cart_lines() -> None:
    doc: dict[str, object] = {}
    events = generate(WorkloadSpec(events=250, customers=1, seed=2, mix="cart")).events
    for e in events:
        doc = folded(doc, e)
    assert doc["n"] == 250
    lines = doc["cart"]
    assert isinstance(lines, dict)
    want: Counter[str] = Counter()
    for e in events:
        want[e["payload"]["sku"]] += e["payload"]["quantity"]
    assert lines == dict(want)


def _stack(*frames: str) -> str:
    return "thread (1): MainThread;" + ";".join(frames) + " 3"


TASK = "Handle._run (asyncio/events.py:80)"


@pytest.mark.parametrize(
    ("frames", "category"),
    [
        (
            (
                TASK,
                "BatchProcessor._process_partition (streams/worker/processor.py:250)",
                "plan_batch (streams/core/plan.py:10)",
            ),
            FOLD,
        ),
        (
            (
                TASK,
                "BatchProcessor._process_partition (streams/worker/processor.py:250)",
                "_timed (streams/worker/processor.py:290)",
                "RedisState.load (streams/store/state.py:100)",
                "BaseModel.model_validate_json (pydantic/main.py:1)",
            ),
            LOAD_PARSE,
        ),
        (
            (
                TASK,
                "BatchProcessor._process_partition (streams/worker/processor.py:250)",
                "RedisState.commit (streams/store/state.py:150)",
            ),
            COMMIT_CALL,
        ),
        (
            (
                TASK,
                "run_changelog_relay (streams/worker/changelog_relay.py:121)",
                "publish_round (streams/worker/changelog_relay.py:50)",
            ),
            RELAY_CHANGELOG,
        ),
        ((TASK, "run_forward_relay (streams/worker/forward_relay.py:109)"), RELAY_FORWARDS),
        ((TASK, "run_relay (streams/worker/relay.py:80)"), RELAY_FORWARDS),
    ],
)
def test_the_profile_puts_partition_tasks_and_relays_in_their_categories(
    frames: tuple[str, ...], category: str
) -> None:
    thread, parsed, n = parse_stack(_stack(*frames))
    assert n == 3
    assert classify(thread, parsed) == category
