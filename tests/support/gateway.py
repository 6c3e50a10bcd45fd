"""Gateway processes for tests: tokens, starting one, and speaking HTTP and SSE to it."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict

from streams.dev import loopback
from streams.gateway.auth import Role, issue
from tests.support.metrics_text import scrape
from tests.support.stack import PARTITIONS, Stack

# Drawn per run: a key written in the repository is public, and gateways refuse one.
GATEWAY_SECRET = secrets.token_urlsafe(32)
# A second, named key every test gateway accepts too (rotation: tokens with ``kid``).
GATEWAY_KID = "next"
GATEWAY_NEXT_SECRET = secrets.token_urlsafe(32)


def token(role: str, **claims: Any) -> str:
    """A token for the test gateways (``subject=``, ``store=``, ``anon=``, ``ttl=``, ``now=``)."""
    return issue(GATEWAY_SECRET, Role(role), **claims)


def bearer(role: str, **claims: Any) -> dict[str, str]:
    """The Authorization header of a fresh token."""
    return {"Authorization": f"Bearer {token(role, **claims)}"}


@dataclass
class Gateway:
    """One ``continuity gateway`` process."""

    child: loopback.Child

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.child.port}"

    @property
    def metrics_port(self) -> int:
        """Where its ``/metrics`` is: a listener of its own, not the API's port."""
        return loopback.gateway_metrics_port(self.child)

    async def metrics(self) -> str:
        return await scrape(self.metrics_port)


def start_gateway(stack: Stack, name: str, prefix: str = "cont", **extra: str) -> Gateway:
    """A gateway on a free port over the shared broker and Redis (or those in ``extra``)."""
    env = {
        "KAFKA_BOOTSTRAP": stack.bootstrap,
        "REDIS_URL": stack.redis_url,
        "CONTINUITY_REDIS_PREFIX": prefix,
        "CONTINUITY_TOPIC_PARTITIONS": str(PARTITIONS),
        "CONTINUITY_AUTH_SECRET": GATEWAY_SECRET,
        "CONTINUITY_AUTH_KEYS": f"{GATEWAY_KID}={GATEWAY_NEXT_SECRET}",
        "CONTINUITY_STATE_DIR": "/nonexistent",
        "CONTINUITY_LOG_LEVEL": "info",
        **extra,
    }
    child = loopback.start_gateway(name, env, stack.log_dir)
    stack.workers.append(child)  # stopped with the stack
    return Gateway(child)


@dataclass
class SseEvent:
    """One dispatched Server-Sent Event, or a comment (``comment`` set, nothing else)."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    comment: str | None = None

    def json(self) -> Any:
        return orjson.loads(self.data)


async def sse_events(resp: aiohttp.ClientResponse) -> AsyncIterator[SseEvent]:
    """Parse ``text/event-stream`` as a browser does (fields per block, comments apart).

    Tests need the raw frames (ids, comments, the retry field, the exact moment
    a connection is dropped), which an EventSource-like client library hides.
    """
    fields: dict[str, str] = {}
    data: list[str] = []
    while True:
        raw = await resp.content.readline()
        if not raw:
            return
        line = raw.decode().rstrip("\r\n")
        if line.startswith(":"):
            yield SseEvent(comment=line[1:].strip())
            continue
        if line:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value
            continue
        if data or fields:
            yield SseEvent(
                event=fields.get("event", "message"),
                data="\n".join(data),
                id=fields.get("id"),
                retry=int(fields["retry"]) if "retry" in fields else None,
            )
        fields, data = {}, []


async def next_event(events: AsyncIterator[SseEvent], timeout: float = 30.0) -> SseEvent:
    """The next dispatched event (comments and field-only blocks skipped)."""

    async def first() -> SseEvent:
        async for ev in events:
            if ev.comment is None and ev.data:
                return ev
        raise AssertionError("the stream ended")

    return await asyncio.wait_for(first(), timeout)


async def post_events(
    http: aiohttp.ClientSession, gw: Gateway, body: Any, headers: dict[str, str]
) -> tuple[int, Any]:
    """POST /v1/events with a JSON body; (status, parsed body)."""
    async with http.post(
        f"{gw.url}/v1/events",
        data=orjson.dumps(body),
        headers={**headers, "Content-Type": "application/json"},
    ) as resp:
        return resp.status, orjson.loads(await resp.read())


async def read_session(
    http: aiohttp.ClientSession, gw: Gateway, sid: str, headers: dict[str, str], **query: str
) -> tuple[int, Any, CIMultiDict[str]]:
    """GET /v1/sessions/{sid}; (status, parsed body, headers)."""
    async with http.get(f"{gw.url}/v1/sessions/{sid}", headers=headers, params=query) as resp:
        return resp.status, orjson.loads(await resp.read()), CIMultiDict(resp.headers)


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)
