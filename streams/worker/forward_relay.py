"""The forward relay: ``cont:{pN}:fw`` -> ``session-forwards``. Thin I/O shell.

Every worker runs one loop per partition; the worker holding a partition's
forwards lease publishes that partition (different workers may hold different
partitions). A round reads the entries after the partition's cursor and sends
each to its destination partition of ``session-forwards``, with its key and
value and two headers naming it (``streams/core/forward_marks.py``: the origin
partition and the entry's id). Once Kafka acknowledged every record of the
round, the cursor moves over them and the stream is trimmed, in one step and
only while the lease is still this relay's (``streams/store/forwards.py``).

Order: the records of one destination are sent one after the other, each only
once Kafka acknowledged the one before, while destinations go concurrently. A
record that fails is therefore never overtaken by a later one to its
destination: a send that failed for good after later records of its partition
were sent would put them on the topic ahead of it. A crash, a failed send or a
lost lease sends the round again from the cursor: records go out at least
once, and each destination sees one origin's records in stream order, a
record sent again only ever repeating ones before it (a consumer keeps the
first of each, by origin and id). Errors back off and retry; the relay never
crashes the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from streams.core.forward_marks import forward_headers
from streams.store.forwards import ForwardEntry, ForwardOutbox, Unreadable
from streams.worker import metrics
from streams.worker.loops import Backoff, stop_if_cancelled

log = logging.getLogger(__name__)

# (destination partition, key, value, headers) -> an awaitable that resolves once the
# record is queued in the producer, to an awaitable that resolves once Kafka
# acknowledged it.
Publish = Callable[[int, bytes, bytes, list[tuple[str, bytes]]], Awaitable[Awaitable[object]]]


async def publish_round(
    outbox: ForwardOutbox, publish: Publish, count: int, wait_ms: int = 0
) -> int:
    """Publish the partition's entries after its cursor (at most ``count``) and advance;
    return how many entries the round took (0: none waited, or none came within
    ``wait_ms``).

    Raises what a send raised, or ``LeaseLost``, leaving the cursor where it was.
    """

    async def deliver(entries: Sequence[ForwardEntry | Unreadable]) -> None:
        await _publish(outbox, entries, publish)

    return await outbox.round(count, deliver, wait_ms)


async def _publish(
    outbox: ForwardOutbox, entries: Sequence[ForwardEntry | Unreadable], publish: Publish
) -> None:
    """Send ``entries``, each destination's in order, waiting for every acknowledgement."""
    by_destination: dict[int, list[ForwardEntry]] = {}
    for entry in entries:
        if isinstance(entry, Unreadable):
            # Never written by this code: skipped so it cannot block the partition.
            log.error(
                "skipping unreadable forward entry %s of partition %d: %s",
                entry.id,
                outbox.partition,
                entry.why,
            )
            metrics.FORWARD_RELAY_ERRORS.inc()
            continue
        by_destination.setdefault(entry.partition, []).append(entry)
    sends = [
        _send_in_order(outbox.partition, outbox.space.prefix, rows, publish)
        for rows in by_destination.values()
    ]
    # Every destination runs to its end or its first failure: nothing is left in flight.
    failures = [r for r in await asyncio.gather(*sends, return_exceptions=True) if r is not None]
    if failures:
        raise failures[0]
    # Counted once sent: a round whose advance then fails is sent again, and counted again.
    metrics.FORWARDS_PUBLISHED.inc(sum(len(rows) for rows in by_destination.values()))


async def _send_in_order(
    origin: int, space: str, rows: Sequence[ForwardEntry], publish: Publish
) -> None:
    """Send one destination's records, each once Kafka acknowledged the one before."""
    for entry in rows:
        acked = await publish(
            entry.partition, entry.key, entry.value, forward_headers(origin, entry.id, space)
        )
        await acked


def _pending(partition: int, count: int | None) -> None:
    """Report a partition's waiting entries, or drop its series (``None``: not held here)."""
    label = str(partition)
    if count is not None:
        metrics.FORWARDS_PENDING.labels(label).set(count)
        return
    with contextlib.suppress(KeyError):  # never reported here
        metrics.FORWARDS_PENDING.remove(label)


async def run_forward_relay(
    outbox: ForwardOutbox,
    publish: Publish,
    count: int = 200,
    idle: float = 1.0,
    max_delay: float = 5.0,
) -> None:
    """Publish one partition's forwards while holding its lease, until cancelled.

    The lease is taken or renewed every third of its time, not every round. A
    round reads the cursor, then waits up to ``idle`` seconds (at most that third)
    for an entry after it, so a forward is sent as soon as it is written and an
    idle partition costs two reads per wait. A full round is followed at once
    by the next.
    """
    timeout = outbox.lease.timeout or 3.0
    wait_ms = max(1, int(min(idle, timeout / 3) * 1000))
    renew_at = 0.0
    backoff = Backoff(f"forward relay {outbox.partition}", log, most=max_delay)
    try:
        while True:
            stop_if_cancelled()
            try:
                if time.monotonic() >= renew_at:
                    if not await outbox.hold():
                        # Another worker's relay publishes it; be ready to take over.
                        _pending(outbox.partition, None)
                        await asyncio.sleep(timeout / 3)
                        continue
                    renew_at = time.monotonic() + timeout / 3
                    _pending(outbox.partition, await outbox.pending())
                await publish_round(outbox, publish, count, wait_ms)
                backoff.worked()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.FORWARD_RELAY_ERRORS.inc()
                renew_at = 0.0  # the lease is checked before the round is sent again
                await backoff.failed(exc)
    finally:
        _pending(outbox.partition, None)
        try:
            await outbox.release()
        except Exception as exc:  # the lease then simply times out
            log.info("forward relay %d: lease not released: %r", outbox.partition, exc)


async def run_forward_relays(
    outboxes: Sequence[ForwardOutbox], publish: Publish, idle: float = 1.0
) -> None:
    """One :func:`run_forward_relay` per partition, until cancelled (``idle``: the longest
    a read of an empty stream waits for an entry).

    A task group, not ``gather``: a stopping worker cancels this task twice (the
    app, then its sweep of every task left), and a cancelled ``gather`` passes
    the second cancellation on into the relays' releases, so the leases stayed
    for their whole time; a task group cancels its relays once and waits.
    """
    async with asyncio.TaskGroup() as group:
        for o in outboxes:
            group.create_task(run_forward_relay(o, publish, idle=idle))
