"""Identity merge on login, and the batch planner's routing around it. Pure, no processes."""

from __future__ import annotations

from schemas.session import Session
from streams.core.decode import decode
from streams.core.fold import Limits
from streams.core.merge import merge_guest
from streams.core.plan import Kind, plan_batch
from tests.support.pure import MemoryState, add, ev, records

C, G = "c-1", "g-1"


def at(minute: int) -> str:
    return f"2026-11-24T10:{minute:02d}:00Z"


def cart(session: Session) -> dict[str, int]:
    return {ln.sku: ln.quantity for ln in session.cart}


def fold_all(*events: dict[str, object]) -> MemoryState:
    state = MemoryState()
    state.process(records(list(events)))
    return state


def test_login_combines_quantities_and_unions_history() -> None:
    state = fold_all(
        ev("cart.item_added", add("A", 1), customer=C, at=at(0), event_id="c1"),
        ev("browse.search", {"query": "boots"}, customer=C, at=at(1), event_id="c2"),
        ev(
            "cart.item_added",
            add("A", 2, "9.00"),
            anon=G,
            channel="mobile_app",
            at=at(2),
            event_id="g1",
        ),
        ev("cart.item_added", add("B", 1), anon=G, channel="mobile_app", at=at(3), event_id="g2"),
        ev(
            "browse.product_viewed", {"sku": "B"}, anon=G, channel="social", at=at(4), event_id="g3"
        ),
        ev("session.identified", customer=C, anon=G, at=at(5), event_id="login"),
    )
    assert set(state.sessions) == {C}, "the guest key is gone"
    s = state.sessions[C]
    assert cart(s) == {"A": 3, "B": 1}
    assert str(next(ln.unit_price for ln in s.cart if ln.sku == "A")) == "9.00", "newer price"
    assert s.anonymous_ids == [G]
    assert [c.value for c in s.channels] == ["web", "mobile_app", "social"]
    assert [v.sku for v in s.recently_viewed] == ["B"]
    assert s.recent_searches == ["boots"]
    assert {"c1", "g1", "g2", "g3", "login"} <= set(s.recent_event_ids)
    # max(customer 2, guest 3) + 1 for the merge + 1 for the login event itself
    assert s.version == 5
    assert state.aliases == {G: C}


def test_guest_events_after_login_follow_the_alias_and_stay_idempotent() -> None:
    guest_add = ev("cart.item_added", add("A", 1), anon=G, at=at(0), event_id="g1")
    state = fold_all(
        guest_add,
        ev("session.identified", customer=C, anon=G, at=at(1), event_id="login"),
        ev("cart.item_added", add("B", 1), anon=G, channel="kiosk", at=at(2), event_id="g2"),
        guest_add,  # the pre-login event delivered again, at a new offset
    )
    assert set(state.sessions) == {C}
    assert cart(state.sessions[C]) == {"A": 1, "B": 1}


def test_a_second_login_of_the_same_pair_merges_nothing_again() -> None:
    state = fold_all(
        ev("cart.item_added", add("A", 2), anon=G, at=at(0), event_id="g1"),
        ev("session.identified", customer=C, anon=G, at=at(1), event_id="l1"),
        ev("session.identified", customer=C, anon=G, at=at(2), event_id="l2"),
    )
    assert cart(state.sessions[C]) == {"A": 2}
    assert state.sessions[C].version == 4, "guest 1, merge 1, login 1, second login 1"


def test_login_with_no_guest_session_only_links_the_id() -> None:
    state = fold_all(ev("session.identified", customer=C, anon=G, at=at(0), event_id="l1"))
    s = state.sessions[C]
    assert (s.cart, s.anonymous_ids, s.version) == ([], [G], 2)
    assert state.aliases == {G: C}


def test_quantities_are_capped_at_the_line_maximum() -> None:
    state = fold_all(
        ev("cart.item_added", add("A", 600), customer=C, at=at(0), event_id="c1"),
        ev("cart.item_added", add("A", 600), anon=G, at=at(1), event_id="g1"),
        ev("session.identified", customer=C, anon=G, at=at(2), event_id="login"),
    )
    assert cart(state.sessions[C]) == {"A": 999}


