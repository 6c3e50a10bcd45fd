"""The collector settings of a started process (``streams/heap.py``). In-process, restored.

Proves: settling freezes what is alive (the count rises, a startup object is
no longer tracked by any generation) and sets only the young threshold; with
both off it changes nothing.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from streams.heap import settle


@pytest.fixture(autouse=True)
def _restored() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_settling_freezes_what_is_alive_and_sets_the_young_threshold() -> None:
    startup = [{"made": "at startup"}]
    _, middle, old = gc.get_threshold()
    settled = settle(freeze=True, young_threshold=12_345)
    assert settled.frozen >= 1
    assert settled.frozen == gc.get_freeze_count()
    assert settled.thresholds == (12_345, middle, old) == gc.get_threshold()
    # Frozen: in no generation a collection walks.
    assert not any(startup is o for gen in range(3) for o in gc.get_objects(gen))
    assert "12345, " in settled.describe()


def test_settling_with_both_off_changes_nothing() -> None:
    gc.unfreeze()
    before = gc.get_threshold()
    settled = settle(freeze=False, young_threshold=0)
    assert settled == type(settled)(0, before)
    assert gc.get_freeze_count() == 0
