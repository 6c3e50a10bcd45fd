"""The fold, rule by rule: one event applied to one session. Pure, no processes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from schemas.session import Session
from streams.core.fold import Applied, Duplicate, Limits, Reason, Rejected, fold, new_session
from tests.support.pure import add, ev, model

C = "c-1"


def run(*events: dict[str, Any], limits: Limits | None = None) -> Session:
    """Fold ``events`` in order into a fresh session; every one must apply."""
    session = new_session(C, C)
    for e in events:
        outcome = fold(session, model(e), limits or Limits())
        assert isinstance(outcome, Applied), outcome
        session = outcome.session
    return session


def last_outcome(*events: dict[str, Any], limits: Limits | None = None) -> object:
    """Fold all but the last event (which must apply), return the last one's outcome."""
    session = run(*events[:-1], limits=limits)
    return fold(session, model(events[-1]), limits or Limits())


def at(minute: int) -> str:
    return f"2026-11-24T10:{minute:02d}:00Z"


def cart(session: Session) -> dict[str, int]:
    return {ln.sku: ln.quantity for ln in session.cart}


def test_item_added_creates_a_line_with_price_currency_and_channel() -> None:
    s = run(
        ev(
            "cart.item_added",
            {**add("A", 2, "19.99"), "name": "Jacket"},
            customer=C,
            channel="mobile_app",
        )
    )
    (line,) = s.cart
    assert (line.sku, line.name, line.quantity, line.unit_price, line.currency) == (
        "A",
        "Jacket",
        2,
        Decimal("19.99"),
        "EUR",
    )
    assert line.channel == "mobile_app"
    assert (s.item_count, s.subtotal, s.currency) == (2, Decimal("39.98"), "EUR")


def test_adding_the_same_sku_combines_quantities_and_the_latest_price_wins() -> None:
    s = run(
        ev(
            "cart.item_added",
            {**add("A", 1, "10.00"), "name": "Cap"},
            customer=C,
            at=at(0),
            event_id="e1",
        ),
        ev(
            "cart.item_added",
            add("A", 2, "8.00"),
            customer=C,
            channel="pos",
            at=at(1),
            event_id="e2",
        ),
    )
    (line,) = s.cart
    assert (line.quantity, line.unit_price, line.name, line.channel) == (
        3,
        Decimal("8.00"),
        "Cap",
        "pos",
    ), "the name survives an add without one; the channel is the last to touch the line"
    assert s.subtotal == Decimal("24.00")


def test_subtotal_is_exact_decimal_arithmetic() -> None:
    s = run(
        ev("cart.item_added", add("A", 3, "0.10"), customer=C, event_id="e1"),
        ev("cart.item_added", add("B", 1, "0.20"), customer=C, event_id="e2"),
    )
    assert s.subtotal == Decimal("0.50")
    assert s.public()["subtotal"] == "0.50", "served as a string, never a float"


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        (
            [
                ev("cart.item_added", add("A", 1, currency="EUR"), customer=C, event_id="e1"),
                ev("cart.item_added", add("B", 1, currency="USD"), customer=C, event_id="e2"),
            ],
            Reason.CURRENCY_MISMATCH,
        ),
        (
            [
                ev("cart.item_added", add("A", 900), customer=C, event_id="e1"),
                ev("cart.item_added", add("A", 100), customer=C, event_id="e2"),
            ],
            Reason.QUANTITY_LIMIT,
        ),
        (
            [ev("cart.quantity_set", {"sku": "Z", "quantity": 2}, customer=C)],
            Reason.LINE_NOT_IN_CART,
        ),
    ],
    ids=["currency_mismatch", "quantity_limit", "line_not_in_cart"],
)
def test_events_the_cart_cannot_take_are_rejected_with_their_reason(
    events: list[dict[str, Any]], reason: Reason
) -> None:
    outcome = last_outcome(*events)
    assert isinstance(outcome, Rejected)
    assert outcome.reason is reason
    assert outcome.detail


def test_a_full_cart_rejects_a_new_line_but_still_takes_more_of_an_existing_one() -> None:
    limits = Limits(max_cart_lines=2)
    full = [
        ev("cart.item_added", add("A"), customer=C, event_id="e1"),
        ev("cart.item_added", add("B"), customer=C, event_id="e2"),
    ]
    rejected = last_outcome(
        *full, ev("cart.item_added", add("C"), customer=C, event_id="e3"), limits=limits
    )
    assert isinstance(rejected, Rejected)
    assert rejected.reason is Reason.CART_FULL
    more = last_outcome(
        *full, ev("cart.item_added", add("A"), customer=C, event_id="e4"), limits=limits
    )
    assert isinstance(more, Applied)


def test_quantity_set_changes_a_line_and_zero_removes_it() -> None:
    base = [
        ev("cart.item_added", add("A", 1), customer=C, event_id="e1"),
        ev("cart.item_added", add("B", 1), customer=C, event_id="e2"),
    ]
    s = run(*base, ev("cart.quantity_set", {"sku": "A", "quantity": 5}, customer=C, event_id="e3"))
    assert cart(s) == {"A": 5, "B": 1}
    s = run(*base, ev("cart.quantity_set", {"sku": "A", "quantity": 0}, customer=C, event_id="e3"))
    assert cart(s) == {"B": 1}


