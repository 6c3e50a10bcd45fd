"""POS handoff through real gateway processes, the shared worker, broker and Redis.

Proves: a customer gets a single-use code stored with the configured TTL; a
store's POS claims it and gets the session, and the claim event reaches the
session (``last_store_id`` = the POS's store, ``last_channel`` = pos); a
second claim, an expired code, an unknown and a malformed one get clear
JSON errors; two gateways racing for one code give it to exactly one; after
too many failed claims a till (its token) is refused with 429 and
``Retry-After`` even with a valid code, its store's other tills once the
store's total reaches the store limit, never other stores sharing the
address; behind a trusted proxy the client address it forwards is counted
too; a concurrent burst of guesses through two gateways gets exactly the
allowed number; a session keeps at most ``MAX_PENDING`` pending codes (the
oldest revoked); only a customer (for itself) or a service may create a code
and only a POS may claim one; the outcomes are counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest
from redis.asyncio import Redis

from streams.store import keys
from tests.support.events import added, event
from tests.support.gateway import Gateway, bearer, post_events, read_session, start_gateway
from tests.support.metrics_text import metric
from tests.support.stack import Stack, space, wait_until

pytestmark = pytest.mark.e2e

SERVICE = bearer("service")
MAX_FAILURES = 3
STORE_MAX_FAILURES = 5
MAX_PENDING = 3
SPACE = space("cont")  # the shared gateways' prefix


# Small failed-claim limits; 127.0.0.1 (the tests themselves) trusted as a proxy, so
# an X-Forwarded-For the tests send names the client address.
LIMITS = {
    "CONTINUITY_HANDOFF_MAX_FAILURES": str(MAX_FAILURES),
    "CONTINUITY_HANDOFF_STORE_MAX_FAILURES": str(STORE_MAX_FAILURES),
    "CONTINUITY_HANDOFF_MAX_PENDING": str(MAX_PENDING),
    "CONTINUITY_TRUSTED_PROXIES": "127.0.0.1",
    "CONTINUITY_GATEWAY_MAX_WAIT": "60",
}


@pytest.fixture(scope="module")
def handoff_gateway(stack: Stack, gateways: list[Gateway]) -> Gateway:
    """A gateway with small handoff limits (the shared ones keep the defaults)."""
    return start_gateway(stack, "gateway-handoff", **LIMITS)


@pytest.fixture(scope="module")
def handoff_gateway_2(stack: Stack, handoff_gateway: Gateway) -> Gateway:
    """A second one, for a burst spread over two processes."""
    return start_gateway(stack, "gateway-handoff-2", **LIMITS)


async def post(
    http: aiohttp.ClientSession,
    gw: Gateway,
    path: str,
    headers: dict[str, str],
    body: Any = None,
) -> tuple[int, Any, dict[str, str]]:
    hdrs = dict(headers)
    data = None
    if body is not None:
        data = orjson.dumps(body)
        hdrs["Content-Type"] = "application/json"
    async with http.post(f"{gw.url}{path}", data=data, headers=hdrs) as resp:
        raw = await resp.read()
        assert resp.headers["Content-Type"].startswith("application/json"), raw
        return resp.status, orjson.loads(raw), dict(resp.headers)


async def a_session(http: aiohttp.ClientSession, gw: Gateway, c: str) -> None:
    """A session with one line, applied by the worker."""
    status, body = await post_events(
        http, gw, event("cart.item_added", added("H-1", 2), customer=c), SERVICE
    )
    assert status == 202, body
    status, _, hdrs = await read_session(http, gw, c, SERVICE, after=body["after"])
    assert (status, hdrs["X-Continuity-Wait"]) == (200, "satisfied")


async def create(http: aiohttp.ClientSession, gw: Gateway, c: str) -> dict[str, Any]:
    status, body, _ = await post(
        http, gw, f"/v1/sessions/{c}/handoff", bearer("customer", subject=c)
    )
    assert status == 201, body
    return dict(body)


def claim_path(code: str) -> str:
    return f"/v1/handoffs/{code}/claim"


async def test_a_customer_hands_its_session_to_a_store(
    handoff_gateway: Gateway,
    gateways: list[Gateway],
    http: aiohttp.ClientSession,
    redis: Redis,
    ids: Callable[[str], str],
) -> None:
    gw, other = handoff_gateway, gateways[0]
    c, store = ids("hand"), ids("store")
    await a_session(http, gw, c)
    before = await gw.metrics()
    made = await create(http, gw, c)
    code = made["code"]
    assert len(code) == 8
    assert made["display"] == f"{code[:4]}-{code[4:]}"
    assert made["qr"] == f"continuity:handoff:{code}"
    assert (made["expires_in"], made["claim"], made["key"]) == (300, claim_path(code), c)
    assert 0 < await redis.ttl(keys.handoff(SPACE, code)) <= 300, "Redis holds it with the TTL"
    assert SPACE.partition(code) == SPACE.partition(c), "drawn in its session's partition"
    assert await redis.smembers(keys.handoff_by(SPACE, c)) == {code.encode()}

    # Claimed through another gateway, typed the way a person reads it.
    status, body, _ = await post(
        http,
        other,
        claim_path(made["display"].lower()),
        bearer("pos", store=store),
        {"terminal_id": "till-3"},
    )
    assert status == 200, body
    assert (body["customer_id"], body["store_id"], body["terminal_id"]) == (c, store, "till-3")
    assert body["session"]["cart"][0]["sku"] == "H-1"
    assert await redis.exists(keys.handoff(SPACE, code)) == 0, "single use"

    status, session, _ = await read_session(http, gw, c, SERVICE, after=body["after"])
    assert status == 200
    assert (session["last_store_id"], session["last_channel"], session["version"]) == (
        store,
        "pos",
        2,
    )
    assert session["cart"] == body["session"]["cart"]

    after = await gw.metrics()
    created = "continuity_handoffs_total"
    assert (
        metric(after, created, outcome="created") == metric(before, created, outcome="created") + 1
    )


async def test_reused_expired_unknown_and_malformed_codes_get_clear_errors(
    handoff_gateway: Gateway, http: aiohttp.ClientSession, redis: Redis, ids: Callable[[str], str]
) -> None:
    gw = handoff_gateway
    c, pos = ids("errs"), bearer("pos", store=ids("store"))
    await a_session(http, gw, c)
    used = (await create(http, gw, c))["code"]
    assert (await post(http, gw, claim_path(used), pos))[0] == 200
    before = await gw.metrics()

    status, body, _ = await post(http, gw, claim_path(used), pos)
    assert (status, body["error"]) == (410, "handoff_claimed"), body
    assert body["message"]

    # Expiry is Redis's TTL running out; shortened here instead of waiting 300 s.
    stale = (await create(http, gw, c))["code"]
    await redis.pexpire(keys.handoff(SPACE, stale), 1)

    async def gone() -> bool:
        return await redis.exists(keys.handoff(SPACE, stale)) == 0

    await wait_until(gone, timeout=10, interval=0.05)
    status, body, _ = await post(http, gw, claim_path(stale), pos)
    assert (status, body["error"]) == (410, "handoff_expired"), body
    # Two failures so far; a fresh store keeps clear of the limit of three.
    pos = bearer("pos", store=ids("store2"))

    status, body, _ = await post(http, gw, claim_path("ZZZZZZZZ"), pos)
    assert (status, body["error"]) == (404, "handoff_not_found"), body
    for bad in ("short", "UUUUUUUU", "7K3M~Q9T", "7K3M..Q9T"):
        status, body, _ = await post(http, gw, claim_path(bad), pos)
        assert (status, body["error"]) == (400, "invalid_code"), (bad, body)
    status, body, _ = await post(
        http, gw, claim_path("ZZZZZZZZ"), {**pos, "Content-Type": "application/json"}
    )
    assert status == 404
    async with http.post(
        f"{gw.url}{claim_path('ZZZZZZZZ')}",
        data=b"{not json",
        headers={**pos, "Content-Type": "application/json"},
    ) as resp:
        assert (resp.status, (await resp.json())["error"]) == (400, "malformed_json")

    after = await gw.metrics()
    name = "continuity_handoffs_total"
    failed = metric(after, name, outcome="expired_or_unknown") - metric(
        before, name, outcome="expired_or_unknown"
    )
    assert failed == 4, "claimed, expired and two unknown; malformed codes are not guesses"


async def test_two_gateways_racing_for_one_code_give_it_to_one(
    handoff_gateway: Gateway,
    gateways: list[Gateway],
    http: aiohttp.ClientSession,
    ids: Callable[[str], str],
) -> None:
    c = ids("race")
    await a_session(http, handoff_gateway, c)
    code = (await create(http, handoff_gateway, c))["code"]
    results = await asyncio.gather(
        *(
            post(http, gw, claim_path(code), bearer("pos", store=ids(f"store{n}")))
            for n, gw in enumerate([handoff_gateway, *gateways])
        )
    )
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200, 410, 410], results


async def test_too_many_failed_claims_lock_the_token_out_even_with_a_valid_code(
    handoff_gateway: Gateway, http: aiohttp.ClientSession, redis: Redis, ids: Callable[[str], str]
) -> None:
    gw = handoff_gateway
    c, store = ids("brute"), ids("store")
    till = bearer("pos", store=store, subject="till-1")
    await a_session(http, gw, c)
    code = (await create(http, gw, c))["code"]
    before = await gw.metrics()
    for n in range(MAX_FAILURES):
        status, body, _ = await post(http, gw, claim_path(f"ZZZZZZZ{n}"), till)
        assert status == 404, body
    status, body, headers = await post(http, gw, claim_path(code), till)
    assert (status, body["error"]) == (429, "too_many_failed_claims"), body
    assert 0 < int(headers["Retry-After"]) <= 300
    assert body["retry_after"] == int(headers["Retry-After"])
    assert await redis.exists(keys.handoff(SPACE, code)) == 1, "a refused claim takes nothing"
    # A fresh token of the same till is the same till: still locked out.
    status, body, _ = await post(
        http, gw, claim_path(code), bearer("pos", store=store, subject="till-1")
    )
    assert status == 429, body

    # Another till of the store is not, until the store as a whole reaches its limit.
    other = bearer("pos", store=store, subject="till-2")
    for n in range(STORE_MAX_FAILURES - MAX_FAILURES):
        status, body, _ = await post(http, gw, claim_path(f"YYYYYYY{n}"), other)
        assert status == 404, body
    for till_n in ("till-2", "till-3"):
        pos = bearer("pos", store=store, subject=till_n)
        status, body, _ = await post(http, gw, claim_path(code), pos)
        assert (status, body["error"]) == (429, "too_many_failed_claims"), body
    # ... while another store from the same address may claim.
    status, body, _ = await post(http, gw, claim_path(code), bearer("pos", store=ids("other")))
    assert status == 200, body

    after = await gw.metrics()
    name = "continuity_handoffs_total"
    assert metric(after, name, outcome="refused") - metric(before, name, outcome="refused") == 4


async def test_one_stores_typos_do_not_lock_out_the_stores_sharing_its_address(
    handoff_gateway: Gateway, http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    """Every store behind one ingress or NAT address: the address is no lockout key."""
    gw = handoff_gateway
    c = ids("nat")
    await a_session(http, gw, c)
    code = (await create(http, gw, c))["code"]
    for n in range(2 * STORE_MAX_FAILURES):
        pos = bearer("pos", store=ids(f"typo{n % 2}"))
        await post(http, gw, claim_path(f"XXXXXXX{n % 8}"), pos)
    status, body, _ = await post(http, gw, claim_path(code), bearer("pos", store=ids("next")))
    assert status == 200, body


async def test_behind_a_trusted_proxy_the_forwarded_client_address_is_counted(
    handoff_gateway: Gateway, http: aiohttp.ClientSession, redis: Redis, ids: Callable[[str], str]
) -> None:
    """The gateway trusts 127.0.0.1 as a proxy: the address it forwards is a lockout key."""
    gw = handoff_gateway
    c = ids("proxied")
    client, elsewhere = "198.51.100.77", "198.51.100.78"
    await redis.delete(*(keys.claim_failures_address(SPACE, a) for a in (client, elsewhere)))
    await a_session(http, gw, c)
    code = (await create(http, gw, c))["code"]
    # A client's own X-Forwarded-For entry is passed over: the proxy appended the real one.
    via = {"X-Forwarded-For": f"10.9.9.9, {client}"}
    for n in range(STORE_MAX_FAILURES):
        pos = {**bearer("pos", store=ids(f"s{n}")), **via}
        status, body, _ = await post(http, gw, claim_path(f"WWWWWWW{n}"), pos)
        assert status == 404, body
    assert int(await redis.get(keys.claim_failures_address(SPACE, client))) == STORE_MAX_FAILURES
    status, body, _ = await post(
        http, gw, claim_path(code), {**bearer("pos", store=ids("x")), **via}
    )
    assert (status, body["error"]) == (429, "too_many_failed_claims"), body
    other = {**bearer("pos", store=ids("y")), "X-Forwarded-For": elsewhere}
    status, body, _ = await post(http, gw, claim_path(code), other)
    assert status == 200, body


async def test_a_concurrent_burst_of_guesses_gets_exactly_the_allowed_number(
    handoff_gateway: Gateway,
    handoff_gateway_2: Gateway,
    http: aiohttp.ClientSession,
    ids: Callable[[str], str],
) -> None:
    """Twenty claims at once from one till, through two gateways: three are tried, no more."""
    till = bearer("pos", store=ids("burst"), subject="till-1")
    gws = (handoff_gateway, handoff_gateway_2)
    results = await asyncio.gather(
        *(post(http, gws[n % 2], claim_path(f"VVVVVV{n:02d}"), till) for n in range(20))
    )
    answers = sorted((status, body["error"]) for status, body, _ in results)
    assert answers == [(404, "handoff_not_found")] * MAX_FAILURES + [
        (429, "too_many_failed_claims")
    ] * (20 - MAX_FAILURES), answers


async def test_a_session_keeps_a_bounded_number_of_pending_codes(
    handoff_gateway: Gateway, http: aiohttp.ClientSession, redis: Redis, ids: Callable[[str], str]
) -> None:
    gw = handoff_gateway
    c = ids("many")
    await a_session(http, gw, c)
    before = await gw.metrics()
    # Five in all: the default rate limit of issuing (5/minute) is met, not passed.
    codes = [(await create(http, gw, c))["code"] for _ in range(MAX_PENDING + 1)]
    pending = [code for code in codes if await redis.exists(keys.handoff(SPACE, code))]
    assert pending == codes[1:], "the oldest code was revoked"
    assert await redis.smembers(keys.handoff_by(SPACE, c)) == {p.encode() for p in pending}
    pos = bearer("pos", store=ids("store"))
    status, body, _ = await post(http, gw, claim_path(codes[0]), pos)
    assert (status, body["error"]) == (410, "handoff_expired"), body
    status, body, _ = await post(http, gw, claim_path(codes[-1]), pos)
    assert status == 200, body
    # Claimed codes leave the session's set when the next one is issued.
    newest = (await create(http, gw, c))["code"]
    assert await redis.smembers(keys.handoff_by(SPACE, c)) == {
        p.encode() for p in (*codes[1:-1], newest)
    }
    after = await gw.metrics()
    name = "continuity_handoffs_total"
    assert metric(after, name, outcome="revoked") - metric(before, name, outcome="revoked") == 1


async def test_who_may_create_and_claim(
    handoff_gateway: Gateway, http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    gw = handoff_gateway
    c, someone = ids("mine"), ids("theirs")
    await a_session(http, gw, c)
    await a_session(http, gw, someone)
    me = bearer("customer", subject=c)

    status, body, _ = await post(http, gw, f"/v1/sessions/{someone}/handoff", me)
    assert (status, body["error"]) == (403, "forbidden")
    status, body, _ = await post(
        http, gw, f"/v1/sessions/{c}/handoff", bearer("pos", store=ids("store"))
    )
    assert (status, body["error"]) == (403, "forbidden")
    status, body, _ = await post(http, gw, f"/v1/sessions/{c}/handoff", {})
    assert (status, body["error"]) == (401, "missing_token")
    status, body, _ = await post(
        http, gw, f"/v1/sessions/{ids('nobody')}/handoff", bearer("customer", subject=ids("nobody"))
    )
    assert (status, body["error"]) == (404, "not_found")
    status, body, _ = await post(http, gw, f"/v1/sessions/{someone}/handoff", SERVICE)
    assert status == 201, "a service may issue a code for anyone"

    code = (await create(http, gw, c))["code"]
    for who in (me, SERVICE, bearer("customer", subject=someone)):
        status, body, _ = await post(http, gw, claim_path(code), who)
        assert (status, body["error"]) == (403, "forbidden"), body
    status, body, _ = await post(http, gw, claim_path(code), bearer("pos", store=ids("store")))
    assert status == 200, "refused claims took nothing"
