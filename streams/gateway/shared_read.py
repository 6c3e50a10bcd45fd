"""One read of a key shared by all its local followers: single flight plus the last result.

A commit notice wakes every local follower of its key at once, and each used
to read the session from Redis and serialise it on its own: ten followers,
ten reads, ten identical frames. ``SharedRead`` (one per followed key, held
by ``fanout.Followed``) gives them one read and one result.

Correctness rests on one number: the key's *announcement count*
(``Followed.announced``), which the fan-out raises before it wakes the
followers of a notice (and, after a reconnect, of every key). A follower
notes the count when it wakes (``need``); any read that *started* when the
count was already at least ``need`` began after the notice that woke it was
dispatched, so it sees that commit or a newer one. Such a read is joined
while in flight or reused once done (a follower that wakes late gets the
cached result if nothing newer was announced); otherwise a new read starts,
tagged with the count at its start. A read started earlier is never
reused for a later notice, so sharing cannot show anyone an older state than
reading alone would have. That holds for a stream's first read too: it may
take a read that started before the stream subscribed only if no notice of
the key was dispatched since that read started, and a commit the read missed
is announced later, to the new stream as well.

A notice may carry the state it announces (``fanout.Carried``): that state is
what a read started at its announcement count would at least have seen, so
``settle`` keeps it as a result of that count, made once for all followers,
with no read at all.

The follower that starts a read runs it itself (no task per read); others
wait on a shielded future, so a joiner that leaves cannot cancel the read.
If the reader leaves (cancelled) or the read fails, its joiners get the
error; a cancelled read is started again by the next follower that needs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedRead(Generic[T]):
    """Single-flight reads of one key, tagged with the announcement count at their start."""

    __slots__ = ("_done", "_done_at", "_pending", "_pending_at")

    def __init__(self) -> None:
        self._done: T | None = None
        self._done_at = -1
        self._pending: asyncio.Future[T] | None = None
        self._pending_at = -1

    async def get(self, need: int, now: Callable[[], int], read: Callable[[], Awaitable[T]]) -> T:
        """A result of a read started at announcement count ``need`` or later.

        ``now`` gives the count at the moment a new read starts; ``read`` does it.
        """
        while True:
            if self._done_at >= need:
                return self._done  # type: ignore[return-value]
            pending = self._pending
            if pending is None or self._pending_at < need:
                return await self._lead(now(), read)
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise  # this follower was cancelled, not (only) the read
                # Its reader left before the read ended: read again.

    def settle(self, at: int, make: Callable[[], T]) -> T:
        """A result as of announcement ``at`` known without a read (a notice carried it).

        ``make`` turns it into a result, once: a result already kept from count ``at``
        or later (a read, or this state settled before) is returned instead.
        """
        if self._done_at >= at:
            return self._done  # type: ignore[return-value]
        result = make()
        self._done, self._done_at = result, at
        return result

    async def _lead(self, at: int, read: Callable[[], Awaitable[T]]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending, self._pending_at = future, at
        try:
            result = await read()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # retrieved: with no joiner, asyncio would log it
            raise
        else:
            future.set_result(result)
            # Reads may end out of order: keep the result of the latest start.
            if at >= self._done_at:
                self._done, self._done_at = result, at
            return result
        finally:
            if self._pending is future:
                self._pending = None
