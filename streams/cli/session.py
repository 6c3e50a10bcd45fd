"""``continuity session show ID [--as-of TIME]``: a session now, or as it was."""

from __future__ import annotations

import argparse
import asyncio
import sys

import orjson

from streams.cli.common import Subcommands, load_settings, redis_client


def show(args: argparse.Namespace) -> int:
    """Print one session as JSON: as it is now, or as it was at ``--as-of``."""
    from streams.store.state import RedisState

    if args.as_of is not None:
        return _session_show_as_of(args)
    settings = load_settings()

    async def read() -> dict[str, object] | None:
        async with redis_client(settings) as redis:
            session = await RedisState(redis, settings.space()).get(args.id)
        return None if session is None else session.public()

    public = asyncio.run(read())
    if public is None:
        print(f"no session for {args.id!r}", file=sys.stderr)
        return 1
    sys.stdout.write(orjson.dumps(public, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _session_show_as_of(args: argparse.Namespace) -> int:
    """``session show ID --as-of T``: the session refolded as it was at T (no time limit)."""
    import time

    from aiokafka.errors import KafkaError
    from pydantic import TypeAdapter, ValidationError
    from redis.exceptions import RedisError

    from schemas.events import Id
    from streams.core.time_travel import BadMoment, FutureMoment, iso_ms, past_moment
    from streams.kafka.progress import ReadProgress
    from streams.kafka.reader import LogUnreadable
    from streams.kafka.security import kafka_client_kwargs
    from streams.ops.time_travel import TimeTravel, session_as_of
    from streams.store.state import RedisState

    try:
        TypeAdapter(Id).validate_python(args.id)
    except ValidationError:
        print("continuity session show: the id must match the id pattern", file=sys.stderr)
        return 2
    try:
        moment = past_moment(args.as_of, int(time.time() * 1000))
    except FutureMoment as exc:
        print(f"continuity session show: --as-of {exc}", file=sys.stderr)
        return 2
    except BadMoment as exc:
        print(f"continuity session show: --as-of must be {exc}", file=sys.stderr)
        return 2
    settings = load_settings()

    def report(p: ReadProgress) -> None:
        print(f"  {p.line()}", file=sys.stderr, flush=True)

    async def refold() -> TimeTravel:
        async with redis_client(settings, socket_timeout=30) as redis:
            return await session_as_of(
                settings.kafka_bootstrap,
                RedisState(redis, settings.space()),
                args.id,
                moment,
                settings.fold_limits(),
                kafka=kafka_client_kwargs(settings),
                prefilter=not args.all_records,
                report=report,
            )

    print(
        f"refolding {args.id!r} as of {iso_ms(moment)} from the topics' start...",
        file=sys.stderr,
        flush=True,
    )
    try:
        found = asyncio.run(refold())
    except (LogUnreadable, KafkaError, RedisError, OSError) as exc:
        print(f"continuity session show: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    body = found.body()
    if body is None:
        why = "it was erased; erased sessions are never refolded" if found.result.erased else ""
        print(
            f"no session for {args.id!r} as of {iso_ms(moment)}" + (f": {why}" if why else ""),
            file=sys.stderr,
        )
        return 1
    sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def register(sub: Subcommands) -> None:
    """Add the command's parser."""
    s = sub.add_parser("session", help="inspect sessions")
    ssub = s.add_subparsers(dest="action", required=True)
    parser = ssub.add_parser("show", help="print one session's state as JSON")
    parser.add_argument("id", help="customer_id or anonymous_id")
    parser.add_argument(
        "--as-of",
        metavar="TIME",
        help="the session as it was at TIME (ISO 8601, UTC if no offset, or Unix ms): "
        "refolded from the topics' start with the workers' fold, counting every record "
        "whose Kafka timestamp (broker append time) is <= TIME; erased sessions stay erased",
    )
    parser.add_argument(
        "--all-records",
        action="store_true",
        help="with --as-of: fold every record, not only those naming the id or a guest id "
        "Redis links to it (for a Redis that lost state)",
    )
    parser.set_defaults(func=show)
