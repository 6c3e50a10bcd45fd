"""A claim whose event Kafka did not acknowledge in time, though it landed: claimed once.

Proves, on a broker, Redis, worker and gateway of the test's own: a POS till
claims a code while the broker is frozen (SIGSTOP) and is answered
``503 kafka_unavailable``; the broker thaws and the claim event, sent before
the answer, lands and is applied. The code was not put back for anyone:
another store claiming it is told it is claimed (410) instead of being handed
the session a second time. The till's retry (same store and terminal, a fresh
token) gets its 200, and its event carries the first one's event id, so the
session holds one claim: one version more, the first store's.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from streams.kafka.publish import Publisher
from tests.support.events import added, event
from tests.support.gateway import bearer, post_events, read_session
from tests.support.private_stack import PrivateStack, private_stack
from tests.support.stack import wait_until

pytestmark = pytest.mark.e2e

SERVICE = bearer("service")


@pytest.fixture
async def st(tmp_path: Path) -> AsyncIterator[PrivateStack]:
    async with private_stack(tmp_path) as stack:
        yield stack


async def post(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    async with http.post(url, headers=headers) as resp:
        return resp.status, orjson.loads(await resp.read())


async def test_a_claim_kafka_did_not_acknowledge_is_applied_once(
    st: PrivateStack, http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    st.start_worker("w")
    gw = st.start_gateway("gw", CONTINUITY_GATEWAY_PRODUCE_TIMEOUT="2")
    async with Publisher(st.bootstrap, linger_ms=1) as pub:
        await st.ready(pub)
    c = ids("c")
    status, body = await post_events(
        http, gw, event("cart.item_added", added("A-1"), customer=c), SERVICE
    )
    assert status == 202, body
    status, before, _ = await read_session(http, gw, c, SERVICE, after=body["after"])
    assert status == 200
    status, made = await post(
        http, f"{gw.url}/v1/sessions/{c}/handoff", bearer("customer", subject=c)
    )
    assert status == 201, made
    claim = f"{gw.url}{made['claim']}"

    st.broker.proc.send_signal(signal.SIGSTOP)
    try:
        status, body = await post(http, claim, bearer("pos", store="s-first", subject="till-1"))
    finally:
        st.broker.proc.send_signal(signal.SIGCONT)
    assert (status, body["error"]) == (503, "kafka_unavailable"), body

    async def landed() -> bool:
        _, now, _ = await read_session(http, gw, c, SERVICE)
        return bool(now.get("last_store_id") == "s-first")

    await wait_until(landed, timeout=90, interval=0.5)

    status, body = await post(http, claim, bearer("pos", store="s-other"))
    assert (status, body.get("error")) == (410, "handoff_claimed"), "claimed twice"

    status, body = await post(http, claim, bearer("pos", store="s-first", subject="till-1"))
    assert status == 200, body
    assert (body["key"], body["store_id"]) == (c, "s-first")
    status, after, _ = await read_session(http, gw, c, SERVICE, after=body["after"])
    assert status == 200
    assert after["version"] == before["version"] + 1, "one claim applied, not two"
    assert (after["last_store_id"], after["last_channel"]) == ("s-first", "pos")
