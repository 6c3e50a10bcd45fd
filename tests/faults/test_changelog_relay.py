"""The changelog relay killed while it publishes: the leases move and nothing is lost.

Two workers share one group; each partition's changelog lease is held by one of
them (its value names the holder's pid; the two may split the partitions).
Traffic goes in rounds. Each round a holder is frozen (SIGSTOP, wherever it
was: mid-round or between rounds) while commits fill its partitions' changelog
outboxes, then SIGKILLed and started again. The other worker takes each of its
leases over once it times out and publishes from that partition's cursor.

Asserts: once drained, a downstream consumer's newest state of every key is
exactly what Redis holds (sessions byte for byte, aliases, tombstones), every
record valid against the schema; and a restore from the changelog alone equals
the live state.
"""

from __future__ import annotations

import os
import signal
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from streams.dev import loopback
from streams.dev.simulate import workload
from streams.kafka.publish import Publisher
from streams.store import keys
from tests.support.changelog import (
    by_family,
    downstream_view,
    drained,
    mismatches,
    restored_families,
)
from tests.support.private_stack import PrivateStack, private_stack
from tests.support.stack import applied_through, publish, space, wait_until

pytestmark = pytest.mark.faults

# Rounds of traffic (each kills the holder); longer under FAULT_SCALE=long.
ROUNDS = 4 if os.environ.get("FAULT_SCALE") == "long" else 2


WHERE = space("cont")


async def _holder(st: PrivateStack, partition: int) -> tuple[loopback.Child, list[int]]:
    """The live worker whose relay holds ``partition``'s changelog lease, once one does
    (a killed holder's leases stay until they time out), and every partition it holds."""
    found: list[tuple[loopback.Child, list[int]]] = []

    async def held() -> bool:
        holders: dict[int, int] = {}
        for n in WHERE.all_partitions():
            raw: Any = await st.redis.get(keys.changelog_lease(WHERE, n))
            if raw is not None:
                holders[n] = int(bytes(raw).decode().split(":")[0].rsplit("-", 1)[1])
        pid = holders.get(partition)
        live = [w for w in st.workers if w.alive() and w.pid == pid]
        found.extend((w, sorted(n for n, p in holders.items() if p == pid)) for w in live)
        return bool(found)

    await wait_until(held, 60, interval=0.1)
    return found[-1]


async def _waiting(st: PrivateStack, partitions: list[int]) -> bool:
    """Entries wait to be published in one of ``partitions``' changelog outboxes."""
    lengths = [await st.redis.xlen(keys.changelog(WHERE, n)) for n in partitions]
    return any(lengths)


async def test_the_changelog_survives_its_publisher_killed(tmp_path: Path) -> None:
    async with private_stack(tmp_path) as st:
        st.start_worker("w1")
        st.start_worker("w2")
        events = workload(seed=91, customers=90, prefix="ck")
        size = len(events) // ROUNDS + 1
        async with Publisher(st.bootstrap, linger_ms=1) as pub:
            await st.ready(pub)
            for n in range(ROUNDS):
                # A holder freezes (SIGSTOP) with its leases: commits pile up in its
                # partitions' outboxes, and the kill then finds them unpublished.
                victim, held = await _holder(st, n % WHERE.partitions)
                os.kill(victim.pid, signal.SIGSTOP)
                written = await publish(pub, events[n * size : (n + 1) * size])
                # The precondition of the kill: entries wait to be published.
                await wait_until(partial(_waiting, st, held), 60, interval=0.05)
                victim.kill()
                st.restart(victim)
                await applied_through(st.state, written, timeout=120)
        await drained(st.redis, st.bootstrap, WHERE)
        for w in st.workers:
            w.stop()
        live = await restored_families(st.redis, "cont")
        view, repeats = await downstream_view(st.bootstrap)
        assert mismatches(view, live) == []
        assert by_family(live, b"a:"), "the workload merged guests"
        print(f"holder kills: {ROUNDS}; records published twice: {repeats}")

        code, out, err = await st.cli("rebuild", "--prefix", "cont-after", timeout=180)
        assert code == 0, out + err
        assert await restored_families(st.redis, "cont-after") == live
