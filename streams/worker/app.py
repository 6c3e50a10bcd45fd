"""The Faust app and its folding agent: the thin edge around ``BatchProcessor``.

One agent consumes the three event topics and ``session-forwards`` (work one
partition's commit hands to another). Faust's assignor gives the same
partition number of every topic to the same worker, and the message key is
the customer key, so all events of one customer key reach one agent. The
agent runs with ``concurrency=1`` (Faust can commit past in-flight messages
otherwise: faust-streaming #606). It consumes a ``BatchTopic``: the consumer
hands it whole fetches instead of one event per record
(``streams/worker/batch_delivery.py``), and the agent folds each fetch in batches of at
most ``batch_max`` records, acknowledging a batch's records only after Redis
holds its result, and stopping at a rebalance (the rest is fetched again by
the partition's owner). Kafka offsets are only a hint: the applied offsets
stored with the states in Redis decide what is skipped on redelivery.

Redis is one primary or a Redis Cluster (``streams.store.client.connect``); on
a cluster the worker runs in forward mode (``startup.check_redis`` refuses
``direct``), so every command it sends names one slot: a partition's load and
commit script, a partition's relay stream, a per-partition pipeline.

Redis's applied offsets, not Kafka's committed ones, decide where folding
goes on: a partition on which Redis has rolled back (a failover to a lagging
replica, a restore) is found on its next batch or by a timer, and folded
again from Redis's position (``streams/core/positions.py``, ``streams/worker/rewind.py``).

Before the first batch of a newly assigned partition, ``ResetGuard`` checks
that the partition's log is still the one Redis applied (a broker that lost
its data starts again at offset 0: ``streams/core/log_reset.py``). With a metrics
port, ``/metrics``, ``/healthz`` and ``/readyz`` are served on the worker's loop
(``streams/worker/health.py``).

A timer refreshes the consumer-lag and sessions-active gauges, and the
rebalance signals drop the series of partitions this worker no longer owns
(``streams/worker/gauges.py``). A task sweeps due abandonment timers and relays the
notification outbox to ``session-notifications`` (``streams/worker/relay.py``);
others publish each partition's changelog (``streams/worker/changelog_relay.py``)
and its forwards to ``session-forwards`` (``streams/worker/forward_relay.py``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any

import faust
from faust.types import TP

from schemas.topics import (
    DEAD_LETTERS,
    FOLDED_TOPICS,
    NOTIFICATIONS,
    SESSION_CHANGELOG,
    SESSION_FORWARDS,
    SOURCE_TOPICS,
)
from streams import heap
from streams.core.dead_letter import DeadLetter
from streams.core.positions import Floors
from streams.core.readiness import Readiness
from streams.kafka.records import from_faust
from streams.kafka.security import faust_broker_credentials, kafka_client_kwargs
from streams.logs import batch_fields
from streams.ops.erase import restore_lost_erasures
from streams.settings import Settings
from streams.store import forwards
from streams.store.changelog import every_partition
from streams.store.client import connect, follow_primary, transient
from streams.store.outbox import Outbox
from streams.store.state import RedisState
from streams.worker.batch_delivery import Fetched, batch_topic
from streams.worker.changelog_relay import run_changelog_relays
from streams.worker.dead_letters import DeadLetterSender
from streams.worker.forward_relay import run_forward_relays
from streams.worker.gauges import GaugeRefresher
from streams.worker.health import health_app, serve
from streams.worker.processor import BatchProcessor
from streams.worker.relay import run_relay
from streams.worker.reset_guard import ResetGuard
from streams.worker.rewind import Rewinder
from streams.worker.transport import Positioned, transport_class

log = logging.getLogger(__name__)


def broker_urls(bootstrap: str) -> list[str]:
    """``host:port,host:port`` -> Faust broker URLs."""
    return [f"kafka://{h.strip()}" for h in bootstrap.split(",") if h.strip()]


def base_app(
    settings: Settings,
    max_poll_records: int | None = None,
    positioned: Positioned | None = None,
) -> tuple[faust.App, Any]:
    """The worker's Faust app and its source topic (the three event topics), with no agent.

    Shared with the benchmark's Faust variants, so they differ from the worker
    only in what their agent does with the events (and, for the worker, how
    many records one fetch returns at most: ``max_poll_records``, Faust's
    unbounded default when None, and who is told the committed offsets of
    each assignment: ``positioned``). Faust hands the broker credentials to
    its consumer and producer alike.
    """
    app = faust.App(
        settings.app_id,
        broker=broker_urls(settings.kafka_bootstrap),
        broker_credentials=faust_broker_credentials(settings),
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=settings.heartbeat_interval,
        broker_rebalance_timeout=settings.rebalance_timeout,
        broker_commit_interval=settings.commit_interval,
        # Faust's default (1,200 s) keeps a broker outage silent for 20 minutes: no
        # relay warning, no pending notification counted as failed.
        producer_request_timeout=settings.producer_request_timeout,
        producer_acks=-1,
        stream_wait_empty=False,
        broker_max_poll_records=max_poll_records,
        web_enabled=False,
        # Faust reads unprefixed environment variables (PRODUCER_REQUEST_TIMEOUT,
        # BROKER_COMMIT_INTERVAL, ...) and lets them override what is passed here:
        # a stray variable would silently change the worker. Settings come from
        # CONTINUITY_* alone.
        env={},
    )
    # Before anything touches app.transport (app.topic does): Faust has no setting
    # for the consumer's fetch wait, and the default 1.5 s is latency on some brokers.
    transport = transport_class(settings.fetch_max_wait_ms, positioned)
    app.transport = transport(app.conf.broker_consumer, app)
    _settle_heap_once(app, settings)
    return app, app.topic(*SOURCE_TOPICS, key_type=bytes, value_type=bytes)


def _settle_heap_once(app: faust.App, settings: Settings) -> None:
    """Set the garbage collector (``streams/heap.py``) at the first partition assignment:
    Faust, its consumer and the app are up by then. In ``base_app``, so the
    benchmark's Faust agents run with the worker's collector settings too."""
    settled: list[heap.Settled] = []

    def settle(sender: Any, /, *partitions: Any, **_: Any) -> None:
        if not settled:
            settled.append(heap.settle(settings.gc_freeze, settings.gc_young_threshold))
            log.info(settled[0].describe())

    app.on_partitions_assigned.connect(settle)


def create_app(settings: Settings) -> faust.App:
    """Build the Faust app with its folding agent, configured from ``settings``."""
    # What each owned partition is known to have applied (streams/core/positions.py).
    floors = Floors()
    # A fetch is handed to the agent whole: one fetch, one batch of at most batch_max.
    app, _ = base_app(settings, max_poll_records=settings.batch_max, positioned=floors.assigned)
    # The forwards between partitions are folded with the events, co-partitioned.
    source = batch_topic(app, *FOLDED_TOPICS)
    # The log probe's own consumer connects like Faust's (TLS, SASL).
    kafka = kafka_client_kwargs(settings)
    # The agent opens Redis on the worker's loop; the gauge timer borrows it.
    states: list[RedisState] = []
    guards: list[ResetGuard] = []
    rewinders: list[Rewinder] = []
    gauges = GaugeRefresher()
    readiness = Readiness(retry_budget=settings.redis_retry_budget)

    async def fold_sessions(stream: Any) -> None:
        redis = connect(
            settings.redis_dsn(),
            socket_timeout=5,
            socket_connect_timeout=5,
            health_check_interval=10,
        )
        state = RedisState(redis, settings.space(), settings.effects())
        states.append(state)
        guard = ResetGuard.for_bootstrap(
            state, settings.kafka_bootstrap, settings.retry_max_delay, kafka
        )
        guard.on_reset = floors.forget
        guards.append(guard)

        async def seek(tp: str, offset: int) -> None:
            topic, _, partition = tp.rpartition(":")
            try:
                await app.consumer.seek(TP(topic, int(partition)), offset)
            except Exception as exc:  # revoked meanwhile: its new owner checks it
                log.warning("could not seek %s to %d (%r)", tp, offset, exc)

        async def restore_erasures() -> int:
            return await restore_lost_erasures(state, settings.kafka_bootstrap, kafka)

        rewinder = Rewinder(floors, seek, restore_erasures, settings.retry_max_delay)
        rewinders.append(rewinder)
        processor = BatchProcessor(
            state,
            _dead_letter_sink(app, settings),
            limits=settings.fold_limits(),
            retry_max_delay=settings.retry_max_delay,
            guard=guard.check,
            readiness=readiness,
            floors=floors,
            rewind=rewinder,
            forward=settings.cross_partition == "forward",
        )
        # Behind Sentinel: reads (the batch's state, the position checks) follow a failover.
        following = asyncio.create_task(follow_primary(redis))
        try:
            # noack: nothing is acked but what ``fetched.ack`` acks after Redis holds it.
            fetched: Fetched
            async for fetched in stream.noack():
                for whole in fetched.chunks(settings.batch_max):
                    if not fetched.current():
                        break  # a rebalance: the rest may belong to another worker now
                    async with rewinder.lock:
                        # Less the partitions rewound since the fetch (a Redis rollback).
                        chunk = fetched.positioned(whole)
                        if not chunk:
                            continue
                        records = [from_faust(m) for m in chunk]
                        seeks = getattr(app.consumer, "seeks", 0)
                        try:
                            await processor.process(records)
                        except Exception:
                            # Only a bug gets here (input errors are outcomes, Redis
                            # errors are retried). Faust would restart the agent and
                            # move on, leaving this batch unapplied behind later
                            # offsets: die instead, so the batch is redelivered to a
                            # fresh process.
                            log.critical(
                                "unexpected error folding a batch; exiting",
                                exc_info=True,
                                extra=batch_fields(records),
                            )
                            os._exit(70)
                        # Not what a rewind sought back during the batch: that is
                        # fetched again and acked when it is folded.
                        if getattr(app.consumer, "seeks", 0) != seeks:
                            chunk = fetched.positioned(chunk)  # only after a rewind
                        fetched.ack(chunk)
        finally:
            following.cancel()
            states.remove(state)
            guards.remove(guard)
            rewinders.remove(rewinder)
            await redis.aclose()

    async def refresh_gauges() -> None:
        if not states:
            return
        try:
            await gauges.refresh(states[0], lambda tp: _highwater(app, tp), time.time())
        except Exception:
            # A gauge is never worth a worker: Faust would crash the app on a timer error.
            log.exception("gauge refresh failed")

    # Faust sends (app, partitions, signal=...): the partitions are the one positional.
    def on_revoked(sender: Any, /, *partitions: Any, **_: Any) -> None:
        revoked = [(tp.topic, tp.partition) for tp in partitions[0]]
        gauges.revoked(revoked)
        for guard in guards:
            guard.revoked(revoked)
        readiness.on_revoked()

    async def check_positions() -> None:
        if not states or not rewinders:
            return
        tps = [
            f"{tp.topic}:{tp.partition}"
            for tp in app.consumer.assignment()
            if tp.topic in FOLDED_TOPICS
        ]
        try:
            await rewinders[0].check(states[0], tps)
        except Exception as exc:
            if not transient(exc):  # an outage is the batch path's to report
                log.exception("position check failed")

    def on_assigned(sender: Any, /, *partitions: Any, **_: Any) -> None:
        assigned = [(tp.topic, tp.partition) for tp in partitions[0]]
        names = {f"{t}:{p}" for t, p in assigned}
        # Floors of partitions kept stay (they only rise, and Redis only rises
        # with them); those that left go with their owner.
        floors.revoked(tp for tp in floors.all() if tp not in names)
        gauges.assigned(assigned)
        # Partitions kept across a rebalance are verified again too: cheap, and
        # a rebalance is exactly when a reset broker makes itself known.
        for guard in guards:
            guard.revoked(assigned)
        readiness.on_assigned()

    runners: list[Any] = []  # keeps the HTTP server referenced for the process's life

    async def serve_health() -> None:
        redis = connect(settings.redis_dsn(), socket_timeout=2, socket_connect_timeout=2)
        app_ = health_app(readiness, redis)
        runners.append(await serve(app_, settings.metrics_host, settings.metrics_port))

    async def relay_notifications() -> None:
        # Its own connection: the relay blocks on XREADGROUP between rounds.
        redis = connect(settings.redis_dsn(), socket_timeout=10, socket_connect_timeout=5)
        consumer = f"{socket.gethostname()}-{os.getpid()}"
        claim_after_ms = int(settings.notification_claim_after * 1000)
        outbox = Outbox(redis, settings.space(), consumer, claim_after_ms)

        async def publish(key: str, value: bytes) -> Any:
            return await app.producer.send(NOTIFICATIONS, key.encode(), value, None, None, None)

        try:
            await run_relay(outbox, publish, settings.abandon_sweep_interval)
        finally:
            await redis.aclose()

    async def relay_changelog() -> None:
        redis = connect(settings.redis_dsn(), socket_timeout=10, socket_connect_timeout=5)
        holder = f"{socket.gethostname()}-{os.getpid()}"
        outboxes = every_partition(redis, settings.space(), holder)

        async def publish(
            key: str, value: bytes | None, headers: list[tuple[str, bytes]], partition: int
        ) -> Any:
            return await app.producer.send(
                SESSION_CHANGELOG, key.encode(), value, partition, None, headers
            )

        try:
            await run_changelog_relays(
                outboxes, publish, settings.abandon_sweep_interval, settings.changelog_linger
            )
        finally:
            await redis.aclose()

    async def relay_forwards() -> None:
        redis = connect(settings.redis_dsn(), socket_timeout=10, socket_connect_timeout=5)
        holder = f"{socket.gethostname()}-{os.getpid()}"
        outboxes = forwards.every_partition(redis, settings.space(), holder)

        async def publish(
            partition: int, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
        ) -> Any:
            return await app.producer.send(SESSION_FORWARDS, key, value, partition, None, headers)

        try:
            # Each partition's relay blocks on its own read of the stream: a connection
            # each, none idle-polling Redis (in direct mode the reads only drain what a
            # worker in forward mode left, a switch back).
            await run_forward_relays(outboxes, publish)
        finally:
            await redis.aclose()

    app.agent(source, name="fold_sessions", concurrency=1)(fold_sessions)
    app.task(relay_notifications)
    # Not optional: a partition's commits hand work to others through it.
    app.task(relay_forwards)
    if settings.changelog:
        app.task(relay_changelog)
    app.timer(interval=settings.metrics_interval, name="refresh_gauges")(refresh_gauges)
    app.timer(interval=settings.position_check_interval, name="check_positions")(check_positions)
    app.on_partitions_revoked.connect(on_revoked)
    app.on_partitions_assigned.connect(on_assigned)
    if settings.metrics_port:
        app.task(serve_health)
    return app


def _highwater(app: faust.App, tp: tuple[str, int]) -> int | None:
    """The fetch high watermark of an assigned partition, or None before its first fetch."""
    try:
        mark = app.consumer.highwater(TP(*tp))
    except Exception:  # not (or no longer) assigned mid-rebalance: no answer, not a crash
        return None
    return int(mark) if mark is not None else None


def _dead_letter_sink(app: faust.App, settings: Settings) -> DeadLetterSender:
    async def send(dl: DeadLetter) -> Any:
        return await app.producer.send(DEAD_LETTERS, dl.key, dl.value, None, None, dl.headers)

    # Faust's producer refuses a record above its request limit before the broker sees it.
    limit = min(settings.dead_letter_max_bytes, app.conf.producer_max_request_size)
    return DeadLetterSender(send, limit, settings.retry_max_delay)
