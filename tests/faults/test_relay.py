"""The notification relay when Kafka refuses its publishes: kept, shown, delivered later.

The relay (``streams/worker/relay.py``) publishes outbox entries to
``session-notifications`` and acknowledges each in Redis only after Kafka
accepted it. The promise (docs/architecture.md, Notifications): delivery at
least once, every copy with the same ``notification_id``; the KPIs an
abandonment counts are counted once, by the acknowledgement.

Here the worker reaches the broker only through a loopback proxy (the broker
advertises the proxy's address, so every connection goes through it). Once
the carts' resumes are published, the proxy is cut: open connections are
dropped and new ones refused. The carts then go idle, the relay sweeps their
abandonments into the outbox and fails to publish them. Proves, across the
processes: the failure shows in the worker log (the relay's warning) and in
``continuity_notifications_pending`` (the entries wait in the outbox) while
``continuity_notifications_sent_total`` stands still; once the proxy lets
connections through again every expected notification is on the topic (none
missing, no other), any repeated copy is byte-equal, the outbox is empty and
the abandonment KPIs count each cart exactly once. The worker keeps running.

Faust's producer gives up on a request after ``producer_request_timeout``
(20 minutes by default; until then the relay waits); the worker here is given
3 s (``CONTINUITY_PRODUCER_REQUEST_TIMEOUT``), so the publish fails while the
proxy is cut rather than after it. The relay retries its own failed entries
on its next rounds (with backoff); the worker's claim time
(``CONTINUITY_NOTIFICATION_CLAIM_AFTER``, for a dead relay's entries) is set
to a day, so nothing here is delivered by a claim: a relay that left its own
failures to the claim would never empty the outbox and the test would fail.
Made to acknowledge entries whose publish failed, the relay loses them and the
test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from schemas.topics import NOTIFICATIONS
from streams.dev import loopback
from streams.kafka.publish import Publisher
from streams.kafka.topics import ensure_topics
from streams.store import keys
from tests.support.events import added, event
from tests.support.fault_report import FaultRow, pick, record
from tests.support.metrics_text import samples, scrape, total
from tests.support.private_stack import PrivateStack, private_stack
from tests.support.stack import (
    PARTITIONS,
    applied_through,
    publish,
    read_topic,
    space,
    wait_until,
)

SENT = "continuity_notifications_sent_total"
PENDING = "continuity_notifications_pending"
WARNING = b"notification relay: "


class CuttableProxy:
    """``127.0.0.1:port`` -> ``127.0.0.1:target``, every byte passed on until ``cut()``:
    then every connection is dropped and new ones are refused until ``restore()``."""

    def __init__(self) -> None:
        self.port = 0
        self.target = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def listen(self) -> None:
        """Listen (on a free port the first time, then on the same one)."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Stop listening and drop every open connection, both ways."""
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        """Cut, and end the pumps."""
        if self._server is not None:
            await self.cut()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while chunk := await src.read(65536):
                dst.write(chunk)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            dst.transport.abort()
            self._writers.discard(dst)


async def _broker_behind(st: PrivateStack, proxy: CuttableProxy) -> None:
    """Replace the stack's broker by one that advertises ``proxy``'s address, so clients
    bootstrap on the broker's own port and then reach it only through the proxy."""
    st.broker.stop()
    port = loopback.free_port()
    proxy.target = port
    st.broker = loopback.spawn(
        "broker",
        [
            loopback.broker_binary(),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{proxy.port}",
        ],
        st.root / "logs" / "broker.log",
        port=port,
    )
    loopback.wait_port(port, proc=st.broker.proc)
    await ensure_topics(st.bootstrap, PARTITIONS)


def _carts(customers: int) -> tuple[list[dict[str, Any]], set[str]]:
    """Carts started on the web and picked up in the app: per customer one resume now
    and, once idle, one abandonment. Returns the events and every notification id due
    (``resumed:<key>:<version>``, ``abandoned:<key>:<version>``)."""
    events, due = [], set()
    for n in range(customers):
        key = f"relay-{n:04d}"
        events.append(event("cart.item_added", added("A-1"), customer=key, channel="web"))
        events.append(event("cart.item_added", added("B-2"), customer=key, channel="mobile_app"))
        due |= {f"resumed:{key}:2", f"abandoned:{key}:2"}
    return events, due


async def _worker_metrics(worker: loopback.Child) -> dict[Any, float]:
    assert worker.port is not None
    try:
        return samples(await asyncio.wait_for(scrape(worker.port), 10))
    except (OSError, TimeoutError, IndexError):
        return {}


