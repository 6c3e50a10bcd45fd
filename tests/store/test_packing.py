"""Commands packed straight with hiredis are byte for byte what redis-py packs.

``streams/store/packing.py`` skips redis-py's per-argument Python pass for
commands of plain ``bytes``, ``str`` and ``int`` arguments. Proves, on random
commands (a subcommand in the name, empty and binary bytes, non-ASCII text,
negative and huge integers): the same bytes as redis-py's own serializer; and
that floats, booleans, memoryviews and another encoding take redis-py's path.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis._parsers.encoders import Encoder
from redis.connection import HiredisRespSerializer
from redis.exceptions import DataError

from streams.store import packing

UTF8 = Encoder("utf-8", "strict", False)
ARG = st.one_of(st.binary(max_size=40), st.text(max_size=40), st.integers())


def _fallback(*args: object) -> list[bytes]:
    """redis-py's Python packer, which its hiredis serializer uses for memoryviews."""
    return [b"python packer"]


def _redis_py(encoder: Encoder, *args: object) -> list[bytes]:
    serializer = HiredisRespSerializer(_fallback, encoder.encode)
    return list(packing._original(serializer, *args))


def _ours(encoder: Encoder, *args: object) -> list[bytes]:
    return list(packing._pack(HiredisRespSerializer(_fallback, encoder.encode), *args))


@given(
    name=st.sampled_from(["EVALSHA", "CLIENT SETNAME", b"GET", b"XREAD", "SCRIPT LOAD"]),
    args=st.lists(ARG, max_size=30),
)
def test_the_same_bytes_as_redis_py(name: str | bytes, args: list[object]) -> None:
    assert _ours(UTF8, name, *args) == _redis_py(UTF8, name, *args)


@pytest.mark.parametrize("odd", [1.5, memoryview(b"abc"), bytearray(b"abc")])
def test_other_types_take_redis_pys_path(odd: object) -> None:
    assert _ours(UTF8, "SET", "k", odd) == _redis_py(UTF8, "SET", "k", odd)


def test_a_bool_is_refused_as_redis_py_refuses_it() -> None:
    with pytest.raises(DataError, match="bool"):
        _redis_py(UTF8, "SET", "k", True)
    with pytest.raises(DataError, match="bool"):
        _ours(UTF8, "SET", "k", True)


def test_another_encoding_takes_redis_pys_path() -> None:
    latin = Encoder("latin-1", "strict", False)
    assert _ours(latin, "SET", "k", "é") == _redis_py(latin, "SET", "k", "é")
    assert _ours(latin, "SET", "k", "é") != _ours(UTF8, "SET", "k", "é")


def test_installed_with_hiredis() -> None:
    assert packing.install()
    assert HiredisRespSerializer.pack is packing._pack
