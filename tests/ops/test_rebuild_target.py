"""Where a rebuild writes (``streams/ops/rebuild.py``: ``target_prefix``). Pure."""

from __future__ import annotations

import calendar

import pytest

from streams.ops.rebuild import LivePrefix, target_prefix

NOW = calendar.timegm((2031, 3, 4, 5, 6, 7))


def test_by_default_a_fresh_prefix_beside_the_live_one_named_by_utc_time() -> None:
    assert target_prefix("cont", None, into_live=False, now=NOW) == "cont-rebuild-20310304050607"


def test_a_prefix_asked_for_is_used() -> None:
    assert target_prefix("cont", "cont-b", into_live=False, now=NOW) == "cont-b"


def test_the_live_prefix_by_name_is_refused_without_the_flag() -> None:
    with pytest.raises(LivePrefix):
        target_prefix("cont", "cont", into_live=False, now=NOW)


def test_into_live_writes_the_live_prefix_whatever_was_asked() -> None:
    assert target_prefix("cont", None, into_live=True, now=NOW) == "cont"
    assert target_prefix("cont", "other", into_live=True, now=NOW) == "cont"
