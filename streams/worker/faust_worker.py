"""The process runner of a Faust app (``faust.Worker``), without its terminal spinner.

Faust's worker shows a progress spinner while it starts; to turn it on every
log record, it sets the root logger to ``DEBUG`` and adds a handler for the
spinner (``faust.Worker.on_setup_root_logger``), and both stay for the
process's life, whatever the configured level. Every ``log.debug`` of
aiokafka, Faust, mode and redis-py then builds a ``LogRecord`` and hands it to
every handler, only for the output handler to drop it: about 4% of the
worker's CPU at a steady 1,000 events/s (``docs/benchmarks.md``). A worker's
output is a log, not a terminal, so this runner keeps the root logger at the
configured level and shows no spinner.
"""

from __future__ import annotations

from typing import Any

import faust


class Worker(faust.Worker):
    """``faust.Worker`` whose root logger stays at the configured level: no spinner,
    so no spinner handler and no root logger at ``DEBUG``."""

    def __init__(self, app: faust.App, *args: Any, **kwargs: Any) -> None:
        super().__init__(app, *args, **kwargs)
        self.spinner = None
