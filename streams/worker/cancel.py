"""Stop a background loop whose cancellation a client library swallowed.

redis-py can swallow a ``CancelledError`` that lands just as a command starts
(reproduced with a plain ``GET``); a loop that catches every other error and
goes on would then never stop, and a worker shutting down would hang on it.
``Task.cancelling()`` still counts the request, so each round checks it.
"""

from __future__ import annotations

import asyncio


def stop_if_cancelled() -> None:
    """Raise ``CancelledError`` if the current task was asked to stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
