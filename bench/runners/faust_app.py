"""A Faust app configured exactly like the worker's (``streams.app.create_app``), minus its agent.

Same broker settings (session, heartbeat and rebalance timeouts, commit
interval, raw serializers, earliest offsets, no web server), read from the same
environment through ``streams.settings.Settings``, so a bench agent differs
from the worker only in what it does with the events.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust

from schemas.topics import SOURCE_TOPICS
from streams.app import broker_urls
from streams.settings import Settings


def bench_app(settings: Settings) -> tuple[faust.App, Any]:
    """The app and its source topic (the three event topics), ready for one agent."""
    app = faust.App(
        settings.app_id,
        broker=broker_urls(settings.kafka_bootstrap),
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=settings.heartbeat_interval,
        broker_rebalance_timeout=settings.rebalance_timeout,
        broker_commit_interval=settings.commit_interval,
        producer_acks=-1,
        stream_wait_empty=False,
        web_enabled=False,
    )
    return app, app.topic(*SOURCE_TOPICS, key_type=bytes, value_type=bytes)


def run(app: faust.App, settings: Settings) -> None:
    """Run the app's worker in this process until it is stopped (as ``continuity worker`` does)."""
    asyncio.set_event_loop(asyncio.new_event_loop())
    faust.Worker(app, loglevel=settings.log_level).execute_from_commandline()
