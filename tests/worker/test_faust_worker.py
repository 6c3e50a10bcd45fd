"""The worker's Faust runner keeps the root logger at the configured level.

Faust's own runner turns the root logger to DEBUG for its terminal spinner, so
every library's debug call builds a record the output handler then drops
(``streams/worker/faust_worker.py``). Proves: under ours a configured
``warning`` leaves debug (and info) disabled for aiokafka, Faust, mode and the
root, and only the output handler is installed; under Faust's, debug is on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import faust
import pytest

from streams.worker.faust_worker import Worker

LIBRARIES = ("aiokafka", "faust", "mode", "redis")


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put the root logger back as it was (the runner reconfigures logging)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        asyncio.set_event_loop(None)
        loop.close()


def _configured(runner: type[faust.Worker]) -> logging.Logger:
    app = faust.App("logging-probe", broker="kafka://127.0.0.1:1", web_enabled=False)
    worker = runner(app, loglevel="warning")
    worker._setup_logging()
    return logging.getLogger()


@pytest.mark.usefixtures("root_logging")
def test_debug_and_info_stay_off_at_warning() -> None:
    root = _configured(Worker)
    assert root.level == logging.WARNING
    for name in LIBRARIES:
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
    assert len(root.handlers) == 1


@pytest.mark.usefixtures("root_logging")
def test_fausts_own_runner_turns_debug_on() -> None:
    # Why the runner exists: if Faust stops doing this, it can go.
    root = _configured(faust.Worker)
    assert root.level == logging.DEBUG
    assert logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)