def test_carts_in_two_currencies_keep_the_newer_and_report_the_other() -> None:
    customer = fold_all(
        ev("cart.item_added", add("A", 1, currency="EUR"), customer=C, at=at(0), event_id="c1")
    ).sessions[C]
    guest = fold_all(
        ev("cart.item_added", add("B", 2, currency="USD"), anon=G, at=at(5), event_id="g1")
    ).sessions[G]
    merged = merge_guest(customer, guest, C, G, Limits())
    assert cart(merged.session) == {"B": 2}
    assert merged.session.currency == "USD"
    assert [ln.sku for ln in merged.dropped] == ["A"]

    older_guest = guest.model_copy(update={"updated_at": customer.updated_at})
    kept = merge_guest(customer, older_guest, C, G, Limits())
    assert cart(kept.session) == {"A": 1}, "a tie keeps the customer's cart"


def test_lines_beyond_the_cart_limit_are_dropped_not_lost_silently() -> None:
    customer = fold_all(
        ev("cart.item_added", add("A"), customer=C, event_id="c1"),
        ev("cart.item_added", add("B"), customer=C, event_id="c2"),
    ).sessions[C]
    guest = fold_all(ev("cart.item_added", add("Z"), anon=G, event_id="g1")).sessions[G]
    merged = merge_guest(customer, guest, C, G, Limits(max_cart_lines=2))
    assert cart(merged.session) == {"A": 1, "B": 1}
    assert [ln.sku for ln in merged.dropped] == ["Z"]


def test_planner_reports_each_records_fate_and_what_it_assumed() -> None:
    state = MemoryState()
    batch = records(
        [
            ev("cart.item_added", add("A"), anon=G, event_id="g1"),
            b"{not json",
            ev("session.identified", customer=C, anon=G, event_id="login"),
            ev("cart.item_added", add("A"), anon=G, event_id="g1"),
        ]
    )
    plan = state.process(batch)
    assert [o.kind for o in plan.outcomes] == [
        Kind.APPLIED,
        Kind.REJECTED,
        Kind.APPLIED,
        Kind.DUPLICATE,
    ]
    assert plan.offsets == {"cart-events:0": 3}, "rejected records advance the offset too"
    assert plan.deletes == {G: C}
    assert plan.expected_aliases == {G: None}
    assert plan.expected_offsets == {"cart-events:0": -1}

    again = state.process(batch)
    assert {o.kind for o in again.outcomes} == {Kind.ALREADY_APPLIED}
    assert not again.writes


def test_a_login_planned_before_the_guests_first_event_commits_is_refused() -> None:
    """Two workers: the guest's partition and the customer's are folded concurrently.

    Worker B plans the login while no guest session exists; worker A then commits
    the guest's first event. B's plan assumed the guest absent, so its commit must
    be refused (and re-planned), or the guest's cart would be orphaned.
    """
    state = MemoryState()
    login = records([ev("session.identified", customer=C, anon=G, event_id="login")])
    stale = state.snapshot()
    state.process(records([ev("cart.item_added", add("A"), anon=G, event_id="g1")], partition=1))
    planned_on_stale = plan_batch(login, [decode(r.value) for r in login], stale)
    assert planned_on_stale.expected_versions[G] == 0, "the absent guest is an assumption"
    assert state.sessions[G].version != planned_on_stale.expected_versions[G]
    state.process(login)  # re-planned on fresh state, as the worker does after a conflict
    assert set(state.sessions) == {C}
    assert cart(state.sessions[C]) == {"A": 1}


def test_a_rejection_depends_on_what_the_planner_saw() -> None:
    state = MemoryState()
    batch = records([ev("cart.quantity_set", {"sku": "A", "quantity": 2}, customer=C)])
    plan = state.process(batch)
    assert plan.rejected
    assert plan.expected_versions == {C: 0}, "a rejection is re-judged if the cart changed"
