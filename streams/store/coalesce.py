"""Script calls made in the same turn of the event loop, sent to Redis as one pipeline.

A batch's partitions are folded concurrently (``streams/worker/processor.py``),
each with its own load and commit script: at a steady rate a fetch of a few
dozen records spans several partitions, and each partition's script was its
own round trip, with redis-py's per-command work (a pooled connection, its
retry wrapper, a socket write and a read each). The calls the partitions make
in the same turn of the loop (they start together, and their loads return
together) go out here as one pipeline instead: one connection, one write, one
read of every reply. Nothing changes in what each script does: each is still
one single-slot script, run by Redis on its own, atomically; a pipeline is no
transaction, and a call's error is that call's alone.

A single call is sent as before. On a Redis Cluster every call is sent as
before too (redis-py's cluster pipeline has retry rules of its own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

Pending = tuple[AsyncScript, Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]


class Coalescer:
    """Runs ``script(keys=..., args=...)`` calls, those of one loop turn in one pipeline."""

    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis
        self._pending: list[Pending] = []
        self._flushing: set[asyncio.Task[None]] = set()

    async def call(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """The script's reply, as ``script(keys=keys, args=args)`` would return it."""
        if isinstance(self.redis, RedisCluster):
            return await script(keys=keys, args=args)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((script, keys, args, done))
        return await done

    def _flush(self) -> None:
        calls, self._pending = self._pending, []
        task = asyncio.ensure_future(self._send(calls))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _send(self, calls: list[Pending]) -> None:
        live = [c for c in calls if not c[3].done()]  # a caller cancelled meanwhile
        if len(live) == 1:
            await _one(live[0])
            return
        if not live:
            return
        pipe = self.redis.pipeline(transaction=False)
        for script, keys, args, _ in live:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection failed: every call failed
            for *_, done in live:
                if not done.done():
                    done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for call, reply in zip(live, replies, strict=True):
            if isinstance(reply, NoScriptError):
                await _one(call)  # loads the script, as redis-py's own call does
            elif not call[3].done():
                if isinstance(reply, Exception):
                    call[3].set_exception(reply)
                else:
                    call[3].set_result(reply)


async def _one(call: Pending) -> None:
    script, keys, args, done = call
    try:
        reply = await script(keys=keys, args=args)
    except Exception as exc:
        if not done.done():
            done.set_exception(exc)
        return
    if not done.done():
        done.set_result(reply)
