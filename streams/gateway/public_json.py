"""A stored session straight to the public JSON a stream sends, without pydantic. Pure.

A stream used to parse every state it sent into a ``Session`` (pydantic
validation of ~4 KB: cart lines, decimals, datetimes) only to dump it again
(``Session.public()``) and serialise that with orjson: most of the gateway's
CPU per commit notice. The stored value is already the session's JSON as
``Session.model_dump_json`` wrote it (``streams/core/session_codec.py``), and
the public view is that JSON without ``recent_event_ids``. So: decompress,
``orjson.loads``, drop the field, ``orjson.dumps``, which gives byte for byte
what ``orjson.dumps(Session.model_validate_json(stored).public())`` gives (a
property test proves it over generated sessions, both stored forms).

That holds for a value written by the current model. A value whose top-level
fields are not exactly the model's, in the model's order (written before a
field was added, or by something else), goes through pydantic as before, so
defaults are filled in and a stray field is refused just as a full parse would.
"""

from __future__ import annotations

from typing import Any

import orjson

from schemas.session import Session
from streams.core.session_codec import json_of

_HIDDEN = "recent_event_ids"
_FIELDS = tuple(Session.model_fields)


def public_json(stored: bytes | str) -> tuple[bytes, int]:
    """The public JSON of a stored session (compressed or not) and its version."""
    doc: dict[str, Any] = orjson.loads(json_of(stored))
    if tuple(doc) != _FIELDS:
        session = Session.model_validate_json(json_of(stored))
        return orjson.dumps(session.public()), session.version
    del doc[_HIDDEN]
    return orjson.dumps(doc), int(doc["version"])
