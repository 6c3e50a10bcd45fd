"""Reading sessions through real gateway processes, the shared broker, worker and Redis.

Proves: a write through one gateway from one channel is readable through
another gateway from another channel as soon as the ingest's ``after``
position is applied; ``min_version`` waits for the notice and then answers;
waits time out with a 200 (or 404) carrying the current version and say so;
``after`` also covers events the worker rejected (they publish no notice);
and ``after`` really blocks until a worker applies the event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import pytest

from streams.kafka.publish import Publisher
from tests.support.events import added, event
from tests.support.gateway import Gateway, bearer, post_events, read_session, start_gateway
from tests.support.metrics_text import metric
from tests.support.stack import Stack, WorkerGroup, wait_until

pytestmark = pytest.mark.e2e


async def a_read_is_waiting(gw: Gateway) -> bool:
    return metric(await gw.metrics(), "continuity_gateway_reads_waiting") > 0


async def test_a_write_from_the_phone_is_read_on_the_laptop_through_another_gateway(
    gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, b = gateways
    c = ids("rw")
    phone = bearer("customer", subject=c)
    status, body = await post_events(
        http,
        a,
        event("cart.item_added", added("JKT-1", 1, "149.90"), customer=c, channel="mobile_app"),
        phone,
    )
    assert status == 202, body

    laptop = bearer("customer", subject=c)
    status, session, headers = await read_session(http, b, c, laptop, after=body["after"])
    assert status == 200, session
    assert headers["X-Continuity-Wait"] == "satisfied"
    assert headers["X-Continuity-Version"] == "1"
    assert headers["ETag"] == f'"{c}:1"'
    assert headers["Cache-Control"] == "no-store"
    assert [(ln["sku"], ln["quantity"], ln["channel"]) for ln in session["cart"]] == [
        ("JKT-1", 1, "mobile_app")
    ]
    assert "recent_event_ids" not in session, "internal bookkeeping stays internal"

    status, body = await post_events(
        http, b, event("cart.item_added", added("SCK-2", 2, "14.95"), customer=c), laptop
    )
    assert status == 202
    status, session, headers = await read_session(http, a, c, phone, after=body["after"])
    assert (status, session["version"], session["subtotal"]) == (200, 2, "179.80")
    assert session["channels"] == ["mobile_app", "web"]


async def test_min_version_waits_for_the_next_version_then_answers(
    gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, b = gateways
    c = ids("minv")
    auth = bearer("customer", subject=c)
    status, body = await post_events(
        http, b, event("browse.search", {"query": "boots"}, customer=c), auth
    )
    assert status == 202
    status, _, _ = await read_session(http, a, c, auth, after=body["after"])
    assert status == 200

    read = asyncio.create_task(read_session(http, a, c, auth, min_version="2", wait="60"))
    await wait_until(lambda: a_read_is_waiting(a))
    assert not read.done(), "the read is waiting for version 2"
    status, _ = await post_events(
        http, b, event("browse.search", {"query": "socks"}, customer=c), auth
    )
    assert status == 202

    status, session, headers = await asyncio.wait_for(read, 90)
    assert (status, headers["X-Continuity-Wait"]) == (200, "satisfied")
    assert session["version"] >= 2
    assert session["recent_searches"][0] == "socks"


async def test_waits_time_out_with_the_current_state_and_say_so(
    gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, _ = gateways
    c = ids("timeout")
    auth = bearer("customer", subject=c)
    status, body = await post_events(
        http, a, event("browse.search", {"query": "x"}, customer=c), auth
    )
    assert status == 202
    await read_session(http, a, c, auth, after=body["after"])
    before = metric(await a.metrics(), "continuity_gateway_read_waits_total", outcome="timeout")

    status, session, headers = await read_session(http, a, c, auth, min_version="99", wait="0.3")
    assert status == 200, "a timed-out wait still answers with the current state"
    assert headers["X-Continuity-Wait"] == "timeout"
    assert headers["X-Continuity-Version"] == "1" == str(session["version"])

    far = "browse-events:0:999999999"
    status, session, headers = await read_session(http, a, c, auth, after=far, wait="0.2")
    assert (status, headers["X-Continuity-Wait"], session["version"]) == (200, "timeout", 1)

    service = bearer("service")
    status, err, headers = await read_session(
        http, a, ids("nobody"), service, min_version="1", wait="0.2"
    )
    assert (status, err["error"]) == (404, "not_found")
    assert (headers["X-Continuity-Wait"], headers["X-Continuity-Version"]) == ("timeout", "0")
    after = metric(await a.metrics(), "continuity_gateway_read_waits_total", outcome="timeout")
    assert after - before == 3


async def test_after_covers_an_event_the_worker_rejected(
    gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, _ = gateways
    c = ids("rejected")
    auth = bearer("customer", subject=c)
    # Both are valid under the contract; the second cannot fold (another currency),
    # so it is dead-lettered and publishes no notice: only the poll sees its offset.
    status, body = await post_events(
        http,
        a,
        [
            event("cart.item_added", added("A-1", 1, "5.00", "EUR"), customer=c),
            event("cart.item_added", added("B-2", 1, "5.00", "USD"), customer=c),
        ],
        auth,
    )
    assert (status, body["accepted"]) == (202, 2)
    status, session, headers = await read_session(http, a, c, auth, after=body["after"])
    assert (status, headers["X-Continuity-Wait"]) == (200, "satisfied")
    assert [ln["sku"] for ln in session["cart"]] == ["A-1"]
    assert session["version"] == 1


async def test_after_blocks_until_a_worker_applies_the_event(
    stack: Stack,
    group: WorkerGroup,
    publisher: Publisher,
    http: aiohttp.ClientSession,
    ids: Callable[[str], str],
) -> None:
    # A gateway over a state no worker folds yet (its own prefix and group).
    gw = start_gateway(
        stack, f"{group.group}-gateway", group.prefix, CONTINUITY_GATEWAY_MAX_WAIT="120"
    )
    c = ids("late")
    auth = bearer("customer", subject=c)
    status, body = await post_events(
        http, gw, event("cart.item_added", added("LATE-1"), customer=c), auth
    )
    assert status == 202

    read = asyncio.create_task(read_session(http, gw, c, auth, after=body["after"], wait="120"))
    await wait_until(lambda: a_read_is_waiting(gw))
    assert not read.done()
    group.start("w1")
    status, session, headers = await asyncio.wait_for(read, 150)
    assert (status, headers["X-Continuity-Wait"]) == (200, "satisfied")
    assert [ln["sku"] for ln in session["cart"]] == ["LATE-1"]
