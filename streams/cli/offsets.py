"""``continuity offsets rewind``: reset a stopped worker group to the earliest offsets."""

from __future__ import annotations

import argparse
import asyncio
import sys

from streams.cli.common import Subcommands, load_settings


def rewind(args: argparse.Namespace) -> int:
    """Rewind a stopped worker group to the earliest offsets."""
    from schemas.topics import FOLDED_TOPICS, SOURCE_TOPICS
    from streams.kafka.groups import rewind_group
    from streams.kafka.security import kafka_client_kwargs
    from streams.kafka.topics import ensure_topics

    settings = load_settings()
    group = args.group or settings.app_id

    async def rewind() -> int:
        kafka = kafka_client_kwargs(settings)
        layout = await ensure_topics(
            settings.kafka_bootstrap,
            settings.topic_partitions,
            kafka=kafka,
            retention_ms=settings.topic_retention_ms,
        )
        partitions = layout[SOURCE_TOPICS[0]]
        print(
            f"rewinding group {group!r} on {settings.kafka_bootstrap} to the earliest offsets "
            f"({len(FOLDED_TOPICS)} topics x {partitions} partitions); waiting for the "
            "group to be empty...",
            flush=True,
        )
        return await rewind_group(
            settings.kafka_bootstrap,
            group,
            # Every topic the workers fold: the forwards between partitions too.
            FOLDED_TOPICS,
            partitions,
            timeout=args.timeout,
            kafka=kafka,
        )

    try:
        count = asyncio.run(rewind())
    except TimeoutError as exc:
        print(f"continuity offsets rewind: {exc}; are workers still running?", file=sys.stderr)
        return 1
    print(
        f"rewound {count} partitions; restart the workers to re-read every topic "
        "(events already in Redis are skipped)"
    )
    return 0


def register(sub: Subcommands) -> None:
    """Add the command's parser."""
    o = sub.add_parser("offsets", help="consumer group offsets")
    osub = o.add_subparsers(dest="action", required=True)
    rw = osub.add_parser("rewind", help="reset a stopped worker group to the earliest offsets")
    rw.add_argument("--group", default=None, help="consumer group (default CONTINUITY_APP_ID)")
    rw.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the group")
    rw.set_defaults(func=rewind)
