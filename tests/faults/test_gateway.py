"""Faults of the gateway: killed and restarted while SSE clients follow sessions.

Proves, against the oracle (a single-topic workload, exact to the byte), that
a gateway SIGKILLed several times mid-traffic (and once stopped with SIGTERM)
and restarted on the same port costs its stream clients nothing. Each client
reconnects as a browser's ``EventSource`` does (after the server's ``retry``,
with ``Last-Event-ID``; half of them browser-style with the token in the
query) and:

* receives strictly increasing versions over all its connections: never a
  stale state, never one twice;
* after a resume gets first the newest state (at least the version Redis held
  when it reconnected), not the next one after its ``Last-Event-ID``;
* is only ever shown states the sequential fold passes through, to the byte;
* ends on the state Redis holds, which is the oracle's: zero lost, zero doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from schemas.session import Session
from streams.kafka.publish import Publisher
from tests.support.fault_report import FaultRow, compare, pick, record
from tests.support.gateway import Gateway, start_gateway, token
from tests.support.oracle import cart_workload, mismatches, oracle, oracle_versions
from tests.support.sse_follower import (
    Connection,
    Follower,
    listening,
    strictly_increasing,
    versions,
)
from tests.support.stack import Stack, WorkerGroup, publish, wait_until

pytestmark = pytest.mark.timeout(pick(300, 900))

# Each chunk of the workload is sent over this long; the gateway goes down 0.5-1.5 s
# into it, so every fault happens while events flow. On even faults it is restarted
# at once and the chunk's last quarter waits until a client is back to a session
# that moved on: the clients (retrying every 2 s) resume while events still flow,
# however long a loaded machine takes to start the gateway. On odd faults it stays
# down until the chunk is sent, so the clients resume onto sessions that moved on
# and then stay quiet: only a stream that sends the newest state at once, without
# waiting for another change, settles them.
CHUNK_SECONDS = 6.0


@pytest.fixture
async def sse_http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client for many long-lived streams: no connection limit (aiohttp's default of
    100 would queue the followers beyond it), no pooling (a killed gateway leaves no
    stale connection), and no read timeout (a stream is quiet between versions)."""
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, force_close=True),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
    ) as session:
        yield session


@dataclass
class _Sent:
    count: int = 0


