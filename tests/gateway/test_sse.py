"""What a stream sends and when (``streams/gateway/sse.py``, ``slots.py``), pure.

Proves: the resume point comes from ``Last-Event-ID`` (header first, then the
query parameter) and garbage is ignored; the cursor never lets through a
version at or below what the client has, so whatever order reads arrive in,
a client sees strictly increasing versions ending at the newest; frames carry
the version as id; the stream bound holds, and the bound per token; a
stream's last event when its token expires says so; the line splitter that skips
aiohttp_sse's regex where there is no line break splits as the regex does.
"""

from __future__ import annotations

import itertools
import secrets
import time

import orjson
from aiohttp_sse import EventSourceResponse
from hypothesis import given
from hypothesis import strategies as st

from streams.gateway.auth import Role, issue, verify
from streams.gateway.slots import Slots, TokenSlots
from streams.gateway.sse import (
    Cursor,
    LineBreaks,
    expired_frame,
    merged_frame,
    resume_from,
    retry_field,
    session_frame,
)


def test_resume_point() -> None:
    assert resume_from(None, None) is None
    assert resume_from("7", None) == 7
    assert resume_from(None, "7") == 7
    assert resume_from("9", "7") == 9, "the browser's header is newer than the URL"
    assert resume_from("junk", "7") == 7
    assert resume_from("-1", None) is None
    assert resume_from("1e3", None) is None
    assert resume_from(" 12 ", None) == 12


@given(
    resume=st.one_of(st.none(), st.integers(0, 50)),
    reads=st.lists(st.integers(1, 60), max_size=40),
)
def test_a_client_sees_strictly_increasing_versions_ending_at_the_newest(
    resume: int | None, reads: list[int]
) -> None:
    # Reads of one key never go backwards in Redis; sort them, but let any
    # version repeat (a notice for a version already sent, a reconnect re-read).
    reads = sorted(reads)
    cursor = Cursor(resume)
    sent = [v for v in reads if cursor.offer(v)]
    floor = resume or 0
    assert all(b > a for a, b in itertools.pairwise(sent))
    assert all(v > floor for v in sent)
    newest = max(reads, default=0)
    assert (sent[-1] if sent else None) == (newest if newest > floor else None)


def test_frames() -> None:
    frame = session_frame(orjson.dumps({"key": "c-1", "version": 4}), 4)
    assert (frame.event, frame.id) == ("session", "4")
    assert orjson.loads(frame.data) == {"key": "c-1", "version": 4}
    assert "\n" not in frame.data
    merged = merged_frame("a-1", "c-1")
    assert merged.event == "merged"
    assert merged.id is None, "the merge does not move the client's version"
    assert orjson.loads(merged.data) == {"key": "a-1", "merged_into": "c-1"}
    assert retry_field(1500) == b"retry: 1500\r\n\r\n"


def test_stream_slots() -> None:
    slots = Slots(2)
    assert slots.take()
    assert slots.take()
    assert not slots.take()
    slots.give_back()
    assert slots.take()
    slots.give_back()
    slots.give_back()
    slots.give_back()
    assert slots.used == 0


def test_one_token_holds_at_most_its_share_of_streams() -> None:
    slots = TokenSlots(2)
    assert [slots.take("customer::c-1") for _ in range(3)] == [True, True, False]
    assert slots.take("customer::c-2"), "another token has its own"
    slots.give_back("customer::c-1")
    assert slots.take("customer::c-1")
    for who in ("customer::c-1", "customer::c-1", "customer::c-2", "customer::c-2"):
        slots.give_back(who)
    assert slots.used == {}, "identities holding nothing are forgotten"


def test_a_stream_knows_its_tokens_expiry_and_says_when_it_passed() -> None:
    secret = secrets.token_urlsafe(32)
    now = int(time.time())
    principal = verify(secret, issue(secret, Role.CUSTOMER, subject="c-1", ttl=60, now=now))
    assert principal.expires_at == now + 60
    frame = expired_frame()
    assert (frame.event, frame.id) == ("token_expired", None)
    assert orjson.loads(frame.data)["error"] == "token_expired"


@given(st.text(st.sampled_from('ab\r\n{}"é'), max_size=30) | st.text(max_size=30))
def test_the_cheaper_line_splitter_splits_as_the_library_does(text: str) -> None:
    library = EventSourceResponse.LINE_SEP_EXPR
    assert LineBreaks().split(text) == library.split(text)
    found, theirs = LineBreaks().search(text), library.search(text)
    assert (found and found.span()) == (theirs and theirs.span())
