"""What a session stream sends, and when. Pure (no I/O); ``routes/stream.py`` does the writing.

Snapshot semantics: the stream sends the session's *current* state, never a
diff, with the version as the event id. A client therefore never sees an
older or the same version twice (``Cursor``), and after a reconnect with
``Last-Event-ID`` it gets the newest state once if anything changed, or
nothing until the next change. Under a burst, versions committed between two
reads coalesce into the newest: the worker commits in batches anyway, so a
version is a point a client may see, not a promise that it will.

Events:

* ``session``: ``id`` = version, ``data`` = the public session JSON;
* ``merged``: ``data`` = ``{"key": <guest key>, "merged_into": <customer>}``;
  the guest session is gone and the stream ends (sign in, then follow the
  customer's session).
* ``token_expired``: ``data`` = ``{"error": "token_expired", "message": ...}``
  when the stream's token passes its ``exp``; the stream ends. A browser would
  reconnect with the same, now refused, URL: the client closes its
  ``EventSource`` and opens a new one with a fresh token (and its last id).

Comments (``: ping``) every ``CONTINUITY_SSE_HEARTBEAT`` seconds keep proxies
from closing an idle stream, and a ``retry:`` field sent first tells the
browser how soon to reconnect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

RETRY_MS = 2000
SESSION = "session"
MERGED = "merged"
TOKEN_EXPIRED = "token_expired"
_VERSION = re.compile(r"^[0-9]{1,18}$")


@dataclass(frozen=True)
class Frame:
    """One event for ``EventSourceResponse.send``."""

    event: str
    data: str
    id: str | None = None


def resume_from(header: str | None, query: str | None) -> int | None:
    """The version a client already has: ``Last-Event-ID`` header, else ``last_event_id``.

    The header wins: a browser sets it on every automatic reconnect, so it is
    newer than a value written into the URL when the page opened the stream.
    Anything that is not a version (we only ever send versions) is ignored: a
    resume hint is not worth refusing a stream for.
    """
    for raw in (header, query):
        if raw is not None and _VERSION.match(raw.strip()):
            return int(raw.strip())
    return None


class Cursor:
    """The newest version a client has; decides whether a read is worth sending."""

    def __init__(self, resume: int | None = None) -> None:
        # Versions start at 1, so 0 lets the first state through.
        self.last = resume if resume is not None else 0

    def offer(self, version: int) -> bool:
        """True (and remember it) if ``version`` is newer than anything the client has."""
        if version <= self.last:
            return False
        self.last = version
        return True


class LineBreaks:
    """aiohttp_sse's line splitter for ``data`` fields, without the regex where no line breaks.

    ``EventSourceResponse.send`` splits every event's data with a regex
    (``\\r\\n|\\r|\\n``): about 60 us for a 4 KB session, a large share of a
    stream's cost per notice. Our frames are orjson, which escapes every line
    break, so a ``str.__contains__`` (a memchr) settles it; the regex still runs
    where a break is present, so the output is the library's in every case.
    """

    _BREAK = re.compile(r"\r\n|\r|\n")

    def search(self, text: str) -> re.Match[str] | None:
        """The first line break in ``text``, if any."""
        return self._BREAK.search(text)

    def split(self, text: str) -> list[str]:
        """``text``'s lines, as the library's regex splits them."""
        if "\n" not in text and "\r" not in text:
            return [text]
        return self._BREAK.split(text)


def session_frame(public_json: bytes, version: int) -> Frame:
    """The ``session`` event for one state (``public_json``: ``streams/gateway/public_json.py``)."""
    return Frame(SESSION, public_json.decode(), str(version))


def merged_frame(key: str, merged_into: str) -> Frame:
    """The last event of a guest's stream when the guest signed in."""
    return Frame(MERGED, orjson.dumps({"key": key, "merged_into": merged_into}).decode())


def expired_frame() -> Frame:
    """The last event of a stream whose token expired."""
    body = {
        "error": TOKEN_EXPIRED,
        "message": "the token has expired; reconnect with a fresh one (send the last event id)",
    }
    return Frame(TOKEN_EXPIRED, orjson.dumps(body).decode())


def retry_field(ms: int = RETRY_MS) -> bytes:
    """A field-only block: sets the browser's reconnection delay, dispatches no event."""
    return f"retry: {ms}\r\n\r\n".encode()
