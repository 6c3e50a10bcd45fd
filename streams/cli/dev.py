"""``continuity dev``: the whole stack on loopback, with simulated traffic."""

from __future__ import annotations

import argparse
from pathlib import Path

from streams.cli.common import Subcommands
from streams.dev.files import DEFAULT_STATE_DIR


def run(args: argparse.Namespace) -> int:
    """Run the whole stack in the foreground until Ctrl-C."""
    from streams.dev import live as dev

    args.state_dir.mkdir(parents=True, exist_ok=True)
    return dev.run(args.state_dir, args.workers, not args.no_demo, args.rate, args.seed)


def register(sub: Subcommands) -> None:
    """Add the command's parser."""
    d = sub.add_parser("dev", help="run broker, Redis, workers and demo traffic in the foreground")
    d.add_argument("--no-demo", action="store_true", help="leave out the simulated traffic")
    d.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    d.add_argument("--rate", type=float, default=4.0, help="demo events per second (default 4)")
    d.add_argument("--seed", type=int, default=7, help="demo workload seed")
    d.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    d.set_defaults(func=run)
