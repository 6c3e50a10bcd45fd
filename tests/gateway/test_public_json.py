"""The public JSON of a stored session without pydantic (``streams/gateway/public_json.py``). Pure.

Proves: for any session, stored compressed or not, ``public_json`` gives byte
for byte what parsing it into a ``Session`` and dumping ``public()`` with
orjson gives, and its version; sessions folded from real event histories
included; a stored value missing a field added later (or carrying one the
model does not know) is read as a full parse reads it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bench.workload import typical_session_events
from schemas.events import Channel
from schemas.session import (
    CartLine,
    Checkout,
    MergedLine,
    MergeRecord,
    Session,
    Touch,
    ViewedProduct,
)
from streams.core.session_codec import decode, encode
from streams.gateway.public_json import public_json
from tests.support.pure import MemoryState, records

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
maybe_text = st.none() | texts
decimals = st.decimals(allow_nan=False, allow_infinity=False)
times = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
maybe_time = st.none() | times
channels = st.sampled_from(list(Channel))
ints = st.integers(-(2**53), 2**53)

touches = st.builds(
    Touch, channel=channels, at=times, device_id=maybe_text, store_id=maybe_text,
    associate_id=maybe_text,
)  # fmt: skip
lines = st.builds(
    CartLine, sku=texts, name=maybe_text, quantity=ints, unit_price=decimals, currency=texts,
    channel=channels, updated_at=times, price_changed_from=st.none() | decimals,
    price_changed_at=maybe_time, added_by=st.none() | touches, changed_by=st.none() | touches,
)  # fmt: skip
merges = st.builds(
    MergeRecord, at=times, anonymous_id=texts, policy=texts,
    lines=st.lists(st.builds(MergedLine, sku=texts, guest_quantity=ints,
                             customer_quantity=ints, quantity=ints), max_size=2),
    undone_at=maybe_time,
)  # fmt: skip
checkouts = st.builds(
    Checkout, status=st.sampled_from(["none", "started", "completed"]), order_id=maybe_text,
    channel=st.none() | channels, started_at=maybe_time, completed_at=maybe_time,
    based_on_version=st.none() | ints, items=st.dictionaries(texts, ints, max_size=3),
)  # fmt: skip
sessions = st.builds(
    Session, key=texts, customer_id=maybe_text, anonymous_ids=st.lists(texts, max_size=2),
    cart=st.lists(lines, max_size=3), currency=maybe_text, item_count=ints, subtotal=decimals,
    recently_viewed=st.lists(
        st.builds(ViewedProduct, sku=texts, name=maybe_text, category=maybe_text,
                  channel=channels, viewed_at=times), max_size=3),
    recent_searches=st.lists(texts, max_size=2), checkout=checkouts,
    orders=st.lists(texts, max_size=2), channels=st.lists(channels, max_size=3),
    last_channel=st.none() | channels, last_device_id=maybe_text, last_store_id=maybe_text,
    cart_path=st.lists(channels, max_size=3), set_aside=st.lists(lines, max_size=2),
    merges=st.lists(merges, max_size=2), first_touch_at=maybe_time, version=ints,
    updated_at=maybe_time, recent_event_ids=st.lists(texts, max_size=3),
)  # fmt: skip


def _expected(stored: bytes) -> tuple[bytes, int]:
    """Today's path: the stored value parsed into a ``Session``, ``public()`` dumped."""
    session = decode(stored)
    return orjson.dumps(session.public()), session.version


@settings(max_examples=300, deadline=None)
@given(sessions, st.booleans())
def test_the_public_json_is_what_a_full_parse_and_dump_gives(
    session: Session, compress: bool
) -> None:
    stored = encode(session, compress)
    assert public_json(stored) == _expected(stored)


@pytest.mark.parametrize("compress", [True, False])
def test_a_folded_session_gives_the_same_bytes(compress: bool) -> None:
    state = MemoryState()
    state.process(records(typical_session_events()))
    (session,) = state.sessions.values()
    stored = encode(session, compress)
    assert public_json(stored) == _expected(stored)
    assert b"recent_event_ids" not in public_json(stored)[0]


def test_a_session_stored_before_a_field_existed_gets_its_default() -> None:
    session = Session(key="c-1", version=3)
    doc = orjson.loads(session.model_dump_json())
    del doc["cart_path"]
    stored = orjson.dumps(doc)
    body, version = public_json(stored)
    assert (body, version) == _expected(stored)
    assert orjson.loads(body)["cart_path"] == []


def test_a_stored_field_the_model_does_not_know_is_refused_as_by_a_full_parse() -> None:
    doc = orjson.loads(Session(key="c-1", version=3).model_dump_json())
    doc["surprise"] = 1
    with pytest.raises(ValidationError, match="surprise"):
        public_json(orjson.dumps(doc))


def test_decimals_and_times_keep_their_written_form() -> None:
    line = CartLine(
        sku="A", quantity=1, unit_price=Decimal("10.50"), currency="EUR", channel=Channel.WEB,
        updated_at=datetime(2026, 11, 24, 10, 0, 0, 120000, tzinfo=UTC),
    )  # fmt: skip
    stored = encode(Session(key="c-1", cart=[line], subtotal=Decimal("1E+2"), version=9))
    assert public_json(stored) == _expected(stored)
