"""The changelog relay: ``cont:{pN}:cl`` -> ``session-changelog``. Thin I/O shell.

Every worker runs one loop per partition; the worker holding a partition's
lease publishes that partition (different workers may hold different
partitions). A round reads the partition's entries after its cursor, sends the
records of each to their keys' partitions (N, for the partition's own keys),
waiting for Kafka to acknowledge every one, then moves the cursor over them
and sends the partition's watermark, on partition N, that says so. An entry
whose commit sent forwards to other partitions waits until the forward relay
has published them (``streams/worker/forward_relay.py``), so no state reaches
the topic ahead of the work it handed on. A crash or
a lost lease anywhere in between sends the round again from the cursor:
records go out at least once, in commit order per key, and no watermark ever
claims a record that is not on the topic. Every ``sweep_interval`` the holder
also turns the partition's keys Redis forgot (their TTL ran out) into
tombstones. Errors back off and retry; the relay never crashes the worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from streams.core.changelog import (
    Cursor,
    Out,
    advance,
    compact,
    parse_entry,
    publishable,
    records,
    sent,
)
from streams.store.changelog import ChangelogOutbox
from streams.worker import metrics
from streams.worker.loops import Backoff, stop_if_cancelled

log = logging.getLogger(__name__)

# (key, value or None, headers, partition) -> an awaitable that resolves once Kafka
# acknowledged the record.
Publish = Callable[[str, bytes | None, list[tuple[str, bytes]], int], Awaitable[Awaitable[object]]]


# How long a round whose first entry waits for its forwards pauses before looking
# again (the forward relay publishes within milliseconds).
HELD_BACK_PAUSE = 0.02


async def publish_round(
    outbox: ChangelogOutbox, publish: Publish, count: int, wait_ms: int = 0
) -> int:
    """Publish the partition's entries after its cursor (at most ``count``); return how
    many. With ``wait_ms``, an empty stream is waited on that long, and a first entry
    still waiting for its forwards pauses the round briefly (the caller loops at once)."""
    cursor = await outbox.cursor()
    entries = await outbox.read(cursor.seq, count, wait_ms)
    forwards = [sent(entry.fields) for entry in entries]
    lasts = [f.last_written for f in forwards]
    if any(lasts):
        # A commit's states wait for the forwards it sent to be on session-forwards:
        # a restore must never hold a state whose work for another partition is lost.
        ready = publishable(lasts, await outbox.forwards_published())
        if not ready and wait_ms:
            await asyncio.sleep(HELD_BACK_PAUSE)
        entries, forwards = entries[:ready], forwards[:ready]
    if not entries:
        return 0
    moved = Cursor(
        cursor.seq, dict(cursor.offsets), dict(cursor.fingerprints), dict(cursor.forwarded)
    )
    out: list[Awaitable[object]] = []
    published = 0
    for entry, forward in zip(entries, forwards, strict=True):
        try:
            batch, states = parse_entry(entry.fields)
        except (ValueError, KeyError) as exc:
            # Never written by this code: skipped so it cannot block the changelog.
            log.error("skipping unreadable changelog entry %s: %r", entry.id, exc)
            moved.seq = entry.id
            continue
        advance(moved, entry.id, batch, forward.forwarded)
        positions = compact(moved.offsets)
        for record in records(entry.id, states, positions, outbox.space.partitions):
            out.append(await _send(publish, record))
            published += 1
    await asyncio.gather(*out)
    if not await outbox.advance(moved):
        log.warning(
            "changelog relay lost partition %d's lease mid-round; the holder sends it again",
            outbox.partition,
        )
        return 0
    # After the cursor moved: a watermark never runs ahead of what is on the topic.
    await (await _send(publish, moved.watermark(outbox.partition)))
    metrics.CHANGELOG_RECORDS.inc(published)
    return len(entries)


async def _send(publish: Publish, out: Out) -> Awaitable[object]:
    return await publish(out.key, out.value, out.headers, out.partition)


class Pending:
    """The changelog entries waiting in the partitions this worker publishes (the gauge)."""

    def __init__(self) -> None:
        self.by_partition: dict[int, int] = {}

    def set(self, partition: int, count: int | None) -> None:
        """Record a partition's count, or forget it (``None``: not held here)."""
        if count is None:
            self.by_partition.pop(partition, None)
        else:
            self.by_partition[partition] = count
        metrics.CHANGELOG_PENDING.set(sum(self.by_partition.values()))


async def run_changelog_relay(
    outbox: ChangelogOutbox,
    publish: Publish,
    sweep_interval: float,
    count: int = 500,
    idle: float = 1.0,
    max_delay: float = 5.0,
    pending: Pending | None = None,
    linger: float = 0.0,
) -> None:
    """Publish one partition's changelog while holding its lease, until cancelled.

    The lease is taken or renewed every third of its time, not every round; a round
    waits up to ``idle`` seconds (at most that third) for an entry, so an idle
    partition costs two reads per wait, not a poll. After a round that published
    fewer than ``count`` entries the relay waits ``linger`` seconds, so the next round
    takes the commits made meanwhile together: a round's own cost (the cursor read,
    the advance, the watermark record) is paid per round, not per commit, when
    commits come a few events at a time.
    """
    gauge = pending or Pending()
    next_sweep = 0.0
    timeout = outbox.lease.timeout or 3.0
    wait_ms = max(1, int(min(idle, timeout / 3) * 1000))
    renew_at = 0.0
    backoff = Backoff(f"changelog relay {outbox.partition}", log, most=max_delay)
    try:
        while True:
            stop_if_cancelled()
            try:
                if time.monotonic() >= renew_at:
                    if not await outbox.hold():
                        # Another worker's relay publishes it; be ready to take over.
                        gauge.set(outbox.partition, None)
                        await asyncio.sleep(timeout / 3)
                        continue
                    renew_at = time.monotonic() + timeout / 3
                if time.monotonic() >= next_sweep:
                    ended = await outbox.sweep(int(time.time() * 1000))
                    if ended:
                        log.info("%d keys of partition %d ended", ended, outbox.partition)
                    next_sweep = time.monotonic() + sweep_interval
                    gauge.set(outbox.partition, await outbox.pending())
                published = await publish_round(outbox, publish, count, wait_ms)
                backoff.worked()
                if 0 < published < count and linger > 0:
                    await asyncio.sleep(linger)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                renew_at = 0.0  # the lease is checked before the round is sent again
                await backoff.failed(exc)
    finally:
        gauge.set(outbox.partition, None)
        try:
            await outbox.release()
        except Exception as exc:  # the lease then simply times out
            log.info("changelog relay %d: lease not released: %r", outbox.partition, exc)


async def run_changelog_relays(
    outboxes: Sequence[ChangelogOutbox],
    publish: Publish,
    sweep_interval: float,
    linger: float = 0.0,
) -> None:
    """One :func:`run_changelog_relay` per partition, sharing the pending gauge, until
    cancelled."""
    pending = Pending()
    # A task group: cancelled, it returns once every lease is released (as the
    # forward relays', ``run_forward_relays``).
    async with asyncio.TaskGroup() as group:
        for o in outboxes:
            group.create_task(
                run_changelog_relay(o, publish, sweep_interval, pending=pending, linger=linger)
            )
