"""Reads and streams while every worker is down, and how fresh they say they are.

Proves, on a broker, Redis, worker and gateway of the test's own: with the
only worker SIGKILLed, the gateway keeps answering reads and opening streams
with the last committed state, accepts new events (Kafka keeps them), and
says the view may be behind (``X-Continuity-Workers: none``, the applied
position and time unchanged); when a worker is back, the stream opened during
the outage receives the new version and the headers say ``live`` again. The
applied position named is the one of the partition Kafka put the session's
events on.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from streams.core.placement import partition_of
from streams.kafka.publish import Publisher
from tests.support.events import added, event
from tests.support.gateway import bearer, next_event, post_events, read_session, sse_events
from tests.support.private_stack import PrivateStack, private_stack
from tests.support.stack import PARTITIONS, applied_through, publish, wait_until

pytestmark = pytest.mark.e2e

STALE = {"CONTINUITY_WORKER_STALE_AFTER": "3"}


@pytest.fixture
async def st(tmp_path: Path) -> AsyncIterator[PrivateStack]:
    async with private_stack(tmp_path) as stack:
        yield stack


async def test_reads_and_streams_go_on_while_every_worker_is_down(
    st: PrivateStack, http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    c = ids("c")
    service = bearer("service")
    worker = st.start_worker("w")
    gw = st.start_gateway("gw", **STALE)
    async with Publisher(st.bootstrap, linger_ms=1) as pub:
        await st.ready(pub)
        written = await publish(
            pub, [event("cart.item_added", added("A-1"), customer=c, channel="mobile_app")]
        )
        await applied_through(st.state, written)
    ((tp, offset),) = written.items()
    assert tp == f"cart-events:{partition_of(c, PARTITIONS)}", "the key's partition, as Kafka's"

    status, body, headers = await read_session(http, gw, c, service)
    assert (status, body["version"]) == (200, 1)
    assert headers["X-Continuity-Workers"] == "live"
    assert f"{tp}@{offset}" in headers["X-Continuity-Applied"].split(",")
    applied_at = datetime.fromisoformat(headers["X-Continuity-Applied-At"])
    assert abs(datetime.now(UTC) - applied_at) < timedelta(seconds=60)

    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait(timeout=10)

    async def behind() -> bool:
        _, _, h = await read_session(http, gw, c, service)
        return h["X-Continuity-Workers"] == "none"

    await wait_until(behind, timeout=20, interval=0.5)
    status, body, headers = await read_session(http, gw, c, service)
    assert (status, body["version"]) == (200, 1), "the last committed state is served"
    assert f"{tp}@{offset}" in headers["X-Continuity-Applied"].split(",")
    assert datetime.fromisoformat(headers["X-Continuity-Applied-At"]) == applied_at

    customer = bearer("customer", subject=c)
    async with http.get(f"{gw.url}/v1/sessions/{c}/stream", headers=customer) as resp:
        assert resp.status == 200, "a stream opens with no worker running"
        events = sse_events(resp)
        first = await next_event(events)
        assert first.json()["version"] == 1
        status, _ = await post_events(
            http,
            gw,
            event("cart.item_added", added("B-2"), customer=c, channel="web"),
            customer,
        )
        assert status == 202, "events are accepted and kept in Kafka"
        status, body, _ = await read_session(http, gw, c, service)
        assert body["version"] == 1, "nothing folds without a worker"

        st.start_worker("w2")
        second = await next_event(events, timeout=60)
        assert second.json()["version"] == 2
        assert {ln["sku"] for ln in second.json()["cart"]} == {"A-1", "B-2"}

    async def live() -> bool:
        _, _, h = await read_session(http, gw, c, service)
        return h["X-Continuity-Workers"] == "live"

    await wait_until(live, timeout=20, interval=0.5)
    _, _, headers = await read_session(http, gw, c, service)
    assert datetime.fromisoformat(headers["X-Continuity-Applied-At"]) > applied_at
