"""The changelog relay: ``P:cl`` -> ``session-changelog``. Thin I/O shell.

Every worker runs one; the one holding the lease publishes. A round reads the
entries after the cursor, sends the records of each (waiting for Kafka to
acknowledge every one), then moves the cursor over them and sends a watermark
that says so. A crash or a lost lease anywhere in between sends the round
again from the cursor: records go out at least once, in commit order per key,
and no watermark ever claims a record that is not on the topic. Every
``sweep_interval`` the holder also turns the keys Redis forgot (their TTL ran
out) into tombstones. Errors back off and retry; the relay never crashes the
worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from streams.core.changelog import Cursor, Out, advance, compact, parse_entry, records
from streams.store.changelog import ChangelogOutbox
from streams.worker import metrics
from streams.worker.loops import Backoff, stop_if_cancelled

log = logging.getLogger(__name__)

# (key, value or None, headers, partition or None) -> an awaitable that resolves once
# Kafka acknowledged the record.
Publish = Callable[
    [str, bytes | None, list[tuple[str, bytes]], int | None], Awaitable[Awaitable[object]]
]


async def publish_round(outbox: ChangelogOutbox, publish: Publish, count: int) -> int:
    """Publish the entries after the cursor (at most ``count``); return how many."""
    cursor = await outbox.cursor()
    entries = await outbox.read(cursor.seq, count)
    if not entries:
        return 0
    moved = Cursor(cursor.seq, dict(cursor.offsets), dict(cursor.fingerprints))
    sent: list[Awaitable[object]] = []
    published = 0
    for entry in entries:
        try:
            batch, states = parse_entry(entry.fields)
        except (ValueError, KeyError) as exc:
            # Never written by this code: skipped so it cannot block the changelog.
            log.error("skipping unreadable changelog entry %s: %r", entry.id, exc)
            moved.seq = entry.id
            continue
        advance(moved, entry.id, batch)
        positions = compact(moved.offsets)
        for out in records(entry.id, states, positions):
            sent.append(await _send(publish, out))
            published += 1
    await asyncio.gather(*sent)
    if not await outbox.advance(moved):
        log.warning("changelog relay lost its lease mid-round; the holder sends it again")
        return 0
    # After the cursor moved: a watermark never runs ahead of what is on the topic.
    await (await _send(publish, moved.watermark()))
    metrics.CHANGELOG_RECORDS.inc(published)
    return len(entries)


async def _send(publish: Publish, out: Out) -> Awaitable[object]:
    return await publish(out.key, out.value, out.headers, out.partition)


async def run_changelog_relay(
    outbox: ChangelogOutbox,
    publish: Publish,
    sweep_interval: float,
    count: int = 500,
    idle: float = 0.05,
    max_delay: float = 5.0,
) -> None:
    """Publish the changelog while holding the lease, until cancelled."""
    next_sweep = 0.0
    backoff = Backoff("changelog relay", log, most=max_delay)
    try:
        while True:
            stop_if_cancelled()
            try:
                if not await outbox.hold():
                    # Another worker's relay publishes; be ready to take over.
                    await asyncio.sleep(outbox.lease.timeout / 3 if outbox.lease.timeout else 1)
                    continue
                if time.monotonic() >= next_sweep:
                    ended = await outbox.sweep(int(time.time() * 1000))
                    if ended:
                        log.info("%d keys ended in the changelog", ended)
                    next_sweep = time.monotonic() + sweep_interval
                    metrics.CHANGELOG_PENDING.set(await outbox.pending())
                if not await publish_round(outbox, publish, count):
                    await asyncio.sleep(idle)
                backoff.worked()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await backoff.failed(exc)
    finally:
        try:
            await outbox.release()
        except Exception as exc:  # the lease then simply times out
            log.info("changelog relay: lease not released: %r", exc)
