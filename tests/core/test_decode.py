"""Raw bytes -> event or a documented reason; never an exception. Pure, no processes."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import CartItemAdded
from schemas.topics import BROWSE_EVENTS, CART_EVENTS, CHECKOUT_EVENTS, topic_for
from streams.core.decode import MAX_EVENT_BYTES, decode
from streams.core.fold import Reason, Rejected
from streams.kafka.publish import prepare
from tests.support.pure import add, ev

GOOD = ev("cart.item_added", add("A-1", 2, "19.99"), customer="c-1", event_id="e-1")


def variant(**changes: Any) -> bytes:
    out = dict(GOOD)
    for k, v in changes.items():
        if k == "payload":
            out["payload"] = {**GOOD["payload"], **v}
        elif v is None:
            out.pop(k)
        else:
            out[k] = v
    return orjson.dumps(out)


def test_a_valid_event_decodes_to_its_model() -> None:
    event = decode(orjson.dumps(GOOD))
    assert isinstance(event, CartItemAdded)
    assert str(event.payload.unit_price) == "19.99"
    assert event.routing_key == "c-1"


def test_unknown_extra_fields_are_ignored() -> None:
    assert isinstance(decode(variant(trace_id="x", payload={"colour": "red"})), CartItemAdded)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, Reason.MALFORMED_JSON),
        (b"", Reason.MALFORMED_JSON),
        (b'{"type": ', Reason.MALFORMED_JSON),
        (b"\xff\xfe not utf-8", Reason.MALFORMED_JSON),
        (b"[1, 2]", Reason.INVALID_EVENT),
        (variant(type="cart.teleported"), Reason.UNKNOWN_TYPE),
        (variant(type=None), Reason.INVALID_EVENT),
        (variant(occurred_at=None), Reason.INVALID_EVENT),
        (variant(occurred_at="2026-11-24T10:00:00"), Reason.INVALID_EVENT),  # no offset
        (variant(channel="fax"), Reason.INVALID_EVENT),
        (variant(customer_id=None), Reason.INVALID_EVENT),  # no identity at all
        (variant(customer_id="a}b"), Reason.INVALID_EVENT),  # would break the hash tag
        (variant(customer_id="x" * 200), Reason.INVALID_EVENT),
        (variant(payload={"quantity": -3}), Reason.INVALID_EVENT),
        (variant(payload={"quantity": 1000}), Reason.INVALID_EVENT),
        (variant(payload={"quantity": "2"}), Reason.INVALID_EVENT),  # strict ints
        (variant(payload={"unit_price": 19.99}), Reason.INVALID_EVENT),  # floats lose cents
        (variant(payload={"unit_price": "-1"}), Reason.INVALID_EVENT),
        (variant(payload={"currency": "EURO"}), Reason.INVALID_EVENT),
        (variant(payload={"currency": "XYZ"}), Reason.INVALID_EVENT),
        (variant(payload={"name": "x" * (MAX_EVENT_BYTES + 1)}), Reason.OVERSIZED),
    ],
)
def test_bad_input_is_rejected_with_a_reason_and_a_bounded_detail(
    raw: bytes | None, reason: Reason
) -> None:
    out = decode(raw)
    assert isinstance(out, Rejected)
    assert out.reason is reason, out.detail
    assert 0 < len(out.detail) <= 500


def test_login_needs_both_ids() -> None:
    raw = orjson.dumps(ev("session.identified", customer="c-1", event_id="l-1"))
    out = decode(raw)
    assert isinstance(out, Rejected)
    assert "anonymous_id" in out.detail


@given(st.binary(max_size=2048))
@settings(max_examples=500)
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    out = decode(raw)
    assert isinstance(out, Rejected)  # random bytes are never a valid event


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@given(st.dictionaries(st.sampled_from(sorted(GOOD)), json_values, max_size=8), json_values)
@settings(max_examples=500)
def test_arbitrary_json_in_the_envelope_never_raises(
    overrides: dict[str, Any], payload: Any
) -> None:
    # The stdlib encoder, because orjson refuses integers wider than 64 bits: such
    # numbers still reach the worker from other producers.
    out = decode(json.dumps({**GOOD, **overrides, "payload": payload}).encode())
    assert isinstance(out, CartItemAdded | Rejected)


def test_deeply_nested_json_is_rejected_not_a_crash() -> None:
    out = decode(b'{"payload": ' + b"[" * 5000 + b"]" * 5000 + b"}")
    assert isinstance(out, Rejected)


@pytest.mark.parametrize(
    ("type_", "topic"),
    [
        ("cart.item_added", CART_EVENTS),
        ("session.identified", CART_EVENTS),
        ("browse.search", BROWSE_EVENTS),
        ("checkout.completed", CHECKOUT_EVENTS),
    ],
)
def test_events_are_routed_by_type_and_keyed_by_customer(type_: str, topic: str) -> None:
    assert topic_for(type_) == topic
    guest = prepare(orjson.dumps({**GOOD, "customer_id": None, "anonymous_id": "g-1"}))
    assert not isinstance(guest, Rejected)
    assert guest.key == b"g-1", "a guest's events are keyed by the anonymous id"
    both = prepare(orjson.dumps({**GOOD, "anonymous_id": "g-1"}))
    assert not isinstance(both, Rejected)
    assert both.key == b"c-1", "the customer id wins once known"


def test_a_type_outside_the_contract_has_no_topic() -> None:
    with pytest.raises(ValueError, match="no topic"):
        topic_for("order.shipped")
