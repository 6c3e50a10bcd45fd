"""Redis answering but refusing writes: READONLY (a demoted primary) and OOM (a full one).

During a failover the old primary answers ``READONLY``; a primary at its
``maxmemory`` with ``noeviction`` answers ``OOM``. Neither is a lost
connection, and neither may end a worker: the batch waits with the same
backoff as an outage, ``/readyz`` turns 503 once the retry budget is spent,
the gateway keeps serving reads and answers writes that need Redis with a
documented 503 and ``Retry-After``, and everything is folded, each event
once, when Redis takes writes again.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from streams.dev import loopback
from streams.kafka.publish import Publisher
from tests.support.fault_report import FaultRow, compare, pick, record
from tests.support.gateway import GATEWAY_SECRET, bearer, read_session
from tests.support.metrics_text import samples, total
from tests.support.model import model
from tests.support.oracle import NO_DEDUP, NO_DEDUP_ENV, cart_workload, oracle
from tests.support.private_stack import PrivateStack, http_get, private_stack
from tests.support.stack import applied_through, publish, single_primary, wait_until

assert GATEWAY_SECRET  # the private gateway signs with the shared test secret


async def _retries(st: PrivateStack) -> float:
    status, body = await http_get(st.workers[0].port or 0, "/metrics")
    assert status == 200, body
    return total(samples(body), "continuity_redis_retries_total")


async def _readyz(st: PrivateStack) -> int:
    status, _ = await http_get(st.workers[0].port or 0, "/readyz")
    return status


@single_primary("REPLICAOF demotes the one primary (a cluster node refuses it)")
async def test_readonly_and_oom_replies_are_waited_out(tmp_path: Path) -> None:
    events = cart_workload(seed=77, customers=pick(30, 120), per_customer=9, prefix="ro")
    expected, carts = oracle(events, NO_DEDUP), model(events)
    third = len(events) // 3
    async with private_stack(tmp_path) as st:
        worker = st.start_worker(
            "w",
            **NO_DEDUP_ENV,
            CONTINUITY_REDIS_RETRY_BUDGET="1",
            CONTINUITY_RETRY_MAX_DELAY="0.3",
        )
        gw = st.start_gateway("gw")
        async with Publisher(st.bootstrap, linger_ms=1) as pub, aiohttp.ClientSession() as http:
            await st.ready(pub)
            written = await publish(pub, events[:third])
            await applied_through(st.state, written, timeout=120)
            customer = next(iter(sorted(expected)))
            reader = bearer("customer", subject=customer)

            for refuse, allow in (
                (
                    ("REPLICAOF", "127.0.0.1", str(loopback.free_port())),
                    ("REPLICAOF", "NO", "ONE"),
                ),
                (
                    ("CONFIG", "SET", "maxmemory", "1", "maxmemory-policy", "noeviction"),
                    ("CONFIG", "SET", "maxmemory", "0"),
                ),
            ):
                before = await _retries(st)
                await st.redis.execute_command(*refuse)
                chunk = (
                    events[third : 2 * third] if refuse[0] == "REPLICAOF" else events[2 * third :]
                )
                sent = await publish(pub, chunk)
                for tp, off in sent.items():
                    written[tp] = max(written.get(tp, -1), off)

                async def retrying(floor: float = before) -> bool:
                    return await _retries(st) > floor

                await wait_until(retrying, 60, interval=0.2)

                async def unready() -> bool:
                    return await _readyz(st) == 503

                await wait_until(unready, 60, interval=0.2)
                status, body, _ = await read_session(http, gw, customer, reader)
                assert status == 200, f"reads go on while Redis refuses writes: {body}"
                async with http.post(
                    f"{gw.url}/v1/sessions/{customer}/handoff", headers=reader
                ) as resp:
                    answer = await resp.json()
                    assert (resp.status, answer["error"]) == (503, "redis_unavailable"), answer
                    assert resp.headers["Retry-After"].isdigit()
                assert worker.alive(), f"the worker survives {refuse[0]} replies"

                await st.redis.execute_command(*allow)
                await applied_through(st.state, written, timeout=120)

                async def ready() -> bool:
                    return await _readyz(st) == 200

                await wait_until(ready, 60, interval=0.2)
            lost, doubled, wrong = compare(expected, await st.sessions(sorted(expected)), carts)
        assert worker.alive()
    record(FaultRow("redis READONLY then OOM", 2, len(events), len(expected), lost, doubled, wrong))
    assert (lost, doubled, wrong) == (0, 0, 0)
