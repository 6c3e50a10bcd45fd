"""Session expiry through real processes: broker, worker, Redis, gateway and CLI.

Proves: a worker folding events far apart in event time ends a session idle
past its TTL (a customer's last event 100 days ago; a guest idle 90 minutes
past a one-hour guest TTL) and starts a fresh one whose version continues,
while a customer idle less than its TTL keeps its cart; the gateway's read
and ``continuity session show`` serve the fresh session.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from streams.kafka.publish import Publisher
from tests.support.events import added, event
from tests.support.gateway import bearer, read_session, start_gateway
from tests.support.stack import Stack, WorkerGroup, publish, wait_until, wait_version
from tests.system.test_cli import cli_env, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.clock]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def test_a_worker_ends_idle_sessions_and_reads_show_the_fresh_one(
    stack: Stack,
    group: WorkerGroup,
    publisher: Publisher,
    http: aiohttp.ClientSession,
    ids: Callable[[str], str],
) -> None:
    group.start(
        "expiry",
        CONTINUITY_GUEST_TTL="3600",
        CONTINUITY_SESSION_TTL="7200",
        CONTINUITY_EXPIRY_GRACE="600",
    )
    await group.ready(publisher)
    old, guest, kept = ids("old"), ids("guest"), ids("kept")
    now = datetime.now(UTC).replace(microsecond=0)
    await publish(
        publisher,
        [
            event("cart.item_added", added("A-1"), customer=old, at=iso(now - timedelta(days=100))),
            event("cart.item_added", added("G-1"), anon=guest, at=iso(now - timedelta(minutes=90))),
            event(
                "cart.item_added", added("K-1"), customer=kept, at=iso(now - timedelta(minutes=90))
            ),
        ],
    )
    for key in (old, guest, kept):
        await wait_version(group.state, key, 1)
    await publish(
        publisher,
        [
            event("cart.item_added", added("N-1"), customer=old, at=iso(now)),
            event("cart.item_added", added("H-1"), anon=guest, at=iso(now)),
            event("cart.item_added", added("L-1"), customer=kept, at=iso(now)),
        ],
    )
    # v1 the first event, v2 the ending, v3 the new event.
    fresh = await wait_version(group.state, old, 3)
    assert [line.sku for line in fresh.cart] == ["N-1"]
    again = await wait_version(group.state, guest, 3)
    assert [line.sku for line in again.cart] == ["H-1"]
    alive = await wait_version(group.state, kept, 2)
    assert [line.sku for line in alive.cart] == ["K-1", "L-1"], "idle 90 min < 2 h"

    gateway = start_gateway(stack, f"gateway-{group.group}", prefix=group.prefix)

    async def served() -> object:
        status, body, _ = await read_session(http, gateway, old, bearer("service"))
        return body if status == 200 else None

    body = await wait_until(served, timeout=30)
    assert body["version"] == 3
    assert [line["sku"] for line in body["cart"]] == ["N-1"]

    code, out, err = await run_cli(
        "session", "show", old, env={**cli_env(stack), "CONTINUITY_REDIS_PREFIX": group.prefix}
    )
    assert code == 0, err
    shown = json.loads(out)
    assert shown["version"] == 3
    assert [line["sku"] for line in shown["cart"]] == ["N-1"]
