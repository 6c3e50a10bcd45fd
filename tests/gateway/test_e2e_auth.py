"""Every authorisation rule over HTTP, against real gateway processes.

Proves: requests without a valid token are 401 with a JSON body and a
``WWW-Authenticate`` challenge (missing, garbage, expired, foreign secret);
a token in the URL counts only on the stream route; the API's port
serves no ``/metrics`` (its KPIs are on a listener of their own); a customer can neither
read nor follow nor write another customer's session, however the id is
dressed up (encoded slashes, dot segments, braces, NULs, overlong ids) and
whether or not that session exists; a guest whose session was merged is
told to sign in, while its customer reads the session through the old guest
id, and its writes are refused the same way; a customer links only the
guest its token names and asserts no store, associate, pos channel, completed
order or handoff claim; pos tokens read anything and publish only pos events
of their store (a completed in-store order included, a claim never); service
tokens do everything.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import aiohttp
import jwt
import pytest
from yarl import URL

from tests.support.events import added, event
from tests.support.gateway import GATEWAY_SECRET, Gateway, bearer, post_events, read_session

pytestmark = pytest.mark.e2e


async def make_session(http: aiohttp.ClientSession, gw: Gateway, c: str) -> None:
    status, body = await post_events(
        http, gw, event("cart.item_added", added("PRIVATE-1"), customer=c), bearer("service")
    )
    assert status == 202
    status, _, _ = await read_session(http, gw, c, bearer("service"), after=body["after"])
    assert status == 200


async def test_requests_without_a_valid_token_are_401(
    gateways: list[Gateway], http: aiohttp.ClientSession
) -> None:
    a, _ = gateways
    expired = bearer("service", ttl=60, now=time.time() - 3600)
    foreign = {
        "Authorization": "Bearer "
        + jwt.encode({"role": "service", "aud": "continuity", "exp": 2**31}, "x" * 40)
    }
    cases = [
        ({}, "missing_token"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing_token"),
        ({"Authorization": "Bearer not-a-jwt"}, "invalid_token"),
        (foreign, "invalid_token"),
        (expired, "token_expired"),
    ]
    for headers, code in cases:
        for method, path in (
            ("GET", "/v1/sessions/c-1"),
            ("GET", "/v1/sessions/c-1/stream"),
            ("POST", "/v1/events"),
        ):
            async with http.request(method, f"{a.url}{path}", headers=headers) as resp:
                body = await resp.json()
                assert (resp.status, body["error"]) == (401, code), (method, path, headers)
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
                assert body["message"]
    async with http.get(f"{a.url}/v1/sessions/c-1?access_token=whatever") as resp:
        assert (resp.status, (await resp.json())["error"]) == (401, "missing_token")
    for public in ("/healthz", "/readyz", "/"):
        async with http.get(f"{a.url}{public}") as resp:
            assert resp.status == 200, public
    # /metrics carries the business KPIs, which GET /v1/kpis gives service tokens only:
    # the API's port serves it to no one, the metrics listener (never exposed) does.
    for headers in ({}, bearer("customer", subject="c-1"), bearer("pos", store="s-1")):
        async with http.get(f"{a.url}/metrics", headers=headers) as resp:
            text = await resp.text()
            assert resp.status == 404, text[:200]
            assert "continuity_kpi" not in text
    scraped = await a.metrics()
    assert "continuity_gateway_http_requests_total" in scraped
    assert GATEWAY_SECRET not in scraped


async def test_a_customer_cannot_reach_another_customers_session(
    gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, b = gateways
    mine, theirs = ids("mine"), ids("theirs")
    await make_session(http, a, theirs)
    me = bearer("customer", subject=mine)
    for gw in (a, b):
        for target in (theirs, ids("nobody")):  # existing or not: the same 403
            status, body, _ = await read_session(http, gw, target, me)
            assert (status, body["error"]) == (403, "forbidden"), target
            async with http.get(f"{gw.url}/v1/sessions/{target}/stream", headers=me) as resp:
                assert (resp.status, (await resp.json())["error"]) == (403, "forbidden")

    tricks = [
        f"/v1/sessions/{mine}%2F..%2F{theirs}",
        f"/v1/sessions/..%2F{theirs}",
        f"/v1/sessions/{theirs}%00",
        f"/v1/sessions/%7B{theirs}%7D",
        f"/v1/sessions/{theirs}%20",
        f"/v1/sessions/{theirs}*",
        f"/v1/sessions/{'x' * 129}",
        "/v1/sessions/%2e%2e",
        f"/v1/sessions/{mine}/../{theirs}",
        f"/v1/sessions/{mine}/..%2F..%2F{theirs}/stream",
        f"/v1/sessions/{theirs}/stream/..",
    ]
    for path in tricks:
        async with http.get(URL(a.url + path, encoded=True), headers=me) as resp:
            text = await resp.text()
            assert resp.status in (400, 403, 404), (path, resp.status, text)
            assert "PRIVATE-1" not in text, path

    status, body = await post_events(http, a, event("cart.cleared", customer=theirs), me)
    assert (status, body["error"]) == (403, "forbidden")
    status, session, _ = await read_session(http, a, theirs, bearer("service"))
    assert session["item_count"] == 1, "their cart is untouched"


async def test_a_merged_guest_must_sign_in_and_aliases_lead_nowhere_else(
    gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, b = gateways
    guest, customer, stranger = ids("g"), ids("c"), ids("s")
    guest_auth = bearer("customer", subject=guest)
    status, body = await post_events(
        http, a, event("cart.item_added", added("G-1"), anon=guest), guest_auth
    )
    assert status == 202
    status, session, _ = await read_session(http, a, guest, guest_auth, after=body["after"])
    assert (status, session["key"]) == (200, guest)

    # Signing in links the guest only with a token that names it.
    unlinked = bearer("customer", subject=customer)
    sign_in = event("session.identified", customer=customer, anon=guest)
    status, body = await post_events(http, a, sign_in, unlinked)
    assert (status, body["results"][0]["reason"]) == (403, "forbidden")
    status, body = await post_events(
        http, a, sign_in, bearer("customer", subject=customer, anon=guest)
    )
    assert status == 202
    status, session, _ = await read_session(http, b, customer, unlinked, after=body["after"])
    assert session["anonymous_ids"] == [guest]

    status, err, _ = await read_session(http, b, guest, guest_auth)
    assert (status, err["error"]) == (403, "sign_in_required")
    assert "sign in" in err["message"]
    async with http.get(f"{b.url}/v1/sessions/{guest}/stream", headers=guest_auth) as resp:
        assert (resp.status, (await resp.json())["error"]) == (403, "sign_in_required")

    # Its writes would follow the alias into the customer's cart: refused the same way.
    for gw in (a, b):
        for write in (
            event("cart.cleared", anon=guest),
            event("cart.item_added", added("G-2"), anon=guest),
            [event("browse.search", {"query": "q"}, anon=guest)],
        ):
            status, err = await post_events(http, gw, write, guest_auth)
            assert (status, err["error"]) == (403, "sign_in_required"), write
            assert "sign in" in err["message"]
    status, session, _ = await read_session(http, b, customer, unlinked)
    assert [line["sku"] for line in session["cart"]] == ["G-1"], "the customer's cart is intact"

    status, session, _ = await read_session(http, b, guest, unlinked)
    assert (status, session["key"]) == (200, customer), "the customer may use the old guest id"
    status, err, _ = await read_session(http, b, guest, bearer("customer", subject=stranger))
    assert (status, err["error"]) == (403, "forbidden"), "an alias leads no one else in"
    status, session, _ = await read_session(http, b, guest, bearer("pos", store="s-1"))
    assert (status, session["key"]) == (200, customer)


async def test_guest_and_customer_write_rules(
    gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, _ = gateways
    guest, customer = ids("g"), ids("c")
    guest_auth = bearer("customer", subject=guest)
    customer_auth = bearer("customer", subject=customer)
    batch = [
        event("browse.search", {"query": "q"}, anon=guest),  # the guest's own
        event("browse.search", {"query": "q"}, customer=guest),  # its own key, as customer
        event("browse.search", {"query": "q"}, anon=ids("other")),
        event("browse.search", {"query": "q"}, customer=customer, anon=guest),
    ]
    status, body = await post_events(http, a, batch, guest_auth)
    assert status == 202
    assert [r["status"] for r in body["results"]] == [
        "accepted",
        "accepted",
        "rejected",
        "rejected",
    ]
    status, body = await post_events(
        http,
        a,
        [
            event("browse.search", {"query": "q"}, customer=customer),
            event("browse.search", {"query": "q"}, customer=ids("other")),
        ],
        customer_auth,
    )
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected"]

    # A device asserts no store, associate, pos channel, completed order or claim.
    store_only = [
        event("checkout.started", customer=customer, channel="pos", store_id="store-7"),
        event("checkout.started", customer=customer, channel="pos"),
        event("checkout.started", customer=customer, channel="kiosk", store_id="store-7"),
        event("cart.item_added", added("X-1"), customer=customer, associate_id="ann"),
        event("checkout.completed", {"order_id": ids("o")}, customer=customer),
        event("checkout.handoff_claimed", customer=customer, channel="pos", store_id="store-7"),
    ]
    for auth, who in ((customer_auth, customer), (guest_auth, guest)):
        batch = [{**e, "customer_id": who} for e in store_only]
        status, body = await post_events(http, a, batch, auth)
        assert (status, body["error"], body["rejected"]) == (403, "forbidden", len(batch))
        assert {r["reason"] for r in body["results"]} == {"forbidden"}
    status, body = await post_events(
        http, a, event("cart.item_added", added("X-1"), customer=customer), customer_auth
    )
    assert status == 202, "a customer still adds with the price it shows (advisory)"


async def test_pos_and_service_tokens(
    gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, _ = gateways
    c = ids("shopper")
    await make_session(http, a, c)
    pos = bearer("pos", store="store-7", subject="till-2")
    status, session, _ = await read_session(http, a, c, pos)
    assert (status, session["key"]) == (200, c)
    async with http.get(f"{a.url}/v1/sessions/{c}/stream", headers=pos) as resp:
        assert resp.status == 200

    at_the_till = event("checkout.started", customer=c, channel="pos", store_id="store-7")
    status, body = await post_events(
        http,
        a,
        [
            at_the_till,
            event("checkout.started", customer=c, channel="pos", store_id="store-8"),
            event("checkout.started", customer=c, channel="pos"),
            event("checkout.started", customer=c, channel="web", store_id="store-7"),
        ],
        pos,
    )
    assert status == 202
    assert [r["status"] for r in body["results"]] == [
        "accepted",
        "rejected",
        "rejected",
        "rejected",
    ]
    assert {r["reason"] for r in body["results"][1:]} == {"forbidden"}

    # The till checks out the resumed cart; a claim is never posted, only made by code.
    status, body = await post_events(
        http,
        a,
        [
            event(
                "checkout.completed",
                {"order_id": ids("order")},
                customer=c,
                channel="pos",
                store_id="store-7",
                associate_id="ann",
            ),
            event("checkout.handoff_claimed", customer=c, channel="pos", store_id="store-7"),
        ],
        pos,
    )
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected"]
    assert "claim route" in body["results"][1]["detail"]

    service = bearer("service", subject="crm")
    status, body = await post_events(
        http,
        a,
        [
            event("browse.search", {"query": "q"}, customer=ids("any")),
            event("browse.search", {"query": "q"}, anon=ids("anon"), channel="voice"),
            event("checkout.started", customer=c, channel="pos", store_id="store-99"),
            event("checkout.completed", {"order_id": ids("o")}, customer=ids("any")),
        ],
        service,
    )
    assert (status, body["accepted"]) == (202, 4)
    status, _, _ = await read_session(http, a, c, service)
    assert status == 200
