"""``GET /v1/kpis`` and the gateway's ``continuity_kpi_*`` gauges, end to end.

Proves: only ``service`` tokens read the KPIs (401 without a token, 403 for
customer and pos); on a broker and Redis of the test's own (KPIs count every
event a group folds, so a shared backlog would blur them), a known set of
events gives exactly the report they must: carts started, converted and
abandoned per start channel with their rates, resumes by channel pair,
conversion by channel path, checkouts by channel, first touch -> checkout
(count, mean, interpolated median) and the multichannel share of active
sessions; ``/metrics``, on the gateway's metrics listener and not on its API
port, carries the same values as gauges and passes ``promtool check
metrics``; with Redis down a scrape still answers with the last values and
counts the failure, while ``/v1/kpis`` is a 503.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import PIPE, STDOUT
from typing import Any

import aiohttp
import orjson
import pytest

from streams.kafka.publish import Publisher
from tests.support.events import added, event
from tests.support.gateway import Gateway, bearer
from tests.support.metrics_text import metric
from tests.support.private_stack import PrivateStack, private_stack
from tests.support.stack import applied_through, publish, wait_until

pytestmark = pytest.mark.e2e

# Short enough for the test, long enough that the checkout beats the bought cart's timer.
APP, WEB, KIOSK = "mobile_app", "web", "kiosk"
FAST = {"CONTINUITY_ABANDON_AFTER": "8", "CONTINUITY_ABANDON_SWEEP_INTERVAL": "0.5"}


async def get_kpis(
    http: aiohttp.ClientSession, gw: Gateway, headers: dict[str, str]
) -> tuple[int, Any]:
    async with http.get(f"{gw.url}/v1/kpis", headers=headers) as resp:
        return resp.status, orjson.loads(await resp.read())


async def test_only_service_tokens_read_the_kpis(
    gateways: list[Gateway], http: aiohttp.ClientSession
) -> None:
    gw = gateways[0]
    status, body = await get_kpis(http, gw, {})
    assert (status, body["error"]) == (401, "missing_token")
    for headers in (bearer("customer", subject="c-1"), bearer("pos", store="s-1")):
        status, body = await get_kpis(http, gw, headers)
        assert (status, body["error"]) == (403, "forbidden")
    status, body = await get_kpis(http, gw, bearer("service"))
    assert status == 200
    assert {"generated_at", "sessions", "resumes", "carts", "paths", "checkouts"} <= body.keys()
    assert body["first_touch_to_checkout"].keys() >= {"count", "mean_seconds", "median_seconds"}


@pytest.fixture
async def st(tmp_path: Path) -> AsyncIterator[PrivateStack]:
    async with private_stack(tmp_path) as stack:
        yield stack


@pytest.fixture
async def own_publisher(st: PrivateStack) -> AsyncIterator[Publisher]:
    async with Publisher(st.bootstrap, linger_ms=1) as pub:
        yield pub


def _at(base: datetime, seconds: int) -> str:
    return (base + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


async def test_the_report_and_the_gauges_match_the_events(
    st: PrivateStack,
    own_publisher: Publisher,
    http: aiohttp.ClientSession,
    ids: Callable[[str], str],
) -> None:
    publisher = own_publisher
    st.start_worker("a", **FAST)
    gw = st.start_gateway("gateway-kpis")
    await st.ready(publisher)  # one session (the probe), on one channel, nothing else
    bought, idle, browser = ids("bought"), ids("idle"), ids("browser")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    written = await publish(
        publisher,
        [
            # Started on the app, resumed on the web (mobile_app -> web) ...
            event(
                "cart.item_added",
                added("K-1"),
                customer=bought,
                channel="mobile_app",
                at=_at(t0, 0),
            ),
            event("cart.item_added", added("K-2"), customer=bought, channel="web", at=_at(t0, 60)),
            # ... left idle on the web: abandoned, started on the web.
            event("cart.item_added", added("K-1"), customer=idle, channel=WEB, at=_at(t0, 0)),
            # Two channels, no cart.
            event(
                "browse.search", {"query": "x"}, customer=browser, channel="kiosk", at=_at(t0, 0)
            ),
            event("browse.search", {"query": "y"}, customer=browser, channel="web", at=_at(t0, 9)),
        ],
    )
    await applied_through(st.state, written)
    # Topics have no order between them: the checkout goes once the cart holds its lines.
    # Paid at the till 600 s after the first touch (web -> pos is the second resume).
    written = await publish(
        publisher,
        [
            event(
                "checkout.completed",
                {"order_id": ids("o")},
                customer=bought,
                channel="pos",
                at=_at(t0, 600),
            )
        ],
    )
    await applied_through(st.state, written)
    service = bearer("service")

    async def abandoned() -> Any:
        status, body = await get_kpis(http, gw, service)
        assert status == 200, body
        return body if body["carts"]["overall"]["abandoned"] >= 1 else None

    body = await wait_until(abandoned, timeout=60, interval=0.5)
    assert body["sessions"] == {
        "window": "30m",
        "window_seconds": 1800,
        "bucket_seconds": 300,
        "active": 4,
        "multichannel": 2,
        "multichannel_share": 0.5,
    }
    carts = body["carts"]
    assert carts["overall"] == {
        "started": 2,
        "converted": 1,
        "abandoned": 1,
        "conversion_rate": 0.5,
        "abandonment_rate": 0.5,
    }
    assert carts["by_start_channel"]["mobile_app"] == {
        "started": 1,
        "converted": 1,
        "abandoned": 0,
        "conversion_rate": 1.0,
        "abandonment_rate": 0.0,
    }
    assert carts["by_start_channel"]["web"] == {
        "started": 1,
        "converted": 0,
        "abandoned": 1,
        "conversion_rate": 0.0,
        "abandonment_rate": 1.0,
    }
    assert carts["by_start_channel"]["pos"]["conversion_rate"] is None
    assert body["resumes"] == {
        "total": 2,
        "by_pair": [
            {"from_channel": "mobile_app", "to_channel": "web", "count": 1},
            {"from_channel": "web", "to_channel": "pos", "count": 1},
        ],
    }
    assert body["paths"] == [
        {"path": "mobile_app>web>pos", "converted": 1, "abandoned": 0, "conversion_rate": 1.0},
        {"path": "web", "converted": 0, "abandoned": 1, "conversion_rate": 0.0},
    ]
    assert body["checkouts"]["total"] == 1
    assert body["checkouts"]["by_channel"]["pos"] == 1
    assert body["first_touch_to_checkout"] == {
        "count": 1,
        "mean_seconds": 600.0,
        # One observation in (300, 900]: halfway through the bucket, as histogram_quantile.
        "median_seconds": 600.0,
        "buckets": [{"le": "900", "count": 1}],
    }

    text = await gw.metrics()
    assert metric(text, "continuity_kpi_multichannel_share") == 0.5
    assert metric(text, "continuity_kpi_conversion_rate", start_channel="mobile_app") == 1.0
    assert metric(text, "continuity_kpi_abandonment_rate", start_channel="web") == 1.0
    assert 'continuity_kpi_conversion_rate{start_channel="pos"}' not in text  # no cart: no ratio
    assert metric(text, "continuity_kpi_overall_conversion_rate") == 0.5
    assert metric(text, "continuity_kpi_carts", start_channel="web", outcome="abandoned") == 1
    assert metric(text, "continuity_kpi_resumes", from_channel="web", to_channel="pos") == 1
    assert metric(text, "continuity_kpi_first_touch_to_checkout_median_seconds") == 600.0
    assert metric(text, "continuity_kpi_first_touch_to_checkout_mean_seconds") == 600.0
    assert metric(text, "continuity_kpi_refreshed_timestamp_seconds") > 0
    if shutil.which("promtool") is not None:
        lint = await asyncio.create_subprocess_exec(
            "promtool", "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=STDOUT
        )
        out, _ = await lint.communicate(text.encode())
        assert lint.returncode == 0, out.decode()
    # Only on the metrics listener: the API's port, which devices and tills reach,
    # serves the gauges to nobody (GET /v1/kpis is for service tokens).
    for headers in ({}, bearer("customer", subject=bought), bearer("pos", store="s-1")):
        async with http.get(f"{gw.url}/metrics", headers=headers) as resp:
            assert resp.status == 404
            assert "continuity_kpi" not in await resp.text()

    # Redis down: the scrape still answers, with the last values, and counts the failure.
    errors = "continuity_gateway_kpi_refresh_errors_total"
    before = metric(text, errors)
    st.stop_redis()

    async def refresh_failed() -> str | None:
        # The first scrape past the gauges' once-a-second refresh tries Redis (and fails).
        down = await gw.metrics()
        return down if metric(down, errors) != before else None

    down = await wait_until(refresh_failed, timeout=10)
    assert metric(down, errors) - before == 1, "one failed refresh, counted once"
    assert metric(down, "continuity_kpi_multichannel_share") == 0.5
    assert metric(down, "continuity_kpi_first_touch_to_checkout_median_seconds") == 600.0
    status, body = await get_kpis(http, gw, service)
    assert (status, body["error"]) == (503, "redis_unavailable")
