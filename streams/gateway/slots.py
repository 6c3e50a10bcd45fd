"""A bound on open event streams per gateway process. Pure (no I/O).

Each stream holds a socket and a small subscriber entry; the bound keeps a
flood of clients from exhausting file descriptors. A refused client gets a
503 with ``Retry-After`` and reconnects, usually to another gateway.
"""

from __future__ import annotations


class Slots:
    """A counter with a ceiling."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self) -> bool:
        """Take a slot if one is free."""
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def give_back(self) -> None:
        """Return a slot taken with ``take``."""
        self.used = max(0, self.used - 1)
