"""The development demo page, in a real browser against a real gateway and worker.

Proves: ``GET /`` is the JSON index unless ``CONTINUITY_GATEWAY_DEMO`` is on,
then it is the page (with a strict Content-Security-Policy) and only its
own files are served; in Chromium (the Debian package, driven by
Playwright), an item added in the mobile pane shows up live in the desktop
and POS panes, and a handoff code made on mobile is claimed in the POS pane,
which then shows the claimed cart and its store; the KPI panel (service token
in the fragment) shows the live KPIs and counts the resume of this cart from
the phone to the desktop; without a service token it says so. At 1400, 1000
and 700 px wide every KPI table lies inside its panel and no panel overlaps
another (bounding boxes), and an empty cart's line has no dangling currency.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from tests.support.events import added, event
from tests.support.gateway import Gateway, bearer, post_events, start_gateway, token
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Generous: a busy machine may take a while to fold; the browser polls until then.
UI_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def demo_gateway(stack: Stack, gateways: list[Gateway]) -> Gateway:
    """A gateway serving the demo page over the shared worker's state."""
    return start_gateway(stack, "gateway-demo", CONTINUITY_GATEWAY_DEMO="1")


async def test_the_page_is_served_only_in_demo_mode(
    demo_gateway: Gateway, gateways: list[Gateway], http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateways[0].url}/") as resp:
        assert resp.status == 200
        assert (await resp.json())["service"] == "continuity-gateway"
    async with http.get(f"{gateways[0].url}/static/demo.js") as resp:
        assert resp.status == 404
    async with http.get(f"{demo_gateway.url}/") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/html")
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        assert "In-store POS" in await resp.text()
    for name, kind in (
        ("demo.js", "text/javascript"),
        ("demo.css", "text/css"),
        ("continuity.js", "text/javascript"),
    ):
        async with http.get(f"{demo_gateway.url}/static/{name}") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith(kind)
    for name in ("demo.py", "..%2Froutes_demo.py", "missing.js", "package.json", "client"):
        async with http.get(f"{demo_gateway.url}/static/{name}") as resp:
            assert resp.status == 404
            assert (await resp.json())["error"] == "not_found"


@pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason="Chromium missing: `make system-deps` installs the Debian package chromium",
)
async def test_three_panes_share_one_cart_and_the_pos_claims_it(
    demo_gateway: Gateway, ids: Callable[[str], str], tmp_path: Path
) -> None:
    pw = pytest.importorskip("playwright.async_api")
    customer, store = ids("demo"), ids("store")
    fragment = urlencode(
        {
            "customer": customer,
            "token": token("customer", subject=customer),
            "pos": token("pos", store=store),
            "store": store,
            "service": token("service"),
        }
    )
    expect = pw.expect
    async with pw.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{demo_gateway.url}/#{fragment}")
            for pane in ("mobile", "desktop", "pos"):
                await expect(page.locator(f"#{pane} .status")).to_contain_text(
                    "live", timeout=UI_TIMEOUT_MS
                )
            kpis = page.locator("#kpis")
            await expect(kpis.locator(".status")).to_contain_text("updated", timeout=UI_TIMEOUT_MS)
            await expect(page.locator("#kpi-share")).to_have_text(re.compile(r"^(-|[0-9.]+%) \("))
            await expect(page.locator("#kpi-median")).to_have_text(re.compile(r"^(-|[0-9.]+ \w+)$"))
            await expect(page.locator("#kpi-abandoned")).to_have_text(re.compile(r"^[0-9]+$"))
            resumes_before = int(await page.locator("#kpi-resumes").inner_text())

            mobile = page.locator("#mobile")
            await mobile.get_by_label("Product").select_option("SOCK-3PK")
            await mobile.get_by_label("Quantity").fill("2")
            await mobile.get_by_role("button", name="Add to cart").click()
            for pane in ("desktop", "pos", "mobile"):
                line = page.locator(f'#{pane} .cart tr[data-sku="SOCK-3PK"]')
                await expect(line).to_contain_text("mobile_app", timeout=UI_TIMEOUT_MS)
                await expect(line.locator("td").nth(1)).to_have_text("2")
            # The cart picked up on the desktop: a resume mobile_app -> web, counted live.
            desktop = page.locator("#desktop")
            await desktop.get_by_label("Product").select_option("CAP-SUN")
            await desktop.get_by_role("button", name="Add to cart").click()
            await expect(page.locator('#mobile .cart tr[data-sku="CAP-SUN"]')).to_contain_text(
                "web", timeout=UI_TIMEOUT_MS
            )
            await expect(page.locator("#kpi-resumes")).not_to_have_text(
                str(resumes_before), timeout=UI_TIMEOUT_MS
            )
            assert int(await page.locator("#kpi-resumes").inner_text()) > resumes_before
            await expect(kpis.locator("#kpi-pairs")).to_contain_text("mobile_app > web")

            await mobile.get_by_role("button", name="Get a handoff code").click()
            code = page.locator("#handoff-code")
            await expect(code).to_have_text(
                re.compile(r"^[0-9A-Z]{4}-[0-9A-Z]{4}$"), timeout=UI_TIMEOUT_MS
            )
            pos = page.locator("#pos")
            await pos.get_by_role("textbox", name="Handoff code").fill(await code.inner_text())
            await pos.get_by_role("button", name="Claim", exact=True).click()
            await expect(page.locator("#claimed")).to_contain_text(
                f"store {store}", timeout=UI_TIMEOUT_MS
            )
            await expect(pos.locator('.claimed-cart tr[data-sku="SOCK-3PK"]')).to_be_visible()
            # The claim event reaches every pane live: the last store is now this one.
            for pane in ("pos", "mobile", "desktop"):
                await expect(page.locator(f"#{pane} .cart .meta")).to_contain_text(
                    f"last store {store}", timeout=UI_TIMEOUT_MS
                )

            shot = tmp_path / "demo.png"
            await page.screenshot(path=str(shot), full_page=True)
            print(f"demo screenshot: {shot}")
            assert not errors, errors
        finally:
            await browser.close()


@pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason="Chromium missing: `make system-deps` installs the Debian package chromium",
)
async def test_without_a_service_token_the_kpi_panel_says_so(
    demo_gateway: Gateway, ids: Callable[[str], str]
) -> None:
    pw = pytest.importorskip("playwright.async_api")
    customer = ids("demo")
    fragment = urlencode(
        {"customer": customer, "token": token("customer", subject=customer), "pos": ""}
    )
    async with pw.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{demo_gateway.url}/#{fragment}")
            await pw.expect(page.locator("#kpis .status")).to_contain_text("No service token")
            await pw.expect(page.locator("#setup-error")).to_be_visible()
            assert not errors, errors
        finally:
            await browser.close()


# Each KPI table's box must lie inside its panel's, and no two panels may overlap
# (a 1 px tolerance for subpixel rounding). Run in the page, on laid-out boxes.
_KPI_LAYOUT = """() => {
  const box = (e) => { const r = e.getBoundingClientRect();
    return { left: r.left, right: r.right, top: r.top, bottom: r.bottom }; };
  const panels = [...document.querySelectorAll('#kpis .kpi-tables > div')];
  return { panels: panels.map((p) => ({ title: p.querySelector('h3').textContent,
    panel: box(p), table: p.querySelector('table') && box(p.querySelector('table')) })),
    section: box(document.getElementById('kpis')) };
}"""


def _overflows(layout: dict[str, Any]) -> list[str]:
    """What sticks out: a table beyond its panel, panels over each other, or the section."""
    out = []
    panels = layout["panels"]
    for p in panels:
        t, b = p["table"], p["panel"]
        if t and (t["left"] < b["left"] - 1 or t["right"] > b["right"] + 1):
            out.append(
                f"{p['title']}: table {t['left']:.0f}..{t['right']:.0f} "
                f"outside its panel {b['left']:.0f}..{b['right']:.0f}"
            )
        s = layout["section"]
        if b["right"] > s["right"] + 1:
            out.append(f"{p['title']}: panel beyond the KPI section")
    for i, a in enumerate(panels):
        for c in panels[i + 1 :]:
            x, y = a["panel"], c["panel"]
            if (
                min(x["right"], y["right"]) - max(x["left"], y["left"]) > 1
                and min(x["bottom"], y["bottom"]) - max(x["top"], y["top"]) > 1
            ):
                out.append(f"{a['title']} overlaps {c['title']}")
    return out


@pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason="Chromium missing: `make system-deps` installs the Debian package chromium",
)
@pytest.mark.parametrize("width", [1400, 1000, 700])
async def test_kpi_tables_stay_inside_their_panels_and_an_empty_cart_reads_well(
    demo_gateway: Gateway,
    ids: Callable[[str], str],
    http: aiohttp.ClientSession,
    width: int,
    tmp_path: Path,
) -> None:
    """At 1400x1000 the start-channel table ran into the path table; an empty cart
    read "subtotal 0 ." (no currency to show)."""
    pw = pytest.importorskip("playwright.async_api")
    customer, other = ids("layout"), ids("layout-cart")
    status, _ = await post_events(
        http,
        demo_gateway,
        event("browse.product_viewed", {"sku": "SOCK-3PK"}, customer=customer),
        bearer("customer", subject=customer),
    )
    assert status == 202
    # A started cart on every channel the start-channel table can list, so it is as wide
    # as it gets (every column filled).
    status, _ = await post_events(
        http,
        demo_gateway,
        [
            event("cart.item_added", added("A-1"), customer=other, channel=ch)
            for ch in ("web", "mobile_app", "pos", "call_center")
        ],
        bearer("service"),
    )
    assert status == 202
    fragment = urlencode(
        {
            "customer": customer,
            "token": token("customer", subject=customer),
            "pos": token("pos", store="s-1"),
            "service": token("service"),
        }
    )
    async with pw.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": width, "height": 1000})
            await page.goto(f"{demo_gateway.url}/#{fragment}")
            await pw.expect(page.locator("#kpi-channels table")).to_be_visible(
                timeout=UI_TIMEOUT_MS
            )
            meta = page.locator("#desktop .cart .meta")
            await pw.expect(meta).to_contain_text("0 item(s)", timeout=UI_TIMEOUT_MS)
            text = await meta.inner_text()
            assert " ." not in text, text
            assert "subtotal 0." in text, text
            layout = await page.evaluate(_KPI_LAYOUT)
            await page.screenshot(path=str(tmp_path / f"kpis-{width}.png"), full_page=True)
            problems = _overflows(layout)
            assert problems == [], f"at {width} px: {problems}"
        finally:
            await browser.close()
