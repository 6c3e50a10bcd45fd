"""Who may read and publish what (``streams/gateway/policy.py``), pure and exhaustive.

Proves: a customer reads only the session its id resolves to; a guest whose
session was merged is told to sign in, for reads and for writes; pos and
service tokens read anything; a customer publishes only its own events, links
only the guest its token names and never asserts a store, an associate, the
pos channel, a completed order or a handoff claim; a pos token publishes only
pos events of its own store (an in-store completed order included) and never
a handoff claim; a service token publishes anything. A property test checks
every combination of ids, channels, stores, associates and event types
against the rule as docs/security.md states it.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import AnyEvent
from streams.core.decode import decode
from streams.gateway.auth import Principal, Role
from streams.gateway.policy import (
    FORBIDDEN,
    SIGN_IN_REQUIRED,
    may_ingest,
    may_read,
    may_write_as,
)
from tests.support.events import event

C1 = Principal(Role.CUSTOMER, "c-1")
C1_LINKING = Principal(Role.CUSTOMER, "c-1", anon="a-1")
GUEST = Principal(Role.CUSTOMER, "a-1")
POS = Principal(Role.POS, "till-1", "s-1")
SERVICE = Principal(Role.SERVICE, "crm")


PAYLOADS: dict[str, dict[str, Any]] = {
    "browse.search": {"query": "q"},
    "cart.item_added": {"sku": "S-1", "quantity": 1, "unit_price": "9.99", "currency": "EUR"},
    "cart.cleared": {},
    "checkout.completed": {"order_id": "o-1"},
    "checkout.handoff_claimed": {},
}


def ev(channel: str = "web", type_: str = "browse.search", **ids: Any) -> AnyEvent:
    decoded = decode(orjson.dumps(event(type_, PAYLOADS[type_], channel=channel, **ids)))
    assert not hasattr(decoded, "reason"), decoded
    return decoded  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("principal", "requested", "key", "verdict"),
    [
        (C1, "c-1", "c-1", None),
        (C1, "a-1", "c-1", None),  # its own former guest id resolves to it
        (C1, "c-2", "c-2", FORBIDDEN),
        (C1, "a-2", "c-2", FORBIDDEN),  # someone else's guest, merged elsewhere
        (C1, "a-9", "a-9", FORBIDDEN),  # someone's live guest session
        (GUEST, "a-1", "a-1", None),
        (GUEST, "a-1", "c-1", SIGN_IN_REQUIRED),  # merged: the cart is a customer's now
        (GUEST, "c-1", "c-1", FORBIDDEN),
        (GUEST, "a-2", "a-2", FORBIDDEN),
        (POS, "c-1", "c-1", None),
        (POS, "a-1", "c-1", None),
        (SERVICE, "c-2", "c-2", None),
        (SERVICE, "a-1", "c-1", None),
    ],
)
def test_read_rules(principal: Principal, requested: str, key: str, verdict: str | None) -> None:
    denied = may_read(principal, requested, key)
    assert (denied.code if denied else None) == verdict
    if denied is not None:
        assert denied.message


@pytest.mark.parametrize(
    ("principal", "event_", "verdict"),
    [
        # customer tokens
        (C1, ev(customer="c-1"), None),
        (C1, ev(customer="c-1", channel="mobile_app"), None),
        (C1, ev(customer="c-1", anon="c-1"), None),
        (C1, ev(customer="c-2"), FORBIDDEN),
        (C1, ev(anon="c-1"), None),  # a guest-style event under its own key
        (C1, ev(anon="a-1"), FORBIDDEN),
        (C1, ev(customer="c-1", anon="a-1"), FORBIDDEN),  # linking a guest it does not name
        (C1, ev(customer="c-2", anon="c-1"), FORBIDDEN),
        (C1_LINKING, ev(customer="c-1", anon="a-1"), None),  # the sign-in it was issued for
        (C1_LINKING, ev(customer="c-1", anon="a-2"), FORBIDDEN),
        (C1_LINKING, ev(anon="a-1"), FORBIDDEN),  # it is not the guest's token
        # guest tokens (a customer token whose sub is an anonymous_id)
        (GUEST, ev(anon="a-1"), None),
        (GUEST, ev(anon="a-1", channel="kiosk", device_id="d-1"), None),
        (GUEST, ev(anon="a-2"), FORBIDDEN),
        (GUEST, ev(customer="c-1", anon="a-1"), FORBIDDEN),  # a guest cannot claim an account
        (GUEST, ev(customer="c-1"), FORBIDDEN),
        # what only a store or the platform asserts
        (C1, ev(customer="c-1", channel="pos"), FORBIDDEN),
        (C1, ev(customer="c-1", channel="pos", store_id="s-1"), FORBIDDEN),
        (C1, ev(customer="c-1", channel="kiosk", store_id="s-1"), FORBIDDEN),
        (C1, ev(customer="c-1", store_id="s-1"), FORBIDDEN),
        (C1, ev(customer="c-1", channel="call_center", associate_id="agent-7"), FORBIDDEN),
        (C1, ev(customer="c-1", channel="kiosk", device_id="kiosk-3"), None),
        (C1, ev(customer="c-1", type_="cart.item_added"), None),  # prices are advisory
        (C1, ev(customer="c-1", type_="checkout.completed"), FORBIDDEN),
        (GUEST, ev(anon="a-1", type_="checkout.completed"), FORBIDDEN),
        (
            C1,
            ev(customer="c-1", channel="pos", store_id="s-1", type_="checkout.handoff_claimed"),
            FORBIDDEN,
        ),
        # pos tokens
        (POS, ev(customer="c-1", channel="pos", store_id="s-1"), None),
        # Linking a guest to a customer would let a till take over any session.
        (POS, ev(customer="c-7", anon="a-7", channel="pos", store_id="s-1"), FORBIDDEN),
        (POS, ev(customer="c-7", anon="c-7", channel="pos", store_id="s-1"), None),
        (POS, ev(anon="a-3", channel="pos", store_id="s-1"), None),
        (POS, ev(customer="c-1", channel="pos", store_id="s-2"), FORBIDDEN),
        (POS, ev(customer="c-1", channel="pos"), FORBIDDEN),
        (POS, ev(customer="c-1", channel="web", store_id="s-1"), FORBIDDEN),
        (POS, ev(customer="c-1", channel="kiosk", store_id="s-1"), FORBIDDEN),
        (POS, ev(customer="c-1", channel="pos", store_id="s-1", associate_id="ann"), None),
        # A till checks out the resumed cart: an in-store order of its own store.
        (POS, ev(customer="c-1", channel="pos", store_id="s-1", type_="checkout.completed"), None),
        (
            POS,
            ev(customer="c-1", channel="pos", store_id="s-2", type_="checkout.completed"),
            FORBIDDEN,
        ),
        # The claim route publishes the claim, after the shopper's code; never posted.
        (
            POS,
            ev(customer="c-1", channel="pos", store_id="s-1", type_="checkout.handoff_claimed"),
            FORBIDDEN,
        ),
        # service tokens
        (SERVICE, ev(customer="c-9"), None),
        (SERVICE, ev(customer="c-9", anon="a-9", channel="call_center"), None),
        (SERVICE, ev(anon="a-9", channel="pos", store_id="s-5"), None),
        (SERVICE, ev(customer="c-9", type_="checkout.completed"), None),
        (SERVICE, ev(customer="c-9", channel="call_center", associate_id="agent-7"), None),
        (
            SERVICE,
            ev(customer="c-9", channel="pos", store_id="s-5", type_="checkout.handoff_claimed"),
            None,
        ),
    ],
)
def test_ingest_rules(principal: Principal, event_: AnyEvent, verdict: str | None) -> None:
    denied = may_ingest(principal, event_)
    assert (denied.code if denied else None) == verdict
    if denied is not None:
        assert denied.message


def test_only_a_service_token_undoes_a_merge() -> None:
    unmerge = decode(
        orjson.dumps(
            event(
                "session.unmerged",
                {"anonymous_id": "a-1"},
                customer="c-1",
                channel="pos",
                store_id="s-1",
            )
        )
    )
    assert not hasattr(unmerge, "reason"), unmerge
    for principal in (C1, C1_LINKING, POS):
        denied = may_ingest(principal, unmerge)  # type: ignore[arg-type]
        assert denied is not None
        assert denied.code == FORBIDDEN
    assert may_ingest(SERVICE, unmerge) is None  # type: ignore[arg-type]


ids = st.sampled_from(["c-1", "c-2", "a-1", "a-2"])
maybe_ids = st.one_of(st.none(), ids)
channels = st.sampled_from(["web", "mobile_app", "pos", "kiosk", "call_center"])
stores = st.one_of(st.none(), st.sampled_from(["s-1", "s-2"]))
associates = st.one_of(st.none(), st.just("ann"))
types = st.sampled_from(sorted(PAYLOADS))
STORE_ONLY_TYPES = {"checkout.completed", "checkout.handoff_claimed"}


@given(
    sub=ids,
    anon_claim=maybe_ids,
    customer=maybe_ids,
    anon=maybe_ids,
    channel=channels,
    store=stores,
    associate=associates,
    type_=types,
)
def test_every_combination_follows_the_stated_rule(
    sub: str,
    anon_claim: str | None,
    customer: str | None,
    anon: str | None,
    channel: str,
    store: str | None,
    associate: str | None,
    type_: str,
) -> None:
    if customer is None and anon is None:
        return  # not an event under the wire contract
    if type_ == "checkout.handoff_claimed" and (channel != "pos" or store is None):
        return  # likewise
    extra = {k: v for k, v in (("store_id", store), ("associate_id", associate)) if v}
    e = ev(channel=channel, type_=type_, customer=customer, anon=anon, **extra)
    principal = Principal(Role.CUSTOMER, sub, anon=anon_claim)
    if customer is not None:
        own = customer == sub and anon in (None, sub, anon_claim)
    else:
        own = anon == sub
    # A device asserts none of a store's fields, and no order or claim.
    device_may = channel != "pos" and store is None and associate is None
    allowed = own and device_may and type_ not in STORE_ONLY_TYPES
    assert (may_ingest(principal, e) is None) == allowed
    links = customer is not None and anon is not None and anon != customer
    pos_allowed = (
        channel == "pos" and store == "s-1" and not links and type_ != "checkout.handoff_claimed"
    )
    assert (may_ingest(POS, e) is None) == pos_allowed
    assert may_ingest(SERVICE, e) is None


@pytest.mark.parametrize(
    ("principal", "merged_into", "verdict"),
    [
        (GUEST, None, None),  # a live guest writes its own session
        (GUEST, "c-1", SIGN_IN_REQUIRED),  # signed in since: its writes would reach c-1
        (C1, None, None),
        (C1_LINKING, None, None),
        (POS, "c-1", None),  # only customer tokens act as their sub
        (SERVICE, "c-1", None),
    ],
)
def test_a_merged_guest_token_may_not_write(
    principal: Principal, merged_into: str | None, verdict: str | None
) -> None:
    denied = may_write_as(principal, merged_into)
    assert (denied.code if denied else None) == verdict
    if denied is not None:
        assert "sign in" in denied.message


@given(sub=ids, requested=ids, key=ids)
def test_a_customer_reads_exactly_the_key_it_is(sub: str, requested: str, key: str) -> None:
    denied = may_read(Principal(Role.CUSTOMER, sub), requested, key)
    assert (denied is None) == (key == sub)
    assert may_read(POS, requested, key) is None
    assert may_read(SERVICE, requested, key) is None
