"""The browser client (streams/gateway/static/client/continuity.js) in Chromium, against a
real gateway and worker.

A harness page at the gateway's origin imports the module as the demo page does; its
tokens come from the test (``mintToken``), which records why each was asked for.
Proves: publish-then-read waits for the write (``after=``); a followed session
survives a dropped connection (a proxy cuts it) whose token expired meanwhile: the
client is refused with 401, asks for a new token, reconnects with backoff and resumes
with ``Last-Event-ID``, receiving each version once; a publish with an expired token is
retried with a new one; a followed guest who signs in (``merged``) makes the client ask
for the customer's token and follow the customer's session, which holds the guest's
line, and later writes go out as the customer.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tests.support.events import added, event
from tests.support.gateway import Gateway, bearer, post_events, start_gateway, token
from tests.support.stack import Stack, wait_until
from tests.support.tcp_proxy import CuttableProxy

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("chromium") is None,
        reason="Chromium missing: `make system-deps` installs the Debian package chromium",
    ),
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
HARNESS = """<!doctype html><meta charset="utf-8"><title>client harness</title>
<script type="module">
import { ContinuityClient } from "/static/continuity.js";
const h = { sessions: [], merges: [], statuses: [], errors: [] };
h.client = new ContinuityClient({ getToken: (request) => window.mintToken(request) });
h.follow = (id) => {
  h.follower = h.client.follow(id, {
    onSession: (s, v) =>
      h.sessions.push({ key: s.key, version: v, skus: s.cart.map((l) => l.sku) }),
    onMerged: (m) => h.merges.push(m),
    onStatus: (st) => h.statuses.push(st),
    onError: (e) => h.errors.push(e.code || String(e)),
  });
};
window.h = h;
</script>"""


def expired(subject: str) -> str:
    """A customer token that ran out well beyond the gateway's clock-skew leeway."""
    return token("customer", subject=subject, now=int(time.time()) - 3600, ttl=60)


@pytest.fixture(scope="module")
def client_gateway(stack: Stack, gateways: list[Gateway]) -> Gateway:
    """A gateway serving the static files (the client) over the shared worker's state."""
    return start_gateway(stack, "gateway-client", CONTINUITY_GATEWAY_DEMO="1")


@pytest.fixture
async def proxy(client_gateway: Gateway) -> AsyncIterator[CuttableProxy]:
    assert client_gateway.child.port is not None
    made = CuttableProxy(client_gateway.child.port)
    await made.start()
    yield made
    await made.close()


async def _harness(
    pw: Any, browser: Any, origin: str, mint: Callable[[dict[str, Any]], str]
) -> tuple[Any, list[dict[str, str]]]:
    """The harness page at ``origin``; the headers of every stream request it makes."""
    page = await browser.new_page()
    streams: list[dict[str, str]] = []
    page.on(
        "request",
        lambda req: streams.append(req.headers) if req.url.endswith("/stream") else None,
    )
    await page.expose_function("mintToken", mint)
    await page.route(
        "**/client-harness.html",
        lambda route: route.fulfill(status=200, content_type="text/html", body=HARNESS),
    )
    await page.goto(f"{origin}/client-harness.html")
    await page.wait_for_function("window.h !== undefined")
    return page, streams


async def _versions(page: Any, at_least: int) -> list[dict[str, Any]]:
    await page.wait_for_function(f"h.sessions.length >= {at_least}", timeout=30_000)
    seen: list[dict[str, Any]] = await page.evaluate("h.sessions")
    return seen


PUBLISH_AND_READ = """async ([id, ev]) => {
  const out = await h.client.publishAndRead(id, ev, { wait: 30 });
  return { accepted: out.result.accepted, version: out.version, satisfied: out.satisfied,
           skus: out.session ? out.session.cart.map((l) => l.sku) : null };
}"""


