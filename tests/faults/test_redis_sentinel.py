"""Workers, a gateway and the CLI through Redis Sentinel, with a failover under traffic.

Real processes on loopback: a primary and a replica (Debian's ``redis-server``)
and a sentinel (``redis-server --sentinel``) watching them, quorum 1. The
worker, the gateway and ``continuity session show`` are given only
``redis+sentinel://`` URLs. While events flow, ``SENTINEL FAILOVER`` promotes
the replica: the old primary answers ``READONLY`` until it is demoted, the
clients ask the sentinel again and reach the new primary. Afterwards every
cart equals the oracle (0 lost, 0 doubled), no worker exited, and the gateway
and the CLI read the new primary.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from streams.dev import loopback
from streams.kafka.publish import Publisher
from streams.store import keys
from streams.store.client import connect
from streams.store.state import RedisState
from tests.support.events import event
from tests.support.fault_report import FaultRow, compare, pick, record
from tests.support.gateway import Gateway, bearer, read_session
from tests.support.model import model
from tests.support.oracle import NO_DEDUP, NO_DEDUP_ENV, cart_workload, oracle
from tests.support.private_stack import PrivateStack, private_stack
from tests.support.stack import applied_through, publish, single_primary, space, wait_until

# Sentinel watches one primary and its replicas; a cluster fails over by itself.
pytestmark = single_primary("Sentinel and a replica of one redis-server")

SERVICE = "continuity"


def _redis_server() -> str:
    exe = shutil.which("redis-server")
    assert exe is not None, "redis-server not on PATH (Debian: apt-get install redis-server)"
    return exe


@asynccontextmanager
async def sentinel_pair(st: PrivateStack) -> AsyncIterator[str]:
    """A replica of the stack's Redis and a sentinel over both; yields the Sentinel URL."""
    logs = st.root / "logs"
    replica_port = loopback.free_port()
    replica = loopback.spawn(
        "replica",
        [
            _redis_server(),
            *("--port", str(replica_port), "--bind", "127.0.0.1", "--save", ""),
            *("--dir", str(st.root), "--dbfilename", "replica.rdb"),
            *("--replicaof", "127.0.0.1", str(st.redis_child.port)),
        ],
        logs / "replica.log",
        env={"LD_PRELOAD": ""},
        port=replica_port,
    )
    sentinel_port = loopback.free_port()
    conf = st.root / "sentinel.conf"  # sentinel rewrites its own file: it must be writable
    conf.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {st.root}\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {st.redis_child.port} 1\n"
        f"sentinel down-after-milliseconds {SERVICE} 2000\n"
        f"sentinel failover-timeout {SERVICE} 10000\n"
    )
    sentinel = loopback.spawn(
        "sentinel",
        [_redis_server(), str(conf), "--sentinel"],
        logs / "sentinel.log",
        env={"LD_PRELOAD": ""},
        port=sentinel_port,
    )
    try:
        loopback.wait_port(replica_port, proc=replica.proc)
        loopback.wait_port(sentinel_port, proc=sentinel.proc)
        watcher = Redis(port=sentinel_port, decode_responses=True)

        async def replica_known() -> bool:
            replicas = await watcher.execute_command("SENTINEL", "REPLICAS", SERVICE)
            # Each entry is a dict of the fields SENTINEL REPLICAS lists.
            return any(
                "s_down" not in r["flags"] and r["master-link-status"] == "ok" for r in replicas
            )

        await wait_until(replica_known, 30, interval=0.2)
        await watcher.aclose()
        yield f"redis+sentinel://127.0.0.1:{sentinel_port}/{SERVICE}/0"
    finally:
        sentinel.stop()
        replica.stop()


async def _primary_port(sentinel_url: str) -> int:
    port = int(sentinel_url.split(":")[2].split("/")[0])
    watcher = Redis(port=port, decode_responses=True)
    try:
        _, primary = await watcher.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(primary)
    finally:
        await watcher.aclose()


async def _create_code(http: aiohttp.ClientSession, gw: Gateway, customer: str) -> str:
    headers = bearer("customer", subject=customer)
    async with http.post(f"{gw.url}/v1/sessions/{customer}/handoff", headers=headers) as resp:
        body = await resp.json()
        assert resp.status == 201, body
        return str(body["code"])


async def _claim(http: aiohttp.ClientSession, gw: Gateway, code: str) -> tuple[int, Any]:
    headers = bearer("pos", store="s-1")
    async with http.post(f"{gw.url}/v1/handoffs/{code}/claim", headers=headers) as resp:
        return resp.status, await resp.json()


