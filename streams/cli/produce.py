"""``continuity produce``: publish events from a JSON-lines file or stdin."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from typing import TextIO

from streams.cli.common import Subcommands, load_settings


def run(args: argparse.Namespace) -> int:
    """Validate and publish JSON-lines events; exit 1 if any line was bad."""
    from streams.core.fold import Rejected
    from streams.kafka.publish import Outgoing, Publisher, prepare
    from streams.kafka.security import kafka_client_kwargs
    from streams.kafka.topics import ensure_topics

    settings = load_settings()
    source: TextIO = (
        sys.stdin if args.file in (None, "-") else open(args.file, encoding="utf-8")  # noqa: SIM115
    )
    good: list[Outgoing] = []
    bad = 0
    with source:
        for n, line in enumerate(source, start=1):
            if not line.strip():
                continue
            raw = line.strip().encode()
            if args.raw:
                good.append(Outgoing(args.topic, args.key.encode() if args.key else b"", raw))
                continue
            out = prepare(raw)
            if isinstance(out, Rejected):
                bad += 1
                print(f"line {n}: {out.reason.value}: {out.detail}", file=sys.stderr)
            else:
                good.append(out)

    async def send() -> int:
        kafka = kafka_client_kwargs(settings)
        await ensure_topics(
            settings.kafka_bootstrap,
            settings.topic_partitions,
            kafka=kafka,
            retention_ms=settings.topic_retention_ms,
        )
        async with Publisher(settings.kafka_bootstrap, kafka=kafka) as pub:
            return len(await pub.send_all(good))

    sent = asyncio.run(send()) if good else 0
    per_topic = Counter(o.topic for o in good)
    print(
        f"sent {sent} events to {settings.kafka_bootstrap} "
        f"({', '.join(f'{t}: {c}' for t, c in sorted(per_topic.items())) or 'none'})"
        + (f"; {bad} invalid lines skipped" if bad else "")
    )
    return 1 if bad else 0


def register(sub: Subcommands) -> None:
    """Add the command's parser."""
    pr = sub.add_parser("produce", help="publish events from a JSON-lines file or stdin")
    pr.add_argument("file", nargs="?", help="JSON-lines file; '-' or nothing for stdin")
    pr.add_argument("--raw", action="store_true", help="send lines unvalidated to --topic")
    pr.add_argument("--topic", default="cart-events", help="topic for --raw")
    pr.add_argument("--key", default=None, help="message key for --raw")
    pr.set_defaults(func=run)
