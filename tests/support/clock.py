"""Event times near the present, for tests whose processes compare them with a clock.

The worker prunes journeys older than ``CONTINUITY_JOURNEY_MAX_AGE`` and times
abandonments against its wall clock, so an event time written as a fixed date
turns into a failure once that date is old enough. Every test that crosses into
a worker or gateway takes its times from here; pure tests may keep fixed dates.
``make test`` runs the clock-sensitive tests (marker ``clock``) a second time
with the clock years ahead to prove it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# Whole minutes, two hours back: room for tests that add minutes and hours.
T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)


def at(minutes: float = 0, seconds: float = 0) -> str:
    """RFC 3339 (``Z``) for ``T0`` plus the given offset."""
    moment = T0 + timedelta(minutes=minutes, seconds=seconds)
    return moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds").replace(
        "+00:00", "Z"
    )
