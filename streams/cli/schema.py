"""``continuity schema [--check]``: export the JSON Schema files from the models."""

from __future__ import annotations

import argparse
import sys

from streams.cli.common import Subcommands


def run(args: argparse.Namespace) -> int:
    """Write the JSON Schema files, or with --check report stale ones."""
    from streams.ops.schema_export import SCHEMA_DIR, export, stale

    if args.check:
        names = stale()
        for name in names:
            print(f"stale: {SCHEMA_DIR / name}", file=sys.stderr)
        return 1 if names else 0
    for path in export():
        print(f"wrote {path}")
    return 0


def register(sub: Subcommands) -> None:
    """Add the command's parser."""
    sc = sub.add_parser("schema", help="export the JSON Schema files from the models")
    sc.add_argument("--check", action="store_true", help="exit 1 if checked-in files are stale")
    sc.set_defaults(func=run)
