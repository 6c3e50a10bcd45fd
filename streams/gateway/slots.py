"""Bounds on open event streams per gateway process. Pure (no I/O).

Each stream holds a socket and a small subscriber entry; the bound keeps a
flood of clients from exhausting file descriptors. A refused client gets a
503 with ``Retry-After`` and reconnects, usually to another gateway.

Within it, one token may hold only so many (``TokenSlots``), so a single
token cannot take every slot of a gateway from everyone else; a token over
it gets a 429: it has streams open already, and must close one first.
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


class TokenSlots:
    """Counters with one ceiling per token identity (``rate_limit.identity``)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used: dict[str, int] = {}

    def take(self, who: str) -> bool:
        """Take a slot for ``who`` if it holds fewer than the limit."""
        held = self.used.get(who, 0)
        if held >= self.limit:
            return False
        self.used[who] = held + 1
        return True

    def give_back(self, who: str) -> None:
        """Return a slot taken with ``take``; an identity holding none is forgotten."""
        held = self.used.get(who, 0) - 1
        if held > 0:
            self.used[who] = held
        else:
            self.used.pop(who, None)
