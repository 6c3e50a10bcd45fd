"""Typed keys of what the gateway app and its requests carry (aiohttp ``AppKey``/``RequestKey``)."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from streams.gateway.auth import Principal
from streams.gateway.fanout import Fanout
from streams.gateway.producer import EventProducer
from streams.gateway.rate_limit import RateLimiter
from streams.gateway.sessions import Sessions
from streams.gateway.slots import Slots
from streams.settings import Settings
from streams.store.handoffs import HandoffStore

SETTINGS = web.AppKey("settings", Settings)
SECRET = web.AppKey("secret", str)
REDIS = web.AppKey("redis", Redis)
SESSIONS = web.AppKey("sessions", Sessions)
FANOUT = web.AppKey("fanout", Fanout)
PRODUCER = web.AppKey("producer", EventProducer)
STREAM_SLOTS = web.AppKey("stream_slots", Slots)
HANDOFFS = web.AppKey("handoffs", HandoffStore)
LIMITER = web.AppKey("limiter", RateLimiter)

PRINCIPAL = web.RequestKey("principal", Principal)
# Status of a response already streaming, for metrics when the client leaves mid-stream.
STREAMING = web.RequestKey("streaming", int)