def test_remove_and_clear_empty_the_cart_and_free_its_currency() -> None:
    s = run(
        ev("cart.item_added", add("A", 1, currency="GBP"), customer=C, event_id="e1"),
        ev("cart.item_removed", {"sku": "A"}, customer=C, event_id="e2"),
    )
    assert (s.cart, s.currency, s.item_count, s.subtotal) == ([], None, 0, Decimal(0))
    s = run(
        ev("cart.item_added", add("A", 1), customer=C, event_id="e1"),
        ev("cart.cleared", customer=C, event_id="e2"),
        ev("cart.item_added", add("B", 1, currency="USD"), customer=C, event_id="e3"),
    )
    assert cart(s) == {"B": 1}
    assert s.currency == "USD", "an emptied cart may start again in another currency"


def test_recently_viewed_is_newest_first_unique_and_bounded() -> None:
    limits = Limits(recently_viewed=3)
    views = [
        ev("browse.product_viewed", {"sku": sku}, customer=C, at=at(i), event_id=f"v{i}")
        for i, sku in enumerate(["A", "B", "C", "A", "D"])
    ]
    s = run(*views, limits=limits)
    assert [v.sku for v in s.recently_viewed] == ["D", "A", "C"]


def test_searches_are_newest_first_and_bounded() -> None:
    searches = [
        ev("browse.search", {"query": f"q{i}"}, customer=C, event_id=f"s{i}") for i in range(4)
    ]
    s = run(*searches, limits=Limits(recent_searches=2))
    assert s.recent_searches == ["q3", "q2"]


def test_every_applied_event_raises_the_version_and_records_where_it_came_from() -> None:
    s = run(
        ev(
            "browse.search",
            {"query": "boots"},
            customer=C,
            channel="social",
            at=at(5),
            event_id="e1",
        ),
        ev(
            "cart.item_added",
            add("A"),
            customer=C,
            channel="pos",
            at=at(2),
            event_id="e2",
            store_id="store-7",
            device_id="till-3",
        ),
        ev(
            "browse.search",
            {"query": "socks"},
            customer=C,
            channel="social",
            at=at(3),
            event_id="e3",
        ),
    )
    assert s.version == 3
    assert [c.value for c in s.channels] == ["social", "pos"], "first-seen order, no repeats"
    assert s.last_channel == "social"
    assert (s.last_store_id, s.last_device_id) == ("store-7", "till-3"), "kept until replaced"
    assert s.updated_at is not None
    assert s.updated_at.isoformat() == "2026-11-24T10:05:00+00:00", "newest occurred_at, no clock"


def test_the_same_event_id_applies_once() -> None:
    e = ev("cart.item_added", add("A"), customer=C, event_id="same")
    outcome = last_outcome(e, e)
    assert isinstance(outcome, Duplicate)


def test_checkout_completed_removes_what_the_start_saw_and_keeps_what_came_later() -> None:
    s = run(
        ev("cart.item_added", add("A", 2), customer=C, at=at(0), event_id="e1"),
        ev("checkout.started", customer=C, channel="pos", at=at(1), event_id="e2"),
        ev(
            "cart.item_added",
            add("A", 1),
            customer=C,
            channel="mobile_app",
            at=at(2),
            event_id="e3",
        ),
        ev(
            "cart.item_added",
            add("B", 1),
            customer=C,
            channel="mobile_app",
            at=at(2),
            event_id="e4",
        ),
        ev(
            "checkout.completed",
            {"order_id": "o-1"},
            customer=C,
            channel="pos",
            at=at(3),
            event_id="e5",
        ),
    )
    assert cart(s) == {"A": 1, "B": 1}, "two A were paid for; the third and B stay"
    assert (s.checkout.status, s.checkout.order_id, s.orders) == ("completed", "o-1", ["o-1"])
    assert s.checkout.based_on_version == 1


def test_completion_seen_before_its_start_judges_lines_by_time() -> None:
    # Topics have no order between them: the completion may arrive with no start seen.
    s = run(
        ev("cart.item_added", add("A", 1), customer=C, at=at(0), event_id="e1"),
        ev("cart.item_added", add("B", 1), customer=C, at=at(9), event_id="e2"),
        ev("checkout.completed", {"order_id": "o-1"}, customer=C, at=at(5), event_id="e3"),
    )
    assert cart(s) == {"B": 1}, "A was in the cart before the order; B came after it"


def test_a_repeated_order_id_is_a_duplicate() -> None:
    outcome = last_outcome(
        ev("cart.item_added", add("A", 1), customer=C, event_id="e1"),
        ev("checkout.completed", {"order_id": "o-1"}, customer=C, event_id="e2"),
        ev("checkout.completed", {"order_id": "o-1"}, customer=C, event_id="e3"),
    )
    assert isinstance(outcome, Duplicate)


def test_the_dedup_window_is_bounded() -> None:
    limits = Limits(dedup_window=2)
    s = run(
        *(ev("browse.search", {"query": "q"}, customer=C, event_id=f"e{i}") for i in range(3)),
        limits=limits,
    )
    assert s.recent_event_ids == ["e1", "e2"]
    assert "recent_event_ids" not in s.public()
