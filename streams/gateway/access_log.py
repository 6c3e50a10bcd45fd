"""The access log: method, path and status, never the query string.

A browser's ``EventSource`` cannot set headers, so the stream route takes
its token as ``?access_token=``; aiohttp's default access log prints the
whole request line and would write that token to the log. This logger
prints the percent-encoded path only (no query, no control characters), and
``ScrubBadRequests`` keeps the same token out of aiohttp's error log.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import RequestPayloadError


class PathOnlyAccessLogger(AbstractAccessLogger):
    """``<remote> <method> <path> <status> <seconds>s``."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """One line per answered request."""
        self.logger.info(
            "%s %s %s %s %.3fs",
            request.remote or "-",
            request.method,
            request.rel_url.raw_path,
            response.status,
            time,
        )


class ScrubBadRequests(logging.Filter):
    """Keep aiohttp from logging the raw request line of a malformed request.

    aiohttp's server logger reports an unparsable request with a traceback
    that quotes the request line, query string (and so a token) included.
    This filter turns such a record into one line naming the error class.
    A body that cannot be decoded (``RequestPayloadError``: a broken gzip or
    chunked framing) is answered 400 by the gateway, and aiohttp then reports
    it again as an "Unhandled exception" when it drains the rest: the same
    client garbage, so the same one line, not an ERROR with a traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite a malformed-request record in place; never drop a record."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError | RequestPayloadError):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "-"
            record.msg = "malformed HTTP request from %s: %s (request line not logged)"
            record.args = (remote, type(exc).__name__)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True
