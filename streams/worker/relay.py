"""The notification relay: outbox -> ``session-notifications``. Thin I/O shell.

Each worker runs one relay task, serving every partition's outbox. A round
sweeps each partition's due abandonment timers into its outbox (at most every
``sweep_interval`` seconds), reads a batch of entries from every partition,
publishes them (waiting for Kafka's acknowledgement of every one) and only
then acknowledges them in Redis, per partition. A crash anywhere in between
publishes an entry again later with the same ``notification_id``; nothing is
dropped. Redis or Kafka errors back off and retry; the relay never crashes
the worker.

A failed publish leaves the round's entries unacknowledged on this relay's
pending entries list, and every round reads that list first
(``Outbox.read``): the retry comes after the backoff, as soon as Kafka answers
again. Entries of a relay that died are a different case: another relay
claims them only after ``CONTINUITY_NOTIFICATION_CLAIM_AFTER``, so that a
live but slow relay keeps its own (``streams/store/outbox.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from streams.core.kpi_delta import KpiDelta, abandonment
from streams.core.notifications import from_outbox
from streams.store.outbox import Entry, Outbox
from streams.worker import metrics
from streams.worker.loops import Backoff, stop_if_cancelled

log = logging.getLogger(__name__)

# (key, value) -> an awaitable that resolves once Kafka acknowledged the record.
Publish = Callable[[str, bytes], Awaitable[Awaitable[object]]]


async def relay_once(outbox: Outbox, publish: Publish, count: int, block_ms: int) -> int:
    """Publish and acknowledge one batch of outbox entries; return how many.

    Raises if a publish fails, before anything is acknowledged: the batch stays
    this relay's, and the next call reads it again first.
    """
    entries = await outbox.read(count, block_ms)
    if not entries:
        return 0
    sent: list[Awaitable[object]] = []
    relayed = [await _publish(entry, publish, sent) for entry in entries]
    await asyncio.gather(*sent)
    done = [
        (entry, dict(kpis.fields()) if kpis else {})
        for entry, (_, kpis) in zip(entries, relayed, strict=True)
    ]
    firsts = await outbox.ack(done)
    for (kind, kpis), first in zip(relayed, firsts, strict=True):
        if kind:
            metrics.NOTIFICATIONS.labels(kind).inc()
        if first and kpis is not None:
            metrics.record_kpis(kpis)
    return len(entries)


async def _publish(
    entry: Entry, publish: Publish, sent: list[Awaitable[object]]
) -> tuple[str, KpiDelta | None]:
    """Send one entry; (its notification type, the KPIs its acknowledgement counts)."""
    try:
        key, value, session = from_outbox(entry.fields)
    except ValueError as exc:
        # Never written by this code: acknowledged so it cannot block the outbox.
        log.error("dropping unreadable outbox entry %s: %s", entry.id.decode(), exc)
        return "", None
    sent.append(await publish(key, value))
    if session is None:
        return "session.resumed_elsewhere", None
    return "cart.abandoned", abandonment(session)


async def run_relay(
    outbox: Outbox,
    publish: Publish,
    sweep_interval: float,
    count: int = 500,
    max_delay: float = 5.0,
) -> None:
    """Sweep and relay until cancelled; a failed round is retried after a backoff
    (``0.1`` s doubling to ``max_delay``), its own entries first."""
    next_sweep = 0.0
    backoff = Backoff("notification relay", log, most=max_delay)
    ready = False
    while True:
        stop_if_cancelled()
        try:
            if not ready:
                await outbox.ensure_group()
                ready = True
            if time.monotonic() >= next_sweep:
                swept = await outbox.sweep(int(time.time() * 1000))
                if swept:
                    log.info("%d carts abandoned", swept)
                next_sweep = time.monotonic() + sweep_interval
                metrics.NOTIFICATIONS_PENDING.set(await outbox.pending())
            await outbox.heartbeat(int(time.time() * 1000))
            block = max(1, int(min(sweep_interval, 1.0) * 1000))
            await relay_once(outbox, publish, count, block)
            backoff.worked()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await backoff.failed(exc)
