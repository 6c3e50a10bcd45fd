"""Path and query values of the read routes (``streams/gateway/params.py``), pure.

Proves: only contract ids become session ids (encoded slashes, dots, braces,
spaces, overlong ids are a 400 before anything touches Redis); waits parse,
default to the cap and never exceed it; positions parse exactly as ingest
formats them and anything else is a 400.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.gateway.errors import ApiError
from streams.gateway.params import (
    Position,
    ReadWait,
    newest_per_partition,
    positions,
    read_wait,
    session_id,
    wait_seconds,
)


@pytest.mark.parametrize("good", ["c-1", "anon-7f3a", "a.b:c@d+e-f_g", "X" * 128, "0"])
def test_contract_ids_are_session_ids(good: str) -> None:
    assert session_id(good) == good


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "..",
        ".",
        "../c-2",
        "c-1/../c-2",
        "c/1",
        "c 1",
        "{c-1}",
        "c*",
        "-c",
        "X" * 129,
        "c\n1",
        "c%2F1",
        "ü",
    ],
)
def test_anything_else_is_a_400(bad: str) -> None:
    with pytest.raises(ApiError) as info:
        session_id(bad)
    assert (info.value.status, info.value.code) == (400, "invalid_id")


def test_waits_default_to_the_cap_and_never_exceed_it() -> None:
    assert read_wait({}, 10) == ReadWait()
    assert not read_wait({"wait": "5"}, 10).wanted, "a wait without a condition waits for nothing"
    assert read_wait({"min_version": "3"}, 10) == ReadWait(3, (), 10)
    assert read_wait({"min_version": "3", "wait": "2.5"}, 10).timeout == 2.5
    assert read_wait({"min_version": "3", "wait": "4s"}, 10).timeout == 4
    assert read_wait({"min_version": "3", "wait": "600"}, 10).timeout == 10
    assert read_wait({"min_version": "0", "wait": "0"}, 10) == ReadWait(0, (), 0)
    both = read_wait({"min_version": "2", "after": "cart-events:1:5"}, 10)
    assert both == ReadWait(2, (Position("cart-events", 1, 5),), 10)


@pytest.mark.parametrize(
    "query",
    [
        {"min_version": "-1"},
        {"min_version": "1.5"},
        {"min_version": "x"},
        {"min_version": "9" * 20},
        {"min_version": "1", "wait": "-1"},
        {"min_version": "1", "wait": "1m"},
        {"min_version": "1", "wait": "nan"},
        {"after": ""},
        {"after": "cart-events"},
        {"after": "cart-events:1"},
        {"after": "events-dlq:0:1"},
        {"after": "other:0:1"},
        {"after": "cart-events:-1:5"},
        {"after": "cart-events:1:5:6"},
        {"after": ",".join(["cart-events:0:1"] * 65)},
    ],
)
def test_bad_parameters_are_a_400_naming_the_parameter(query: dict[str, str]) -> None:
    with pytest.raises(ApiError) as info:
        read_wait(query, 10)
    assert (info.value.status, info.value.code) == (400, "invalid_parameter")
    assert info.value.extra["parameter"] in query


@given(
    st.lists(
        st.builds(
            Position,
            st.sampled_from(["cart-events", "browse-events", "checkout-events"]),
            st.integers(0, 63),
            st.integers(0, 2**63 - 1),
        ),
        min_size=1,
        max_size=64,
    )
)
def test_positions_round_trip_and_the_newest_cover_all(found: list[Position]) -> None:
    assert positions(",".join(str(p) for p in found)) == tuple(found)
    newest = newest_per_partition(found)
    assert positions(",".join(str(p) for p in newest)) == newest
    for p in found:
        assert any(n.tp == p.tp and n.offset >= p.offset for n in newest)
    assert len({n.tp for n in newest}) == len(newest)


def test_wait_seconds_formats() -> None:
    assert wait_seconds(None, 7) == 7
    assert wait_seconds("0.25", 7) == 0.25
    assert wait_seconds("3s", 7) == 3
