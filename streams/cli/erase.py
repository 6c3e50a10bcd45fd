"""``continuity erase``: erase a customer's session state for good."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from streams.cli.common import Subcommands, load_settings, redis_client


def run(args: argparse.Namespace) -> int:
    """Erase one customer (and named guests) in Redis and on Kafka."""
    from aiokafka.errors import KafkaError
    from pydantic import TypeAdapter, ValidationError

    from schemas.events import Id
    from streams.kafka.security import kafka_client_kwargs
    from streams.ops.erase import EraseError, erase_customer, report
    from streams.store.state import Erased, RedisState

    try:
        ids = [TypeAdapter(Id).validate_python(i) for i in [args.customer, *args.anonymous_id]]
    except ValidationError:
        print("continuity erase: ids must match the wire contract's id pattern", file=sys.stderr)
        return 2
    settings = load_settings()

    async def run() -> Erased:
        async with redis_client(settings, socket_timeout=30) as redis:
            return await erase_customer(
                RedisState(redis, settings.space(), settings.effects()),
                settings.kafka_bootstrap,
                ids[0],
                also=ids[1:],
                kafka=kafka_client_kwargs(settings),
            )

    print(f"erasing customer {ids[0]!r} (prefix {settings.redis_prefix!r})...", flush=True)
    try:
        done = asyncio.run(run())
    # KafkaError: a broker that refuses us, or LogUnreadable (log ends not read).
    except (EraseError, KafkaError, OSError) as exc:
        print(f"continuity erase: {exc}; nothing is lost by running it again", file=sys.stderr)
        return 1
    print(json.dumps(report(done), indent=2))
    return 0


def register(sub: Subcommands) -> None:
    """Add the command's parser."""
    er = sub.add_parser("erase", help="erase a customer's session state for good")
    er.add_argument("--customer", required=True, help="customer_id to erase")
    er.add_argument(
        "--anonymous-id",
        action="append",
        default=[],
        help="a guest id of this customer to erase too (repeatable); merged guests are found",
    )
    er.set_defaults(func=run)
