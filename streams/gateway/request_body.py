"""Reading a request body within ``CONTINUITY_GATEWAY_BODY_TIMEOUT`` seconds.

aiohttp bounds a body's size, never its time: a client that stops sending
halfway through its declared length holds the handler for as long as it
keeps the connection open, and a chunked body whose framing breaks in a later
packet is worse, since aiohttp's parser drops the broken packet without failing
the read, so the handler would wait for ever even after the client gave up.
Every handler that reads a body reads it here; the error middleware answers
``BodyTimeout`` with ``408 body_timeout`` and closes the connection (what is
left of such a body can no longer be told apart from a next request).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from streams.gateway.keys import SETTINGS


class BodyCutShort(Exception):
    """The client closed the connection before its request body was complete."""


class BodyTimeout(Exception):
    """The request body did not arrive within ``timeout`` seconds."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"the request body did not arrive within {timeout:g} s")
        self.timeout = timeout


async def read_body(request: web.Request) -> bytes:
    """The whole body (``request.read()``), or ``BodyTimeout`` once the gateway's limit passes.

    aiohttp's own refusals (413 over ``client_max_size``, a broken encoding)
    pass through unchanged; a client that hangs up halfway through its body is
    ``BodyCutShort`` (aiohttp reports it as ``ConnectionResetError``), input
    like any other bad body, never a server error.
    """
    timeout = request.app[SETTINGS].gateway_body_timeout
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        raise BodyTimeout(timeout) from None
    except ConnectionResetError:
        raise BodyCutShort() from None
