"""Fuzzing the gateway's HTTP surface: a real gateway process, real worker, broker and Redis.

Proves: whatever arrives (hostile paths and ids on every route and method,
with and without tokens of each role; random, broken, deep, huge and odd
JSON bodies on ingest and the handoff routes; duplicated, malformed,
oversized and injected headers; request smuggling shapes, lying
Content-Lengths, bodies that never finish, obsolete line folding, HTTP/1.0,
pipelining, slow partial requests, unknown expectations), every answer is
one the README documents (its status set, the ``{"error", "message"}`` body
with a documented code, ``WWW-Authenticate`` on 401, ``Allow`` on 405,
``limit`` on 413), never a 5xx, a traceback or a secret; no token gets past
its scope: a customer token gets nothing of another customer's session from
any route that names one (the session, its journey, its stream, a handoff
code for it, its erasure), by status or by body; other clients keep being
served while it runs; afterwards the gateway answers ``/healthz``, its
process lives, its log holds no error and no token, and Redis holds only
keys of the documented layout (``streams/store/keys.py``).

Requests are written as raw HTTP/1.1 bytes over loopback sockets: an HTTP
client library normalises exactly what is being tested. A request the HTTP
parser cannot read (a bad request line, header or framing) is refused by
aiohttp before the application sees it: a plain-text 400 and a closed
connection, checked as such (``parser_refusal``).

The gateway here has its own Redis prefix and worker group, so its handoff
lockout counters, rate-limit windows and keys meet no other test's; a short
read-wait cap, so a fuzzed ``min_version`` never holds a request for long; a
short body timeout, so a body that never finishes is answered quickly; and
limits high enough that the fuzz is not locked out of the routes it fuzzes.
Hypothesis runs derandomized with a bounded number of examples, so a run is
reproducible. How long other clients wait meanwhile is a performance bound,
checked only under ``-m limits`` (``make test-faults``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import hashlib
import hmac
import json
import re
import socket
import time
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import jwt
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from streams.gateway.app import create_app
from streams.gateway.auth import TokenError, verify
from streams.settings import Settings
from streams.store import keys
from streams.store.client import Client
from streams.store.state import RedisState
from tests.support.clock import at as clock_at
from tests.support.events import added, event
from tests.support.gateway import GATEWAY_SECRET, Gateway, start_gateway, token
from tests.support.stack import Stack, WorkerGroup, client, space

pytestmark = pytest.mark.e2e

MAX_BODY = 262_144  # CONTINUITY_GATEWAY_MAX_BODY_BYTES, default
MAX_EVENTS = 500  # CONTINUITY_GATEWAY_MAX_EVENTS, default
BODY_TIMEOUT = 2.0  # CONTINUITY_GATEWAY_BODY_TIMEOUT of the gateway under test (default 10)
ID = r"[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,127}"
READ_TIMEOUT = 5.0
# Reproducible (derandomized, no example database) and bounded; each example is a
# real round trip, so Hypothesis' timing health checks do not apply.
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)

# README "Errors", "Publishing events" and "Handing a session to a POS". No 503:
# Kafka and Redis are up throughout, so a 503 here would be a bug too.
CODES: dict[int, set[str]] = {
    400: {
        "invalid_id",
        "invalid_parameter",
        "malformed_json",
        "invalid_body",
        "empty_batch",
        "too_many_events",
        "invalid_code",
    },
    401: {"missing_token", "invalid_token", "token_expired"},
    403: {"forbidden", "sign_in_required"},
    404: {"not_found", "handoff_not_found"},
    405: {"method_not_allowed"},
    408: {"body_timeout"},
    410: {"handoff_expired", "handoff_claimed"},
    413: {"payload_too_large"},
    415: {"unsupported_media_type"},
    417: {"expectation_failed"},
    422: {"no_event_accepted"},
    429: {"too_many_failed_claims", "rate_limited", "too_many_token_streams"},
}
SUCCESS = {200, 201, 202}
REJECTION_REASONS = {"oversized", "malformed_json", "unknown_type", "invalid_event", "forbidden"}
POSITION = re.compile(r"^[a-z-]+:[0-9]+:[0-9]+$")
# Never in any answer: the signing key, a traceback, a Redis address.
NEVER_IN_BODIES = (GATEWAY_SECRET, "Traceback", 'File "', "redis://")


# --- Raw HTTP/1.1 over a socket -------------------------------------------------------


@dataclass
class Answer:
    """One response as it came over the wire."""

    version: bytes
    status: int
    headers: CIMultiDict[str]
    body: bytes  # of a stream: the data of its first event, if that was waited for
    streaming: bool = False  # text/event-stream: only the head (and a first event) was read

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Exchange:
    """Every response one connection got, and how it ended."""

    answers: list[Answer]
    closed: bool  # the server closed (or reset) the connection
    timed_out: bool

    @property
    def only(self) -> Answer:
        assert len(self.answers) == 1, f"expected one answer, got {self.answers!r}"
        return self.answers[0]


def http_request(
    method: str | bytes,
    target: str | bytes,
    headers: Sequence[tuple[str, str | bytes]] = (),
    body: bytes | None = None,
    *,
    close: bool = True,
    version: bytes = b"HTTP/1.1",
) -> bytes:
    """Raw request bytes, exactly as given (nothing escaped, nothing normalised)."""
    m = method.encode() if isinstance(method, str) else method
    t = target.encode("utf-8", "surrogatepass") if isinstance(target, str) else target
    lines = [m + b" " + t + b" " + version, b"Host: 127.0.0.1"]
    if close:
        lines.append(b"Connection: close")
    for name, value in headers:
        v = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
        lines.append(name.encode() + b": " + v)
    if body is not None:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def parse_answers(buf: bytes, *, head: bool, eof: bool) -> list[Answer]:
    """The complete responses in ``buf`` (HEAD answers carry no body)."""
    answers: list[Answer] = []
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return answers
        lines = buf[:end].split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        status = int(rest[:3])
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.add(name.decode("latin-1"), value.strip().decode("latin-1"))
        buf = buf[end + 4 :]
        if status < 200 or head:
            answers.append(Answer(version, status, headers, b""))
            continue
        if headers.get("Content-Type", "").startswith("text/event-stream"):
            answers.append(Answer(version, status, headers, b"", streaming=True))
            return answers
        if "Content-Length" in headers:
            n = int(headers["Content-Length"])
            if len(buf) < n:
                return answers
            answers.append(Answer(version, status, headers, buf[:n]))
            buf = buf[n:]
            continue
        if headers.get("Transfer-Encoding", "").lower() == "chunked":
            body, rest_buf = _dechunk(buf)
            if body is None:
                return answers
            answers.append(Answer(version, status, headers, body))
            buf = rest_buf
            continue
        if not eof:
            return answers
        answers.append(Answer(version, status, headers, buf))
        return answers


def _dechunk(buf: bytes) -> tuple[bytes | None, bytes]:
    body = b""
    while True:
        end = buf.find(b"\r\n")
        if end < 0:
            return None, b""
        size = int(buf[:end].split(b";")[0], 16)
        if len(buf) < end + 2 + size + 2:
            return None, b""
        body += buf[end + 2 : end + 2 + size]
        buf = buf[end + 2 + size + 2 :]
        if size == 0:
            return body, buf


def first_sse_data(buf: bytes) -> bytes | None:
    """The data of the first complete event after the (only) stream head in ``buf``."""
    _, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return None
    blocks = re.split(rb"\r\n\r\n|\n\n|\r\r", body)
    for block in blocks[:-1]:  # the last one may still be arriving
        lines = re.split(rb"\r\n|\n|\r", block)
        data = [ln[5:].removeprefix(b" ") for ln in lines if ln.startswith(b"data:")]
        if data:
            return b"\n".join(data)
    return None


def exchange(
    port: int,
    data: bytes,
    *,
    head: bool = False,
    timeout: float = READ_TIMEOUT,
    first_event: float = 0.0,
) -> Exchange:
    """Send ``data``, read answers until the server closes (or a stream starts, or time is up).

    With ``first_event``, a stream is read on for up to that many seconds, until
    its first event has arrived (its data becomes the answer's body); a stream
    that sends none meanwhile (no session yet) is not a timeout.
    """
    buf = b""
    closed = timed_out = waiting_for_event = False
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # The server may refuse before reading everything; its answer may still be there.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        deadline = time.monotonic() + timeout
        while True:
            answers = parse_answers(buf, head=head, eof=False)
            if answers and answers[-1].streaming:
                if not first_event or first_sse_data(buf) is not None:
                    break
                if not waiting_for_event:
                    # From here on, only the wait for the first event counts.
                    waiting_for_event = True
                    deadline = min(deadline, time.monotonic() + first_event)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = not waiting_for_event
                break
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                timed_out = not waiting_for_event
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            buf += chunk
    answers = parse_answers(buf, head=head, eof=closed)
    if answers and answers[-1].streaming:
        answers[-1].body = first_sse_data(buf) or b""
    return Exchange(answers, closed, timed_out)


async def aexchange(
    port: int, data: bytes, *, head: bool = False, first_event: float = 0.0
) -> Exchange:
    """``exchange`` without blocking the event loop (other clients run meanwhile)."""
    return await asyncio.to_thread(exchange, port, data, head=head, first_event=first_event)


# --- What a documented answer is ------------------------------------------------------


def parser_refusal(a: Answer, ex: Exchange) -> bool:
    """True if aiohttp's HTTP parser refused the request before the app saw it.

    Only aiohttp answers plain text: every application error is JSON. Such a
    refusal is a 400 and ends the connection (nothing after it is read).
    """
    if not a.content_type.startswith("text/plain") or a.status != 400:
        return False
    assert a is ex.answers[-1], "the connection must end after a refused request"
    assert ex.closed, "the server closes the connection after a refused request"
    return True


def check_answer(a: Answer, ex: Exchange, *, head: bool = False) -> str:
    """Assert ``a`` is a documented answer; return a label for coverage counts."""
    text = a.body.decode("utf-8", "replace")
    for needle in NEVER_IN_BODIES:
        assert needle not in text, (needle, a)
    assert a.status < 500, a
    if parser_refusal(a, ex):
        return "parser-400"
    if a.status in SUCCESS:
        assert a.content_type.split(";")[0] in (
            "application/json",
            "text/event-stream",
            "text/plain",  # /metrics
            "text/html",  # the demo page, when on
        ), a
        return str(a.status)
    assert a.status in CODES, a
    assert a.content_type.startswith("application/json"), a
    if a.status == 401:
        assert a.headers.get("WWW-Authenticate", "").startswith("Bearer"), a
    if a.status == 405:
        assert a.headers.get("Allow"), a
    if a.status == 429:
        assert a.headers.get("Retry-After", "").isdigit(), a
    if head:
        return str(a.status)
    body = a.json()
    assert isinstance(body, dict), a
    assert body.get("error") in CODES[a.status], a
    assert isinstance(body.get("message"), str), a
    assert body["message"], a
    if a.status == 413:
        assert body.get("limit") == MAX_BODY, a
    if a.status == 429:
        assert isinstance(body.get("retry_after"), int), a
    return f"{a.status} {body['error']}"


def check_exchange(ex: Exchange, *, head: bool = False) -> str:
    """One request, one documented answer, in time."""
    assert not ex.timed_out, f"no complete answer in {READ_TIMEOUT}s: {ex!r}"
    return check_answer(ex.only, ex, head=head)


# --- The gateway under test -----------------------------------------------------------


@dataclass
class Target:
    """A gateway with its own prefix and worker, and the ids and tokens the fuzz uses."""

    gateway: Gateway
    redis: Client
    prefix: str
    customer: str  # has a session; nothing the fuzz publishes names it
    guest: str  # has a session; nothing the fuzz publishes names it
    store: str
    # The ids fuzzed events carry: their merges and edits must not move the sessions
    # above, which other checks read.
    shopper: str = ""
    visitor: str = ""
    tokens: dict[str, str | None] = field(default_factory=dict)

    @property
    def port(self) -> int:
        assert self.gateway.child.port is not None
        return self.gateway.child.port

    @property
    def subjects(self) -> dict[str, str]:
        """The subject of each customer token."""
        return {
            "customer": self.customer,
            "guest": self.guest,
            "shopper": self.shopper,
            "visitor": self.visitor,
        }

    def auth(self, kind: str) -> list[tuple[str, str | bytes]]:
        value = self.tokens[kind]
        return [] if value is None else [("Authorization", f"Bearer {value}")]

    def log_size(self) -> int:
        return self.gateway.child.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.gateway.child.log_path.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _signed(header: dict[str, Any], claims: dict[str, Any], key: str, digest: Any) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    mac = hmac.new(key.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{_b64(mac)}"


def forge_tokens(t: Target) -> dict[str, str | None]:
    """Valid tokens of each role, and the kinds of bad ones an attacker would try."""
    now = int(time.time())
    mine = token("customer", subject=t.customer)
    head, _, sig = mine.split(".")
    claims = {"role": "service", "aud": "continuity", "exp": now + 600}
    as_service = _b64(json.dumps(claims).encode())
    unsigned = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return {
        "none": None,
        "garbage": "not-a-jwt",
        "expired": token("service", ttl=60, now=now - 3600),
        "foreign": jwt.encode(claims, "k" * 40, algorithm="HS256"),
        "alg_none": f"{unsigned}.{as_service}.",
        "forged": f"{head}.{as_service}.{sig}",  # a customer's signature on service claims
        # The right key under another algorithm than the one accepted.
        "hs512": _signed({"alg": "HS512", "typ": "JWT"}, claims, GATEWAY_SECRET, hashlib.sha512),
        "customer": mine,
        "guest": token("customer", subject=t.guest),
        "shopper": token("customer", subject=t.shopper),
        "visitor": token("customer", subject=t.visitor),
        "pos": token("pos", store=t.store),
        "service": token("service"),
    }


def route_table() -> list[tuple[str, str]]:
    """(method, path template) of every route the gateway has, from its own router."""
    app = create_app(Settings(), GATEWAY_SECRET)
    return sorted({(r.method, r.resource.canonical) for r in app.router.routes() if r.resource})


@pytest.fixture(scope="module")
async def target(stack: Stack) -> AsyncIterator[Target]:
    run = uuid.uuid4().hex[:8]
    prefix = f"fz{run}"
    made = client(stack.redis_url)
    group = WorkerGroup(stack, prefix, prefix, RedisState(made, space(prefix)))
    worker = group.start("w")
    gateway = start_gateway(
        stack,
        f"gateway-{prefix}",
        prefix=prefix,
        # A fuzzed min_version or after= waits at most this long.
        CONTINUITY_GATEWAY_MAX_WAIT="0.05",
        # A body that never finishes is answered this soon.
        CONTINUITY_GATEWAY_BODY_TIMEOUT=str(BODY_TIMEOUT),
        # Thousands of failed claims and posted events must not lock the fuzz out of the
        # routes it fuzzes (the limits are still checked, so their keys are in Redis).
        CONTINUITY_HANDOFF_MAX_FAILURES="1000000",
        CONTINUITY_HANDOFF_STORE_MAX_FAILURES="1000000",
        CONTINUITY_HANDOFF_CLAIM_RATE_LIMIT="1000000/minute",
        CONTINUITY_HANDOFF_CREATE_RATE_LIMIT="1000000/minute",
        CONTINUITY_INGEST_RATE_LIMIT="1000000/second",
        # Every code the fuzz issues stays pending, so its claims find them.
        CONTINUITY_HANDOFF_MAX_PENDING="1000000",
        CONTINUITY_SSE_MAX_STREAMS_PER_TOKEN="1000000",
    )
    t = Target(gateway, made, prefix, f"{prefix}-c", f"{prefix}-g", f"{prefix}-store")
    t.shopper, t.visitor = f"{prefix}-shopper", f"{prefix}-visitor"
    t.tokens = forge_tokens(t)
    seed = [
        event("cart.item_added", added("FZ-1"), customer=t.customer),
        event("browse.search", {"query": "fuzz"}, anon=t.guest),
    ]
    ex = await aexchange(
        t.port,
        http_request(
            "POST",
            "/v1/events",
            [*t.auth("service"), ("Content-Type", "application/json")],
            orjson.dumps(seed),
        ),
    )
    assert ex.only.status == 202, ex
    # The worker group is up once both sessions read back (it starts cold).
    deadline = time.monotonic() + 90
    for sid in (t.customer, t.guest):
        while True:
            got = await aexchange(
                t.port, http_request("GET", f"/v1/sessions/{sid}", t.auth("service"))
            )
            if got.only.status == 200:
                break
            assert time.monotonic() < deadline, f"the fuzz worker never folded {sid}"
            await asyncio.sleep(0.2)
    try:
        yield t
    finally:
        gateway.child.stop()
        worker.stop()
        await made.aclose()


@pytest.fixture
def unharmed(target: Target) -> Iterator[None]:
    """After the test: the gateway lives and answers, and logged no error and no token."""
    offset = target.log_size()
    yield
    assert target.gateway.child.alive(), "the gateway process died"
    ex = exchange(target.port, http_request("GET", "/healthz"))
    assert (ex.only.status, ex.only.json()) == (200, {"status": "ok"})
    logged = target.log_since(offset)
    for bad in ("Traceback", " ERROR ", " CRITICAL "):
        assert bad not in logged, logged[logged.find(bad) - 500 : logged.find(bad) + 1500]
    for kind, value in target.tokens.items():
        if value and kind != "garbage":
            assert value not in logged, f"a {kind} token reached the log"


async def assert_redis_layout(target: Target, before: set[bytes]) -> None:
    """Every key of the gateway's prefix, and every key created meanwhile, is documented.

    Documented means declared in the key module (``streams/store/keys.py``, the
    source of ``docs/redis-layout.md``): ids the wire contract's, codes Crockford
    base32, rate-limit windows the ``limits`` library's of a token's identity.
    """
    mine = [k async for k in target.redis.scan_iter(match=f"{target.prefix}:*", count=1000)]
    assert mine, "the fuzz gateway's prefix holds nothing: the scan looks at the wrong place"
    new = {k async for k in target.redis.scan_iter(count=1000)} - before
    for key in {*mine, *new}:
        text = key.decode("utf-8")  # a key that is not UTF-8 fails here, as it should
        prefix, sep, _ = text.partition(":")
        assert sep, f"undocumented Redis key {key!r}"
        assert re.fullmatch(r"[A-Za-z0-9_.-]+", prefix), f"undocumented Redis key {key!r}"
        # Every test stack places keys over the test topics' partition count.
        assert keys.family_of(text, space(prefix)) is not None, f"undocumented Redis key {key!r}"


async def all_keys(redis: Client) -> set[bytes]:
    return {k async for k in redis.scan_iter(count=1000)}


# --- Strategies -----------------------------------------------------------------------

# Pieces of hostile path segments: traversal, NULs, Redis key syntax ({ } * :),
# newlines and odd unicode, percent-encoded (the id) and raw (the parser).
FRAGMENTS = [
    "..",
    ".",
    "%2e%2e",
    "%2E%2e%2F",
    "%2f",
    "%5C",
    "%00",
    "%0a",
    "%0D%0A",
    "%09",
    "%20",
    "+",
    "{",
    "}",
    "%7B",
    "%7d",
    "*",
    ":",
    "%3A",
    "[",
    "]",
    "%",
    "%ZZ",
    "%e9",
    "%C3%A9",
    "%ED%A0%80",  # an encoded lone surrogate
    "%EF%BB%BF",
    "%E2%80%AE",  # right-to-left override
    "%F0%9F%98%80",
    "%FF%FE",
    "~",
    "'",
    '"',
    "<",
    ">",
    "|",
    "^",
    "`",
    "\\",
    ";",
    ",",
    "=",
    "&",
    "#",
    "@",
    "!",
    "$",
    "(",
    ")",
    "é",  # raw non-ASCII: not a valid request target
    "\u202e",
    "\x00",
    "\x7f",
    "cont:s:{x}",
    "cont:{p1}:s:x",  # a key name of the partition-aligned layout
    "*}",
]
valid_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,20}\Z")
hostile_ids = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), valid_ids), min_size=1, max_size=6
).map("".join)
long_ids = st.sampled_from(["a" * 128, "a" * 129, "a" * 4000, "%41" * 129, "b" * 9000])
QUERY_NAMES = ["min_version", "after", "wait", "access_token", "last_event_id", "x", ""]
QUERY_VALUES = [
    "0",
    "1",
    "-1",
    "99999999999999999999",
    "1e3",
    "NaN",
    "0.01",
    "5s",
    "1.0001",
    "cart-events:0:0",
    "cart-events:3:1,browse-events:0:0",
    "cart-events:99999999999999999999:1",
    "cart-events:0:-1",
    "nope:1:1",
    ",,,",
    "%00",
    "%FF",
    "%0d%0a",
    "",
    "a" * 300,
]


@dataclass(frozen=True)
class FuzzRequest:
    """One generated request and what the oracle needs to judge its answer."""

    method: str
    target: str
    token: str
    body: bytes | None
    content_type: str | None
    route: str = ""  # the template the target was drawn from ("" when made up)

    def raw(self, t: Target) -> bytes:
        headers = t.auth(self.token)
        if self.content_type is not None:
            headers.append(("Content-Type", self.content_type))
        return http_request(self.method, self.target, headers, self.body)


@st.composite
def queries(draw: st.DrawFn, tokens: list[str]) -> str:
    pairs = draw(
        st.lists(
            st.tuples(
                st.sampled_from(QUERY_NAMES),
                st.one_of(st.sampled_from(QUERY_VALUES), st.sampled_from(tokens)),
            ),
            max_size=4,
        )
    )
    return ("?" + "&".join(f"{k}={v}" for k, v in pairs)) if pairs else ""


def route_requests(t: Target, routes: list[tuple[str, str]]) -> st.SearchStrategy[FuzzRequest]:
    real_tokens = [v for v in t.tokens.values() if v]
    methods = sorted({m for m, _ in routes} | {"PUT", "PATCH", "OPTIONS", "PROPFIND", "FOO"})
    segments = st.one_of(
        st.sampled_from([t.customer, t.guest, f"{t.prefix}-nobody", "c-1", "ABCD2345"]),
        valid_ids,
        hostile_ids,
        hostile_ids,
        long_ids,
    )
    # Mostly a real route with its own method, so that most requests reach the
    # handlers (not only the router's 404/405); the rest anything at all.
    suffixes = st.sampled_from(["/", "/..", "/x", "//", "%2F", "/%2e%2e"])

    @st.composite
    def build(draw: st.DrawFn) -> FuzzRequest:
        method, template = draw(st.sampled_from(routes))
        path = template
        for param in re.findall(r"\{[^}]+\}", path):
            path = path.replace(param, draw(segments), 1)
        roll = draw(st.integers(0, 9))
        if roll == 0:
            path += draw(suffixes)
            template = ""
        elif roll == 1:
            path = "/" + "/".join(draw(st.lists(segments, min_size=0, max_size=4)))
            template = ""
        if draw(st.integers(0, 4)) == 0:
            method = draw(st.sampled_from(methods))
        path += draw(queries(real_tokens))
        kind = draw(st.sampled_from(sorted(t.tokens)))
        # An erasure (DELETE with a service token) is for good and takes Kafka round
        # trips: its own tests cover it; here DELETE meets every other token.
        if method == "DELETE" and kind == "service":
            kind = "pos"
        body = None
        if method in ("POST", "PUT", "PATCH") and draw(st.booleans()):
            body = draw(st.binary(max_size=64))
        ctype = draw(st.sampled_from([None, "application/json", "text/plain"]))
        return FuzzRequest(method, path, kind, body, ctype, template)

    return build()


class Lit(str):
    """JSON text inserted as is: literals no encoder writes (``1e400``, ``NaN``)."""


@dataclass(frozen=True)
class Obj:
    """A JSON object as pairs, so that keys may repeat."""

    pairs: tuple[tuple[str, Any], ...]


def dump(value: Any, *, ascii_only: bool = True) -> str:
    """JSON text of ``value``; lone surrogates become ``\\udXXX`` escapes (or raw, below)."""
    if isinstance(value, Lit):
        return str(value)
    if isinstance(value, Obj):
        inner = ",".join(
            f"{dump(k, ascii_only=ascii_only)}:{dump(v, ascii_only=ascii_only)}"
            for k, v in value.pairs
        )
        return "{" + inner + "}"
    if isinstance(value, dict):
        return dump(Obj(tuple(value.items())), ascii_only=ascii_only)
    if isinstance(value, list):
        return "[" + ",".join(dump(v, ascii_only=ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def encode(value: Any, *, ascii_only: bool = True) -> bytes:
    # surrogatepass: a raw lone surrogate is invalid UTF-8, which is the point.
    return dump(value, ascii_only=ascii_only).encode("utf-8", "surrogatepass")


ODD_TEXT = [
    "\ud800",  # lone surrogates
    "\udfff",
    "a\u202eb",  # right-to-left override
    "\u200f\u200e",  # RTL and LTR marks
    "\x00",
    "a\x00b",
    "\ufeff",
    "\U0001f600",
    "e\u0301",
    "{x}",
    "*",
    "cont:s:{c-1}",
    "\n",
    "\r\n",
    " ",
    "",
    "a" * 129,
]
HUGE_NUMBERS = [
    Lit("1e400"),
    Lit("-1e400"),
    Lit(str(2**70)),
    Lit(str(-(2**63) - 1)),
    Lit(str(2**64)),
    Lit("NaN"),
    Lit("Infinity"),
    Lit("-Infinity"),
    Lit("1.0e-400"),
    Lit("0." + "1" * 400),
]
odd_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # NaN and infinities: json.dumps writes the literals
    st.sampled_from(ODD_TEXT),
    st.sampled_from(HUGE_NUMBERS),
    st.text(st.characters(exclude_categories=()), max_size=12),  # surrogates included
)
json_values = st.recursive(
    odd_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=12,
)
NOW = clock_at()
TYPES: dict[str, Callable[[st.DrawFn], dict[str, Any]]] = {
    "cart.item_added": lambda d: {
        "sku": d(st.sampled_from(["FZ-1", "fz.2", "bad sku", "{x}"])),
        "quantity": d(st.sampled_from([1, 0, 999, 1000, -1, 2**70, 1.5, "1"])),
        "unit_price": d(st.sampled_from(["19.99", "0", "-1", "1e400", "NaN", 19.99, "abc"])),
        "currency": d(st.sampled_from(["EUR", "USD", "XXX", "eur", ""])),
    },
    "cart.item_removed": lambda d: {"sku": "FZ-1"},
    "cart.quantity_set": lambda d: {"sku": "FZ-1", "quantity": d(st.integers(-2, 1001))},
    "cart.cleared": lambda d: {},
    "session.identified": lambda d: {},
    "browse.product_viewed": lambda d: {"sku": "FZ-9", "name": d(st.sampled_from(ODD_TEXT))},
    "browse.search": lambda d: {"query": d(st.sampled_from(ODD_TEXT))},
    "checkout.started": lambda d: {},
    "checkout.completed": lambda d: {"order_id": d(st.sampled_from(["o-1", "{o}", ""]))},
    "checkout.handoff_claimed": lambda d: {"terminal_id": "till-1"},
    "no.such_type": lambda d: {},
}


def event_values(t: Target) -> st.SearchStrategy[Obj]:
    """Events that are mostly valid, each with a few hostile edits (duplicate keys too)."""

    @st.composite
    def build(draw: st.DrawFn) -> Obj:
        kind = draw(st.sampled_from(sorted(TYPES)))
        ids = [t.shopper, t.visitor, f"{t.prefix}-other", None]
        pairs: list[tuple[str, Any]] = [
            ("event_id", f"{t.prefix}-e{draw(st.integers(0, 2**40))}"),
            ("type", kind),
            ("occurred_at", draw(st.sampled_from([NOW] * 3 + ["yesterday", 0]))),
            ("channel", draw(st.sampled_from(["web", "web", "pos", "mobile_app", "fax"]))),
            ("payload", TYPES[kind](draw)),
        ]
        for name in ("customer_id", "anonymous_id", "store_id"):
            value = draw(st.sampled_from([*ids, t.store]))
            if value is not None:
                pairs.append((name, value))
        for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
            i = draw(st.integers(0, len(pairs) - 1))
            edit = draw(st.sampled_from(["replace", "drop", "duplicate", "extra"]))
            name = pairs[i][0]
            if edit == "replace":
                pairs[i] = (name, draw(json_values))
            elif edit == "drop":
                del pairs[i]
            elif edit == "duplicate":
                pairs.append((name, draw(json_values)))
            else:
                pairs.append((draw(st.text(max_size=6)), draw(json_values)))
        return Obj(tuple(pairs))

    return build()


def ingest_bodies(t: Target) -> st.SearchStrategy[bytes]:
    events = event_values(t)
    return st.one_of(
        st.binary(max_size=300),
        st.builds(encode, json_values),
        st.builds(lambda v: encode(v, ascii_only=False), json_values),
        st.builds(encode, events),
        st.builds(encode, st.lists(events, min_size=1, max_size=5)),
    )


# Hand-picked bodies, sent on every run whatever Hypothesis draws.
DEEP = 10_000
EXPLICIT_BODIES: list[bytes] = [
    b"[" * DEEP + b"]" * DEEP,
    b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    b"[" + b'"' + b"x" * (MAX_BODY + 10) + b'"]',  # huge, over the limit
    b"[" + b"{}," * (MAX_BODY // 3 + 10) + b"{}]",
    b"[" + b",".join([b"{}"] * (MAX_EVENTS + 1)) + b"]",
    b'{"event_id":"e","type":"browse.search","x":"' + b"a" * 70_000 + b'"}',  # oversized event
    b'{"n":1e400}',
    b'{"n":' + str(2**70).encode() + b"}",
    b'{"n":NaN}',
    b'{"n":Infinity}',
    b'{"n":-Infinity}',
    b'{"event_id":"a","event_id":"b","type":"cart.cleared","type":"browse.search"}',
    b'{"event_id":"\\ud800","type":"cart.cleared"}',
    '{"event_id":"e\u202e1","type":"cart.cleared"}'.encode(),
    b'{"event_id":"e\\u00001","type":"cart.cleared"}',
    b'{"event_id":"e\x001","type":"cart.cleared"}',
    b'{"event_id":"\xff\xfe","type":"cart.cleared"}',
    b"\xef\xbb\xbf{}",
    b'"x"',
    b"null",
    b"",
    b"   ",
    b"[]",
    b'[null, 1, "x", [], {}]',
    b'{"terminal_id": {"$gt": ""}}',
    b'{"terminal_id": "till-1\\n"}',
    b'{"terminal_id": 1e400}',
]


# --- Tests ----------------------------------------------------------------------------


# Customer tokens: each reads its own session and nothing of anyone else's.
CUSTOMER_KINDS = ("customer", "guest", "shopper", "visitor")
# Every route that names a session ({id}), as (method, template, name): the scope
# matrix below must cover each, so a new session route cannot escape it.
SESSION_ROUTES = (
    ("GET", "/v1/sessions/{id}", "session"),
    ("HEAD", "/v1/sessions/{id}", "session"),
    ("DELETE", "/v1/sessions/{id}", "erase"),
    ("GET", "/v1/sessions/{id}/journey", "journey"),
    ("HEAD", "/v1/sessions/{id}/journey", "journey"),
    ("GET", "/v1/sessions/{id}/stream", "stream"),
    ("HEAD", "/v1/sessions/{id}/stream", "stream"),
    ("POST", "/v1/sessions/{id}/handoff", "handoff"),
)
# How long a stream opened by a customer token is read for its first event.
FIRST_EVENT = 2.0


def check_scope(t: Target, kind: str, a: Answer, sent: bytes = b"") -> str | None:
    """A customer token's answer holds its own session's data or none; the session it named.

    ``customer`` and ``guest`` are seeded sessions that nothing the fuzz publishes
    names (so they never merge): neither id may appear anywhere in an answer to
    another customer token, whatever its status. A success that names a session
    (the ETag of a read, the ``key`` of a session, a journey or a new handoff code,
    the ``key`` of a stream's first event) names the token's own subject. ``sent``:
    the raw request, whose own request line a parser refusal may quote back.
    """
    sub = t.subjects[kind]
    text = a.body.decode("utf-8", "replace") + "\n".join(f"{k}: {v}" for k, v in a.headers.items())
    if a.status == 400 and a.content_type.startswith("text/plain"):
        # aiohttp's parser refusal quotes the request line the client itself sent
        # ("Invalid method encountered: b'FOO /v1/sessions/<id> HTTP/1.1'"): the
        # client's own bytes, no one's data. Only what goes beyond them counts.
        line = sent.split(b"\r\n", 1)[0]
        text = text.replace(repr(line)[2:-1], "").replace(line.decode("utf-8", "replace"), "")
    for other in {t.customer, t.guest} - {sub}:
        assert other not in text, f"a {kind} token was answered with {other}'s data: {a!r}"
    if a.status not in SUCCESS:
        return None
    named: str | None = None
    if "ETag" in a.headers:
        named = a.headers["ETag"].strip('"').rsplit(":", 1)[0]
        assert named == sub, (kind, a)
    if a.body and a.content_type.split(";")[0] in ("application/json", "text/event-stream"):
        body = orjson.loads(a.body)
        if isinstance(body, dict) and "key" in body:
            named = body["key"]
            assert named == sub, (kind, a)
    return named


def route_fuzz(
    t: Target, routes: list[tuple[str, str]], examples: int, seen: Counter[str]
) -> Callable[[], None]:
    """The fuzz of every route (``examples`` requests); labels of its answers go into ``seen``."""
    outsiders = {"none", "garbage", "expired", "foreign", "alg_none", "forged", "hs512"}
    valid_tokens = [t.tokens[k] for k in (*t.subjects, "pos", "service")]

    @settings(FUZZ, max_examples=examples)
    @given(req=route_requests(t, routes))
    def fuzz(req: FuzzRequest) -> None:
        customer = req.token in CUSTOMER_KINDS
        # A stream a customer token opened is read to its first event: its body is the check.
        wait = FIRST_EVENT if customer and req.method == "GET" else 0.0
        ex = exchange(t.port, req.raw(t), head=req.method == "HEAD", first_event=wait)
        label = check_exchange(ex, head=req.method == "HEAD")
        seen[label.split()[0]] += 1
        a = ex.only
        if req.token in outsiders and a.status in SUCCESS:
            # Without a valid token only the public routes answer (or a stream
            # given a valid ?access_token=).
            query_token = any(f"access_token={v}" in req.target for v in valid_tokens)
            assert public_answer(a) or (a.streaming and query_token), (req, a)
        if customer:
            named = check_scope(t, req.token, a, req.raw(t))
            if req.route and (named is not None or a.status == 403):
                seen[f"scope {a.status} {req.method} {req.route}"] += 1
        if req.token == "pos" and "/handoff" in req.target and req.method == "POST":
            assert a.status != 201, "a pos token cannot issue a handoff code"

    # On every run, each session route with a customer token naming someone else's
    # session: the scope check's coverage must not rest on what the draw reaches.
    for method, template, _ in SESSION_ROUTES:
        other = FuzzRequest(method, template.replace("{id}", t.customer), "guest", None, None)
        fuzz = example(req=replace(other, route=template))(fuzz)
    return fuzz


async def test_every_route_answers_fuzzed_requests_as_documented(
    target: Target, http: aiohttp.ClientSession, unharmed: None
) -> None:
    """Hostile paths, ids, queries, methods and tokens on every route of the router.

    A bystander reads its session meanwhile and must be answered correctly each
    time (how long it waits is ``test_other_clients_wait_little_during_the_fuzz``'s).
    """
    t = target
    routes = route_table()
    assert ("POST", "/v1/events") in routes
    assert ("GET", "/v1/sessions/{id}") in routes
    before = await all_keys(t.redis)
    seen: Counter[str] = Counter()
    stop = asyncio.Event()
    served = asyncio.create_task(bystander(t, http, stop))
    try:
        await asyncio.to_thread(route_fuzz(t, routes, 1500, seen))
    finally:
        stop.set()
        rounds = await served
    # The fuzz reached deep into the handlers, not only the router and auth, and
    # customer tokens were refused on every route that names a session.
    assert {"200", "400", "401", "403", "404", "405", "parser-400"} <= set(seen), seen
    for route in (
        "GET /v1/sessions/{id}",
        "GET /v1/sessions/{id}/journey",
        "GET /v1/sessions/{id}/stream",
        "POST /v1/sessions/{id}/handoff",
    ):
        assert seen[f"scope 403 {route}"], (route, seen)
    assert len(rounds) >= 5, "the bystander barely ran during the fuzz"
    await assert_redis_layout(t, before)


@pytest.mark.limits
async def test_other_clients_wait_little_during_the_fuzz(
    target: Target, http: aiohttp.ClientSession, unharmed: None
) -> None:
    """A performance bound, so under ``-m limits`` only (``make test-faults``): while
    the route fuzz runs, a well-behaved client's round trip (health check and session
    read) stays under 3 s."""
    t = target
    stop = asyncio.Event()
    served = asyncio.create_task(bystander(t, http, stop))
    try:
        await asyncio.to_thread(route_fuzz(t, route_table(), 600, Counter()))
    finally:
        stop.set()
        latencies = await served
    assert len(latencies) >= 5, "the bystander barely ran during the fuzz"
    assert max(latencies) < 3.0, f"other clients waited up to {max(latencies):.2f}s"


def public_answer(a: Answer) -> bool:
    """An answer of ``/healthz``, ``/readyz``, ``/openapi.json`` or ``/`` (the index)."""
    if a.content_type.startswith("text/plain"):
        return True  # the metrics
    if not a.body:  # HEAD: anything but a session read
        return "X-Continuity-Version" not in a.headers
    body = a.json()
    return (
        body == {"status": "ok"}
        or body.get("status") == "ready"
        or "service" in body
        or str(body.get("openapi", "")).startswith("3.")
    )


async def bystander(t: Target, http: aiohttp.ClientSession, stop: asyncio.Event) -> list[float]:
    """A well-behaved client reading its session while the fuzz runs, answered correctly
    every time; its round trips (s)."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {t.tokens['customer']}"}
    url = f"http://127.0.0.1:{t.port}"
    while not stop.is_set():
        started = time.monotonic()
        async with http.get(f"{url}/healthz") as resp:
            assert resp.status == 200
            assert await resp.json() == {"status": "ok"}
        async with http.get(f"{url}/v1/sessions/{t.customer}", headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            session = await resp.json()
            assert (session["key"], session["customer_id"]) == (t.customer, t.customer)
            assert [line["sku"] for line in session["cart"]] == ["FZ-1"], session
        latencies.append(time.monotonic() - started)
        await asyncio.sleep(0.05)  # a pace, not a wait: the bystander is one client among many
    return latencies


def disguises(sid: str) -> list[str]:
    """``sid`` as a path segment, written as itself and in ways that might pass for it."""
    encoded = "".join(f"%{b:02X}" for b in sid.encode())
    return [
        sid,
        encoded,  # the same id once decoded
        sid.upper(),
        sid + "%00",
        sid + "%0A",
        "%20" + sid,
        sid + "*",
        "{" + sid + "}",
        sid + ":",
        sid + "/.",
        "..%2F" + sid,
        sid[:-1] + "%" + f"{ord(sid[-1]):02x}",
    ]


async def test_a_customer_token_gets_nothing_of_another_session_on_any_route(
    target: Target, unharmed: None
) -> None:
    """Every route that names a session, for every customer token, on every other session.

    The seeded customer and guest sessions exist and an unknown id does not; each
    customer token asks every session route for the others' ids as they are,
    percent-encoded and disguised (header token, and ``?access_token=`` on the
    stream). The answer is never a success and never carries the other's data;
    for an id that is another's (as is, or encoded) it is ``403 forbidden``, the
    same answer whether that session exists or not (no way to probe for one).
    Each token's own session, asked the same way, is served and named.
    """
    t = target
    templates = {(m, p) for m, p in route_table() if "{id}" in p}
    assert templates == {(m, p) for m, p, _ in SESSION_ROUTES}, "a session route is not covered"
    nobody = f"{t.prefix}-nobody"
    seen: Counter[str] = Counter()

    def ask(kind: str, method: str, template: str, sid: str, *, in_query: bool) -> Exchange:
        path = template.replace("{id}", sid)
        headers: list[tuple[str, str | bytes]] = []
        if in_query:
            path += f"?access_token={t.tokens[kind]}"
        else:
            headers = t.auth(kind)
        wait = FIRST_EVENT if method == "GET" else 0.0
        ex = exchange(
            t.port, http_request(method, path, headers), head=method == "HEAD", first_event=wait
        )
        check_exchange(ex, head=method == "HEAD")
        return ex

    def matrix() -> None:
        for method, template, name in SESSION_ROUTES:
            ways = (False, True) if name == "stream" else (False,)
            for kind in CUSTOMER_KINDS:
                sub = t.subjects[kind]
                for in_query in ways:
                    refusals = {}
                    for victim in [s for s in (t.customer, t.guest, nobody) if s != sub]:
                        for i, sid in enumerate(disguises(victim)):
                            ex = ask(kind, method, template, sid, in_query=in_query)
                            a = ex.only
                            assert a.status not in SUCCESS, (kind, method, template, sid, a)
                            assert check_scope(t, kind, a) is None
                            if i < 2:  # the victim's id itself, as is and encoded
                                assert a.status == 403, (kind, method, template, sid, a)
                                if method != "HEAD":
                                    refusal = (a.json()["error"], a.json()["message"])
                                    assert refusal[0] == "forbidden", (kind, sid, a)
                                    refusals[victim] = refusal
                                seen[f"{name} 403"] += 1
                            else:
                                assert a.status in (400, 403, 404), (kind, sid, a)
                    # The same refusal for a session that exists and one that does not.
                    assert len(set(refusals.values())) <= 1, refusals
                    if kind in ("customer", "guest") and name != "erase":
                        # The control: its own session, asked the same way, is served
                        # (a stream only to GET: aiohttp-sse answers anything else 405).
                        ex = ask(kind, method, template, sub, in_query=in_query)
                        a = ex.only
                        if (name, method) == ("stream", "HEAD"):
                            assert a.status == 405, a
                            continue
                        assert a.status in SUCCESS, (kind, method, template, a)
                        named = check_scope(t, kind, a)
                        if method != "HEAD":
                            assert named == sub, (kind, method, template, a)
                        seen[f"{name} own"] += 1

    await asyncio.to_thread(matrix)
    for name in ("session", "erase", "journey", "stream", "handoff"):
        assert seen[f"{name} 403"], (name, seen)
    for name in ("session", "journey", "stream", "handoff"):
        assert seen[f"{name} own"], (name, seen)


def may_publish(t: Target, kind: str, item: Any) -> bool:
    """The publishing rules (docs/security.md), restated, for events the contract accepted."""
    if kind == "service":
        return True
    cid, aid = item.get("customer_id"), item.get("anonymous_id")
    if item.get("type") in ("session.unmerged", "checkout.handoff_claimed"):
        return False
    if kind == "pos":
        links = cid is not None and aid is not None and aid != cid
        return bool(item.get("channel") == "pos" and item.get("store_id") == t.store) and not links
    if item.get("channel") == "pos" or item.get("type") == "checkout.completed":
        return False
    if item.get("store_id") is not None or item.get("associate_id") is not None:
        return False
    sub = t.subjects[kind]
    if cid is None:
        return bool(aid == sub)
    return bool(cid == sub and aid in (None, sub))


async def test_ingest_and_handoff_bodies_are_answered_as_documented(
    target: Target, unharmed: None
) -> None:
    """Random bytes, invalid UTF-8, deep, huge and odd JSON on every body-taking route."""
    t = target
    before = await all_keys(t.redis)
    codes = []  # live codes, so that fuzzed claims take one (200) or find it taken (410)
    for _ in range(4):
        path = f"/v1/sessions/{t.customer}/handoff"
        ex = await aexchange(t.port, http_request("POST", path, t.auth("service")))
        assert ex.only.status == 201, ex
        codes.append(ex.only.json()["code"])
    claim_codes = st.sampled_from(
        [*codes, "ZZZZ-ZZZZ", "zzzz zzzz", f"continuity:handoff:{'Z' * 8}", "O0IL-0011", "x" * 65]
    )
    content_types = st.sampled_from(
        ["application/json"] * 6
        + ["APPLICATION/JSON; charset=latin-1", "text/plain", "application/jsonx", "", None]
    )
    seen: Counter[str] = Counter()

    @settings(FUZZ, max_examples=900)
    @given(
        route=st.sampled_from(["ingest", "ingest", "claim", "handoff"]),
        kind=st.sampled_from(["service", "shopper", "visitor", "pos"]),
        body=ingest_bodies(t),
        ctype=content_types,
        code=claim_codes,
    )
    # Claim a live code with an empty body, then claim it again.
    @example(route="claim", kind="pos", body=b"", ctype=None, code=codes[0])
    @example(route="claim", kind="pos", body=b"{}", ctype="application/json", code=codes[0])
    def fuzz(route: str, kind: str, body: bytes, ctype: str | None, code: str) -> None:
        if route == "ingest":
            judge_ingest(t, kind, body, post(t, "/v1/events", kind, body, ctype), seen)
        elif route == "claim":
            judge_claim(t, post(t, f"/v1/handoffs/{code}/claim", "pos", body, ctype), seen)
        else:
            ex = post(t, f"/v1/sessions/{t.customer}/handoff", kind, body, ctype)
            label = check_exchange(ex)
            assert ex.only.status in (201, 403), label  # its body, if any, is ignored
            seen[f"handoff {label}"] += 1

    await asyncio.to_thread(fuzz)
    for body in EXPLICIT_BODIES:
        for kind in ("service", "shopper"):
            ex = await asyncio.to_thread(post, t, "/v1/events", kind, body, "application/json")
            judge_ingest(t, kind, body, ex, seen)
        path = f"/v1/handoffs/{'Z' * 8}/claim"
        judge_claim(
            t, await asyncio.to_thread(post, t, path, "pos", body, "application/json"), seen
        )
    for wanted in (
        "ingest 202",
        "ingest 400",
        "ingest 403",
        "ingest 413",
        "ingest 415",
        "ingest 422",
        "claim 200",
        "claim 400",
        "claim 404",
        "claim 410",
        "claim 413",
        "handoff 201",
    ):
        assert any(label.startswith(wanted) for label in seen), (wanted, seen)
    await assert_redis_layout(t, before)


def post(t: Target, path: str, kind: str, body: bytes, ctype: str | None) -> Exchange:
    headers = t.auth(kind)
    if ctype is not None:
        headers.append(("Content-Type", ctype))
    return exchange(t.port, http_request("POST", path, headers, body))


def judge_ingest(t: Target, kind: str, body: bytes, ex: Exchange, seen: Counter[str]) -> None:
    """A documented ingest answer, and one verdict per event that follows the rules."""
    label = check_exchange(ex)
    seen[f"ingest {label}"] += 1
    a = ex.only
    assert a.status in (202, 400, 403, 413, 415, 422, 429), label
    if a.status == 413:
        assert len(body) > MAX_BODY
    if a.status not in (202, 403, 422):
        return
    answer = a.json()
    if a.status == 403 and answer.get("error") == "sign_in_required":
        # The fuzz's own events signed the visitor in (customer shopper, anonymous
        # visitor): its token is a merged guest's now, refused whatever the body.
        assert kind in CUSTOMER_KINDS, (kind, answer)
        seen["ingest sign_in_required"] += 1
        return
    parsed = orjson.loads(body)  # the gateway parsed it too, or it would not answer per event
    items = [parsed] if isinstance(parsed, dict) else parsed
    results = answer["results"]
    assert [r["index"] for r in results] == list(range(len(items)))
    assert answer["accepted"] + answer["rejected"] == len(items)
    for r, item in zip(results, items, strict=True):
        echoed = r["event_id"]
        assert echoed is None or (isinstance(echoed, str) and len(echoed) <= 128), r
        if r["status"] == "accepted":
            assert POSITION.match(r["position"]), r
            assert may_publish(t, kind, item), (kind, item)
        else:
            assert r["status"] == "rejected", r
            assert r["reason"] in REJECTION_REASONS, r
            if r["reason"] == "forbidden":
                assert not may_publish(t, kind, item), (kind, item)
    if a.status == 202:
        assert all(POSITION.match(p) for p in answer["after"].split(",")), answer


def judge_claim(t: Target, ex: Exchange, seen: Counter[str]) -> None:
    """A documented claim answer; a successful one is this store's, of the seeded session."""
    label = check_exchange(ex)
    seen[f"claim {label}"] += 1
    a = ex.only
    assert a.status in (200, 400, 404, 410, 413, 415, 429), label
    if a.status == 200:
        got = a.json()
        assert (got["claimed"], got["store_id"], got["key"]) == (True, t.store, t.customer)
        assert got["terminal_id"] is None or re.fullmatch(ID, got["terminal_id"]), got


# --- Header tricks over raw sockets -----------------------------------------------------


async def test_header_tricks_get_documented_answers(target: Target, unharmed: None) -> None:
    t = target
    me = t.tokens["customer"]
    assert me is not None
    read = f"/v1/sessions/{t.customer}"

    async def one(data: bytes) -> Answer:
        ex = await aexchange(t.port, data)
        check_exchange(ex)
        return ex.only

    def get(*headers: tuple[str, str | bytes]) -> bytes:
        return http_request("GET", read, list(headers))

    # Bearer spelled in ways RFC 6750 allows (case of the scheme, extra spaces).
    for value in (f"Bearer {me}", f"bearer {me}", f"BEARER  {me}", f"Bearer {me}  "):
        assert (await one(get(("Authorization", value)))).status == 200, value
    # And ways it does not: each is a 401 with a documented code, never a read.
    refused = {
        "Bearer": "missing_token",
        "Bearer ": "missing_token",
        f"Bearer{me}": "missing_token",
        f"Basic {me}": "missing_token",
        me: "missing_token",
        f"Bearer {me} {me}": "invalid_token",
        f"Bearer {me}x": "invalid_token",
        f"Bearer {t.tokens['alg_none']}": "invalid_token",
        f"Bearer {t.tokens['forged']}": "invalid_token",
        f"Bearer {t.tokens['hs512']}": "invalid_token",
        f"Bearer {t.tokens['foreign']}": "invalid_token",
        f"Bearer {t.tokens['expired']}": "token_expired",
        "Bearer ....": "invalid_token",
        "Bearer " + "A" * 7000: "invalid_token",
    }
    for value, code in refused.items():
        a = await one(get(("Authorization", value)))
        assert (a.status, a.json()["error"]) == (401, code), value[:40]

    # Enormous headers: one line over 8 KiB and over 64 KiB is refused by the parser;
    # many lines adding up to 64 KiB and more are still one documented answer.
    for size in (8 * 1024 + 1, 64 * 1024 + 1):
        ex = await aexchange(t.port, get(("Authorization", f"Bearer {me}"), ("X-Big", "a" * size)))
        assert not ex.timed_out
        assert ex.closed
        if ex.answers:  # the reset of a refusal can overtake its answer; either way, closed
            assert parser_refusal(ex.only, ex), ex
    many = [(f"X-Pad-{i}", "p" * 8000) for i in range(9)]
    assert (await one(get(("Authorization", f"Bearer {me}"), *many))).status == 200
    too_many = [(f"X-N-{i}", "n") for i in range(200)]
    ex = await aexchange(t.port, get(*too_many))
    assert parser_refusal(ex.only, ex)

    # CR/LF injection, NULs and obsolete line folding: refused by the parser, and
    # nothing after the injected line is ever taken as a header or a request.
    for raw_value in (
        b"a\rX-Injected: 1",
        b"a\nX-Injected: 1",
        b"a\x00b",
        b"a\x7fb",
    ):
        ex = await aexchange(t.port, get(("X-Test", raw_value)))
        assert parser_refusal(ex.only, ex), raw_value
    # A value ending the request early and carrying a second one: at most the first
    # is answered (it has no token), never the one smuggled in after it.
    ex = await aexchange(t.port, get(("X-Test", b"x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x")))
    a = ex.only
    assert parser_refusal(a, ex) or (a.status, a.json()["error"]) == (401, "missing_token"), ex
    folded = http_request("GET", read, [("Authorization", "Bearer"), ("X-Fold", "x")])
    folded = folded.replace(
        b"Authorization: Bearer\r\n", b"Authorization: Bearer\r\n " + me.encode() + b"\r\n"
    )
    ex = await aexchange(t.port, folded)
    assert parser_refusal(ex.only, ex), "obsolete line folding must not be unfolded into a token"

    # Wrong Content-Types on ingest: 415, whatever the body.
    body = orjson.dumps(event("cart.cleared", customer=t.customer))
    for ctype in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "json",
        "application/json/x",
        "",
    ):
        a = await one(
            http_request(
                "POST",
                "/v1/events",
                [("Authorization", f"Bearer {me}"), ("Content-Type", ctype)],
                body,
            )
        )
        assert (a.status, a.json()["error"]) == (415, "unsupported_media_type"), ctype
    a = await one(http_request("POST", "/v1/events", [("Authorization", f"Bearer {me}")], body))
    assert a.status == 415, "no Content-Type at all"


async def test_fuzzed_header_values_get_documented_answers(target: Target, unharmed: None) -> None:
    """Arbitrary bytes in the headers the gateway reads, and in made-up ones."""
    t = target
    me = t.tokens["customer"]
    assert me is not None
    names = ["Authorization", "Content-Type", "Last-Event-ID", "Content-Encoding", "Cookie"]
    targets = [
        ("GET", f"/v1/sessions/{t.customer}"),
        ("GET", f"/v1/sessions/{t.customer}/stream"),
        ("POST", "/v1/events"),
        ("POST", f"/v1/handoffs/{'Z' * 8}/claim"),
    ]
    seen: Counter[str] = Counter()

    @settings(FUZZ, max_examples=400)
    @given(
        route=st.sampled_from(targets),
        name=st.one_of(st.sampled_from(names), st.from_regex(r"\A[!#-'*+.0-9A-Z^-z|~-]{1,12}\Z")),
        value=st.one_of(
            st.binary(max_size=40),
            st.binary(max_size=40).map(lambda b: b"Bearer " + b),
            st.binary(max_size=8).map(lambda b: b"Bearer " + me.encode() + b),
        ),
        bearer=st.booleans(),
    )
    def fuzz(route: tuple[str, str], name: str, value: bytes, bearer: bool) -> None:
        method, path = route
        headers: list[tuple[str, str | bytes]] = [(name, value)]
        if bearer and name.lower() != "authorization":
            headers.append(("Authorization", f"Bearer {me}"))
        body = b"{}" if method == "POST" else None
        ex = exchange(t.port, http_request(method, path, headers, body))
        label = check_exchange(ex)
        seen[label.split()[0]] += 1
        if name.lower() == "authorization" and not value.startswith(b"Bearer " + me.encode()):
            # Anything but the customer's own token (possibly followed by junk that a
            # header strips, such as spaces) is refused before any handler runs.
            assert ex.only.status in (400, 401), (value, ex)

    await asyncio.to_thread(fuzz)
    assert {"401", "parser-400"} <= set(seen), seen


async def test_request_smuggling_shapes_are_refused_and_never_run_twice(
    target: Target, unharmed: None
) -> None:
    t = target
    svc = t.tokens["service"]
    assert svc is not None
    # Each carries a second request in its body; it must never be answered.
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    head = (
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + svc.encode()
        + b"\r\nContent-Type: application/json\r\n"
    )
    shapes = {
        "CL.TE": head
        + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        + smuggled,
        "TE.CL": head
        + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"
        + smuggled,
        "TE.TE": head
        + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"
        + smuggled,
        "TE obfuscated": head + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggled,
        "TE space": head + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + smuggled,
        "chunked, gzip": head + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n" + smuggled,
        "CL twice": head + b"Content-Length: 2\r\nContent-Length: 40\r\n\r\n[]" + smuggled,
        "CL list": head + b"Content-Length: 2, 2\r\n\r\n[]" + smuggled,
        "CL sign": head + b"Content-Length: +2\r\n\r\n[]" + smuggled,
        "CL overflow": head + b"Content-Length: 99999999999999999999\r\n\r\n[]" + smuggled,
        "bad chunk size": head
        + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n[]\r\n0\r\n\r\n"
        + smuggled,
    }
    for name, data in shapes.items():
        ex = await aexchange(t.port, data)
        assert not ex.timed_out, name
        assert parser_refusal(ex.only, ex), (name, ex)


async def test_lying_content_lengths_pipelining_and_http10(target: Target, unharmed: None) -> None:
    t = target
    svc, me = t.tokens["service"], t.tokens["customer"]
    assert svc is not None
    assert me is not None
    ingest = [("Authorization", f"Bearer {svc}"), ("Content-Type", "application/json")]
    # Shorter than the body: the rest is read as the next request on the connection,
    # which the parser refuses, and the connection ends. (Arriving in one packet with
    # the garbage, the declared request is dropped with it: aiohttp parses per packet.)
    data = http_request("POST", "/v1/events", ingest, b"[]", close=False)
    ex = await aexchange(t.port, data + b"garbage\r\n\r\n")
    assert parser_refusal(ex.answers[-1], ex)
    for a in ex.answers[:-1]:
        assert (a.status, a.json()["error"]) == (400, "empty_batch")
    # Longer than the body. The client that goes away once the gateway waits for the
    # body (its 100 Continue says so): nothing to answer, nothing breaks. The client
    # that stays: 408 body_timeout once the body timeout passes, and the connection ends.
    for path, kind in (("/v1/events", "service"), (f"/v1/handoffs/{'Z' * 8}/claim", "pos")):
        head = [*t.auth(kind), ("Content-Type", "application/json")]
        lie = http_request("POST", path, [*head, ("Expect", "100-continue")], close=False)
        lie = lie.replace(b"\r\n\r\n", b"\r\nContent-Length: 1000\r\n\r\n")
        reader, writer = await asyncio.open_connection("127.0.0.1", t.port)
        writer.write(lie)
        await writer.drain()
        went_on = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        assert went_on == b"HTTP/1.1 100 Continue\r\n\r\n", went_on
        writer.write(b"[1,2")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

        lie = http_request("POST", path, head, close=False)
        lie = lie.replace(b"\r\n\r\n", b"\r\nContent-Length: 1000\r\n\r\n[1,2")
        ex = await aexchange(t.port, lie)
        check_exchange(ex)
        assert (ex.only.status, ex.only.json()["error"]) == (408, "body_timeout"), ex
        assert ex.only.headers["Connection"].lower() == "close"
        assert ex.closed, "the rest of the body would be read as the next request"
    # A body declared over the limit on ingest is refused before it is sent.
    big = http_request("POST", "/v1/events", ingest).replace(
        b"\r\n\r\n", b"\r\nContent-Length: 9999999999\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", t.port)
    writer.write(big)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 413 "), head
    writer.close()
    await writer.wait_closed()

    # Pipelining: three requests in one write, three answers in order.
    pipelined = (
        http_request("GET", "/healthz", close=False)
        + http_request(
            "GET", f"/v1/sessions/{t.customer}", [("Authorization", f"Bearer {me}")], close=False
        )
        + http_request("GET", "/v1/nope")
    )
    ex = await aexchange(t.port, pipelined)
    assert [a.status for a in ex.answers] == [200, 200, 404], ex
    for a in ex.answers:
        check_answer(a, ex)
    assert ex.answers[1].json()["customer_id"] == t.customer
    # A malformed request in the middle ends the connection: the third never runs.
    broken = http_request("GET", "/healthz", close=False) + b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n"
    ex = await aexchange(t.port, broken + http_request("GET", "/v1/nope"))
    assert parser_refusal(ex.answers[-1], ex)
    assert [a.status for a in ex.answers[:-1]] in ([], [200]), ex

    # HTTP/1.0, without and with a token: answered, then the connection closes.
    ex = await aexchange(t.port, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert ex.closed
    assert ex.only.status == 200
    ex = await aexchange(
        t.port,
        b"GET /v1/sessions/"
        + t.customer.encode()
        + b" HTTP/1.0\r\nAuthorization: Bearer "
        + me.encode()
        + b"\r\n\r\n",
    )
    assert ex.closed
    assert ex.only.status == 200
    assert ex.only.json()["customer_id"] == t.customer


async def slow_partial_requests(t: Target) -> tuple[list[float], list[bytes]]:
    """30 connections trickle a request for 3 s (half a head, half a body) while another
    client reads its session over and over; its round trips, and what each body trickle got.

    A trickled body is answered once the body timeout passes (2 s); each of those
    connections is read to its end, and no longer written to once it ended.
    """
    me = t.tokens["customer"]
    assert me is not None
    writers: list[asyncio.StreamWriter] = []
    answered: list[asyncio.Task[bytes]] = []
    for i in range(30):
        reader, writer = await asyncio.open_connection("127.0.0.1", t.port)
        if i % 2:
            writer.write(b"GET /v1/sessions/" + t.customer.encode() + b" HTTP/1.1\r\nHost: x\r\n")
        else:  # a body that never finishes arriving
            writer.write(
                http_request(
                    "POST", "/v1/events", [*t.auth("service"), ("Content-Type", "application/json")]
                ).replace(b"\r\n\r\n", b"\r\nContent-Length: 100000\r\n\r\n[")
            )
            answered.append(asyncio.create_task(reader.read()))
        writers.append(writer)
    ended = {i: task for i, task in zip(range(0, 30, 2), answered, strict=True)}

    async def trickle() -> None:
        for _ in range(30):
            for i, w in enumerate(writers):
                if i not in ended or not ended[i].done():
                    w.write(b"X")  # a header name, or body bytes, one at a time
            await asyncio.sleep(0.1)

    slow = asyncio.create_task(trickle())
    latencies = []
    try:
        while not slow.done():
            started = time.monotonic()
            ex = await aexchange(
                t.port,
                http_request(
                    "GET", f"/v1/sessions/{t.customer}", [("Authorization", f"Bearer {me}")]
                ),
            )
            assert ex.only.status == 200, ex
            assert ex.only.json()["customer_id"] == t.customer
            latencies.append(time.monotonic() - started)
        bodies = await asyncio.wait_for(asyncio.gather(*answered), READ_TIMEOUT)
    finally:
        await slow
        for w in writers:
            w.close()
        for task in answered:
            task.cancel()
    return latencies, bodies


async def test_slow_partial_requests_do_not_block_other_clients(
    target: Target, unharmed: None
) -> None:
    """Slowloris-ish: many connections trickle a request; others are served meanwhile.

    The slow requests do not complete while the others are served (a server
    that served connections in turn would serve no one else); each trickled
    body is answered ``408 body_timeout`` and its connection closed.
    """
    latencies, bodies = await slow_partial_requests(target)
    assert latencies, "no other client was served while the slow ones trickled"
    for raw in bodies:
        ex = Exchange(parse_answers(raw, head=False, eof=True), closed=True, timed_out=False)
        check_exchange(ex)
        assert (ex.only.status, ex.only.json()["error"]) == (408, "body_timeout"), raw


@pytest.mark.limits
async def test_slow_partial_requests_keep_other_clients_fast(
    target: Target, unharmed: None
) -> None:
    """A performance bound, so under ``-m limits`` only (``make test-faults``): during
    the 3 s trickle other clients are answered often, each within 2.5 s."""
    latencies, _ = await slow_partial_requests(target)
    assert len(latencies) >= 5, latencies
    assert max(latencies) < 2.5, latencies


# --- Regressions of what the fuzz found -------------------------------------------------


async def test_two_authorization_headers_are_a_401_whichever_comes_first(
    target: Target, unharmed: None
) -> None:
    """Picking one of two credentials lets a proxy and the gateway judge different ones."""
    t = target
    me, svc = t.tokens["customer"], t.tokens["service"]
    read = f"/v1/sessions/{t.customer}"
    pairs = [(me, "garbage"), ("garbage", me), (me, me), (me, svc)]
    for first, second in pairs:
        data = http_request(
            "GET",
            read,
            [("Authorization", f"Bearer {first}"), ("Authorization", f"Bearer {second}")],
        )
        a = (await aexchange(t.port, data)).only
        assert (a.status, a.json()["error"]) == (401, "invalid_token"), (first, second)
        assert a.headers["WWW-Authenticate"].startswith("Bearer")
    stream = f"{read}/stream?access_token={me}&access_token=garbage"
    a = (await aexchange(t.port, http_request("GET", stream))).only
    assert (a.status, a.json()["error"]) == (401, "invalid_token")
    a = (await aexchange(t.port, http_request("GET", f"{read}/stream?access_token={me}"))).only
    assert a.status == 200, a
    assert a.streaming, "one access_token still opens the stream"


async def test_a_token_with_bytes_that_are_not_ascii_is_a_401(
    target: Target, unharmed: None
) -> None:
    t = target
    me = t.tokens["customer"]
    assert me is not None
    for junk in (b"\xff\xfe", me.encode()[:-3] + b"\xe9\xe9\xe9", "é".encode()):
        for path in (f"/v1/sessions/{t.customer}", f"/v1/sessions/{t.customer}/stream"):
            data = http_request("GET", path, [("Authorization", b"Bearer " + junk)])
            a = (await aexchange(t.port, data)).only
            assert (a.status, a.json()["error"]) == (401, "invalid_token"), (junk, path)
    # The same below HTTP: a header aiohttp decoded with surrogate escapes.
    with pytest.raises(TokenError) as err:
        verify(GATEWAY_SECRET, me[:-1] + "\udcff")
    assert err.value.code == "invalid_token"


async def test_a_body_that_breaks_its_content_encoding_is_a_400(
    target: Target, unharmed: None
) -> None:
    """aiohttp raises ``RequestPayloadError`` from the handler's read: a 400, not a 500."""
    t = target
    for path, kind in (("/v1/events", "service"), (f"/v1/handoffs/{'Z' * 8}/claim", "pos")):
        base = [*t.auth(kind), ("Content-Type", "application/json")]
        for encoding, body in (("gzip", b"not gzip at all"), ("deflate", b"not deflate either")):
            headers = [*base, ("Content-Encoding", encoding)]
            ex = await aexchange(t.port, http_request("POST", path, headers, body))
            check_exchange(ex)
            assert (ex.only.status, ex.only.json()["error"]) == (400, "malformed_json"), encoding
        # Cut inside the compressed data: whatever decodes, a documented answer.
        headers = [*base, ("Content-Encoding", "gzip")]
        cut = gzip.compress(b"[1,2,3]")[:12]
        check_exchange(await aexchange(t.port, http_request("POST", path, headers, cut)))
        # A well-formed compressed body is read as usual.
        ex = await aexchange(t.port, http_request("POST", path, headers, gzip.compress(b"[]")))
        assert ex.only.status == 400
        assert ex.only.json()["error"] in ("empty_batch", "invalid_body")
    headers = [*t.auth("service"), ("Content-Type", "application/json")]
    deflated = zlib.compress(b"{}")
    ex = await aexchange(
        t.port,
        http_request("POST", "/v1/events", [*headers, ("Content-Encoding", "deflate")], deflated),
    )
    assert ex.only.status == 422


async def test_a_handler_read_over_the_limit_names_the_limit(
    target: Target, unharmed: None
) -> None:
    """The claim route reads its body itself; aiohttp's 413 carries ``limit`` too."""
    t = target
    body = b'{"terminal_id": "' + b"t" * (MAX_BODY + 1) + b'"}'
    headers = [*t.auth("pos"), ("Content-Type", "application/json")]
    path = f"/v1/handoffs/{'Z' * 8}/claim"
    a = (await aexchange(t.port, http_request("POST", path, headers, body))).only
    assert a.status == 413
    assert a.json()["error"] == "payload_too_large"
    assert a.json()["limit"] == MAX_BODY


# --- Regressions of defects found below the handlers --------------------------------------


async def test_an_event_nested_deeper_than_orjson_writes_is_refused_not_a_500(
    target: Target,
) -> None:
    t = target
    deep = b'{"event_id":"e","type":"cart.cleared","x":' + b"[" * 300 + b"]" * 300 + b"}"
    headers = [*t.auth("service"), ("Content-Type", "application/json")]
    ex = await aexchange(t.port, http_request("POST", "/v1/events", headers, b"[" + deep + b"]"))
    check_exchange(ex)


async def test_an_unknown_expectation_gets_a_documented_answer(
    target: Target, unharmed: None
) -> None:
    """aiohttp checks ``Expect`` before any middleware; its 417 gets the JSON error body too."""
    t = target
    headers = [*t.auth("service"), ("Content-Type", "application/json")]
    for path in ("/v1/events", "/v1/nope"):  # a route, and no route at all
        for expectation in ("999-nope", "100-continue, x", "100-continue-x"):
            data = http_request("POST", path, [*headers, ("Expect", expectation)], b"[]")
            ex = await aexchange(t.port, data)
            check_exchange(ex)
            assert (ex.only.status, ex.only.json()["error"]) == (417, "expectation_failed"), ex
    # The one expectation understood: 100 Continue, then the request is served.
    data = http_request("POST", "/v1/events", [*headers, ("Expect", "100-continue")], b"[]")
    ex = await aexchange(t.port, data)
    assert [a.status for a in ex.answers] == [100, 400], ex
    assert ex.answers[1].json()["error"] == "empty_batch"


async def test_chunked_framing_broken_mid_body_is_answered(target: Target, unharmed: None) -> None:
    """aiohttp's parser drops a chunked body whose framing breaks in a later packet without
    failing the handler's read; the body timeout answers it (408) and ends the connection."""
    t = target
    headers = [
        *t.auth("service"),
        ("Content-Type", "application/json"),
        ("Transfer-Encoding", "chunked"),
        ("Expect", "100-continue"),
    ]
    reader, writer = await asyncio.open_connection("127.0.0.1", t.port)
    try:
        writer.write(http_request("POST", "/v1/events", headers, close=False) + b"1\r\n[\r\n")
        await writer.drain()
        # The head (and the first chunk with it) is in: the gateway asks for the body.
        went_on = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        assert went_on == b"HTTP/1.1 100 Continue\r\n\r\n", went_on
        writer.write(b"zz\r\n")  # so the broken framing comes in a later packet
        await writer.drain()
        rest = await asyncio.wait_for(reader.read(), READ_TIMEOUT)  # to the server's close
    finally:
        writer.close()
        await writer.wait_closed()
    ex = Exchange(parse_answers(rest, head=False, eof=True), closed=True, timed_out=False)
    check_exchange(ex)
    assert (ex.only.status, ex.only.json()["error"]) == (408, "body_timeout"), ex
    assert ex.only.json()["message"] == f"the request body did not arrive within {BODY_TIMEOUT:g} s"
