"""Is the worker ready? Pure state fed by the rebalance callbacks and Redis round trips.

Ready means: this worker has received a partition assignment from its group
(it is consuming) and Redis is reachable, or has been unreachable for no
longer than the retry budget. While Redis is down the current batch keeps
waiting (nothing is skipped); past the budget the worker reports not ready
so an orchestrator or an operator can see it, and it becomes ready again with
the first successful Redis round trip. Liveness is simply that the worker's
event loop answers HTTP at all.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Readiness:
    """The facts readiness is judged on. Times are monotonic seconds."""

    retry_budget: float = 30.0
    assigned: bool = False
    redis_down_since: float | None = None
    # "unreachable", or what Redis answered instead of taking writes (READONLY, OOM):
    # a PING proves the first gone, only a commit proves the second.
    redis_down_reason: str = "unreachable"

    def on_assigned(self) -> None:
        self.assigned = True

    def on_revoked(self) -> None:
        # A rebalance in progress: not consuming until the next assignment.
        self.assigned = False

    def redis_ok(self) -> None:
        """A commit went through: Redis is reachable and takes writes."""
        self.redis_down_since = None

    def redis_answered(self) -> None:
        """A PING was answered: reachable, which says nothing of refused writes."""
        if self.redis_down_reason == "unreachable":
            self.redis_down_since = None

    def redis_failed(self, now: float, reason: str = "unreachable") -> None:
        if self.redis_down_since is None:
            self.redis_down_since = now
        self.redis_down_reason = reason

    def problems(self, now: float) -> list[str]:
        """Why the worker is not ready; empty when it is."""
        out = []
        if not self.assigned:
            out.append("no partition assignment (joining the group or rebalancing)")
        if self.redis_down_since is not None and now - self.redis_down_since > self.retry_budget:
            out.append(f"redis {self.redis_down_reason} for {now - self.redis_down_since:.0f}s")
        return out
