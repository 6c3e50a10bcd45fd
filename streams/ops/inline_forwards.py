"""Deliver a fold's forwards in-process, without the relay and the topic. Thin edge.

In ``forward`` mode (``docs/merge-across-partitions.md``) a commit changes its own
partition's keys only and hands the rest of a login's work to the other
partition as a forward in its outbox (``cont:{pN}:fw``); live, the relay puts
it on ``session-forwards`` and a worker applies it. A rebuild from history has
no workers: ``InlineForwards`` reads every partition's outbox as the relay does
(``ForwardOutbox.round``: under the partition's lease, in stream order, the
cursor moved once the round is folded), numbers the
records per destination partition as the topic would, with the relay's origin
and entry-id marks, and folds them with the rebuild's own processor, round after
round until no partition has any left. The outboxes end empty, their cursors at
the last entry delivered, so workers pointed at the prefix start clean.

The offsets it numbers with are its own, not the topic's: ``clear_positions``
drops them once the fold is done, before the topic's real positions are taken
as applied (``streams/ops/forward_positions.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis, RedisCluster

from schemas.topics import SESSION_FORWARDS
from streams.core.plan import Plan, Record
from streams.store import keys
from streams.store.forwards import ForwardEntry, ForwardOutbox, LeaseLost, Unreadable
from streams.store.keys import Space
from streams.worker.processor import BatchProcessor

log = logging.getLogger(__name__)


class OutboxBusy(RuntimeError):
    """Another relay holds a partition's forwards lease: a worker runs on this prefix."""


@dataclass
class InlineForwards:
    """Carries the forwards of ``processor``'s commits to their partitions, in-process."""

    redis: Redis | RedisCluster
    space: Space
    processor: BatchProcessor
    # The key prefix named as the sender (a relay names its own; a test may name another).
    sender: str | None = None
    # The relays' lease time: a lease found held is waited for this long (plus a second).
    lease_seconds: float = 10.0
    # destination partition -> the next offset this delivery numbers a record with
    offsets: Counter[int] = field(default_factory=Counter)
    plans: list[Plan] = field(default_factory=list)
    delivered: int = 0
    unreadable: int = 0

    async def drain(self, rounds: int = 100) -> int:
        """Deliver forwards until none is left; return how many this call delivered.

        Each round folds every partition's pending entries, one batch per origin
        partition (in its stream order); what those commits forward goes in the
        next round. A merge takes two rounds (the login to the guest's side, the
        guest's session back), so ``rounds`` bounds a loop that cannot happen.
        """
        total = 0
        for _ in range(rounds):
            moved = 0
            for origin in self.space.all_partitions():
                moved += await self._deliver(origin)
            total += moved
            if not moved:
                self.delivered += total
                return total
        raise RuntimeError(f"forwards still flowing after {rounds} rounds")

    async def _deliver(self, origin: int) -> int:
        outbox = ForwardOutbox(
            self.redis, self.space, origin, holder="rebuild", lease_seconds=self.lease_seconds
        )
        await _hold(outbox)
        folded = 0

        async def fold(entries: Sequence[ForwardEntry | Unreadable]) -> None:
            nonlocal folded
            records = []
            for entry in entries:
                if not isinstance(entry, ForwardEntry):
                    # Never written by this code; the relay skips it too.
                    log.error("skipping unreadable forward %s of partition %d", entry.id, origin)
                    self.unreadable += 1
                    continue
                records.append(
                    Record(
                        SESSION_FORWARDS,
                        entry.partition,
                        self.offsets[entry.partition],
                        entry.key,
                        entry.value,
                        forwarded=(origin, entry.id),
                        sender=self.sender or self.space.prefix,
                    )
                )
                self.offsets[entry.partition] += 1
            if records:
                self.plans.append(await self.processor.process(records))
            folded = len(records)

        try:
            await outbox.round(10_000, fold)
        except LeaseLost:
            raise OutboxBusy(f"partition {origin}'s forwards lease was lost") from None
        finally:
            await outbox.release()
        return folded


async def _hold(outbox: ForwardOutbox, poll: float = 0.2) -> None:
    """Take the partition's lease, waiting out one held by a worker that is gone.

    A worker killed (not stopped) leaves its lease until the lease time runs
    out; one still running renews it, and then this raises ``OutboxBusy``.
    """
    deadline = time.monotonic() + (outbox.lease.timeout or 10.0) + 1.0
    while not await outbox.hold():
        if time.monotonic() >= deadline:
            raise OutboxBusy(
                f"partition {outbox.partition}'s forwards are held by another relay "
                "(a worker still runs on this prefix)"
            )
        await asyncio.sleep(poll)


async def clear_positions(redis: Redis | RedisCluster, space: Space) -> None:
    """Drop the ``session-forwards`` positions an in-process delivery recorded as
    applied: they number its own records, not the topic's."""
    for n in space.all_partitions():
        # Partition n's commits record the forwards they applied under their own tag.
        tp = f"{SESSION_FORWARDS}:{n}"
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.offsets(space, n), tp)
            pipe.hdel(keys.fingerprints(space, n), tp)
            pipe.hdel(keys.offset_times(space, n), tp)
            await pipe.execute()
