"""Schemathesis against a live gateway: every answer is one the OpenAPI document states.

A stack of the test's own (broker, Redis, a worker, a gateway), so the fuzzed
events, erasures and handoff failures meet no other test and an ``as_of`` refold
reads short topics. Schemathesis (its CLI, as a team adopting the gateway would
run it) generates requests from ``GET /openapi.json`` for every operation, valid
and invalid, with each role's token, and checks:

* no 5xx (``not_a_server_error``);
* every status, content type, header and body is the one documented for the
  operation (``status_code_conformance``, ``content_type_conformance``,
  ``response_headers_conformance``, ``response_schema_conformance``);
* invalid input is refused (``negative_data_rejection``), a request without its
  token is too (``ignored_auth``), and an undocumented method is a 405
  (``unsupported_method``).

Not run: ``positive_data_acceptance``, because a schema-valid event is still
refused when the token may not publish it (a customer's event for another
customer), a documented ``403``; and the stream operation, whose answer never
ends while the session lives (its statuses are checked by
``tests/gateway/test_e2e_fuzz.py`` and its events by the SSE tests).

A drifted document (a status the gateway does answer, left out) fails the same
run: ``test_schemathesis_fails_on_an_undocumented_status``. Bounded in examples
and time for ``make test``; ``make test-faults`` runs it longer (``FAULT_SCALE``).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from streams.kafka.publish import Publisher
from tests.support.events import added, event
from tests.support.fault_report import long_scale
from tests.support.gateway import Gateway, token
from tests.support.private_stack import PrivateStack, private_stack
from tests.support.stack import publish, wait_version

EXAMPLES = 60 if long_scale() else 12
MAX_TIME = 600 if long_scale() else 45
# A load test too: make test-faults runs it again at FAULT_SCALE=long.
pytestmark = [pytest.mark.e2e, pytest.mark.load, pytest.mark.timeout(MAX_TIME * 3 + 300)]
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "ignored_auth",
        "unsupported_method",
    )
)


@pytest.fixture(scope="module")
async def live(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[PrivateStack, Gateway, str]]:
    """A stack of the module's own with one seeded customer session."""
    async with private_stack(tmp_path_factory.mktemp("openapi")) as st:
        st.start_worker("w")
        gateway = st.start_gateway(
            "gw",
            # A fuzzed wait or min_version must not hold a request for long.
            CONTINUITY_GATEWAY_MAX_WAIT="1",
            CONTINUITY_AS_OF_TIMEOUT="20",
            # High enough that the fuzz is not throttled out of the routes it fuzzes.
            CONTINUITY_INGEST_RATE_LIMIT="100000/second",
            CONTINUITY_HANDOFF_CLAIM_RATE_LIMIT="100000/second",
        )
        customer = f"oa-{uuid.uuid4().hex[:8]}"
        async with Publisher(st.bootstrap, linger_ms=1) as pub:
            await st.ready(pub)
            await publish(pub, [event("cart.item_added", added("SKU-1"), customer=customer)])
        await wait_version(st.state, customer, 1, 60)
        yield st, gateway, customer


async def _schemathesis(
    gateway: Gateway, document: Path, bearer: str, *extra: str
) -> tuple[int, str]:
    """Run the CLI against ``gateway`` with ``document``; its exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        str(document),
        "--url",
        gateway.url,
        "--header",
        f"Authorization: Bearer {bearer}",
        "--checks",
        CHECKS,
        "--max-examples",
        str(EXAMPLES),
        "--max-time",
        str(MAX_TIME),
        "--phases",
        "examples,coverage,fuzzing",
        "--exclude-operation-id",
        "session_stream",
        "--request-timeout",
        "25",
        "--seed",
        "20261205",
        # One worker: Hypothesis parses lambdas' source with ast in each thread, which
        # CPython 3.11 can crash on when two threads do it at once ("AST constructor
        # recursion depth mismatch").
        "--workers",
        "1",
        "--suppress-health-check",
        "all",
        "--no-color",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), MAX_TIME * 3 + 120)
    return proc.returncode or 0, out.decode(errors="replace")


async def _served_document(gateway: Gateway, root: Path, name: str = "openapi.json") -> Path:
    """The document the gateway serves, saved for the CLI."""
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/openapi.json") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        body = await resp.read()
    path = root / name
    path.write_bytes(body)
    return path


@pytest.mark.parametrize("role", ["customer", "pos", "service"])
async def test_schemathesis_finds_nothing_outside_the_document(
    live: tuple[PrivateStack, Gateway, str], role: str, tmp_path: Path
) -> None:
    _, gateway, customer = live
    bearer = {
        "customer": token("customer", subject=customer),
        "pos": token("pos", store="store-1"),
        "service": token("service"),
    }[role]
    document = await _served_document(gateway, tmp_path)
    code, out = await _schemathesis(gateway, document, bearer)
    print(out[-3000:])
    assert code == 0, out[-6000:]
    assert re.search(r"\d+ generated, \d+ passed", out), out[-3000:]
    assert not re.search(r"\d+ (failed|errors?)\b", out), out[-6000:]


async def test_schemathesis_fails_on_an_undocumented_status(
    live: tuple[PrivateStack, Gateway, str], tmp_path: Path
) -> None:
    """The same run against a document that forgot the read's 404: Schemathesis must say so."""
    _, gateway, _ = live
    document = orjson.loads((await _served_document(gateway, tmp_path)).read_bytes())
    del document["paths"]["/v1/sessions/{id}"]["get"]["responses"]["404"]
    drifted = tmp_path / "drifted.json"
    drifted.write_bytes(orjson.dumps(document))
    code, out = await _schemathesis(
        gateway,
        drifted,
        token("service"),
        *("--include-operation-id", "session", "--max-failures", "1"),
    )
    assert code != 0, out[-3000:]
    assert "Undocumented status code" in out, out[-3000:]
    assert "Received: 404" in out, out[-3000:]
