"""``GET /v1/sessions/{id}/journey`` against real gateways, broker, worker and Redis.

Proves: the journey lists one entry per applied event, newest first, with the
fields of ``streams/core/journey.py``; a guest's entries move to the customer at
login and the guest's id resolves to the customer's journey; ``service`` and
``pos`` read any journey, a customer only its own (a guest token of a merged
guest gets ``sign_in_required``), no token is a 401; ``limit`` picks the
newest entries and anything but one integer from 1 to the configured maximum
is a ``400 invalid_parameter``; an unknown id and an erased customer (both
ids) are a ``404 not_found``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support.events import added, event
from tests.support.gateway import Gateway, bearer, post_events, read_session

# clock: event times meet the worker's clock (journey pruning, abandonment timers).
pytestmark = [pytest.mark.e2e, pytest.mark.clock]


def _at(seconds_ago: int) -> str:
    # Recent times: the journey keeps entries younger than CONTINUITY_JOURNEY_MAX_AGE.
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seconds_ago)
    return moment.isoformat().replace("+00:00", "Z")


async def journey(
    http: aiohttp.ClientSession, gw: Gateway, sid: str, headers: dict[str, str], query: str = ""
) -> tuple[int, Any]:
    async with http.get(f"{gw.url}/v1/sessions/{sid}/journey{query}", headers=headers) as resp:
        return resp.status, orjson.loads(await resp.read())


async def post_and_wait(
    http: aiohttp.ClientSession, gw: Gateway, sid: str, events: list[dict[str, Any]]
) -> None:
    """Publish through the gateway and wait until the worker applied every event."""
    status, body = await post_events(http, gw, events, bearer("service"))
    assert status == 202, body
    status, _, headers = await read_session(
        http, gw, sid, bearer("service"), after=body["after"], wait="60"
    )
    assert headers["X-Continuity-Wait"] == "satisfied", (status, headers)


@pytest.fixture
async def merged(
    gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> tuple[str, str]:
    """A guest who browsed and filled a cart on the app, then signed in on the web."""
    a = gateways[0]
    guest, customer = ids("guest"), ids("cust")
    guest_events = [
        event("browse.search", {"query": "boots"}, anon=guest, channel="mobile_app", at=_at(400)),
        event("cart.item_added", added("J-1", 2), anon=guest, channel="mobile_app", at=_at(300)),
    ]
    # Topics have no order between them: the guest's events are applied before the login.
    await post_and_wait(http, a, guest, guest_events)
    customer_events = [
        event("session.identified", {}, customer=customer, anon=guest, at=_at(200)),
        event("cart.item_added", added("J-2"), customer=customer, at=_at(100), store_id="s-9"),
    ]
    await post_and_wait(http, a, customer, customer_events)
    return guest, customer


async def test_the_journey_is_newest_first_and_a_login_moves_the_guest_entries(
    gateways: list[Gateway],
    http: aiohttp.ClientSession,
    merged: tuple[str, str],
) -> None:
    guest, customer = merged
    status, body = await journey(http, gateways[1], customer, bearer("service"))
    assert status == 200, body
    assert body["key"] == customer
    assert (body["total"], body["limit"]) == (4, 50)
    got = [(e["channel"], e["type"]) for e in body["entries"]]
    assert got == [
        ("web", "cart.item_added"),
        ("web", "session.identified"),
        ("mobile_app", "cart.item_added"),
        ("mobile_app", "browse.search"),
    ]
    newest, _, guest_add, search = body["entries"]
    assert (newest["sku"], newest["quantity"], newest["store_id"]) == ("J-2", 1, "s-9")
    assert (guest_add["sku"], guest_add["quantity"]) == ("J-1", 2)
    assert search["query"] == "boots"
    assert all({"at", "channel", "type", "event_id"} <= e.keys() for e in body["entries"])
    ats = [e["at"] for e in body["entries"]]
    assert ats == sorted(ats, reverse=True)

    # The guest's id resolves to the customer's journey, as for the session.
    status, via_guest = await journey(http, gateways[0], guest, bearer("service"))
    assert status == 200
    assert via_guest["key"] == customer
    assert via_guest["entries"] == body["entries"]


async def test_who_may_read_a_journey(
    gateways: list[Gateway],
    http: aiohttp.ClientSession,
    merged: tuple[str, str],
    ids: Callable[[str], str],
) -> None:
    guest, customer = merged
    gw = gateways[0]
    for headers in (
        bearer("service"),
        bearer("pos", store="s-1"),
        bearer("customer", subject=customer),
    ):
        status, body = await journey(http, gw, customer, headers)
        assert (status, body["key"]) == (200, customer)
    # A customer's own old guest id still leads to its own journey.
    status, _ = await journey(http, gw, guest, bearer("customer", subject=customer))
    assert status == 200

    status, body = await journey(http, gw, customer, bearer("customer", subject=ids("other")))
    assert (status, body["error"]) == (403, "forbidden")
    status, body = await journey(http, gw, guest, bearer("customer", subject=guest))
    assert (status, body["error"]) == (403, "sign_in_required")
    status, body = await journey(http, gw, customer, {})
    assert (status, body["error"]) == (401, "missing_token")
    # Nobody learns whether someone else's journey exists.
    status, body = await journey(http, gw, ids("nobody"), bearer("customer", subject=ids("me")))
    assert (status, body["error"]) == (403, "forbidden")


async def test_limit_picks_the_newest_and_bad_limits_are_400(
    gateways: list[Gateway],
    http: aiohttp.ClientSession,
    merged: tuple[str, str],
) -> None:
    _, customer = merged
    gw, service = gateways[0], bearer("service")
    _, full = await journey(http, gw, customer, service)
    status, body = await journey(http, gw, customer, service, "?limit=2")
    assert status == 200
    assert (body["total"], body["limit"]) == (4, 2)
    assert body["entries"] == full["entries"][:2]
    status, body = await journey(http, gw, customer, service, "?limit=200")
    assert (status, len(body["entries"])) == (200, 4)
    for bad in ("0", "201", "-1", "abc", "1.5", "", "1e2", "%20", "2&limit=3", "9" * 30):
        status, body = await journey(http, gw, customer, service, f"?limit={bad}")
        assert (status, body["error"], body["parameter"]) == (400, "invalid_parameter", "limit"), (
            bad,
            body,
        )
        assert "1 to 200" in body["message"]


async def test_unknown_ids_bad_ids_and_erased_customers(
    gateways: list[Gateway],
    http: aiohttp.ClientSession,
    merged: tuple[str, str],
    ids: Callable[[str], str],
) -> None:
    guest, customer = merged
    gw, service = gateways[0], bearer("service")
    status, body = await journey(http, gw, ids("nobody"), service)
    assert (status, body["error"]) == (404, "not_found")
    status, body = await journey(http, gw, "-x", service)
    assert (status, body["error"]) == (400, "invalid_id")

    async with http.delete(f"{gw.url}/v1/sessions/{customer}", headers=service) as resp:
        assert resp.status == 200, await resp.text()
    for sid in (customer, guest):
        status, body = await journey(http, gateways[1], sid, service)
        assert (status, body["error"]) == (404, "not_found"), sid
