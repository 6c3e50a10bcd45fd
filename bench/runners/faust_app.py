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

from streams.settings import Settings
from streams.worker.app import base_app
from streams.worker.faust_worker import Worker


def bench_app(settings: Settings) -> tuple[faust.App, Any]:
    """The app and its source topic (the three event topics), ready for one agent."""
    return base_app(settings)


def run(app: faust.App, settings: Settings) -> None:
    """Run the app's worker in this process until it is stopped (as ``continuity worker`` does)."""
    asyncio.set_event_loop(asyncio.new_event_loop())
    # The worker's runner (no spinner keeping the root logger at DEBUG): the bench's Faust
    # agents differ from the worker in their agent only.
    Worker(app, loglevel=settings.log_level).execute_from_commandline()
