"""Merge policies on login and one price per sku across channels. Pure, no processes.

Proves: ``combine`` (the default) adds quantities up, ``keep_customer`` keeps
the customer's saved cart (or takes the guest's when it has none),
``keep_newest`` keeps the cart of the side active last, ``higher_quantity``
keeps the higher quantity of a sku on both sides; every merge with a guest cart
is recorded sku by sku; every line keeps who added it and who last changed it
(channel, device, store, associate), through merges; whatever a policy does
not keep is reported as dropped (counted in the merge metric); a later price
for a line already in the cart wins and is flagged on the line, also when a
merge meets one sku at two prices; a cart never mixes currencies.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from streams.core.decode import decode
from streams.core.fold import Limits, MergePolicy
from streams.core.plan import Kind, Record, plan_batch
from tests.support.pure import MemoryState, add, ev, records

C, G = "c-1", "g-1"


def at(minute: int) -> str:
    return f"2026-11-24T10:{minute:02d}:00Z"


def login_after(customer_first: bool) -> list[dict[str, object]]:
    """A customer cart {A: 1, B: 1} and a guest cart {A: 2, C: 1}, then the login."""
    mine = [
        ev("cart.item_added", add("A", 1), customer=C, at=at(0), event_id="c1"),
        ev("cart.item_added", add("B", 1), customer=C, at=at(1), event_id="c2"),
    ]
    theirs = [
        ev("cart.item_added", add("A", 2), anon=G, channel="mobile_app", at=at(2), event_id="g1"),
        ev("cart.item_added", add("C", 1), anon=G, channel="mobile_app", at=at(3), event_id="g2"),
    ]
    if not customer_first:
        # The customer's cart is the newer one.
        mine = [{**e, "occurred_at": at(10 + i)} for i, e in enumerate(mine)]
    login = ev("session.identified", customer=C, anon=G, at=at(20), event_id="login")
    return [*theirs, *mine, login]


def merged(policy: MergePolicy, customer_first: bool = True) -> tuple[dict[str, int], int]:
    recs: list[Record] = records(login_after(customer_first))
    state = MemoryState()
    plan = plan_batch(
        recs, [decode(r.value) for r in recs], state.snapshot(), Limits(merge_policy=policy)
    )
    state.apply(plan)
    cart = {ln.sku: ln.quantity for ln in state.sessions[C].cart}
    return cart, len(plan.dropped_lines)


@pytest.mark.parametrize(
    ("policy", "customer_first", "cart", "dropped"),
    [
        (MergePolicy.COMBINE, True, {"A": 3, "B": 1, "C": 1}, 0),
        (MergePolicy.KEEP_CUSTOMER, True, {"A": 1, "B": 1}, 2),
        (MergePolicy.KEEP_CUSTOMER, False, {"A": 1, "B": 1}, 2),
        (MergePolicy.KEEP_NEWEST, True, {"A": 2, "C": 1}, 2),
        (MergePolicy.KEEP_NEWEST, False, {"A": 1, "B": 1}, 2),
        (MergePolicy.HIGHER_QUANTITY, True, {"A": 2, "B": 1, "C": 1}, 0),
        (MergePolicy.HIGHER_QUANTITY, False, {"A": 2, "B": 1, "C": 1}, 0),
        (MergePolicy.KEEP_SEPARATE, True, {"A": 1, "B": 1}, 0),
        (MergePolicy.KEEP_SEPARATE, False, {"A": 1, "B": 1}, 0),
    ],
)
def test_each_policy_keeps_what_it_says(
    policy: MergePolicy, customer_first: bool, cart: dict[str, int], dropped: int
) -> None:
    assert merged(policy, customer_first) == (cart, dropped)


def test_keep_separate_sets_the_guest_lines_aside_until_the_customer_takes_them() -> None:
    take = ev("cart.item_added", add("C", 1), customer=C, at=at(30), event_id="take-c")
    recs: list[Record] = records([*login_after(customer_first=True), take])
    state = MemoryState()
    limits = Limits(merge_policy=MergePolicy.KEEP_SEPARATE)
    login_plan = plan_batch(
        recs[:-1], [decode(r.value) for r in recs[:-1]], state.snapshot(), limits
    )
    state.apply(login_plan)
    session = state.sessions[C]
    assert {ln.sku: ln.quantity for ln in session.set_aside} == {"A": 2, "C": 1}
    assert session.subtotal == Decimal("20.00"), "set-aside lines are not in the cart"
    assert login_plan.dropped_lines == [], "nothing is lost"
    state.apply(plan_batch(recs[-1:], [decode(recs[-1].value)], state.snapshot(), limits))
    session = state.sessions[C]
    assert {ln.sku: ln.quantity for ln in session.cart} == {"A": 1, "B": 1, "C": 1}
    assert [ln.sku for ln in session.set_aside] == ["A"], "C was taken over"


@pytest.mark.parametrize("policy", list(MergePolicy))
def test_every_merge_with_a_guest_cart_is_recorded_line_by_line(policy: MergePolicy) -> None:
    recs: list[Record] = records(login_after(customer_first=True))
    state = MemoryState()
    state.apply(
        plan_batch(
            recs, [decode(r.value) for r in recs], state.snapshot(), Limits(merge_policy=policy)
        )
    )
    session = state.sessions[C]
    (record,) = session.merges
    assert (record.anonymous_id, record.policy, record.at.minute) == (G, policy.value, 20)
    kept = {ln.sku: ln.quantity for ln in session.cart}
    assert {
        ln.sku: (ln.guest_quantity, ln.customer_quantity, ln.quantity) for ln in record.lines
    } == {
        "A": (2, 1, kept.get("A", 0)),
        "B": (0, 1, kept.get("B", 0)),
        "C": (1, 0, kept.get("C", 0)),
    }


def test_every_line_says_where_and_by_whom_it_was_added_and_last_changed() -> None:
    state = MemoryState()
    state.process(
        records(
            [
                ev(
                    "cart.item_added",
                    add("A", 1),
                    anon=G,
                    channel="pos",
                    at=at(0),
                    event_id="e1",
                    store_id="s-12",
                    associate_id="assoc-7",
                ),
                ev(
                    "cart.item_added",
                    add("A", 1),
                    customer=C,
                    channel="mobile_app",
                    at=at(3),
                    event_id="e2",
                    device_id="phone-1",
                ),
                ev("session.identified", customer=C, anon=G, at=at(5), event_id="login"),
                ev(
                    "cart.quantity_set",
                    {"sku": "A", "quantity": 4},
                    customer=C,
                    channel="call_center",
                    at=at(9),
                    event_id="e3",
                    associate_id="agent-2",
                ),
            ]
        )
    )
    (line,) = state.sessions[C].cart
    assert line.added_by is not None
    assert line.changed_by is not None
    # The merge keeps the first add (the assisted one in store 12); the change is the agent's.
    assert (line.added_by.channel, line.added_by.store_id, line.added_by.associate_id) == (
        "pos",
        "s-12",
        "assoc-7",
    )
    assert (line.changed_by.channel, line.changed_by.associate_id) == ("call_center", "agent-2")
    assert line.quantity == 4


@pytest.mark.parametrize("policy", list(MergePolicy))
def test_a_customer_without_a_cart_takes_the_guest_cart_under_every_policy(
    policy: MergePolicy,
) -> None:
    recs = records(
        [
            ev("cart.item_added", add("A", 2), anon=G, at=at(0), event_id="g1"),
            ev("browse.search", {"query": "x"}, customer=C, at=at(5), event_id="c1"),
            ev("session.identified", customer=C, anon=G, at=at(6), event_id="login"),
        ]
    )
    state = MemoryState()
    plan = plan_batch(
        recs, [decode(r.value) for r in recs], state.snapshot(), Limits(merge_policy=policy)
    )
    state.apply(plan)
    assert {ln.sku: ln.quantity for ln in state.sessions[C].cart} == {"A": 2}
    assert plan.dropped_lines == []


def test_the_latest_price_wins_and_the_change_is_flagged() -> None:
    state = MemoryState()
    state.process(
        records(
            [
                ev("cart.item_added", add("A", 1, "10.00"), customer=C, at=at(0), event_id="e1"),
                ev(
                    "cart.item_added",
                    add("A", 1, "8.50"),
                    customer=C,
                    channel="pos",
                    at=at(5),
                    event_id="e2",
                ),
                ev("cart.item_added", add("A", 1, "8.50"), customer=C, at=at(6), event_id="e3"),
            ]
        )
    )
    (line,) = state.sessions[C].cart
    assert (line.quantity, line.unit_price) == (3, Decimal("8.50"))
    assert line.price_changed_from == Decimal("10.00"), "the same price again keeps the flag"
    assert line.price_changed_at is not None
    assert line.price_changed_at.minute == 5
    assert state.sessions[C].subtotal == Decimal("25.50")


def test_a_line_never_repriced_carries_no_flag() -> None:
    state = MemoryState()
    state.process(records([ev("cart.item_added", add("A"), customer=C, event_id="e1")]))
    assert state.sessions[C].cart[0].price_changed_from is None


def test_a_merge_meeting_two_prices_for_one_sku_keeps_the_newer_flagged() -> None:
    recs = records(
        [
            ev("cart.item_added", add("A", 1, "10.00"), customer=C, at=at(0), event_id="c1"),
            ev("cart.item_added", add("A", 1, "7.00"), anon=G, at=at(3), event_id="g1"),
            ev("session.identified", customer=C, anon=G, at=at(4), event_id="login"),
        ]
    )
    state = MemoryState()
    state.process(recs)
    (line,) = state.sessions[C].cart
    assert (line.quantity, line.unit_price, line.price_changed_from) == (
        2,
        Decimal("7.00"),
        Decimal("10.00"),
    )


def test_a_second_currency_is_dead_lettered_not_mixed_in() -> None:
    state = MemoryState()
    plan = state.process(
        records(
            [
                ev("cart.item_added", add("A", 1, "10.00", "EUR"), customer=C, event_id="e1"),
                ev("cart.item_added", add("B", 1, "10.00", "USD"), customer=C, event_id="e2"),
            ]
        )
    )
    assert [o.kind for o in plan.outcomes] == [Kind.APPLIED, Kind.REJECTED]
    assert plan.outcomes[1].reason is not None
    assert plan.outcomes[1].reason.value == "currency_mismatch"
    assert {ln.currency for ln in state.sessions[C].cart} == {"EUR"}