async def test_relay_keeps_notifications_kafka_refuses_and_delivers_them_later(
    tmp_path: Path,
) -> None:
    cuts = pick(1, 3)
    customers = pick(40, 200)
    events, due = _carts(customers * cuts)
    proxy = CuttableProxy()
    await proxy.listen()
    try:  # the proxy outlives the stack: its worker stops with a broker still reachable
        async with private_stack(tmp_path) as st:
            await _broker_behind(st, proxy)
            worker = st.start_worker(
                "w",
                CONTINUITY_ABANDON_AFTER="3",
                CONTINUITY_ABANDON_SWEEP_INTERVAL="0.5",
                CONTINUITY_PRODUCER_REQUEST_TIMEOUT="3",
                CONTINUITY_NOTIFICATION_CLAIM_AFTER=str(24 * 3600),
            )
            log = worker.log_path
            failures = pending_seen = sent_while_cut = 0
            async with Publisher(st.bootstrap, linger_ms=1) as pub:
                await st.ready(pub)
            for n in range(cuts):
                part = events[2 * customers * n : 2 * customers * (n + 1)]
                async with Publisher(st.bootstrap, linger_ms=1) as pub:
                    await applied_through(st.state, await publish(pub, part), timeout=60)
                # The resumes are out (the topic's metadata is known): cut before the carts
                # go idle, so their abandonments meet a broker that cannot be reached.
                await _sent_at_least(worker, customers * (2 * n + 1))
                warned = log.read_bytes().count(WARNING)
                await proxy.cut()
                try:
                    before = total(await _worker_metrics(worker), SENT)
                    # Unseen within the time, it is counted missing and reported below.
                    with contextlib.suppress(AssertionError):
                        await wait_until(
                            partial(_warned_more, log, warned), timeout=pick(30, 60), interval=0.25
                        )
                        failures += 1
                    # Shown while it lasts: entries wait in the outbox, nothing is sent.
                    values = await _worker_metrics(worker)
                    pending_seen = max(pending_seen, int(total(values, PENDING)))
                    sent_while_cut += int(total(values, SENT) - before)
                finally:
                    await proxy.listen()
                await wait_until(partial(_outbox_empty, st), timeout=pick(90, 180), interval=0.5)
            published = await _read_notifications(st, due)
            kpis = await _kpis(st)
            sent = total(await _worker_metrics(worker), SENT)
            assert worker.alive(), "the worker exited"
    finally:
        await proxy.close()
    missing = due - set(published)
    unexpected = set(published) - due
    differing = [i for i, copies in published.items() if len(set(copies)) > 1]
    abandoned = sum(
        int(v) for hash_ in kpis for k, v in hash_.items() if _name(k).startswith("abandoned:")
    )
    record(
        FaultRow(
            "relay: broker cut off (proxy) while publishing",
            cuts,
            len(events),
            customers * cuts,
            len(missing),
            max(0, abandoned - customers * cuts),
            len(unexpected) + len(differing),
            landed=failures,
        )
    )
    assert missing == set(), f"{len(missing)} notifications never published: {sorted(missing)[:3]}"
    assert unexpected == set(), f"notifications nobody owed: {sorted(unexpected)[:3]}"
    assert differing == [], f"copies of one notification differ: {differing[:3]}"
    # Exactly once where the contract says so: each abandonment's KPIs, by its acknowledgement.
    assert abandoned == customers * cuts
    assert sent >= len(due), "every notification counted as sent"
    # The failure was visible: the relay said so, and the outbox held what it could not send.
    assert failures == cuts, f"the relay reported {failures} of {cuts} failures"
    assert sent_while_cut == 0, f"{sent_while_cut} counted as sent while Kafka was cut off"
    assert pending_seen >= 1, "continuity_notifications_pending showed nothing waiting"


def _name(field: str | bytes) -> str:
    return field.decode() if isinstance(field, bytes) else field


async def _sent_at_least(worker: loopback.Child, n: int) -> None:
    async def enough() -> bool:
        return total(await _worker_metrics(worker), SENT) >= n

    await wait_until(enough, timeout=60, interval=0.2)


async def _warned_more(log: Path, than: int) -> bool:
    text = await asyncio.to_thread(log.read_bytes)
    return text.count(WARNING) > than


async def _outbox_empty(st: PrivateStack) -> bool:
    """Every partition's outbox stream is empty."""
    where = space(st.prefix)
    lengths = [await st.redis.xlen(keys.outbox(where, n)) for n in where.all_partitions()]
    return sum(int(n) for n in lengths) == 0


async def _kpis(st: PrivateStack) -> list[dict[Any, Any]]:
    """Every partition's KPI hash (an acknowledgement counts in its entry's partition)."""
    where = space(st.prefix)
    return [await st.redis.hgetall(keys.kpis(where, n)) for n in where.all_partitions()]


async def _read_notifications(st: PrivateStack, due: set[str]) -> dict[str, list[bytes]]:
    """Every copy of every notification on the topic, by id, once all ``due`` are there."""

    async def everything() -> dict[str, list[bytes]] | None:
        copies: dict[str, list[bytes]] = defaultdict(list)
        for rec in await read_topic(st.bootstrap, NOTIFICATIONS):
            copies[orjson.loads(rec.value)["notification_id"]].append(rec.value)
        return dict(copies) if due <= set(copies) else None

    # On a timeout the last read is compared all the same, and reports what is missing.
    try:
        found: dict[str, list[bytes]] = await wait_until(everything, timeout=30, interval=1)
    except AssertionError:
        found = {}
        for rec in await read_topic(st.bootstrap, NOTIFICATIONS):
            found.setdefault(orjson.loads(rec.value)["notification_id"], []).append(rec.value)
    return found
