"""Ingest request bodies and per-event verdicts (``body.py``, ``ingest.py``), pure.

Proves: only ``application/json`` is read; malformed JSON, non-event shapes,
empty and oversized batches are 400s with their own codes; every element is
judged on its own by the worker's decoder and the token's rules; an answer is
202 when anything was accepted (with a position per accepted event and an
``after`` token covering them), 403 when everything was forbidden, else 422.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas.topics import BROWSE_EVENTS, CART_EVENTS
from streams.gateway.auth import Principal, Role
from streams.gateway.body import check_media_type, parse_batch
from streams.gateway.errors import ApiError
from streams.gateway.ingest import Accepted, Refused, answer, triage
from streams.gateway.params import Position
from tests.support.events import added, event

C1 = Principal(Role.CUSTOMER, "c-1")


def code_of(raw: bytes, max_events: int = 3) -> tuple[int, str]:
    with pytest.raises(ApiError) as info:
        parse_batch(raw, max_events)
    return info.value.status, info.value.code


def test_only_json_is_read() -> None:
    check_media_type("application/json")
    check_media_type("Application/JSON")
    for other in ("text/plain", "application/x-www-form-urlencoded", "", "application/jsonl"):
        with pytest.raises(ApiError) as info:
            check_media_type(other)
        assert (info.value.status, info.value.code) == (415, "unsupported_media_type")


def test_body_shapes() -> None:
    one = event("browse.search", {"query": "q"}, customer="c-1")
    assert parse_batch(orjson.dumps(one), 3) == [one]
    assert parse_batch(orjson.dumps([one, one]), 3) == [one, one]
    assert parse_batch(b"[1, null]", 3) == [1, None], "elements are judged later, one by one"
    assert code_of(b'{"type": ') == (400, "malformed_json")
    assert code_of(b"\xff\xfe") == (400, "malformed_json")
    assert code_of(b"") == (400, "malformed_json")
    assert code_of(b"[" * 5000 + b"]" * 5000) == (400, "malformed_json")
    assert code_of(b'"an event"') == (400, "invalid_body")
    assert code_of(b"42") == (400, "invalid_body")
    assert code_of(b"null") == (400, "invalid_body")
    assert code_of(b"[]") == (400, "empty_batch")
    assert code_of(orjson.dumps([one] * 4)) == (400, "too_many_events")


def test_each_event_is_judged_on_its_own() -> None:
    items: list[Any] = [
        event("cart.item_added", added("A-1"), customer="c-1", channel="mobile_app"),
        event("browse.search", {"query": "q"}, customer="c-2"),
        {"event_id": "e-3", "type": "cart.teleported"},
        {"event_id": "e-4", "type": "cart.item_added", "payload": {}},
        "not an event",
        event("browse.search", {"query": "q"}, anon="c-1"),
    ]
    verdicts = triage(items, C1)
    assert [type(v).__name__ for v in verdicts] == [
        "Accepted",
        "Refused",
        "Refused",
        "Refused",
        "Refused",
        "Accepted",
    ]
    first = verdicts[0]
    assert isinstance(first, Accepted)
    assert (first.topic, first.key) == (CART_EVENTS, b"c-1")
    assert orjson.loads(first.value) == items[0], "the event is published as sent"
    last = verdicts[5]
    assert isinstance(last, Accepted)
    assert (last.topic, last.key) == (BROWSE_EVENTS, b"c-1")
    reasons = [(v.event_id, v.reason) for v in verdicts if isinstance(v, Refused)]
    assert reasons == [
        (items[1]["event_id"], "forbidden"),
        ("e-3", "unknown_type"),
        ("e-4", "invalid_event"),
        (None, "invalid_event"),
    ]


def test_an_oversized_event_is_refused_like_the_worker_would() -> None:
    big = event("browse.search", {"query": "q"}, customer="c-1", padding="x" * 70_000)
    (verdict,) = triage([big], C1)
    assert isinstance(verdict, Refused)
    assert verdict.reason == "oversized"


def test_answers() -> None:
    ok = Accepted(0, "e-0", CART_EVENTS, b"c-1", b"{}")
    ok2 = Accepted(2, "e-2", CART_EVENTS, b"c-1", b"{}")
    no = Refused(1, "e-1", "invalid_event", "payload: field required")
    forbidden = Refused(0, "e-9", "forbidden", "not yours")
    where = {0: Position(CART_EVENTS, 3, 10), 2: Position(CART_EVENTS, 3, 11)}

    status, body = answer([ok, no, ok2], where)
    assert status == 202
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert body["after"] == "cart-events:3:11"
    assert body["results"][0] == {
        "index": 0,
        "event_id": "e-0",
        "status": "accepted",
        "position": "cart-events:3:10",
    }
    assert body["results"][1] == {
        "index": 1,
        "event_id": "e-1",
        "status": "rejected",
        "reason": "invalid_event",
        "detail": "payload: field required",
    }
    assert "error" not in body

    status, body = answer([no], {})
    assert (status, body["error"], body["accepted"]) == (422, "no_event_accepted", 0)
    status, body = answer([forbidden], {})
    assert (status, body["error"]) == (403, "forbidden")
    status, body = answer([forbidden, no], {})
    assert status == 422, "forbidden only when every event was forbidden"
