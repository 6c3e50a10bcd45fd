"""redis-py's command packing with hiredis, without its per-argument Python loop.

redis-py (8.x) packs a command with hiredis only after a Python pass over
every argument (an ``isinstance`` check for memoryviews, then the encoder
called per argument). The commit script's call carries a hundred and more
arguments (``streams/store/scripts.py``): packing it took about 120 us, of
which ``hiredis.pack_command`` alone needs 27. At a steady 1,000 events/s,
when each batch holds a few events, that was 5% of the worker's CPU
(``docs/benchmarks.md``).

:func:`install` makes the serializer hand a command whose arguments are all
exactly ``bytes``, ``str`` or ``int`` (no ``bool``, no float) straight to
hiredis, which writes the same bytes as redis-py's encoder does for those types
(UTF-8, strict; integers in decimal), when the connection's encoder is UTF-8
strict. Anything else takes redis-py's own path, unchanged. A test compares the
two on random commands.
"""

from __future__ import annotations

from typing import Any

from redis.connection import HiredisRespSerializer
from redis.utils import HIREDIS_AVAILABLE

_EXACT = frozenset({bytes, str, int})
_original = HiredisRespSerializer.pack


def _pack(self: HiredisRespSerializer, *args: Any) -> Any:
    encoder = getattr(self._encode, "__self__", None)
    if (
        encoder is not None
        and encoder.encoding == "utf-8"
        and encoder.encoding_errors == "strict"
        and all(type(a) in _EXACT for a in args)
    ):
        # As redis-py: a command name may carry its subcommand ("CLIENT SETNAME").
        head = args[0].encode() if isinstance(args[0], str) else args[0]
        return [hiredis.pack_command((*head.split(), *args[1:]))]
    return _original(self, *args)


def install() -> bool:
    """Use the direct path in every redis-py connection of this process; False if
    hiredis is not installed (redis-py then packs in Python anyway)."""
    if not HIREDIS_AVAILABLE:
        return False
    HiredisRespSerializer.pack = _pack  # type: ignore[method-assign]
    return True


if HIREDIS_AVAILABLE:
    import hiredis
