"""Finding a rolled-back Redis from floors and applied offsets (``streams/core/positions.py``).

Pure."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.core.positions import Floors, Rewind, rollbacks

TPS = st.sampled_from(["cart-events:0", "cart-events:1", "browse-events:0", "checkout-events:3"])
OFFSETS = st.integers(min_value=0, max_value=10_000)


def test_redis_behind_the_floor_is_a_rollback_and_folds_again_after_its_position() -> None:
    found = rollbacks({"cart-events:0": 1200, "cart-events:1": 40}, {"cart-events:0": 599})
    assert found == [Rewind("cart-events:0", 599, 1200), Rewind("cart-events:1", None, 40)]
    assert [r.seek_to for r in found] == [600, 0], "after Redis's offset, or the log's start"
    assert [r.lost for r in found] == [601, 41]


def test_redis_at_or_ahead_of_the_floor_is_no_rollback() -> None:
    assert rollbacks({"a:0": 5, "a:1": 5}, {"a:0": 5, "a:1": 9}) == []
    assert rollbacks({}, {"a:0": 1}) == [], "no floor, nothing known applied"


def test_committed_offsets_set_floors_below_them_and_none_sets_none() -> None:
    floors = Floors()
    floors.assigned({"a:0": 1201, "a:1": None, "a:2": 0})
    assert floors.all() == {"a:0": 1200}, "committed is the next offset to read"


def test_floors_only_rise_until_a_rewind_or_a_reset() -> None:
    floors = Floors()
    floors.raise_to("a:0", 10)
    floors.raise_to("a:0", 7)
    floors.assigned({"a:0": 5})
    assert floors.of(["a:0", "a:9"]) == {"a:0": 10}
    floors.rewound(Rewind("a:0", 3, 10))
    assert floors.all() == {"a:0": 3}, "Redis's position is the truth after a rewind"
    floors.rewound(Rewind("a:0", None, 3))
    assert floors.all() == {}
    floors.raise_to("a:0", 4)
    floors.forget("a:0")
    floors.revoked(["a:1"])
    assert floors.all() == {}


@given(st.dictionaries(TPS, OFFSETS), st.dictionaries(TPS, OFFSETS))
def test_a_rollback_is_found_exactly_where_redis_is_below_the_floor(
    floors: dict[str, int], applied: dict[str, int]
) -> None:
    found = {r.tp: r for r in rollbacks(floors, applied)}
    for tp, floor in floors.items():
        behind = applied.get(tp, -1) < floor
        assert (tp in found) is behind
        if behind:
            assert found[tp].seek_to == applied.get(tp, -1) + 1
            assert found[tp].seek_to <= floor, "the lost range is folded again, nothing skipped"


@given(st.lists(st.tuples(TPS, OFFSETS)))
def test_a_healthy_redis_never_looks_rolled_back(commits: list[tuple[str, int]]) -> None:
    """Commits raise the floor only after Redis holds them: Redis is never below it."""
    floors, redis = Floors(), {}
    for tp, offset in commits:
        redis[tp] = max(redis.get(tp, -1), offset)  # the commit lands in Redis first
        before = floors.all()
        assert rollbacks(before, redis) == []
        floors.raise_to(tp, offset)
    assert rollbacks(floors.all(), redis) == []
