"""How the workers' background loops (the relays) retry and stop.

``Backoff``: a loop that must outlive Redis or Kafka outages logs each failure
and waits, doubling the wait up to a bound, and starts again from the first
wait after a round that worked.

``stop_if_cancelled``: redis-py can swallow a ``CancelledError`` that lands just
as a command starts (reproduced with a plain ``GET``); a loop that catches
every other error and goes on would then never stop, and a worker shutting
down would hang on it. ``Task.cancelling()`` still counts the request, so each
round checks it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


def stop_if_cancelled() -> None:
    """Raise ``CancelledError`` if the current task was asked to stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


@dataclass
class Backoff:
    """Waits between failed rounds of one loop: ``first``, doubled up to ``most``."""

    what: str
    logger: logging.Logger = log
    first: float = 0.1
    most: float = 5.0

    def __post_init__(self) -> None:
        self.delay = self.first

    def worked(self) -> None:
        """A round succeeded: the next failure waits ``first`` again."""
        self.delay = self.first

    async def failed(self, exc: BaseException) -> None:
        """Log the failure and wait before the next round."""
        self.logger.warning("%s: %r; retrying in %.1fs", self.what, exc, self.delay)
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, self.most)
