"""``continuity worker``: one Faust worker, after checking it can reach its topics."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from streams.cli.common import Subcommands, load_settings


def run(args: argparse.Namespace) -> int:
    """Check Kafka, then run one Faust worker until it is stopped."""

    from streams import logs
    from streams.worker.app import create_app
    from streams.worker.faust_worker import Worker
    from streams.worker.startup import Refused, check_kafka, check_redis

    settings = load_settings()
    logs.configure(settings.log_level, settings.log_format)
    json_logs = settings.log_format == "json"
    try:
        check_redis(settings)
        ready = asyncio.run(check_kafka(settings))
    except Refused as refused:
        _say(json_logs, f"continuity worker: {refused.message}", logging.ERROR)
        return refused.code
    for level, message in ready.notes:
        _say(json_logs, f"continuity worker: {message}", level)
    app = create_app(settings)
    # Faust's worker installs its own loop; the one asyncio.run used above is closed.
    asyncio.set_event_loop(asyncio.new_event_loop())
    Worker(
        app,
        loglevel=settings.log_level,
        # JSON: Faust's own records too, and no banner (it is not a JSON line).
        logging_config=logs.logging_config(settings.log_level, "json") if json_logs else None,
        quiet=json_logs,
    ).execute_from_commandline()
    return 0  # pragma: no cover - execute_from_commandline exits the process


def _say(json_logs: bool, message: str, level: int = logging.INFO) -> None:
    """A worker start-up message: a plain line, or a log record when logs are JSON."""
    if json_logs:
        logging.getLogger("streams.cli").log(level, message)
    else:
        print(message, file=sys.stdout if level == logging.INFO else sys.stderr, flush=True)


def register(sub: Subcommands) -> None:
    """Add the command's parser."""
    w = sub.add_parser("worker", help="run one Faust worker (KAFKA_BOOTSTRAP, REDIS_URL)")
    w.set_defaults(func=run)