async def test_a_claim_no_replica_confirms_is_undone_and_refused(tmp_path: Path) -> None:
    async with private_stack(tmp_path) as st:
        st.start_worker("w")
        async with Publisher(st.bootstrap, linger_ms=1) as pub:
            await st.ready(pub)
            written = await publish(
                pub, [event("browse.search", {"query": "q"}, customer="lonely")]
            )
            await applied_through(st.state, written)
        gw = st.start_gateway(
            "gw", CONTINUITY_HANDOFF_MIN_REPLICAS="1", CONTINUITY_HANDOFF_REPLICA_TIMEOUT_MS="100"
        )
        async with aiohttp.ClientSession() as http:
            code = await _create_code(http, gw, "lonely")
            status, body = await _claim(http, gw, code)
            assert (status, body["error"]) == (503, "handoff_unconfirmed"), body
            where = st.state.space
            assert await st.redis.exists(keys.handoff(where, code)) == 1, (
                "the code is pending again"
            )
            assert await st.redis.get(keys.handoff_seen(where, code)) == b"issued"


async def _paced(pub: Publisher, events: list[dict[str, Any]]) -> dict[str, int]:
    """Publish ``events`` in small steps over a few seconds; the highest offsets written."""
    written: dict[str, int] = {}
    for start in range(0, len(events), 6):
        for tp, off in (await publish(pub, events[start : start + 6])).items():
            written[tp] = max(written.get(tp, -1), off)
        await asyncio.sleep(0.1)
    return written


async def test_a_sentinel_failover_under_traffic_loses_nothing(tmp_path: Path) -> None:
    events = cart_workload(seed=88, customers=pick(40, 160), per_customer=12, prefix="snt")
    expected, carts = oracle(events, NO_DEDUP), model(events)
    half = len(events) // 2
    async with private_stack(tmp_path) as st, sentinel_pair(st) as url:
        old_primary = st.redis_child.port
        worker = st.start_worker(
            "w", **NO_DEDUP_ENV, REDIS_URL=url, CONTINUITY_RETRY_MAX_DELAY="0.3"
        )
        gw = st.start_gateway("gw", REDIS_URL=url, CONTINUITY_HANDOFF_MIN_REPLICAS="1")
        via_sentinel = connect(url, socket_timeout=5)
        state = RedisState(via_sentinel, space(st.prefix))
        try:
            async with Publisher(st.bootstrap, linger_ms=1) as pub:
                await st.ready(pub)
                written = await publish(pub, events[:half])
                await applied_through(state, written, timeout=180)
                shopper = "handoff-shopper"  # not in the workload: its claim is an event
                at_pos = await publish(
                    pub, [event("browse.search", {"query": "q"}, customer=shopper)]
                )
                await applied_through(state, at_pos)
                async with aiohttp.ClientSession() as http:
                    code = await _create_code(http, gw, shopper)
                    status, body = await _claim(http, gw, code)
                    assert status == 200, body
                sending = asyncio.create_task(_paced(pub, events[half:]))
                await asyncio.sleep(0.3)
                sentinel_port = int(url.split(":")[2].split("/")[0])
                watcher = Redis(port=sentinel_port)
                await watcher.execute_command("SENTINEL", "FAILOVER", SERVICE)
                await watcher.aclose()

                async def promoted() -> bool:
                    return await _primary_port(url) != old_primary

                await wait_until(promoted, 60, interval=0.1)
                assert not sending.done(), "the failover landed while events still flowed"
                for tp, off in (await sending).items():
                    written[tp] = max(written.get(tp, -1), off)

                async def demoted() -> bool:
                    # Sentinel turns the old primary into a replica and then closes its
                    # clients (CLIENT KILL TYPE normal), so they ask again where the
                    # primary is: a look that finds its connection closed is "not yet".
                    try:
                        role = await st.redis.execute_command("ROLE")
                    except RedisConnectionError:
                        return False
                    return bool(role[0] in (b"slave", "slave"))

                await wait_until(demoted, 60, interval=0.2)
                # Fresh connections, asked of the sentinel now: the promoted primary.
                checker = connect(url, socket_timeout=5)
                try:
                    now = RedisState(checker, space(st.prefix))
                    await applied_through(now, written, timeout=180)
                    stored = {k: await now.get(k) for k in sorted(expected)}
                finally:
                    await checker.aclose()
            lost, doubled, wrong = compare(expected, stored, carts)
            assert worker.alive(), "no worker exits in a failover"

            customer = sorted(expected)[0]
            async with aiohttp.ClientSession() as http:
                status, body, _ = await read_session(
                    http, gw, customer, bearer("customer", subject=customer)
                )
                assert (status, body["version"]) == (200, expected[customer].version), body
                status, body = await _claim(http, gw, code)
                assert (status, body["error"]) == (410, "handoff_claimed"), body
            code, out, err = await st.cli("session", "show", customer, env={"REDIS_URL": url})
            assert code == 0, err
            assert json.loads(out)["version"] == expected[customer].version
        finally:
            await via_sentinel.aclose()
    record(
        FaultRow(
            "sentinel failover under traffic", 1, len(events), len(expected), lost, doubled, wrong
        )
    )
    assert (lost, doubled, wrong) == (0, 0, 0)
