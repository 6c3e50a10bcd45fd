"""Typed keys of what the gateway app and its requests carry (aiohttp ``AppKey``/``RequestKey``)."""

from __future__ import annotations

from aiohttp import web

from streams.gateway.auth import Keyring, Principal
from streams.gateway.fanout import Fanout
from streams.gateway.producer import EventProducer
from streams.gateway.rate_limit import RateLimiter
from streams.gateway.sessions import Sessions
from streams.gateway.slots import Slots, TokenSlots
from streams.settings import Settings
from streams.store.client import Client
from streams.store.handoffs import HandoffStore

SETTINGS = web.AppKey("settings", Settings)
# The accepted token keys, and the longest lifetime accepted per role.
KEYS = web.AppKey("keys", Keyring)
LIFETIMES: web.AppKey[dict[str, int]] = web.AppKey("lifetimes")
# The OpenAPI document, rendered once (streams/gateway/routes/openapi.py).
OPENAPI = web.AppKey("openapi", bytes)
# One primary's client or a Redis Cluster's (``streams.store.client.connect``).
REDIS: web.AppKey[Client] = web.AppKey("redis")
SESSIONS = web.AppKey("sessions", Sessions)
FANOUT = web.AppKey("fanout", Fanout)
PRODUCER = web.AppKey("producer", EventProducer)
STREAM_SLOTS = web.AppKey("stream_slots", Slots)
TOKEN_STREAM_SLOTS = web.AppKey("token_stream_slots", TokenSlots)
HANDOFFS = web.AppKey("handoffs", HandoffStore)
LIMITER = web.AppKey("limiter", RateLimiter)

PRINCIPAL = web.RequestKey("principal", Principal)
# Status of a response already streaming, for metrics when the client leaves mid-stream.
STREAMING = web.RequestKey("streaming", int)
