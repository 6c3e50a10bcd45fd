"""Faults of Redis: crashes under each AOF policy, and an outage beyond the retry budget.

Proves, against the oracle (single-topic workloads, so exact to the byte):

* ``appendfsync always``: Redis (on a cluster run, every node) SIGKILLed while
  traffic flows loses nothing;
  every acknowledged commit was on disk, the worker waits and carries on.
* ``appendfsync everysec``: a Redis process crash loses nothing (the AOF is
  written before each reply); a machine crash loses what was written since
  the last fsync, up to about a second of commits, states and applied offsets
  together (so Redis stays self-consistent, just older). The test emulates
  that by cutting the AOF back to an earlier fsync point, with the worker
  going down too (the loss is at the tail); ``continuity offsets rewind``
  re-reads Kafka, the lost events are above the surviving applied offsets, so
  they are folded again and everything else is skipped.
* Redis unreachable longer than ``CONTINUITY_REDIS_RETRY_BUDGET`` (on a cluster
  run, every node): the worker
  stays alive (``/healthz`` 200), reports ``/readyz`` 503, skips nothing, and
  is ready and caught up once Redis returns.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from schemas.topics import SOURCE_TOPICS
from streams.kafka.groups import rewind_group
from streams.kafka.publish import Publisher
from tests.support.fault_report import FaultRow, compare, pick, record
from tests.support.model import model
from tests.support.oracle import NO_DEDUP, NO_DEDUP_ENV, cart_workload, oracle
from tests.support.private_stack import http_get, private_stack, wait_redis
from tests.support.stack import PARTITIONS, applied_through, publish, single_primary, wait_until


async def test_redis_killed_with_appendfsync_always_loses_nothing(tmp_path: Path) -> None:
    kills = pick(2, 6)
    events = cart_workload(seed=41, customers=pick(60, 200), per_customer=12, prefix="fsync")
    expected, carts = oracle(events, NO_DEDUP), model(events)
    rng = random.Random(41)
    async with private_stack(tmp_path, appendfsync="always") as st:
        st.start_worker("w", **NO_DEDUP_ENV)
        async with Publisher(st.bootstrap, linger_ms=1) as pub:
            await st.ready(pub)
            step = len(events) // kills
            written: dict[str, int] = {}
            for n in range(kills):
                chunk = events[n * step : (n + 1) * step if n < kills - 1 else None]
                sending = asyncio.create_task(publish(pub, chunk))
                await asyncio.sleep(rng.uniform(0.05, 0.3))
                st.restart_redis(kill=True)
                for tp, off in (await sending).items():
                    written[tp] = max(written.get(tp, -1), off)
            await wait_redis(st)
            await applied_through(st.state, written, timeout=180)
        lost, doubled, wrong = compare(expected, await st.sessions(sorted(expected)), carts)
    record(
        FaultRow(
            "redis SIGKILL, aof always", kills, len(events), len(expected), lost, doubled, wrong
        )
    )
    assert (lost, doubled, wrong) == (0, 0, 0)


@single_primary("cuts one redis-server's AOF back to an fsync point")
async def test_redis_everysec_tail_loss_is_refolded_after_a_rewind(tmp_path: Path) -> None:
    events = cart_workload(seed=42, customers=pick(60, 200), per_customer=10, prefix="evsec")
    expected, carts = oracle(events, NO_DEDUP), model(events)
    half = len(events) // 2
    async with private_stack(tmp_path, appendfsync="everysec") as st:
        worker = st.start_worker("w", **NO_DEDUP_ENV)
        async with Publisher(st.bootstrap, linger_ms=1) as pub:
            await st.ready(pub)
            await applied_through(st.state, await publish(pub, events[:half]), timeout=180)
            # What the disk holds at an fsync: a process crash loses nothing under
            # everysec (the AOF is written before each reply), a machine crash loses
            # the page cache written since the last fsync. Emulate that loss.
            aof = next((tmp_path / "redis" / "appendonlydir").glob("*.incr.aof"))
            synced = aof.stat().st_size
            written = await publish(pub, events[half:])
            await applied_through(st.state, written, timeout=180)
            before = await st.state.applied_offsets()
            worker.kill()  # the worker goes down with the machine: nothing lands on top
            st.redis_child.kill()
            with aof.open("r+b") as f:
                f.truncate(synced)
            st.redis_child = st.redis_child.restart()
            await wait_redis(st)
            after = await st.state.applied_offsets()
            lost_records = sum(off - after.get(tp, -1) for tp, off in before.items())
            after_crash = compare(expected, await st.sessions(sorted(expected)), carts)
            await rewind_group(st.bootstrap, st.group, SOURCE_TOPICS, PARTITIONS)
            st.restart(worker)
            await applied_through(st.state, written, timeout=180)
        lost, doubled, wrong = compare(expected, await st.sessions(sorted(expected)), carts)
    record(
        FaultRow(
            f"redis everysec, unsynced tail lost ({lost_records} records), rewind",
            1,
            len(events),
            len(expected),
            lost,
            doubled,
            wrong,
        )
    )
    assert lost_records > 0, "the emulated crash lost commits"
    assert after_crash[0] > 0, "sessions were older after the crash"
    assert after_crash[1] == 0, "a crash can only lose, never double"
    assert (lost, doubled, wrong) == (0, 0, 0), "the rewind re-folded every lost event"


async def test_redis_outage_beyond_the_budget_is_not_ready_then_catches_up(
    tmp_path: Path,
) -> None:
    events = cart_workload(seed=43, customers=40, per_customer=8, prefix="outage")
    expected, carts = oracle(events, NO_DEDUP), model(events)
    async with private_stack(tmp_path, appendfsync="always") as st:
        worker = st.start_worker("w", **NO_DEDUP_ENV, CONTINUITY_REDIS_RETRY_BUDGET="2")
        port = worker.port or 0
        async with Publisher(st.bootstrap, linger_ms=1) as pub:
            await st.ready(pub)
            assert await http_get(port, "/readyz") == (200, "ready\n")
            st.stop_redis()
            written = await publish(pub, events)  # folding must wait for Redis

            async def not_ready() -> bool:
                status, body = await http_get(port, "/readyz")
                return status == 503 and "redis unreachable" in body

            await wait_until(not_ready, timeout=60, interval=0.5)
            assert (await http_get(port, "/healthz"))[0] == 200
            st.start_redis()
            await wait_redis(st)

            async def ready() -> bool:
                return (await http_get(port, "/readyz"))[0] == 200

            await wait_until(ready, timeout=60, interval=0.5)
            await applied_through(st.state, written, timeout=120)
        lost, doubled, wrong = compare(expected, await st.sessions(sorted(expected)), carts)
    record(
        FaultRow(
            "redis down beyond retry budget", 1, len(events), len(expected), lost, doubled, wrong
        )
    )
    assert (lost, doubled, wrong) == (0, 0, 0)
