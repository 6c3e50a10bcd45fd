"""``continuity gateway``: the HTTP/SSE gateway, after checking its keys and Kafka settings."""

from __future__ import annotations

import argparse
import sys

from streams.cli.common import Subcommands, load_settings


def run(args: argparse.Namespace) -> int:
    """Check the token keys and Kafka settings, then serve until stopped."""
    from aiokafka.errors import KafkaError

    from streams import logs
    from streams.gateway.app import run
    from streams.gateway.auth import keyring
    from streams.kafka.security import KafkaSecurityError, check
    from streams.kafka.topics import TopicLayoutError

    settings = load_settings()
    logs.configure(settings.log_level, settings.log_format)
    try:
        keys = keyring(
            settings.auth_secret.get_secret_value() if settings.auth_secret else None,
            settings.auth_keys.get_secret_value() if settings.auth_keys else None,
        )
    except ValueError as exc:
        print(f"continuity gateway: {exc}; refusing to start", file=sys.stderr)
        return 2
    try:
        check(settings)
    except KafkaSecurityError as exc:
        print(f"continuity gateway: {exc}; refusing to start", file=sys.stderr)
        return 2
    try:
        run(settings, keys)
    except TopicLayoutError as exc:
        print(f"continuity gateway: {exc}", file=sys.stderr)
        return 2
    except (KafkaError, OSError) as exc:
        print(f"continuity gateway: cannot start: {exc!r}", file=sys.stderr)
        return 1
    return 0


def register(sub: Subcommands) -> None:
    """Add the command's parser."""
    g = sub.add_parser("gateway", help="run the HTTP/SSE gateway (CONTINUITY_AUTH_SECRET)")
    g.set_defaults(func=run)
