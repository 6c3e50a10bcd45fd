"""The marks a forward record carries on ``session-forwards``: where it comes from. Pure.

The forward relay (``streams/worker/forward_relay.py``) sends each record of a
partition's forwards stream with two headers: the origin partition and the
record's id in that partition's stream. A relay that crashed or lost its lease
sends records again, so the pair is what names one forward record (a
consumer keeps the first of each); the worker reads it back into
``Record.forwarded``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from schemas.topics import FORWARD_ORIGIN_HEADER, FORWARD_SEQ_HEADER, FORWARD_SPACE_HEADER

_ORIGIN = re.compile(rb"[0-9]{1,9}")
_SEQ = re.compile(rb"[0-9]{1,20}-[0-9]{1,20}")


def forward_headers(origin: int, seq: str, space: str) -> list[tuple[str, bytes]]:
    """The headers of a forward record: its origin partition, stream id and the key
    prefix of the deployment that sent it."""
    return [
        (FORWARD_ORIGIN_HEADER, str(origin).encode()),
        (FORWARD_SEQ_HEADER, seq.encode()),
        (FORWARD_SPACE_HEADER, space.encode()),
    ]


def sender(headers: object) -> str | None:
    """The key prefix a forward record's relay served, if its headers name one (records
    published before the header existed name none)."""
    raw = _found(headers).get(FORWARD_SPACE_HEADER)
    return raw.decode(errors="replace") if raw is not None else None


def forwarded(headers: object) -> tuple[int, str] | None:
    """(origin partition, stream id) of a forward record, from its headers.

    Kafka clients hand headers over as a sequence of (name, bytes) pairs or as a
    mapping; ``None`` unless both marks are there and well formed.
    """
    found = _found(headers)
    origin, seq = found.get(FORWARD_ORIGIN_HEADER), found.get(FORWARD_SEQ_HEADER)
    if origin is None or seq is None or not _ORIGIN.fullmatch(origin) or not _SEQ.fullmatch(seq):
        return None
    return int(origin), seq.decode()


def _found(headers: object) -> dict[str, bytes]:
    """The first value of each header, from a sequence of (name, bytes) or a mapping."""
    pairs: Iterable[Any]
    if isinstance(headers, Mapping):
        pairs = headers.items()
    elif isinstance(headers, list | tuple):
        pairs = headers
    else:
        return {}
    found: dict[str, bytes] = {}
    for pair in pairs:
        if isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[1], bytes):
            found.setdefault(pair[0], pair[1])
    return found
