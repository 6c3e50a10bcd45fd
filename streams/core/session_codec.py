"""How a session is stored in Redis: JSON, compressed. Pure.

A typical session (5 cart lines, 20 products viewed) is about 4.3 KB of JSON,
mostly the same keys and timestamps repeated; zlib at level 1 stores it in
about 1 KB (``make bench`` measures it) for about 15 us to compress and 5 us
to decompress. Readers accept both forms: a stored value starting with ``{``
is plain JSON (older writes, or ``CONTINUITY_SESSION_COMPRESSION=false``),
anything else a zlib stream. Lua scripts never parse a session.
"""

from __future__ import annotations

import zlib

from schemas.session import Session

_LEVEL = 1


def encode(session: Session, compress: bool = True) -> bytes:
    """The stored form of ``session``."""
    blob = session.model_dump_json().encode()
    return zlib.compress(blob, _LEVEL) if compress else blob


def decode(stored: bytes | str) -> Session:
    """The session from its stored form, compressed or not."""
    return Session.model_validate_json(json_of(stored))


def json_of(stored: bytes | str) -> bytes | str:
    """The session JSON of a stored value (for callers that parse or pass it on)."""
    if isinstance(stored, str) or stored[:1] == b"{":
        return stored
    return zlib.decompress(stored)
