"""The changelog relay killed while it publishes: the lease moves and nothing is lost.

Two workers share one group; one of them holds the changelog lease (its value
names the holder's pid). Traffic goes in rounds. Each round the holder is frozen
(SIGSTOP, wherever it was: mid-round or between rounds) while the other worker's
commits fill the changelog outbox, then SIGKILLed and started again. The other
worker takes the lease over once it times out and publishes from the cursor.

Asserts: once drained, a downstream consumer's newest state of every key is
exactly what Redis holds (sessions byte for byte, aliases, tombstones), every
record valid against the schema; and a restore from the changelog alone equals
the live state.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from streams.dev import loopback
from streams.dev.simulate import workload
from streams.kafka.publish import Publisher
from tests.support.changelog import downstream_view, drained, mismatches, restored_families
from tests.support.private_stack import PrivateStack, private_stack
from tests.support.stack import applied_through, publish, wait_until

pytestmark = pytest.mark.faults

# Rounds of traffic (each kills the holder); longer under FAULT_SCALE=long.
ROUNDS = 4 if os.environ.get("FAULT_SCALE") == "long" else 2


async def _holder(st: PrivateStack) -> loopback.Child:
    """The live worker whose relay holds the changelog lease, once one does (a killed
    holder's lease stays until it times out)."""
    found: list[loopback.Child] = []

    async def held() -> bool:
        raw = await st.redis.get("cont:clr")
        if raw is None:
            return False
        pid = int(bytes(raw).decode().split(":")[0].rsplit("-", 1)[1])
        found.extend(w for w in st.workers if w.alive() and w.pid == pid)
        return bool(found)

    await wait_until(held, 60, interval=0.1)
    return found[-1]


async def test_the_changelog_survives_its_publisher_killed(tmp_path: Path) -> None:
    async with private_stack(tmp_path) as st:
        st.start_worker("w1")
        st.start_worker("w2")
        events = workload(seed=91, customers=90, prefix="ck")
        size = len(events) // ROUNDS + 1
        async with Publisher(st.bootstrap, linger_ms=1) as pub:
            await st.ready(pub)
            for n in range(ROUNDS):
                # The holder freezes (SIGSTOP) with its lease: the other worker's commits
                # pile up in the outbox, and the kill then finds them unpublished.
                victim = await _holder(st)
                os.kill(victim.pid, signal.SIGSTOP)
                written = await publish(pub, events[n * size : (n + 1) * size])
                # The precondition of the kill: entries wait to be published.
                await wait_until(lambda: st.redis.xlen("cont:cl"), 60, interval=0.05)
                victim.kill()
                st.restart(victim)
                await applied_through(st.state, written, timeout=120)
        await drained(st.redis, st.bootstrap)
        for w in st.workers:
            w.stop()
        live = await restored_families(st.redis, "cont")
        view, repeats = await downstream_view(st.bootstrap)
        assert mismatches(view, live) == []
        assert any(k.startswith(b"a:") for k in live), "the workload merged guests"
        print(f"holder kills: {ROUNDS}; records published twice: {repeats}")

        code, out, err = await st.cli("rebuild", "--prefix", "cont-after", timeout=180)
        assert code == 0, out + err
        assert await restored_families(st.redis, "cont-after") == live
