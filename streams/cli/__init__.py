"""The ``continuity`` command: a parser, and one thin module per command.

Each command module has ``register(sub)`` (its arguments) and the function
that runs it; the rules it applies live in the layer they belong to (``ops``,
``worker``, ``core``), so a command only parses, calls, and reports.
"""

from __future__ import annotations

import argparse
import sys

from streams.cli import (
    dev,
    dlq,
    erase,
    gateway,
    offsets,
    produce,
    rebuild,
    schema,
    session,
    token,
    unmerge,
    worker,
)

# In the order ``continuity --help`` lists them.
COMMANDS = (
    dev,
    worker,
    session,
    produce,
    offsets,
    rebuild,
    erase,
    unmerge,
    dlq,
    schema,
    gateway,
    token,
)


def parser() -> argparse.ArgumentParser:
    """The parser of every command."""
    p = argparse.ArgumentParser(
        prog="continuity", description="Continuity: cart and session continuity across channels."
    )
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``continuity`` console script."""
    from pydantic_settings import SettingsError

    from streams.kafka.security import KafkaSecurityError

    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (KafkaSecurityError, SettingsError) as exc:
        # Configuration the command cannot work with: say which, without a traceback.
        print(f"continuity {args.command}: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