async def _paced(
    pub: Publisher,
    events: list[dict[str, Any]],
    seconds: float,
    sent: _Sent,
    hold: asyncio.Event | None = None,
) -> None:
    """Publish ``events`` in order, spread evenly over about ``seconds``; with ``hold``,
    the last quarter waits until it is set."""
    ticks = max(1, int(seconds / 0.05))
    size = max(1, -(-len(events) // ticks))
    held_from = len(events) * 3 // 4
    for i in range(0, len(events), size):
        if hold is not None and i >= held_from:
            await hold.wait()
        await publish(pub, events[i : i + size])
        sent.count = i + size
        await asyncio.sleep(0.05)


def _news_waiting(conn: Connection) -> bool:
    """Redis held a newer version than the client had when it (re)connected."""
    return conn.stored > (conn.sent_last or 0)


async def _one_back_to_news(followers: list[Follower], connections: int) -> None:
    """Wait until some client has reconnected (its ``connections``-th) to a session
    that moved on while it was away."""

    async def back() -> bool:
        return any(
            len(f.connections) >= connections and _news_waiting(f.connections[-1])
            for f in followers
        )

    await wait_until(back, timeout=60, interval=0.05)


async def _stop(gw: Gateway, *, term: bool) -> float:
    """SIGTERM (streams end at once, then it exits) or SIGKILL; seconds it took."""
    began = time.monotonic()
    if term:
        await asyncio.to_thread(gw.child.stop)
    else:
        gw.child.kill()
    return time.monotonic() - began


async def _start_again(stack: Stack, gw: Gateway) -> Gateway:
    """The same gateway command on the same port, once it listens."""
    child = gw.child.restart()
    stack.workers.append(child)  # stopped with the test's group
    assert child.port is not None
    await listening(child.port, child.alive)
    return Gateway(child)


def _settled(f: Follower, connections: int) -> bool:
    """Connected at least ``connections`` times, open, and shown the newest state
    already if Redis held one newer than what the client had."""
    if not f.open or len(f.connections) < connections:
        return False
    conn = f.connections[-1]
    return conn.first is not None or not _news_waiting(conn)


async def _all_settled(followers: list[Follower], connections: int, timeout: float) -> None:
    async def done() -> bool:
        return all(_settled(f, connections) for f in followers)

    try:
        await wait_until(done, timeout=timeout, interval=0.1)
    except AssertionError:
        behind = [
            (f.key, f.open, f.connections[-1:], f.refused, f.failures, f.errors)
            for f in followers
            if not _settled(f, connections)
        ]
        raise AssertionError(f"clients not back with the newest state: {behind[:10]}") from None


async def _converge(group: WorkerGroup, expected: dict[str, Session], timeout: float) -> None:
    async def done() -> bool:
        return not await mismatches(group.state, expected)

    # On a timeout the comparison that follows reports what was lost or doubled.
    with contextlib.suppress(AssertionError):
        await wait_until(done, timeout=timeout, interval=0.5)


async def _caught_up(
    followers: list[Follower], expected: dict[str, Session], timeout: float
) -> None:
    async def done() -> bool:
        return all(f.last == expected[f.key].version for f in followers)

    # Likewise: a client short of the final version is counted as lost below.
    with contextlib.suppress(AssertionError):
        await wait_until(done, timeout=timeout, interval=0.2)


def _redis_verdicts(
    expected: dict[str, Session], stored: dict[str, Session | None]
) -> tuple[set[str], set[str], set[str]]:
    """Keys lost, doubled and wrong in Redis, as ``fault_report.compare`` counts them."""
    lost: set[str] = set()
    doubled: set[str] = set()
    wrong: set[str] = set()
    for key, want in expected.items():
        have = stored.get(key)
        if have is None or have.version < want.version:
            lost.add(key)
        elif have.version > want.version:
            doubled.add(key)
        elif have.model_dump_json() != want.model_dump_json():
            wrong.add(key)
    return lost, doubled, wrong


def _follower(
    http: aiohttp.ClientSession,
    gw: Gateway,
    group: WorkerGroup,
    reads: asyncio.Semaphore,
    n: int,
    key: str,
) -> Follower:
    url = f"{gw.url}/v1/sessions/{key}/stream"
    tok = token("customer", subject=key, ttl=3 * 3600)
    if n % 2:  # a browser's EventSource: the token in the query, Last-Event-ID as a header
        return Follower(http, url, key, group.state, reads, query={"access_token": tok})
    auth = {"Authorization": f"Bearer {tok}"}
    return Follower(http, url, key, group.state, reads, headers=auth)


async def test_gateway_restarted_under_sse_clients_resumes_every_client_with_no_gap(
    group: WorkerGroup, publisher: Publisher, sse_http: aiohttp.ClientSession
) -> None:
    restarts = pick(3, 8)
    rng = random.Random(71)
    events = cart_workload(
        seed=71, customers=pick(150, 400), per_customer=pick(12, 16), prefix=group.group
    )
    expected = oracle(events)
    states = oracle_versions(events)
    assert all(states[k][v.version] == v for k, v in expected.items()), "the two folds agree"
    followed = sorted(expected)[: pick(20, 75)]
    group.start("a")
    await group.ready(publisher)
    gw = start_gateway(group.stack, f"{group.group}-gw", prefix=group.prefix)
    reads = asyncio.Semaphore(16)
    followers = [
        _follower(sse_http, gw, group, reads, n, followed[n % len(followed)])
        for n in range(pick(40, 150))
    ]
    tasks = [asyncio.create_task(f.run()) for f in followers]
    stop_seconds: list[float] = []
    quiet: list[tuple[float, float]] = []  # spans with no traffic while clients came back
    try:
        await _all_settled(followers, 1, timeout=60)
        step = len(events) // (restarts + 1)
        for n in range(restarts):
            sent = _Sent()
            chunk = events[n * step : (n + 1) * step]
            flowing = not n % 2  # clients come back while the chunk still flows
            resumed = asyncio.Event()
            sending = asyncio.create_task(
                _paced(publisher, chunk, CHUNK_SECONDS, sent, resumed if flowing else None)
            )
            await asyncio.sleep(rng.uniform(0.5, 1.5))
            # What this test is about: the gateway goes down while events flow.
            assert 0 < sent.count < len(chunk)
            assert not sending.done()
            stop_seconds.append(await _stop(gw, term=n == 1))
            if not flowing:
                await sending  # down for the rest of the chunk: resumes onto a quiet stream
            gw = await _start_again(group.stack, gw)
            if flowing:
                await _one_back_to_news(followers, n + 2)
                resumed.set()
            await sending
            calm = time.monotonic()
            # Every client is back (and shown the newest state) before the next fault,
            # so each fault hits every client.
            await _all_settled(followers, n + 2, timeout=60)
            quiet.append((calm, time.monotonic()))
        await publish(publisher, events[restarts * step :])
        await _converge(group, expected, timeout=pick(180, 600))
        await _caught_up(followers, expected, timeout=60)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    stored = {k: await group.state.get(k) for k in expected}
    lost_keys, doubled_keys, wrong_keys = _redis_verdicts(expected, stored)
    assert (len(lost_keys), len(doubled_keys), len(wrong_keys)) == compare(expected, stored)
    problems: list[str] = []
    gap_resumes = quiet_resumes = 0
    for f in followers:
        got = versions(f)
        if not strictly_increasing(got):
            doubled_keys.add(f.key)
            problems.append(f"{f.key}: versions not strictly increasing: {got}")
        if f.last != expected[f.key].version:
            lost_keys.add(f.key)
            problems.append(
                f"{f.key}: ended at {f.last}, Redis/oracle at {expected[f.key].version}"
            )
        for d in f.deliveries:
            shown = states[f.key].get(d.version)
            if shown is None or orjson.loads(d.data) != shown.public():
                wrong_keys.add(f.key)
                problems.append(f"{f.key}: v{d.version} is not the fold's state at that version")
        for c in f.connections:
            if not _news_waiting(c):
                continue  # nothing newer waiting: the stream owes nothing at once
            if c.sent_last is not None:
                gap_resumes += 1
                quiet_resumes += any(a <= c.opened_at <= b for a, b in quiet)
            if c.first is None or c.first < c.stored:
                lost_keys.add(f.key)
                problems.append(
                    f"{f.key}: resumed from {c.sent_last} with v{c.stored} stored, "
                    f"first shown {c.first}"
                )
        if len(f.connections) < restarts + 1:
            problems.append(f"{f.key}: {len(f.connections)} connections, not hit by every fault")
        problems.extend(f"{f.key}: unexpected {u}" for u in f.unexpected)
        problems.extend(f"{f.key}: follower failed: {e}" for e in f.errors)
        if f.refused:
            # A browser's EventSource gives up for good on an answer other than 200.
            problems.append(f"{f.key}: reconnects refused with {f.refused}")
    # One verdict per session, the worst: lost, then doubled, then wrong.
    doubled_keys -= lost_keys
    wrong_keys -= lost_keys | doubled_keys
    record(
        FaultRow(
            "gateway SIGKILL/SIGTERM under SSE clients",
            restarts,
            len(events),
            len(expected),
            len(lost_keys),
            len(doubled_keys),
            len(wrong_keys),
        )
    )
    print(
        f"gateway faults: {restarts} restarts (stops took "
        f"{', '.join(f'{s:.2f}' for s in stop_seconds)} s), {len(followers)} clients on "
        f"{len(followed)} sessions, {sum(len(f.connections) for f in followers)} connections, "
        f"{gap_resumes} resumes with newer state waiting ({quiet_resumes} with no traffic), "
        f"{sum(len(f.deliveries) for f in followers)} states delivered, "
        f"{sum(f.failures for f in followers)} failed attempts, "
        f"{sum(len(f.refused) for f in followers)} refused"
    )
    assert (len(lost_keys), len(doubled_keys), len(wrong_keys)) == (0, 0, 0), problems[:20]
    assert problems == []
    # The resume paths that matter were taken: clients came back to sessions that had
    # moved on while the gateway was down, some while events flowed, some to a quiet
    # session (else the newest-first checks proved nothing).
    assert gap_resumes - quiet_resumes > 0
    assert quiet_resumes > 0
