"""A session's past (``?as_of=``, ``session show --as-of``) on a broker, Redis, worker and
gateway of the test's own.

Proves: events published at different moments are refolded up to a moment
between them, through HTTP (service and pos tokens) and the CLI, with the
same cart the live worker held then; a guest who signed in later is still a
guest at a moment before; a customer token gets 403, a bad or future moment
400, a moment before the first event 404, an erased customer 404 at any
moment before the erasure; a refold slower than CONTINUITY_AS_OF_TIMEOUT is a
503.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from streams.core.time_travel import iso_ms
from streams.kafka.publish import Publisher
from tests.support.events import added, event
from tests.support.gateway import Gateway, bearer, read_session
from tests.support.private_stack import PrivateStack, private_stack
from tests.support.stack import applied_through, publish
from tests.system.test_cli import run_cli

pytestmark = pytest.mark.e2e

# Apart enough that a moment between two publishes is unambiguous.
GAP = 0.4


@pytest.fixture
async def st(tmp_path: Path) -> AsyncIterator[PrivateStack]:
    async with private_stack(tmp_path) as stack:
        yield stack


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _between(pub: Publisher, st: PrivateStack, events: list[dict[str, Any]]) -> int:
    """Publish ``events``, wait until folded, and return a moment after them and before
    anything published later."""
    written = await publish(pub, events)
    await applied_through(st.state, written)
    await asyncio.sleep(GAP)
    moment = _now_ms()
    await asyncio.sleep(GAP)
    return moment


def _cart(body: dict[str, Any]) -> dict[str, int]:
    return {line["sku"]: line["quantity"] for line in body["cart"]}


async def _as_of(
    http: aiohttp.ClientSession, gw: Gateway, sid: str, headers: dict[str, str], moment: str
) -> tuple[int, Any]:
    status, body, _ = await read_session(http, gw, sid, headers, as_of=moment)
    return status, body


async def test_a_session_is_refolded_as_it_was_at_a_moment(
    st: PrivateStack, http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    c, g, other = ids("c"), ids("g"), ids("other")
    st.start_worker("w")
    gw = st.start_gateway("gw")
    service, pos = bearer("service"), bearer("pos", store="store-1")
    async with Publisher(st.bootstrap, linger_ms=1) as pub:
        await st.ready(pub)
        before = _now_ms()
        await asyncio.sleep(GAP)
        m1 = await _between(
            pub,
            st,
            [
                event("cart.item_added", added("A-1", 1, "10.00"), customer=c),
                event("cart.item_added", added("G-1", 2), anon=g, channel="mobile_app"),
                event("cart.item_added", added("X-1"), customer=other),
            ],
        )
        m2 = await _between(
            pub,
            st,
            [
                event("cart.item_added", added("A-1", 2, "12.00"), customer=c),
                event("browse.product_viewed", {"sku": "B-1"}, customer=c),
            ],
        )
        # The guest signs in only now: before, it was a guest of its own.
        m3 = await _between(
            pub,
            st,
            [
                event("session.identified", customer=c, anon=g, channel="mobile_app"),
                event("checkout.started", customer=c),
            ],
        )

    live = await st.state.get(c)
    assert live is not None
    assert {ln.sku: ln.quantity for ln in live.cart} == {"A-1": 3, "G-1": 2}

    status, body = await _as_of(http, gw, c, service, iso_ms(m1))
    assert status == 200, body
    assert _cart(body) == {"A-1": 1}
    assert body["version"] == 1
    as_of = body["as_of"]
    assert as_of["moment"] == iso_ms(m1)
    assert as_of["key"] == c
    assert as_of["records_folded"] >= 1
    assert set(as_of["upto"]) >= {"cart-events:0", "browse-events:0", "checkout-events:0"}
    assert as_of["record_time"] in ("log_append_time", "create_time")

    status, body = await _as_of(http, gw, c, pos, str(m2))
    assert status == 200, body
    assert _cart(body) == {"A-1": 3}
    line = body["cart"][0]
    assert (line["unit_price"], line["price_changed_from"]) == ("12.00", "10.00")
    assert [v["sku"] for v in body["recently_viewed"]] == ["B-1"]
    assert body["checkout"]["status"] == "none"

    # At m2 the guest had not signed in: its own cart, under its own key.
    status, body = await _as_of(http, gw, g, service, iso_ms(m2))
    assert status == 200, body
    assert (body["as_of"]["key"], body["customer_id"], _cart(body)) == (g, None, {"G-1": 2})

    status, body = await _as_of(http, gw, g, service, iso_ms(m3))
    assert status == 200, body
    assert body["as_of"]["key"] == c
    assert _cart(body) == {"A-1": 3, "G-1": 2}
    assert body["checkout"]["status"] == "started"
    assert body["version"] == live.version

    # The CLI: the same answer, progress on stderr.
    env = {**st.worker_env(), "CONTINUITY_LOG_LEVEL": "info"}
    code, out, err = await run_cli("session", "show", c, "--as-of", iso_ms(m2), env=env)
    assert code == 0, err
    shown = orjson.loads(out)
    assert _cart(shown) == {"A-1": 3}
    assert shown["as_of"]["moment"] == iso_ms(m2)
    assert "records read" in err
    code, out, err = await run_cli(
        "session", "show", g, "--as-of", iso_ms(m2), "--all-records", env=env
    )
    assert code == 0, err
    assert _cart(orjson.loads(out)) == {"G-1": 2}
    code, _, err = await run_cli("session", "show", c, "--as-of", iso_ms(before), env=env)
    assert code == 1
    assert "no session" in err
    code, _, err = await run_cli("session", "show", c, "--as-of", "soon", env=env)
    assert code == 2
    assert "ISO 8601" in err

    # Errors: the roles, the moment, nothing yet.
    status, body = await _as_of(http, gw, c, bearer("customer", subject=c), iso_ms(m2))
    assert (status, body["error"]) == (403, "forbidden")
    status, body = await _as_of(http, gw, c, service, "yesterday")
    assert (status, body["error"], body["parameter"]) == (400, "invalid_parameter", "as_of")
    status, body = await _as_of(http, gw, c, service, "2999-01-01T00:00:00Z")
    assert (status, body["parameter"]) == (400, "as_of")
    status, body, _ = await read_session(http, gw, c, service, as_of=iso_ms(m1), min_version="1")
    assert (status, body["parameter"]) == (400, "as_of")
    status, body = await _as_of(http, gw, c, service, iso_ms(before))
    assert (status, body["error"]) == (404, "not_found")

    # The live read is unchanged.
    status, body, _ = await read_session(http, gw, c, service)
    assert (status, _cart(body)) == (200, {"A-1": 3, "G-1": 2})


async def test_an_erased_customer_is_not_refolded_and_a_slow_refold_is_a_503(
    st: PrivateStack, http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    c, kept = ids("erased"), ids("kept")
    st.start_worker("w")
    gw = st.start_gateway("gw")
    service = bearer("service")
    async with Publisher(st.bootstrap, linger_ms=1) as pub:
        await st.ready(pub)
        moment = await _between(
            pub,
            st,
            [
                event("cart.item_added", added("SECRET-1"), customer=c),
                event("cart.item_added", added("KEPT-1"), customer=kept),
            ],
        )
    status, body = await _as_of(http, gw, c, service, iso_ms(moment))
    assert (status, _cart(body)) == (200, {"SECRET-1": 1})

    async with http.delete(f"{gw.url}/v1/sessions/{c}", headers=service) as resp:
        assert resp.status == 200, await resp.text()
    status, body = await _as_of(http, gw, c, service, iso_ms(moment))
    assert (status, body["error"]) == (404, "not_found")
    assert "erased" in body["message"]
    env = {**st.worker_env(), "CONTINUITY_LOG_LEVEL": "info"}
    code, out, err = await run_cli(
        "session", "show", c, "--as-of", iso_ms(moment), "--all-records", env=env
    )
    assert (code, out) == (1, "")
    assert "erased" in err

    # A refold that cannot finish in time (a customer not erased: it must be refolded).
    hurried = st.start_gateway("hurried", CONTINUITY_AS_OF_TIMEOUT="0.001")
    status, body = await _as_of(http, hurried, kept, service, iso_ms(moment))
    assert status == 503, body
    assert body["error"] == "as_of_timeout"
