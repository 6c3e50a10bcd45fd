"""``DELETE /v1/sessions/{id}``: the right to erasure, for the retailer's back office.

Runs the same steps as ``continuity erase`` (``streams/ops/erase.py``): the
customer's session, merged guests' aliases and handoff codes leave Redis,
open streams of the session end with an ``erased`` event, and the erasure is
recorded in Redis and on Kafka so no replay or rebuild brings them back.
Repeating the request is safe. ``service`` tokens only.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiokafka.errors import KafkaError

from streams.gateway import metrics
from streams.gateway.errors import ERASURE_UNAVAILABLE, ApiError
from streams.gateway.guard import forbidden, principal_of
from streams.gateway.keys import REDIS, SETTINGS
from streams.gateway.middleware import json_response
from streams.gateway.params import session_id
from streams.gateway.policy import may_erase
from streams.kafka.security import kafka_client_kwargs
from streams.ops.erase import EraseError, erase_customer, report
from streams.store.client import UNAVAILABLE
from streams.store.state import RedisState

log = logging.getLogger(__name__)


async def delete_session(request: web.Request) -> web.StreamResponse:
    """Erase a customer for good; 200 with what was deleted."""
    denied = may_erase(principal_of(request))
    if denied is not None:
        raise forbidden(denied)
    customer_id = session_id(request.match_info["id"])
    settings = request.app[SETTINGS]
    state = RedisState(request.app[REDIS], settings.space(), settings.effects())
    try:
        done = await erase_customer(
            state, settings.kafka_bootstrap, customer_id, kafka=kafka_client_kwargs(settings)
        )
    except (EraseError, KafkaError, *UNAVAILABLE) as exc:
        metrics.ERASURES.labels("unavailable").inc()
        log.warning("erasure not completed: %s", type(exc).__name__)
        raise ApiError(
            503,
            ERASURE_UNAVAILABLE,
            "the erasure could not be completed now; repeating the request is safe",
            headers={"Retry-After": "5"},
        ) from None
    metrics.ERASURES.labels("erased").inc()
    return json_response(report(done), headers={"Cache-Control": "no-store"})


def register(app: web.Application) -> None:
    """Add the erasure route."""
    app.router.add_delete("/v1/sessions/{id}", delete_session, name="session_erase")
