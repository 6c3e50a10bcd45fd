"""The bounded reader's bookkeeping, with no I/O: progress and the stall clock.

Kept apart from ``streams/kafka/reader.py`` so both are plain to test: the
progress line is what operators watch (``continuity rebuild``, ``dlq``,
``session show --as-of``), the stall clock decides when a read gives up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class ReadProgress:
    """How far a read has come: records, and per ``topic:partition`` (position, end)."""

    records: int = 0
    positions: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    # Partitions let go before their end (``TopicReader.finish``).
    finished: set[str] = field(default_factory=set)
    # Records a caller kept of those read, when it filters (shown if set).
    kept: int | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        """Records per second so far."""
        return self.records / max(time.monotonic() - self.started, 1e-9)

    def done(self, name: str) -> bool:
        """Whether the read is over for ``topic:partition``."""
        pos, end = self.positions.get(name, (0, None))
        return name in self.finished or (end is not None and pos >= end)

    def line(self) -> str:
        """One line: totals, then every partition not done yet as ``tp position/end``."""
        todo = [
            f"{tp} {pos}/{'?' if end is None else end}"
            for tp, (pos, end) in sorted(self.positions.items())
            if not self.done(tp)
        ]
        kept = "" if self.kept is None else f" ({self.kept} kept)"
        return (
            f"{self.records} records read{kept}, {self.rate:.0f}/s, "
            f"{len(self.positions) - len(todo)}/{len(self.positions)} partitions done"
            + (f"; {', '.join(todo)}" if todo else "")
        )


class Stall:
    """The stall rule's clock: any change of the observed state restarts it."""

    def __init__(self, timeout: float, now: float) -> None:
        self.timeout = timeout
        self._since = now
        self._state: object = None

    def observe(self, state: object, now: float) -> float:
        """Note the read's state at ``now``; the seconds left before giving up (<= 0: now)."""
        if state != self._state:
            self._state, self._since = state, now
        return self._since + self.timeout - now
