"""Per-token rate limits on ingest and handoff claims, through two real gateways.

Proves: a token over its ingest limit gets a 429 ``rate_limited`` with
``Retry-After`` and nothing of that request is published; the budget is per
token identity (another customer is unaffected) and shared by every gateway
(the second gateway refuses the same token too); rejected events count
against the budget as accepted ones do; a POS token over its claim limit is
refused before any code is tried; a token issuing handoff codes is limited
across gateways too; the refusals are counted.
Limit syntax and identities are checked purely.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import orjson
import pytest
from pydantic import ValidationError

from streams.gateway.auth import Principal, Role
from streams.gateway.rate_limit import identity, parse
from streams.settings import Settings
from streams.store.state import RedisState
from tests.support.events import added, event
from tests.support.gateway import Gateway, bearer, post_events, read_session, start_gateway
from tests.support.metrics_text import metric
from tests.support.stack import Stack


def test_limit_specs_parse_or_are_refused_at_startup() -> None:
    assert [str(i) for i in parse("5/second;100/minute")] == ["5 per 1 second", "100 per 1 minute"]
    assert parse("  ") == []
    with pytest.raises(ValidationError, match="ingest_rate_limit"):
        Settings(ingest_rate_limit="plenty")


def test_identities_separate_roles_stores_and_subjects() -> None:
    seen = {
        identity(Principal(Role.CUSTOMER, subject="c-1")),
        identity(Principal(Role.CUSTOMER, subject="c-2")),
        identity(Principal(Role.POS, store="s-1")),
        identity(Principal(Role.POS, store="s-1", subject="till-2")),
        identity(Principal(Role.SERVICE, subject="c-1")),
    }
    assert len(seen) == 5


@pytest.fixture(scope="module")
def limited(stack: Stack, shared_worker: RedisState) -> list[Gateway]:
    """Two gateways with tiny limits, over the shared Redis."""
    limits = {
        "CONTINUITY_INGEST_RATE_LIMIT": "3/minute",
        "CONTINUITY_HANDOFF_CLAIM_RATE_LIMIT": "2/minute",
        "CONTINUITY_HANDOFF_CREATE_RATE_LIMIT": "2/minute",
    }
    return [start_gateway(stack, f"gateway-limited-{n}", **limits) for n in ("a", "b")]


@pytest.mark.e2e
async def test_ingest_over_the_limit_is_refused_everywhere_for_that_token_only(
    limited: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, b = limited
    c, other = ids("limited"), ids("unlimited")
    me = bearer("customer", subject=c)

    def add(sku: str, who: str = c) -> dict[str, object]:
        return event("cart.item_added", added(sku), customer=who)

    # The gateways are the module's: count this test's refusals, exactly.
    name, ingest = "continuity_gateway_rate_limited_total", {"limit": "ingest"}
    before = [metric(await gw.metrics(), name, **ingest) for gw in (a, b)]
    status, body = await post_events(http, a, [add("A"), add("B")], me)
    assert status == 202, body
    status, body = await post_events(http, b, [add("C"), add("D")], me)
    assert status == 429, "2 + 2 events exceed 3/minute, counted across both gateways"
    assert body["error"] == "rate_limited"
    assert body["retry_after"] >= 1
    assert body["limit"] == "3 per 1 minute"
    status, body = await post_events(http, a, add("E"), me)
    assert status == 202, "the refused request consumed nothing; one more still fits"
    status, body = await post_events(http, a, add("F"), me)
    assert status == 429, body
    status, body = await post_events(http, b, add("X", other), bearer("customer", subject=other))
    assert status == 202, "another token has its own budget"
    after = [metric(await gw.metrics(), name, **ingest) for gw in (a, b)]
    assert [n - was for n, was in zip(after, before, strict=True)] == [1, 1], "one refusal each"


@pytest.mark.e2e
async def test_claims_over_the_limit_are_refused_before_any_code_is_tried(
    limited: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, b = limited
    pos = bearer("pos", store=ids("store"))
    name, claim = "continuity_gateway_rate_limited_total", {"limit": "claim"}
    before = [metric(await gw.metrics(), name, **claim) for gw in (a, b)]
    answers = []
    for gw in (a, b, a):
        async with http.post(f"{gw.url}/v1/handoffs/AAAAAAAA/claim", headers=pos) as resp:
            answers.append((resp.status, orjson.loads(await resp.read())["error"]))
    assert answers[:2] == [(404, "handoff_not_found")] * 2, answers
    assert answers[2] == (429, "rate_limited"), answers
    after = [metric(await gw.metrics(), name, **claim) for gw in (a, b)]
    assert [n - was for n, was in zip(after, before, strict=True)] == [1, 0], "the third claim"


@pytest.mark.e2e
async def test_rejected_events_count_against_the_budget_too(
    limited: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, b = limited
    c = ids("invalid")
    me = bearer("customer", subject=c)
    broken = {**event("cart.item_added", added("A"), customer=c), "type": "cart.nonsense"}
    status, body = await post_events(http, a, [broken, broken], me)
    assert (status, body["error"]) == (422, "no_event_accepted"), body
    status, body = await post_events(http, b, [broken, broken], me)
    assert (status, body["error"]) == (429, "rate_limited"), (
        "2 + 2 events exceed 3/minute though none was valid"
    )
    assert body["limit"] == "3 per 1 minute"
    status, body = await post_events(http, a, event("cart.item_added", added("B"), customer=c), me)
    assert status == 202, "the refused request consumed nothing; one more still fits"
    status, body = await post_events(http, a, event("cart.item_added", added("C"), customer=c), me)
    assert (status, body["error"]) == (429, "rate_limited"), body


@pytest.mark.e2e
async def test_issuing_handoff_codes_is_limited_per_token(
    limited: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, b = limited
    c, other = ids("issuer"), ids("other")
    for who in (c, other):
        status, body = await post_events(
            http, a, event("cart.item_added", added("A"), customer=who), bearer("service")
        )
        assert status == 202, body
        await read_session(http, a, who, bearer("service"), after=body["after"])
    name, handoff = "continuity_gateway_rate_limited_total", {"limit": "handoff"}
    before = [metric(await gw.metrics(), name, **handoff) for gw in (a, b)]
    answers = []
    for gw in (a, b, a):
        async with http.post(
            f"{gw.url}/v1/sessions/{c}/handoff", headers=bearer("customer", subject=c)
        ) as resp:
            answers.append((resp.status, orjson.loads(await resp.read()).get("error")))
    assert answers[:2] == [(201, None)] * 2, answers
    assert answers[2] == (429, "rate_limited"), answers
    async with http.post(
        f"{gw.url}/v1/sessions/{other}/handoff", headers=bearer("customer", subject=other)
    ) as resp:
        assert resp.status == 201, "another token has its own budget"
    after = [metric(await gw.metrics(), name, **handoff) for gw in (a, b)]
    assert [n - was for n, was in zip(after, before, strict=True)] == [1, 0]
