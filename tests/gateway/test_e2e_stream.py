"""Live sessions over Server-Sent Events, through real gateway processes.

Proves: a stream starts with a ``retry`` hint and the current state, then
sends every newer state with the version as id and keeps the line alive with
comments; a client that drops and reconnects with ``Last-Event-ID`` sees no
gap and no duplicate (every version it receives is newer than the one
before, the newest state holds every change, and the last one equals Redis);
reconnecting with the current version sends nothing until the next change;
two gateways both deliver a write made through one of them; a guest's
stream ends with ``merged`` when the guest signs in; a browser-style stream
(token and resume point in the query) works, and its token never reaches
the log; one token holds at most ``CONTINUITY_SSE_MAX_STREAMS_PER_TOKEN``
streams of a gateway (429 past it, other tokens unaffected, a closed stream's
slot returned); a stream ends with ``token_expired`` when its token's ``exp``
passes; a crowd of streams of one session woken by one notice all get the new
state without a Redis read (the notice carried it); a stream sends the state
its notice carried, not Redis's; a notice without a state (an older worker's)
makes its streams read the key, once. A started gateway froze its startup
objects out of garbage collection (``streams/heap.py``). Each state a stream
writes after a commit notice is timed from the Kafka timestamp of the oldest
record it carries news of (``continuity_freshness_seconds``); the state a
stream starts with is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from streams.core.notice import notice
from streams.core.session_codec import decode, encode
from streams.store.keys import updates
from streams.store.state import RedisState
from tests.support.events import added, event
from tests.support.gateway import (
    Gateway,
    SseEvent,
    bearer,
    next_event,
    post_events,
    read_session,
    sse_events,
    start_gateway,
    token,
)
from tests.support.metrics_text import metric
from tests.support.stack import Stack, wait_until, wait_version

pytestmark = pytest.mark.e2e


@asynccontextmanager
async def stream(
    http: aiohttp.ClientSession,
    gw: Gateway,
    sid: str,
    headers: dict[str, str] | None = None,
    **query: str,
) -> AsyncIterator[AsyncIterator[SseEvent]]:
    async with http.get(
        f"{gw.url}/v1/sessions/{sid}/stream", headers=headers or {}, params=query
    ) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        yield sse_events(resp)


async def add(http: aiohttp.ClientSession, gw: Gateway, c: str, sku: str, **extra: Any) -> str:
    status, body = await post_events(
        http, gw, event("cart.item_added", added(sku), customer=c, **extra), bearer("service")
    )
    assert status == 202, body
    return str(body["after"])


async def test_a_stream_sends_the_state_then_every_newer_one_and_keeps_alive(
    gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, _ = gateways
    c = ids("live")
    await read_session(http, a, c, bearer("service"), after=await add(http, a, c, "A-1"))
    async with stream(http, a, c, bearer("customer", subject=c)) as events:
        first = await anext(events)
        assert first.retry == 2000, "the reconnection delay comes first"
        state = await next_event(events)
        assert (state.event, state.id) == ("session", "1")
        assert state.json()["cart"][0]["sku"] == "A-1"

        await add(http, a, c, "B-2", channel="kiosk")
        newer = await next_event(events)
        assert (newer.event, newer.id, newer.json()["version"]) == ("session", "2", 2)
        assert newer.json()["last_channel"] == "kiosk"

        async def a_comment() -> bool:
            ev = await anext(events)
            return ev.comment == "ping"

        await wait_until(a_comment, timeout=30, interval=0)


async def test_resume_after_a_dropped_connection_has_no_gap_and_no_duplicate(
    gateways: list[Gateway],
    shared_worker: RedisState,
    http: aiohttp.ClientSession,
    ids: Callable[[str], str],
) -> None:
    a, b = gateways
    c = ids("resume")
    auth = bearer("customer", subject=c)
    seen: list[int] = []
    await add(http, b, c, "S-0")
    async with stream(http, a, c, auth) as events:
        seen.append(int((await next_event(events)).id or 0))
    # Dropped. Meanwhile the customer goes on shopping elsewhere.
    for n in range(1, 4):
        await add(http, b, c, f"S-{n}")
    await wait_version(shared_worker, c, 4)

    async with stream(http, a, c, {**auth, "Last-Event-ID": str(seen[-1])}) as events:
        resumed = await next_event(events)
        seen.append(int(resumed.id or 0))
        assert resumed.json()["version"] == 4, "the newest state, nothing older"
        assert sorted(ln["sku"] for ln in resumed.json()["cart"]) == [f"S-{n}" for n in range(4)]
        for n in range(4, 7):
            await add(http, b, c, f"S-{n}")
            while seen[-1] < n + 1:
                seen.append(int((await next_event(events)).id or 0))
    assert seen == sorted(set(seen)), f"strictly increasing, no duplicates: {seen}"
    session = await shared_worker.get(c)
    assert session is not None
    assert seen[-1] == session.version == 7
    metrics = await a.metrics()
    assert "continuity_sse_resumes_total" in metrics


async def test_resuming_at_the_current_version_sends_only_what_comes_next(
    gateways: list[Gateway],
    shared_worker: RedisState,
    http: aiohttp.ClientSession,
    ids: Callable[[str], str],
) -> None:
    a, b = gateways
    c = ids("uptodate")
    await add(http, a, c, "U-1")
    await add(http, a, c, "U-2")
    await wait_version(shared_worker, c, 2)
    async with stream(http, b, c, bearer("service"), last_event_id="2") as events:
        await add(http, a, c, "U-3")
        ev = await next_event(events)
        assert ev.id == "3", "version 2 is not sent again"


async def test_a_stream_for_a_session_not_yet_there_gets_its_first_version(
    gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, _ = gateways
    c = ids("newcomer")
    async with stream(http, a, c, bearer("customer", subject=c)) as events:
        assert (await anext(events)).retry == 2000
        await add(http, a, c, "N-1")
        ev = await next_event(events)
        assert (ev.id, ev.json()["key"]) == ("1", c)


async def test_two_gateways_both_deliver_a_write_made_through_one(
    gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, b = gateways
    c = ids("two")
    auth = bearer("customer", subject=c)
    async with stream(http, a, c, auth) as on_a, stream(http, b, c, auth) as on_b:
        await add(http, a, c, "T-1")
        got_a, got_b = await asyncio.gather(next_event(on_a), next_event(on_b))
        assert got_a.id == got_b.id == "1"
        assert got_a.json() == got_b.json()


async def test_a_guest_stream_ends_with_merged_when_the_guest_signs_in(
    gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, b = gateways
    guest, customer = ids("anon"), ids("cust")
    guest_auth = bearer("customer", subject=guest)
    status, _ = await post_events(
        http, a, event("cart.item_added", added("G-1"), anon=guest), guest_auth
    )
    assert status == 202
    async with stream(http, b, guest, guest_auth) as events:
        assert (await next_event(events)).id == "1"
        signed_in = bearer("customer", subject=customer, anon=guest)
        status, body = await post_events(
            http,
            a,
            event("session.identified", customer=customer, anon=guest, channel="web"),
            signed_in,
        )
        assert status == 202, body
        merged = await next_event(events)
        assert merged.event == "merged"
        assert merged.json() == {"key": guest, "merged_into": customer}
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(_dispatched(events)), 30)
    status, err, _ = await read_session(http, a, guest, guest_auth)
    assert (status, err["error"]) == (403, "sign_in_required")


async def test_a_browser_style_stream_works_and_its_token_is_never_logged(
    gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, _ = gateways
    c = ids("browser")
    await add(http, a, c, "W-1")
    await add(http, a, c, "W-2")
    secret_token = token("customer", subject=c)
    await read_session(http, a, c, bearer("service"), min_version="2")
    async with stream(http, a, c, access_token=secret_token, last_event_id="1") as events:
        ev = await next_event(events)
        assert ev.id == "2"
    # A token in the URL is for the stream only; the read route ignores it.
    status, err, _ = await read_session(http, a, c, {}, access_token=secret_token)
    assert (status, err["error"]) == (401, "missing_token")

    async def logged() -> bool:
        return f"/v1/sessions/{c}/stream" in a.child.log_path.read_text()

    await wait_until(logged)
    # Malformed requests carrying the token in their query: aiohttp would quote them.
    for line in (
        f"GET /v1/sessions/{c}/stream?access_token={secret_token}\x01 HTTP/1.1",
        f"GET /v1/sessions/{c}/stream?access_token={secret_token} HTTP/1.1\r\nContent-Length: x",
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", a.child.port)
        writer.write(line.encode() + b"\r\nHost: x\r\n\r\n")
        assert (await reader.readline()).startswith(b"HTTP/1.0 400")
        writer.close()
        await writer.wait_closed()

    async def scrubbed() -> bool:
        return "malformed HTTP request" in a.child.log_path.read_text()

    await wait_until(scrubbed)
    log = a.child.log_path.read_text()
    assert secret_token not in log
    assert "access_token" not in log


async def test_a_crowd_of_streams_woken_at_once_all_get_the_new_state(
    gateways: list[Gateway], shared_worker: RedisState, ids: Callable[[str], str]
) -> None:
    # One commit wakes every stream of a session in the same instant, and each re-reads
    # Redis: more at once than the read client's connection pool holds (redis-py's
    # default, 100). The same burst follows a pub/sub reconnect (every stream re-reads)
    # or a gateway restart (every client reconnects). No stream may end for it.
    a, _ = gateways
    c = ids("crowd")
    crowd = 160
    # A service token: a customer's may hold only CONTINUITY_SSE_MAX_STREAMS_PER_TOKEN.
    auth = bearer("service")
    # No connection limit in this client (aiohttp's default of 100 would queue the rest).
    async with (
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        ) as http,
        contextlib.AsyncExitStack() as streams,
    ):
        await add(http, a, c, "C-1")
        await wait_version(shared_worker, c, 1)
        followers = [
            await streams.enter_async_context(stream(http, a, c, auth)) for _ in range(crowd)
        ]
        firsts = await asyncio.gather(*(next_event(f) for f in followers))
        assert {ev.id for ev in firsts} == {"1"}
        before = metric(await a.metrics(), "continuity_sse_reads_total")
        await add(http, a, c, "C-2")
        seconds = await asyncio.gather(*(next_event(f) for f in followers), return_exceptions=True)
        ended = [r for r in seconds if not isinstance(r, SseEvent)]
        assert ended == [], f"{len(ended)} of {crowd} streams ended instead of sending v2"
        assert {r.id for r in seconds if isinstance(r, SseEvent)} == {"2"}
        # The notice carried the state: no read for the whole crowd (one if a pub/sub
        # reconnect came between and every stream re-read, together).
        reads = metric(await a.metrics(), "continuity_sse_reads_total") - before
        assert reads <= 1, f"{reads:g} Redis reads for one notice to {crowd} streams"


@pytest.mark.parametrize("carried", [True, False], ids=["state-carried", "header-only"])
async def test_a_stream_sends_the_state_its_notice_carried_or_reads_one_that_carried_none(
    gateways: list[Gateway],
    shared_worker: RedisState,
    http: aiohttp.ClientSession,
    ids: Callable[[str], str],
    carried: bool,
) -> None:
    # Version 2 is announced with a state unlike Redis's (Redis keeps version 1), so the
    # event tells which one a stream sent; or, as an older worker announces (and a merge,
    # an erasure), the key and version only, with version 2 written to Redis first.
    a, _ = gateways
    c = ids("carried" if carried else "header-only")
    await add(http, a, c, "K-1")
    await wait_version(shared_worker, c, 1)
    key, redis = shared_worker.session_key(c), shared_worker.redis
    channel = updates(shared_worker.space, shared_worker.space.partition(c))
    async with stream(http, a, c, bearer("service")) as events:
        assert (await next_event(events)).id == "1"
        before = metric(await a.metrics(), "continuity_sse_reads_total")
        newer = decode(await redis.hget(key, "d")).model_copy(
            update={"version": 2, "currency": "NOK"}
        )
        if carried:
            await redis.spublish(channel, notice(c, 2) + b"\n" + encode(newer))
        else:
            await redis.hset(key, mapping={"v": 2, "d": encode(newer)})
            await redis.spublish(channel, notice(c, 2))
        got = await next_event(events)
        assert (got.id, got.json()["version"], got.json()["currency"]) == ("2", 2, "NOK")
        reads = metric(await a.metrics(), "continuity_sse_reads_total") - before
        assert reads == (0 if carried else 1)
        assert decode(await redis.hget(key, "d")).version == (1 if carried else 2)


async def _dispatched(events: AsyncIterator[SseEvent]) -> AsyncIterator[SseEvent]:
    async for ev in events:
        if ev.comment is None:
            yield ev


PER_TOKEN = 2


@pytest.fixture(scope="module")
def capped(stack: Stack, shared_worker: RedisState) -> Gateway:
    """A gateway that lets one token hold two streams."""
    return start_gateway(
        stack, "gateway-capped", CONTINUITY_SSE_MAX_STREAMS_PER_TOKEN=str(PER_TOKEN)
    )


async def test_one_token_holds_only_so_many_streams(
    capped: Gateway, http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    c, other = ids("greedy"), ids("modest")
    await read_session(http, capped, c, bearer("service"), after=await add(http, capped, c, "A"))
    url = f"{capped.url}/v1/sessions/{c}/stream"
    async with contextlib.AsyncExitStack() as open_streams:
        for _ in range(PER_TOKEN):
            # A fresh token of the same customer is the same token identity.
            events = await open_streams.enter_async_context(
                stream(http, capped, c, bearer("customer", subject=c))
            )
            assert (await next_event(events)).event == "session"
        async with http.get(url, headers=bearer("customer", subject=c)) as resp:
            assert resp.status == 429, f"stream {PER_TOKEN + 1} of one token opened"
            body = await resp.json()
            assert body["error"] == "too_many_token_streams", body
            assert (body["limit"], resp.headers["Retry-After"]) == (PER_TOKEN, "5")
        async with stream(http, capped, other, bearer("customer", subject=other)):
            pass  # another token has slots of its own
        async with stream(http, capped, c, bearer("service")):
            pass  # a service token is bounded by the gateway's total only

    async def reopens() -> bool:
        async with http.get(url, headers=bearer("customer", subject=c)) as resp:
            return resp.status == 200

    await wait_until(reopens, timeout=10, interval=0.2)


async def test_a_stream_ends_when_its_token_expires(
    gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, _ = gateways
    c = ids("expiring")
    await read_session(http, a, c, bearer("service"), after=await add(http, a, c, "A"))
    async with http.get(
        f"{a.url}/v1/sessions/{c}/stream", headers=bearer("customer", subject=c, ttl=3)
    ) as resp:
        assert resp.status == 200
        events = sse_events(resp)
        assert (await next_event(events)).event == "session"
        last = await next_event(events, timeout=15)
        assert last.event == "token_expired", last
        assert last.json()["error"] == "token_expired"
        rest = [ev async for ev in events if ev.comment is None]
        assert rest == [], "the stream ended"


async def test_a_state_written_after_a_notice_is_timed_from_its_records_kafka_timestamp(
    gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, b = gateways
    c = ids("fresh")
    await read_session(http, b, c, bearer("service"), after=await add(http, b, c, "F-1"))
    count, total = "continuity_freshness_seconds_count", "continuity_freshness_seconds_sum"
    # The gateway is this test's alone (one test at a time per process): exact deltas.
    opened = await a.metrics()
    async with stream(http, a, c, bearer("customer", subject=c)) as events:
        assert (await next_event(events)).id == "1"
        before = await a.metrics()
        assert metric(before, count) == metric(opened, count), "the first state: no sample"
        posted = time.time()
        await add(http, b, c, "F-2")
        assert (await next_event(events)).id == "2"
        received = time.time()
        after = await a.metrics()
    assert metric(after, count) - metric(before, count) == 1
    # From the record's timestamp (the producing gateway's clock, set after ``posted``)
    # to the write, which came before the client read it.
    assert 0 <= metric(after, total) - metric(before, total) <= received - posted


async def test_a_started_gateway_froze_its_startup_objects(gateways: list[Gateway]) -> None:
    a, _ = gateways
    settled = [ln for ln in a.child.log_path.read_text().splitlines() if "garbage collector:" in ln]
    assert len(settled) == 1, settled
    frozen = int(settled[0].split("garbage collector: ")[1].split()[0])
    assert frozen > 10_000, settled[0]
    assert "thresholds 10000, " in settled[0]
