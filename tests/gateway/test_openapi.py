"""The OpenAPI document: valid, complete against the router, and honest about errors. Pure.

Proves: the document ``streams/gateway/openapi.py`` renders passes
``openapi-spec-validator`` (OpenAPI 3.1); every route of the gateway's own router
(development routes aside) has an operation and every operation a route, with
the path parameters the route template names; every error code the gateway
defines is documented on some answer, and every code an answer names is one
the gateway defines, in the error table (``errors.ERRORS``, which the manual's
table is rendered from) once, with the status the answer gives it; error
answers point at the error body, and the event body at the wire contract's
union; the session schema is the served view
(no ``recent_event_ids``). The live gateway is held to it by Schemathesis in
``tests/gateway/test_e2e_openapi.py``; the exported file's staleness is
``tests/ops/test_schema_export.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from streams.gateway import errors
from streams.gateway.app import create_app
from streams.gateway.contract import COMMON, DEVELOPMENT_ONLY, ROUTES
from streams.gateway.openapi import document
from streams.ops.schema_export import SCHEMA_DIR
from streams.settings import Settings
from tests.support.gateway import GATEWAY_SECRET

ROOT = Path(__file__).resolve().parents[2]


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    validate(doc)
    assert doc["openapi"] == "3.1.0"


def test_every_route_has_an_operation_and_every_operation_a_route() -> None:
    app = create_app(Settings(), GATEWAY_SECRET)
    routed = {
        (r.method.lower(), r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None and r.name not in DEVELOPMENT_ONLY and r.method != "HEAD"
    }
    documented = {(method, path) for path, ops in document()["paths"].items() for method in ops}
    assert routed == documented


def test_path_parameters_are_the_templates_names() -> None:
    for path, ops in document()["paths"].items():
        named = set(re.findall(r"{(\w+)}", path))
        for method, op in ops.items():
            given = {p["name"] for p in op.get("parameters", ()) if p["in"] == "path"}
            assert given == named, (method, path)


def _defined_codes() -> set[str]:
    return {v for k, v in vars(errors).items() if k.isupper() and isinstance(v, str)}


def test_the_error_table_holds_every_code_once_with_the_status_the_contract_gives_it() -> None:
    tabled = [code for row in errors.ERRORS for code in row.codes]
    assert sorted(tabled) == sorted(set(tabled)), "a code in two rows"
    assert set(tabled) == _defined_codes()
    for route in ROUTES:
        for status, answer in (*route.answers.items(), *COMMON.items()):
            for code in answer.codes:
                assert errors.status_of(code) == status, (route.path, code, status)


def test_every_error_code_is_documented_and_every_documented_code_exists() -> None:
    documented = {
        code
        for route in ROUTES
        for answer in (*route.answers.values(), *COMMON.values())
        for code in answer.codes
    }
    defined = _defined_codes()
    assert documented <= defined, documented - defined
    # 404 not_found for an unknown path has no operation; it is the reads' code too.
    assert defined <= documented, defined - documented


def test_errors_point_at_the_error_body_and_the_body_at_the_wire_contract() -> None:
    doc = document()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, answer in op["responses"].items():
                if int(status) >= 400:
                    schema = answer["content"]["application/json"]["schema"]
                    refs = [s["$ref"] for s in schema.get("anyOf", [schema])]
                    names = {r.rsplit("/", 1)[1] for r in refs}
                    assert names <= {"ErrorBody", "IngestRefusal"}, (method, path, status)
                    assert answer["x-continuity-errors"], (method, path, status)
    body = doc["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["oneOf"][0] == {"$ref": "#/components/schemas/Event"}
    assert body["schema"]["oneOf"][1]["maxItems"] == 500
    assert body["schema"]["oneOf"][1]["items"]["anyOf"][0] == {"$ref": "#/components/schemas/Event"}
    assert "recent_event_ids" not in doc["components"]["schemas"]["Session"]["properties"]


def test_the_limits_are_the_gateways() -> None:
    doc = document(max_events=20, journey_max=7)
    body = doc["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["oneOf"][1]["maxItems"] == 20
    (limit,) = (
        p
        for p in doc["paths"]["/v1/sessions/{id}/journey"]["get"]["parameters"]
        if p["name"] == "limit"
    )
    assert limit["schema"]["maximum"] == 7


def _redocly(path: Path) -> subprocess.CompletedProcess[str]:
    """``redocly lint`` on ``path`` with the project's ``redocly.yaml`` (node's tool)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: @redocly/cli cannot run")
    cli = ROOT / "node_modules" / ".bin" / "redocly"
    if not cli.exists():
        pytest.fail("@redocly/cli is not installed: run `make setup` (npm ci)")
    return subprocess.run(
        [str(cli), "lint", "--config", str(ROOT / "redocly.yaml"), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"},
    )


def test_redocly_lints_the_exported_document_clean() -> None:
    done = _redocly(SCHEMA_DIR / "gateway.openapi.json")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Your API description is valid" in out, out
    assert "warning" not in out.replace("Deprecation warning", ""), out


def test_redocly_refuses_a_broken_document(tmp_path: Path) -> None:
    """The lint can fail: an operation answering a status without a description."""
    doc = document()
    del doc["paths"]["/v1/kpis"]["get"]["responses"]["200"]["description"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(doc))
    done = _redocly(broken)
    assert done.returncode != 0, done.stdout + done.stderr
