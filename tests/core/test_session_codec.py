"""The stored form of a session (``streams/core/session_codec.py``). Pure.

Proves: both forms read back to the same session; a compressed typical
session is well under 2 KB; values written before compression still read.
"""

from __future__ import annotations

import pytest

from bench.workload import typical_session_events
from schemas.session import Session
from streams.core.session_codec import decode, encode, json_of
from tests.support.pure import MemoryState, records


def _typical() -> Session:
    state = MemoryState()
    state.process(records(typical_session_events()))
    (session,) = state.sessions.values()
    return session


@pytest.mark.parametrize("compress", [True, False])
def test_a_session_reads_back_as_it_was_stored(compress: bool) -> None:
    session = _typical()
    stored = encode(session, compress)
    assert decode(stored) == session
    assert json_of(stored) == session.model_dump_json().encode()


def test_a_typical_session_is_stored_in_under_2_kb() -> None:
    session = _typical()
    assert (len(session.cart), len(session.recently_viewed)) == (5, 20)
    assert len(encode(session, compress=False)) > 4000
    assert len(encode(session)) < 1200


def test_plain_json_written_before_compression_still_reads() -> None:
    session = _typical()
    assert decode(session.model_dump_json()) == session
    assert decode(session.model_dump_json().encode()) == session