async def test_a_dropped_stream_with_an_expired_token_resumes_without_gap_or_duplicate(
    client_gateway: Gateway,
    proxy: CuttableProxy,
    http: aiohttp.ClientSession,
    ids: Callable[[str], str],
) -> None:
    pw = pytest.importorskip("playwright.async_api")
    customer = ids("client")
    reasons: list[str] = []

    def mint(request: dict[str, Any]) -> str:
        reasons.append(request["reason"])
        return token("customer", subject=customer)

    async with pw.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page, streams = await _harness(pw, browser, proxy.url, mint)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # Read your own writes: the answer already holds the event just published.
            first = event("cart.item_added", added("A-1"), customer=customer)
            read = await page.evaluate(PUBLISH_AND_READ, [customer, first])
            assert read == {"accepted": 1, "version": 1, "satisfied": True, "skus": ["A-1"]}

            await page.evaluate("(id) => h.follow(id)", customer)
            assert [s["version"] for s in await _versions(page, 1)] == [1]
            # The token runs out while the stream is open (a stream's token is checked when
            # it opens), then the network drops the connection.
            await page.evaluate("(t) => { h.client._token = t; }", expired(customer))
            assert proxy.cut() > 0
            status, _ = await post_events(
                http,
                client_gateway,
                event("cart.item_added", added("B-2"), customer=customer),
                bearer("customer", subject=customer),
            )
            assert status == 202
            seen = await _versions(page, 2)
            assert [s["version"] for s in seen] == [1, 2], "each version once, none missed"
            assert seen[-1]["skus"] == ["A-1", "B-2"]
            assert reasons == ["initial", "expired"]
            statuses = await page.evaluate("h.statuses")
            assert "reconnecting" in statuses
            # The drop is reported; the 401 is not (a new token answered it).
            reported = await page.evaluate("h.errors")
            assert len(reported) == 1
            assert reported[0].startswith("TypeError"), reported
            assert await page.evaluate("h.follower.connections") == 2
            # The first request has nothing to resume; every later one resumes after 1.
            assert "last-event-id" not in streams[0]
            assert [h.get("last-event-id") for h in streams[1:]] == ["1"] * (len(streams) - 1)
            assert len(streams) == 3, "the refused one with the old token, then the new"

            # A publish with an expired token is retried once with a new one.
            await page.evaluate("(t) => { h.client._token = t; }", expired(customer))
            third = event("cart.item_added", added("C-3"), customer=customer)
            read = await page.evaluate(PUBLISH_AND_READ, [customer, third])
            assert read["accepted"] == 1
            assert read["skus"] == ["A-1", "B-2", "C-3"]
            assert reasons == ["initial", "expired", "expired"]
            assert not errors, errors
        finally:
            await browser.close()


async def test_a_followed_guest_who_signs_in_is_followed_as_the_customer(
    client_gateway: Gateway,
    http: aiohttp.ClientSession,
    ids: Callable[[str], str],
) -> None:
    pw = pytest.importorskip("playwright.async_api")
    guest, customer = ids("guest"), ids("signed-in")
    asked: list[dict[str, Any]] = []

    def mint(request: dict[str, Any]) -> str:
        asked.append(request)
        if request["reason"] == "merged":
            # The app signs the shopper in: a token for the customer from now on.
            return token("customer", subject=request["to"])
        return token("customer", subject=guest)

    async with pw.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page, _ = await _harness(pw, browser, client_gateway.url, mint)
            first = event("cart.item_added", added("G-1"), anon=guest)
            read = await page.evaluate(PUBLISH_AND_READ, [guest, first])
            assert read["skus"] == ["G-1"]
            await page.evaluate("(id) => h.follow(id)", guest)
            assert (await _versions(page, 1))[0]["key"] == guest

            status, _ = await post_events(
                http,
                client_gateway,
                event("session.identified", customer=customer, anon=guest),
                bearer("customer", subject=customer, anon=guest),
            )
            assert status == 202

            async def following_the_customer() -> list[dict[str, Any]] | None:
                seen: list[dict[str, Any]] = await page.evaluate("h.sessions")
                return seen if seen[-1]["key"] == customer else None

            seen = await wait_until(following_the_customer, 30, interval=0.2)
            assert "G-1" in seen[-1]["skus"], "the guest's line came along"
            assert await page.evaluate("h.merges") == [{"key": guest, "merged_into": customer}]
            assert await page.evaluate("h.follower.id") == customer
            assert [a["reason"] for a in asked] == ["initial", "merged"]
            assert (asked[1]["from"], asked[1]["to"]) == (guest, customer)
            # Later writes go out with the customer's token.
            later = event("cart.item_added", added("C-2"), customer=customer)
            read = await page.evaluate(PUBLISH_AND_READ, [customer, later])
            assert read["accepted"] == 1
            assert read["skus"] is not None
            assert set(read["skus"]) == {"G-1", "C-2"}
            assert await page.evaluate("h.errors") == []
        finally:
            await browser.close()
