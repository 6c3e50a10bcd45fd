"""``GET /v1/sessions/{id}/journey``: the customer's cross-channel journey, newest first.

One compact entry per applied event (``streams/core/journey.py``): when, on which
channel, what kind of event, and the sku, quantity, store, search or order it
names. A merged guest's id resolves to its customer, like a session read, and
a login has already moved the guest's entries into the customer's journey.

Who may read it is decided exactly as for the session (``policy.may_read``)
and before anything of the journey is read: ``service`` and ``pos`` any
journey (support staff and the store following a customer across channels),
a ``customer`` token only the journey of the session its own id resolves to.

``404 not_found`` when there is neither a session nor a journey (an unknown
id, or after an erasure, which deletes both).
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web

from streams.core.journey import decode
from streams.gateway.errors import NOT_FOUND, ApiError
from streams.gateway.guard import forbidden, principal_of
from streams.gateway.keys import REDIS, SESSIONS, SETTINGS
from streams.gateway.middleware import json_response
from streams.gateway.params import journey_limit, session_id
from streams.gateway.policy import may_read
from streams.gateway.sessions import RedisUnavailable
from streams.store import keys
from streams.store.client import UNAVAILABLE

log = logging.getLogger(__name__)


async def get_journey(request: web.Request) -> web.StreamResponse:
    """Up to ``limit`` journey entries of the session ``{id}`` resolves to, newest first."""
    sid = session_id(request.match_info["id"])
    settings = request.app[SETTINGS]
    limit = journey_limit(request.query, settings.journey_max_entries)
    view = await request.app[SESSIONS].locate(sid)
    denied = may_read(principal_of(request), sid, view.key)
    if denied is not None:
        raise forbidden(denied)
    space = settings.space()
    journey_key = keys.journey(space, view.key)
    try:
        # One MULTI (both keys in the session's slot): whether a session exists, and
        # the journey, as of one moment.
        async with request.app[REDIS].pipeline(transaction=True) as pipe:
            pipe.exists(keys.session(space, view.key))
            pipe.zcard(journey_key)
            pipe.zrevrange(journey_key, 0, limit - 1)
            has_session, total, members = await pipe.execute()
    except UNAVAILABLE as exc:
        raise RedisUnavailable(repr(exc)) from None
    if not has_session and not total:
        raise ApiError(
            404,
            NOT_FOUND,
            "no session or journey for this id",
            headers={"Cache-Control": "no-store"},
        )
    entries = []
    for member in members:
        try:
            entries.append(decode(member))
        except orjson.JSONDecodeError:
            # Written by the commit script from orjson output; skip rather than fail the read.
            log.warning("undecodable journey entry skipped")
    body = {"key": view.key, "total": int(total), "limit": limit, "entries": entries}
    return json_response(body, headers={"Cache-Control": "no-store"})


def register(app: web.Application) -> None:
    """Add the journey route."""
    app.router.add_get("/v1/sessions/{id}/journey", get_journey, name="session_journey")
