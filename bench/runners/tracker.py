"""How a runner reports its own progress: one JSON file, written once, when it is done.

The runner stamps the moment its first batch is applied and the moment the
last expected event is applied (wall clock, comparable across processes), with
its own CPU time at both, and counts the Redis round trips it waited for.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Report:
    """What a runner measured about itself."""

    first_at: float
    first_count: int
    first_cpu: float
    last_at: float
    count: int
    last_cpu: float
    round_trips: int
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Report:
        return cls(**json.loads(path.read_text()))


class Tracker:
    """Counts applied events; writes the report when ``expect`` of them are applied."""

    def __init__(self, expect: int, report: Path) -> None:
        self.expect = expect
        self.report = report
        self.count = 0
        self.round_trips = 0
        self.extra: dict[str, Any] = {}
        self._first: tuple[float, int, float] | None = None
        self.done = False

    def applied(self, events: int, round_trips: int = 0) -> None:
        """Record ``events`` more applied (their effect is stored) after ``round_trips``."""
        self.count += events
        self.round_trips += round_trips
        if self._first is None:
            self._first = (time.time(), self.count, time.process_time())
        if not self.done and self.count >= self.expect:
            self.done = True
            first_at, first_count, first_cpu = self._first
            report = Report(
                first_at,
                first_count,
                first_cpu,
                time.time(),
                self.count,
                time.process_time(),
                self.round_trips,
                self.extra,
            )
            tmp = self.report.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(report)))
            os.replace(tmp, self.report)


def arguments(description: str) -> argparse.Namespace:
    """``--expect N --report PATH``; the rest comes from the environment, as for the worker."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--expect", type=int, required=True, help="events in the backlog")
    parser.add_argument("--report", type=Path, required=True, help="where to write the report")
    return parser.parse_args()
