"""A forward record's marks: written as two ASCII headers, read back whatever the client.

Proves: the relay's headers read back as (origin, id), from a list of pairs
(aiokafka, Faust) or a mapping; anything short of both well-formed marks
reads as none; and a record is built with its marks only on ``session-forwards``
(``streams/kafka/records.py``, both clients' messages).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from schemas.topics import (
    CART_EVENTS,
    FORWARD_ORIGIN_HEADER,
    FORWARD_SEQ_HEADER,
    FORWARD_SPACE_HEADER,
    SESSION_FORWARDS,
)
from streams.core.forward_marks import forward_headers, forwarded, sender
from streams.kafka.records import from_faust, from_kafka


def test_the_headers_read_back_as_origin_id_and_sender() -> None:
    headers = forward_headers(11, "1700000000000-3", "cont")
    assert headers == [
        (FORWARD_ORIGIN_HEADER, b"11"),
        (FORWARD_SEQ_HEADER, b"1700000000000-3"),
        (FORWARD_SPACE_HEADER, b"cont"),
    ]
    assert sender(headers) == sender(dict(headers)) == "cont"
    assert sender(headers[:2]) is None, "a record from before the header: no sender"
    assert forwarded(headers) == (11, "1700000000000-3")
    assert forwarded(tuple(headers)) == (11, "1700000000000-3")
    assert forwarded(dict(headers)) == (11, "1700000000000-3")
    assert forwarded([("other", b"x"), *headers]) == (11, "1700000000000-3")


@pytest.mark.parametrize(
    "headers",
    [
        None,
        [],
        [(FORWARD_ORIGIN_HEADER, b"1")],
        [(FORWARD_SEQ_HEADER, b"1-0")],
        [(FORWARD_ORIGIN_HEADER, b"-1"), (FORWARD_SEQ_HEADER, b"1-0")],
        [(FORWARD_ORIGIN_HEADER, b"1"), (FORWARD_SEQ_HEADER, b"1")],
        [(FORWARD_ORIGIN_HEADER, b"1"), (FORWARD_SEQ_HEADER, b"1-0\n")],
        [(FORWARD_ORIGIN_HEADER, "1"), (FORWARD_SEQ_HEADER, "1-0")],
        "continuity.forward.origin",
    ],
)
def test_anything_short_of_both_marks_is_no_mark(headers: object) -> None:
    assert forwarded(headers) is None


def _message(topic: str, headers: object, timestamp: float) -> SimpleNamespace:
    return SimpleNamespace(
        topic=topic,
        partition=2,
        offset=5,
        key=b"k",
        value=b"v",
        timestamp=timestamp,
        headers=headers,
    )


def test_records_carry_the_marks_on_the_forwards_topic_only() -> None:
    marks = forward_headers(3, "9-0", "blue")
    assert from_kafka(_message(SESSION_FORWARDS, marks, 1000)).forwarded == (3, "9-0")  # type: ignore[arg-type]
    assert from_faust(_message(SESSION_FORWARDS, marks, 1.0)).sender == "blue"
    assert from_faust(_message(CART_EVENTS, marks, 1.0)).sender is None
    assert from_faust(_message(SESSION_FORWARDS, marks, 1.0)).forwarded == (3, "9-0")
    assert from_faust(_message(CART_EVENTS, marks, 1.0)).forwarded is None
    assert from_faust(_message(SESSION_FORWARDS, None, 1.0)).forwarded is None
