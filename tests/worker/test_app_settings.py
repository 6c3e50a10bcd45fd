"""The worker's Faust app takes its settings from CONTINUITY_* alone. No processes: building
the app connects to nothing."""

from __future__ import annotations

import pytest

from streams.settings import Settings
from streams.worker.app import create_app


def test_faust_environment_variables_do_not_override_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Faust reads these unprefixed names and would let them win over what the worker passes.
    monkeypatch.setenv("PRODUCER_REQUEST_TIMEOUT", "3")
    monkeypatch.setenv("BROKER_COMMIT_INTERVAL", "99")
    monkeypatch.setenv("CONTINUITY_PRODUCER_REQUEST_TIMEOUT", "12.5")
    settings = Settings()
    app = create_app(settings)
    assert app.conf.producer_request_timeout == 12.5
    assert app.conf.broker_commit_interval == settings.commit_interval


def test_a_publish_fails_within_seconds_by_default_not_twenty_minutes() -> None:
    assert create_app(Settings()).conf.producer_request_timeout == 30.0


def test_event_time_and_dead_letter_bounds_reach_the_fold_and_are_checked() -> None:
    limits = Settings().fold_limits()
    assert (limits.event_time_max_ahead, limits.event_time_max_behind) == (300, 7 * 86400)
    assert Settings().dead_letter_max_bytes == 1_000_000
    with pytest.raises(ValueError, match="must be shorter than CONTINUITY_SHARED_DEVICE_WINDOW"):
        Settings(event_time_max_behind=30 * 86400, shared_device_window=30 * 86400)
