"""Publishing events through a real gateway process into the shared broker.

Proves: an accepted event is in Kafka at the position the answer names, keyed
by its customer; a mixed batch is answered per event (202); a batch with
nothing valid is a 422, a batch with nothing allowed a 403; wrong media type
(415), malformed or misshapen bodies (400), too many events (400) and
oversized bodies (413, with or without a Content-Length) are refused with
JSON errors; no body whatever makes the gateway answer 500; unknown routes
and methods get JSON 404/405.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.support.events import added, event
from tests.support.gateway import Gateway, bearer, post_events
from tests.support.metrics_text import metric
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

SERVICE = bearer("service")


async def post_raw(
    http: aiohttp.ClientSession,
    gw: Gateway,
    data: Any,
    content_type: str | None = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    hdrs = {**SERVICE, **(headers or {})}
    if content_type is not None:
        hdrs["Content-Type"] = content_type
    async with http.post(f"{gw.url}/v1/events", data=data, headers=hdrs) as resp:
        body = await resp.read()
        assert resp.headers["Content-Type"].startswith("application/json"), body
        return resp.status, orjson.loads(body), resp


async def test_an_accepted_event_is_in_kafka_where_the_answer_says(
    stack: Stack, gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, _ = gateways
    c = ids("kafka")
    sent = event("cart.item_added", added("K-1", 3, "2.50"), customer=c, channel="call_center")
    status, body = await post_events(http, a, sent, SERVICE)
    assert status == 202
    (result,) = body["results"]
    assert (result["index"], result["event_id"], result["status"]) == (
        0,
        sent["event_id"],
        "accepted",
    )
    topic, partition, offset = result["position"].split(":")
    assert topic == "cart-events"
    assert body["after"] == result["position"]

    consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, int(partition))
        consumer.assign([tp])
        consumer.seek(tp, int(offset))
        record = await consumer.getone()
    finally:
        await consumer.stop()
    assert record.key == c.encode(), "keyed by the customer, like every producer"
    assert orjson.loads(record.value) == sent
    assert list(record.headers) == [("continuity-role", b"service")]


async def test_each_record_names_the_role_that_asserted_it(
    stack: Stack, gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    """Prices are advisory: a line's price is what the device or till that sent it
    showed. The record says which kind of token asserted it, for the order system."""
    a, _ = gateways
    c = ids("priced")
    cases = [
        (bearer("customer", subject=c), {}, b"customer"),
        (bearer("pos", store="s-9"), {"channel": "pos", "store_id": "s-9"}, b"pos"),
    ]
    for auth, where, role in cases:
        sent = event("cart.item_added", added("P-1", 1, "0.01"), customer=c, **where)
        status, body = await post_events(http, a, sent, auth)
        assert status == 202, body
        topic, partition, offset = body["results"][0]["position"].split(":")
        consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tp = TopicPartition(topic, int(partition))
            consumer.assign([tp])
            consumer.seek(tp, int(offset))
            record = await consumer.getone()
        finally:
            await consumer.stop()
        assert orjson.loads(record.value) == sent
        assert list(record.headers) == [("continuity-role", role)]


async def test_a_mixed_batch_is_answered_per_event(
    gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, _ = gateways
    c = ids("mixed")
    batch: list[Any] = [
        event("browse.product_viewed", {"sku": "P-1"}, customer=c),
        {"event_id": "bad-1", "type": "cart.item_added", "payload": {}},
        event("checkout.started", customer=c, channel="web"),
        {"event_id": "bad-2", "type": "cart.beamed_up"},
        [1, 2],
    ]
    before = await a.metrics()
    status, body = await post_events(http, a, batch, bearer("customer", subject=c))
    assert status == 202
    assert (body["accepted"], body["rejected"]) == (2, 3)
    statuses = [(r["index"], r["status"], r.get("reason")) for r in body["results"]]
    assert statuses == [
        (0, "accepted", None),
        (1, "rejected", "invalid_event"),
        (2, "accepted", None),
        (3, "rejected", "unknown_type"),
        (4, "rejected", "invalid_event"),
    ]
    assert body["results"][1]["event_id"] == "bad-1"
    assert body["results"][4]["event_id"] is None
    assert all(r["detail"] for r in body["results"] if r["status"] == "rejected")
    topics = {r["position"].split(":")[0] for r in body["results"] if r["status"] == "accepted"}
    assert topics == {"browse-events", "checkout-events"}
    assert len(body["after"].split(",")) == 2
    after = await a.metrics()
    for outcome, reason, n in (
        ("rejected", "invalid_event", 2),
        ("rejected", "unknown_type", 1),
        ("accepted", "", 2),
    ):
        labels = {"outcome": outcome, "reason": reason}
        was = metric(before, "continuity_ingest_events_total", **labels)
        assert metric(after, "continuity_ingest_events_total", **labels) - was == n


async def test_nothing_valid_is_a_422_and_nothing_allowed_a_403(
    gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, _ = gateways
    status, body = await post_events(
        http, a, [{"type": "cart.cleared"}, {"event_id": "x"}], SERVICE
    )
    assert (status, body["error"], body["accepted"], body["rejected"]) == (
        422,
        "no_event_accepted",
        0,
        2,
    )
    assert body["message"]
    assert [r["reason"] for r in body["results"]] == ["invalid_event", "invalid_event"]

    someone_else = event("browse.search", {"query": "q"}, customer=ids("other"))
    status, body = await post_events(http, a, [someone_else], bearer("customer", subject=ids("me")))
    assert (status, body["error"], body["results"][0]["reason"]) == (403, "forbidden", "forbidden")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b'{"event_id": "e", ', "malformed_json"),
        (b"\xff\xfe\x00", "malformed_json"),
        (b"", "malformed_json"),
        (b"NaN", "malformed_json"),
        (b"[" * 2000 + b"]" * 2000, "malformed_json"),
        (b"123456789012345678901234567890", "invalid_body"),
        (b'"just a string"', "invalid_body"),
        (b"true", "invalid_body"),
        (b"null", "invalid_body"),
        (b"[]", "empty_batch"),
    ],
)
async def test_malformed_and_misshapen_bodies_are_400(
    gateways: list[Gateway], http: aiohttp.ClientSession, data: bytes, code: str
) -> None:
    status, body, _ = await post_raw(http, gateways[0], data)
    assert (status, body["error"]) == (400, code)
    assert body["message"]


async def test_too_many_events_is_a_400(
    gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    one = {"type": "x"}
    status, body, _ = await post_raw(http, gateways[0], orjson.dumps([one] * 501))
    assert (status, body["error"], body["limit"]) == (400, "too_many_events", 500)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_anything_but_json_is_a_415(
    gateways: list[Gateway], http: aiohttp.ClientSession, content_type: str | None
) -> None:
    data = orjson.dumps(event("browse.search", {"query": "q"}, customer="c-415"))
    status, body, _ = await post_raw(http, gateways[0], data, content_type)
    assert (status, body["error"]) == (415, "unsupported_media_type")


async def test_oversized_bodies_are_a_413_with_or_without_a_length(
    gateways: list[Gateway], http: aiohttp.ClientSession
) -> None:
    padding = "x" * 1000
    big = orjson.dumps([{"type": "browse.search", "padding": padding}] * 300)
    assert len(big) > 256 * 1024
    status, body, _ = await post_raw(http, gateways[0], big)
    assert (status, body["error"], body["limit"]) == (413, "payload_too_large", 256 * 1024)
    assert "256" in body["message"] or "262144" in body["message"]

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 16 * 1024):
            yield big[i : i + 16 * 1024]

    status, body, resp = await post_raw(http, gateways[0], chunks())
    assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
    assert (status, body["error"]) == (413, "payload_too_large")


@pytest.mark.parametrize(
    "data",
    [
        b'{"event_id": "\\ud800", "type": "cart.cleared"}',
        b'{"event_id": "' + b"e" * 200 + b'", "type": "cart.cleared", "channel": "web"}',
        b'[{"__proto__": {}}, {"constructor": 1}]',
        b'{"type": "cart.item_added", "payload": {"quantity": 1e400}}',
        b'{"type": {"$gt": ""}, "event_id": ["a"], "customer_id": {"x": 1}}',
        b'{"event_id": "e\\u0000", "type": "browse.search", "channel": "web", '
        b'"customer_id": "c}{*", "occurred_at": "2026-11-24T10:00:00Z", "payload": {"query": "q"}}',
        b"\xef\xbb\xbf{}",
        b"[" + b"{}," * 400 + b"{}]",
    ],
)
async def test_no_body_makes_the_gateway_fail(
    gateways: list[Gateway], http: aiohttp.ClientSession, data: bytes
) -> None:
    status, body, _ = await post_raw(http, gateways[0], data)
    assert status in (400, 413, 422), body
    assert body["error"]


async def test_unknown_routes_and_methods_answer_json(
    gateways: list[Gateway], http: aiohttp.ClientSession
) -> None:
    a, _ = gateways
    async with http.get(f"{a.url}/v1/nothing-here") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"] == "not_found"
    async with http.get(f"{a.url}/v1/events", headers=SERVICE) as resp:
        assert resp.status == 405
        assert (await resp.json())["error"] == "method_not_allowed"
        assert "POST" in resp.headers["Allow"]
    async with http.patch(f"{a.url}/v1/sessions/c-1", headers=SERVICE) as resp:
        assert (resp.status, (await resp.json())["error"]) == (405, "method_not_allowed")
