"""Assembling and running the gateway's aiohttp application.

Routes live in ``streams/gateway/routes/``, one module per area, each with a
``register(app)``; add a
module to ``ROUTE_MODULES`` to add an area (a demo page, a POS handoff).
Middlewares, outermost first: request metrics, JSON errors, authentication;
aiohttp's own 417 (sent before any middleware) gets the JSON error body from
an ``on_response_prepare`` signal.

Shared per process: one Redis client for reads (one primary's, or a Redis
Cluster's for a ``redis+cluster://`` URL), one Redis connection for sharded
pub/sub (``Fanout``: every partition's channel; one per primary on a cluster),
one Kafka producer.
Nothing else is kept between requests, so gateways scale out behind any load
balancer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from types import ModuleType

from aiohttp import web
from aiokafka.errors import KafkaError
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from schemas.topics import SOURCE_TOPICS
from streams import heap
from streams.gateway.access_log import PathOnlyAccessLogger, ScrubBadRequests
from streams.gateway.auth import Keyring
from streams.gateway.fanout import Fanout
from streams.gateway.guard import authenticate
from streams.gateway.keys import (
    FANOUT,
    HANDOFFS,
    KEYS,
    LIFETIMES,
    LIMITER,
    PRODUCER,
    REDIS,
    SESSIONS,
    SETTINGS,
    STREAM_SLOTS,
    TOKEN_STREAM_SLOTS,
)
from streams.gateway.middleware import count_requests, json_errors, json_escaped_errors
from streams.gateway.producer import EventProducer
from streams.gateway.rate_limit import RateLimiter
from streams.gateway.routes import (
    demo,
    erase,
    handoff,
    health,
    index,
    ingest,
    journey,
    kpis,
    openapi,
    sessions,
    stream,
)
from streams.gateway.sessions import Sessions
from streams.gateway.slots import Slots, TokenSlots
from streams.kafka.security import describe, kafka_client_kwargs
from streams.kafka.topics import TopicLayoutError, ensure_topics, partition_mismatch
from streams.settings import Settings
from streams.store.client import connect, follow_primary
from streams.store.handoffs import HandoffStore

log = logging.getLogger(__name__)

ROUTE_MODULES: tuple[ModuleType, ...] = (
    index,
    health,
    sessions,
    journey,
    erase,
    stream,
    ingest,
    kpis,
    handoff,
    openapi,
    # Last: in development it takes ``GET /`` over from the index.
    demo,
)
# How long a starting gateway waits for Kafka before giving up.
STARTUP_TIMEOUT = 30.0
# Open streams get this long to end after a shutdown signal (they are told at once).
SHUTDOWN_TIMEOUT = 5.0


def create_app(settings: Settings, keys: Keyring | str) -> web.Application:
    """The application with every route; connections open when it starts.

    ``keys``: the accepted token keys (``auth.keyring``; a string is one unnamed key).
    """
    app = web.Application(
        client_max_size=settings.gateway_max_body_bytes,
        middlewares=[count_requests, json_errors, authenticate],
    )
    app[SETTINGS] = settings
    app[KEYS] = Keyring(keys) if isinstance(keys, str) else keys
    app[LIFETIMES] = settings.token_max_lifetimes()
    app[STREAM_SLOTS] = Slots(settings.sse_max_connections)
    app[TOKEN_STREAM_SLOTS] = TokenSlots(settings.sse_max_streams_per_token)
    app.cleanup_ctx.append(_connections)
    # After the connections (a scrape reads Redis); before the API's port opens.
    app.cleanup_ctx.append(health.metrics_listener)
    app.on_shutdown.append(_end_streams)
    app.on_response_prepare.append(json_escaped_errors)
    for module in ROUTE_MODULES:
        module.register(app)
    return app


def run(settings: Settings, keys: Keyring) -> None:
    """Serve until SIGINT or SIGTERM."""
    logging.getLogger("aiohttp.server").addFilter(ScrubBadRequests())
    web.run_app(
        create_app(settings, keys),
        host=settings.gateway_host,
        port=settings.gateway_port,
        access_log_class=PathOnlyAccessLogger,
        # A client that goes away cancels its handler: streams end at once.
        handler_cancellation=True,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        print=None,
    )


async def _connections(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    producer = await _start_producer(settings)
    # A blocking pool sized for every open stream plus the other routes: a burst of
    # reads waits for a connection instead of failing (redis-py's default pool of
    # 100 raises at once when exhausted).
    redis = connect(
        settings.redis_dsn(),
        blocking_pool=settings.sse_max_connections + 100,
        pool_timeout=5,
        socket_timeout=5,
        socket_connect_timeout=2,
    )
    # No retries on the pub/sub connection: the fan-out reconnects itself, so it
    # knows when notices may have been lost. On a cluster this client only finds the
    # slots' owners; the fan-out opens its own connection to each.
    pubsub_client = connect(
        settings.redis_dsn(), socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    space = settings.space()
    fanout = Fanout(pubsub_client, space)
    await fanout.start()
    app[PRODUCER] = producer
    app[REDIS] = redis
    app[FANOUT] = fanout
    app[SESSIONS] = Sessions(redis, space, fanout)
    app[HANDOFFS] = HandoffStore(redis, space)
    app[LIMITER] = RateLimiter(
        redis,
        space,
        {
            "ingest": settings.ingest_rate_limit,
            "ingest-service": settings.service_ingest_rate_limit,
            "claim": settings.handoff_claim_rate_limit,
            "handoff": settings.handoff_create_rate_limit,
            "handoff-service": settings.service_handoff_create_rate_limit,
        },
    )
    log.info(
        "continuity gateway: listening on http://%s:%d (Kafka %s %s, prefix %r, %d partitions)",
        settings.gateway_host,
        settings.gateway_port,
        settings.kafka_bootstrap,
        describe(settings),
        settings.redis_prefix,
        settings.topic_partitions,
    )
    # Behind Sentinel: reads follow a failover instead of a demoted primary.
    following = asyncio.create_task(follow_primary(redis))
    # Up: what exists now lives as long as the process (streams/heap.py).
    log.info(heap.settle(settings.gc_freeze, settings.gc_young_threshold).describe())
    try:
        yield
    finally:
        following.cancel()
        await fanout.stop()
        await producer.stop()
        await redis.aclose()


async def _end_streams(app: web.Application) -> None:
    if FANOUT in app:
        app[FANOUT].close_all()


async def _start_producer(settings: Settings) -> EventProducer:
    """Create missing topics (as the worker does) and connect the producer; retry a while."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    kafka = kafka_client_kwargs(settings)
    while True:
        producer = EventProducer(
            settings.kafka_bootstrap,
            idempotence=settings.producer_idempotence,
            timeout=settings.gateway_produce_timeout,
            kafka=kafka,
        )
        try:
            layout = await ensure_topics(
                settings.kafka_bootstrap,
                settings.topic_partitions,
                kafka=kafka,
                retention_ms=settings.topic_retention_ms,
            )
            # Every key is read where its partition puts it: a gateway counting other
            # partitions than the topics' would read (and draw handoff codes) elsewhere.
            found = layout.get(SOURCE_TOPICS[0])
            if found != settings.topic_partitions:
                await producer.stop()
                raise TopicLayoutError(partition_mismatch(found, settings.topic_partitions))
            await producer.start()
            return producer
        except TopicLayoutError:
            raise
        except (KafkaError, OSError) as exc:
            await producer.stop()
            if time.monotonic() > deadline:
                raise
            log.warning(
                "Kafka at %s not reachable yet (%r); retrying", settings.kafka_bootstrap, exc
            )
            await asyncio.sleep(1.0)
