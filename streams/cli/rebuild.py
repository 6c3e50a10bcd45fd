"""``continuity rebuild``: restore every session into Redis from the changelog and the
source tail (or, with ``--from-history``, by folding every retained source record)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from streams.cli.common import Subcommands, load_settings, redis_client


def run(args: argparse.Namespace) -> int:
    """Fold every retained record into a new prefix, or the emptied live one."""
    from schemas.topics import SOURCE_TOPICS
    from streams.kafka.groups import ensure_group_empty
    from streams.kafka.progress import ReadProgress
    from streams.kafka.reader import LogUnreadable
    from streams.kafka.security import kafka_client_kwargs
    from streams.kafka.topics import ensure_topics, partition_mismatch
    from streams.ops.inline_forwards import OutboxBusy
    from streams.ops.rebuild import (
        LivePrefix,
        PrefixInUse,
        Rebuilt,
        ensure_fresh,
        rebuild,
        target_prefix,
        wipe,
    )
    from streams.ops.restore import Restored, restore
    from streams.store.client import is_cluster_url
    from streams.store.keys import Space
    from streams.store.state import RedisState

    settings = load_settings()
    if is_cluster_url(settings.redis_dsn()) and settings.cross_partition != "forward":
        # A direct fold commits a login's two partitions at once: one primary only.
        print(
            "continuity rebuild: a Redis Cluster needs CONTINUITY_CROSS_PARTITION=forward",
            file=sys.stderr,
        )
        return 2
    try:
        prefix = target_prefix(
            settings.redis_prefix, args.prefix, into_live=args.into_live, now=time.time()
        )
    except LivePrefix:
        print("continuity rebuild: that is the live prefix; use --into-live", file=sys.stderr)
        return 2
    space = Space(prefix, settings.topic_partitions)

    def report(p: ReadProgress) -> None:
        print(f"  {p.line()}", flush=True)

    async def run() -> Rebuilt | Restored:
        kafka = kafka_client_kwargs(settings)
        layout = await ensure_topics(
            settings.kafka_bootstrap,
            settings.topic_partitions,
            kafka=kafka,
            retention_ms=settings.topic_retention_ms,
        )
        if layout[SOURCE_TOPICS[0]] != settings.topic_partitions:
            raise PartitionMismatch(
                partition_mismatch(layout[SOURCE_TOPICS[0]], settings.topic_partitions)
            )
        async with redis_client(settings, socket_timeout=30) as redis:
            if args.into_live:
                group = args.group or settings.app_id
                print(f"checking that group {group!r} has no worker...", flush=True)
                await ensure_group_empty(
                    settings.kafka_bootstrap,
                    group,
                    SOURCE_TOPICS,
                    layout[SOURCE_TOPICS[0]],
                    timeout=args.timeout,
                    kafka=kafka,
                )
                print(f"wiped {await wipe(redis, space)} keys of live prefix {prefix!r}")
            else:
                await ensure_fresh(redis, space)
            state = RedisState(redis, space, settings.effects(notify=False))
            if not args.from_history:
                print(
                    f"restoring session-changelog, then the tail of {', '.join(SOURCE_TOPICS)},"
                    f" into prefix {prefix!r}...",
                    flush=True,
                )
                return await restore(
                    settings.kafka_bootstrap,
                    state,
                    SOURCE_TOPICS,
                    batch_max=args.batch,
                    report=report,
                    kafka=kafka,
                    limits=settings.fold_limits(),
                    forward=settings.cross_partition == "forward",
                )
            print(f"rebuilding {', '.join(SOURCE_TOPICS)} into prefix {prefix!r}...", flush=True)
            return await rebuild(
                settings.kafka_bootstrap,
                # Timers and the journey as live; no notifications: they went out live.
                RedisState(redis, space, settings.effects(notify=False)),
                SOURCE_TOPICS,
                batch_max=args.batch,
                report=report,
                kafka=kafka,
                limits=settings.fold_limits(),
                forward=settings.cross_partition == "forward",
            )

    try:
        done = asyncio.run(run())
    except TimeoutError as exc:
        print(f"continuity rebuild: {exc}; stop the workers first", file=sys.stderr)
        return 1
    except PartitionMismatch as exc:
        print(f"continuity rebuild: {exc}", file=sys.stderr)
        return 2
    except PrefixInUse:
        print(f"continuity rebuild: prefix {prefix!r} already holds state", file=sys.stderr)
        return 2
    except LogUnreadable as exc:
        print(f"continuity rebuild: {exc}; prefix {prefix!r} is incomplete", file=sys.stderr)
        return 1
    except OutboxBusy as exc:
        print(
            f"continuity rebuild: {exc}; stop the workers of prefix {prefix!r} first "
            "(it is incomplete: rebuild into it again with --into-live)",
            file=sys.stderr,
        )
        return 1
    if isinstance(done, Restored):
        print(f"  {done.tail.line()}")
        reset = f"; logs reset, read from the start: {', '.join(done.reset_partitions)}"
        print(
            f"restored {done.states} keys from {done.changelog_records} changelog records "
            f"({done.skipped_erased} erased), then folded {done.sources} source records "
            f"{f'and {done.forwards} session-forwards records ' if done.forwards else ''}"
            f"into prefix {prefix!r}{reset if done.reset_partitions else ''}"
        )
        return 0
    print(f"  {done.progress.line()}")
    delivered = (
        f" and delivered {done.forwards} forwards between partitions" if done.forwards else ""
    )
    print(f"rebuilt {done.progress.records} records{delivered} into prefix {prefix!r}")
    return 0


class PartitionMismatch(RuntimeError):
    """The topics' partition count is not the one the keys would be placed with."""


def register(sub: Subcommands) -> None:
    """Add the command's parser."""
    rb = sub.add_parser(
        "rebuild", help="restore every session into Redis from the changelog and the source tail"
    )
    rb.add_argument("--prefix", help="target Redis prefix (default <prefix>-rebuild-<time>)")
    rb.add_argument(
        "--into-live",
        action="store_true",
        help="wipe and rebuild the live prefix (workers stopped)",
    )
    rb.add_argument(
        "--from-history",
        action="store_true",
        help="fold every retained source record instead (journeys and KPI counters too)",
    )
    rb.add_argument("--group", default=None, help="worker group that must be empty (--into-live)")
    rb.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the group")
    rb.add_argument("--batch", type=int, default=2000, help="records per committed batch")
    rb.set_defaults(func=run)
