"""Writes over several partitions, as one step per partition's slot.

On Redis Cluster a script or a MULTI may touch one slot only, and a partition's
keys share one (``streams/store/keys.py``). So whatever writes to several
partitions is a list of steps, each within one partition, and the deployment
decides how they run together:

* on one primary (plain, TLS or Sentinel) in one MULTI/EXEC: atomic together,
  as one script over every partition was. Workers folding across partitions
  in one commit (``CONTINUITY_CROSS_PARTITION=direct``, one primary only) may
  rely on that;
* on a cluster one after another, each atomic in its slot. There the workers
  run in ``forward`` mode, where a commit changes its own partition's keys only,
  so a step races only its own partition's commits. Each caller says why its
  steps are safe that way: idempotent, and ordered so that a crash between two
  of them is recovered by running the whole again.

Scripts on a cluster are called one by one rather than through a cluster
pipeline: the script object reloads a script a node does not know (NOSCRIPT),
which a cluster pipeline does not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript

from streams.store.scripts import Arg

# One script call: the keys routing it (one partition's) and its arguments.
ScriptCall: TypeAlias = tuple[list[str], list[Arg]]
# Queues one partition's commands on a pipeline (a transaction of that slot).
Fill: TypeAlias = Callable[[Any], None]


async def run_scripts(
    redis: Redis | RedisCluster, script: AsyncScript, calls: Sequence[ScriptCall]
) -> list[Any]:
    """Run ``script`` once per call, in order; return every call's reply.

    One MULTI/EXEC on a single primary, one call after another on a cluster
    (module docstring). A call that fails raises; on a cluster the calls before
    it stay done.
    """
    if isinstance(redis, RedisCluster):
        return [await script(keys=k, args=a) for k, a in calls]
    async with redis.pipeline(transaction=True) as pipe:
        for k, a in calls:
            await script(keys=k, args=a, client=pipe)
        return list(await pipe.execute())


async def run_transactions(redis: Redis | RedisCluster, fills: Sequence[Fill]) -> None:
    """Queue each partition's commands with its ``fill`` and run them: one MULTI/EXEC
    for all on a single primary, one per partition (its slot) on a cluster."""
    if isinstance(redis, RedisCluster):
        for fill in fills:
            async with redis.pipeline(transaction=True) as pipe:
                fill(pipe)
                await pipe.execute()
        return
    async with redis.pipeline(transaction=True) as one:
        for fill in fills:
            fill(one)
        await one.execute()
