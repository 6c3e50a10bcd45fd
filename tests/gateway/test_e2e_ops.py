"""Operating the gateway: health, readiness, metrics, outages, shutdown, tokens and dev.

Proves: ``/healthz``, ``/readyz`` and ``/metrics`` answer without a token and
the metrics carry no customer id; streams survive a dropped pub/sub
connection (every follower re-reads after the reconnect); with Kafka down an
ingest is a 503 with ``Retry-After`` and nothing claimed accepted, with
Redis down reads are a 503, and ``/readyz`` names what is down; the stream
bound answers 503; a SIGTERM ends open streams and the process cleanly;
``continuity token`` signs tokens the gateway accepts and the gateway
refuses to start without a proper secret; ``continuity dev`` runs a gateway
whose key sits in a 0600 file and never in its output or logs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import aiohttp
import jwt
import pytest
from redis.asyncio import Redis

from streams.dev import loopback
from streams.gateway.auth import Keyring, Principal, Role, issue, verify
from streams.store.state import RedisState
from tests.support.cli import run_cli
from tests.support.events import added, event
from tests.support.gateway import (
    GATEWAY_KID,
    GATEWAY_NEXT_SECRET,
    GATEWAY_SECRET,
    Gateway,
    bearer,
    next_event,
    post_events,
    read_session,
    sse_events,
    start_gateway,
)
from tests.support.metrics_text import metric
from tests.support.stack import Stack, node_urls, wait_until

pytestmark = pytest.mark.e2e


async def get_json(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, object]]:
    async with http.get(url, headers=headers) as resp:
        return resp.status, await resp.json()


async def cli(*args: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str, str]:
    """``continuity ...`` with exactly ``env`` on top of a clean PATH (no inherited settings)."""
    base = {"PATH": os.environ["PATH"], "CONTINUITY_STATE_DIR": "/nonexistent"}
    return await run_cli(*args, env={**base, **env}, timeout=timeout)


def log_texts(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text(errors="replace") for p in directory.iterdir()}


async def test_health_readiness_and_metrics_without_customer_ids(
    gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    a, _ = gateways
    c = ids("metrics")
    # The gateway is shared: count what this test adds, exactly.
    reads = {
        "name": "continuity_gateway_http_requests_total",
        "route": "/v1/sessions/{id}",
        "method": "GET",
        "status_class": "2xx",
    }
    accepted = {"name": "continuity_ingest_events_total", "outcome": "accepted", "reason": ""}
    before = await a.metrics()
    status, body = await post_events(
        http, a, event("browse.search", {"query": "q"}, customer=c), bearer("customer", subject=c)
    )
    assert status == 202
    status, _, _ = await read_session(
        http, a, c, bearer("customer", subject=c), after=str(body["after"])
    )
    assert status == 200

    assert await get_json(http, f"{a.url}/healthz") == (200, {"status": "ok"})
    status, ready = await get_json(http, f"{a.url}/readyz")
    assert (status, ready["checks"]) == (200, {"redis": "up", "kafka": "up", "pubsub": "up"})
    text = await a.metrics()
    assert metric(text, **reads) - metric(before, **reads) == 1
    assert metric(text, **accepted) - metric(before, **accepted) == 1
    assert metric(text, "continuity_gateway_pubsub_up") == 1
    for name in (
        "continuity_sse_subscribers",
        "continuity_sse_drops_total",
        "continuity_sse_messages_total",
        "continuity_gateway_read_waits_total",
    ):
        assert name in text
    assert c not in text, "no customer id ever becomes a label"


async def test_streams_survive_a_dropped_pubsub_connection(
    stack: Stack,
    shared_worker: RedisState,
    http: aiohttp.ClientSession,
    ids: Callable[[str], str],
) -> None:
    # A gateway of this test's own, whose Redis connections carry a name of their own
    # (redis-py's client_name, from the URL): the kill below takes one of its pub/sub
    # connections (its only one, or one primary's on a cluster) and nothing of the
    # shared Redis's other clients.
    name = f"gw-{uuid.uuid4().hex[:10]}"
    a = start_gateway(stack, f"gateway-{name}", REDIS_URL=f"{stack.redis_url}?client_name={name}")
    c = ids("reconnect")
    service = bearer("service")
    nodes = [Redis.from_url(url) for url in node_urls(stack.redis_url)]
    # Another subscriber on the same Redis, which the kill must leave alone.
    neighbour = Redis.from_url(node_urls(stack.redis_url)[0], client_name=f"{name}-neighbour")
    listening = neighbour.pubsub()
    await listening.subscribe(f"{name}-neighbour")
    try:
        status, body = await post_events(
            http, a, event("cart.item_added", added("R-1"), customer=c), service
        )
        await read_session(http, a, c, service, after=str(body["after"]))
        before = metric(await a.metrics(), "continuity_gateway_pubsub_reconnects_total")
        async with http.get(f"{a.url}/v1/sessions/{c}/stream", headers=service) as resp:
            events = sse_events(resp)
            assert (await next_event(events)).id == "1"
            found = [
                (node, cl)
                for node in nodes
                for cl in await node.client_list(_type="pubsub")
                if cl.get("name") == name
            ]
            assert found, "the gateway's pub/sub connection is on some node"
            node, ours = found[0]
            others = {cl["id"] for cl in await node.client_list(_type="pubsub")} - {ours["id"]}
            assert await node.client_kill_filter(_id=ours["id"]) == 1

            async def reconnected() -> bool:
                text = await a.metrics()
                return metric(text, "continuity_gateway_pubsub_reconnects_total") > before

            await wait_until(reconnected)
            still = {cl["id"] for cl in await node.client_list(_type="pubsub")}
            assert ours["id"] not in still
            assert others <= still, "the kill took other subscribers of the shared Redis too"
            assert await neighbour.pubsub_numsub(f"{name}-neighbour") == [
                (f"{name}-neighbour".encode(), 1)
            ]
            status, _ = await post_events(
                http, a, event("cart.item_added", added("R-2"), customer=c), service
            )
            assert status == 202
            assert (await next_event(events)).id == "2"
    finally:
        a.child.stop()
        await listening.aclose()
        await neighbour.aclose()
        for each in nodes:
            await each.aclose()


async def test_outages_are_answered_with_503_and_named_by_readyz(
    tmp_path: Path, http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    broker = loopback.start_broker(tmp_path)
    redis = loopback.start_redis(tmp_path / "redis", tmp_path)
    own = Stack(f"127.0.0.1:{broker.port}", f"redis://127.0.0.1:{redis.port}/0", tmp_path)
    gw = start_gateway(
        own,
        "fragile",
        CONTINUITY_GATEWAY_PRODUCE_TIMEOUT="2",
        CONTINUITY_SSE_MAX_CONNECTIONS="1",
    )
    service = bearer("service")
    c = ids("outage")
    try:
        assert (await get_json(http, f"{gw.url}/readyz"))[0] == 200

        stream_url = f"{gw.url}/v1/sessions/{c}/stream"
        async with http.get(stream_url, headers=service) as first:
            assert first.status == 200
            async with http.get(stream_url, headers=service) as second:
                assert second.status == 503
                assert second.headers["Retry-After"]
                assert (await second.json())["error"] == "too_many_streams"

        async def room_again() -> bool:
            async with http.get(stream_url, headers=service) as resp:
                return resp.status == 200

        await wait_until(room_again)

        broker.kill()
        status, body = await post_events(
            http, gw, event("browse.search", {"query": "q"}, customer=c), service
        )
        assert (status, body["error"]) == (503, "kafka_unavailable")
        assert "results" not in body, "nothing is claimed accepted"
        status, ready = await get_json(http, f"{gw.url}/readyz")
        assert (status, ready["error"], ready["checks"]["kafka"]) == (503, "not_ready", "down")
        assert "kafka" in str(ready["message"])

        redis.kill()
        status, err = await get_json(http, f"{gw.url}/v1/sessions/{c}", headers=service)
        assert (status, err["error"]) == (503, "redis_unavailable")

        async def redis_named() -> bool:
            status, ready = await get_json(http, f"{gw.url}/readyz")
            down = {"redis": "down", "kafka": "down", "pubsub": "down"}
            return status == 503 and ready.get("checks") == down

        await wait_until(redis_named)
        assert gw.child.alive(), "outages never crash the gateway"
    finally:
        gw.child.stop()
        redis.stop()
        broker.stop()


async def test_sigterm_ends_open_streams_and_the_process(
    stack: Stack, gateways: list[Gateway], http: aiohttp.ClientSession, ids: Callable[[str], str]
) -> None:
    gw = start_gateway(stack, "stopping")
    async with http.get(
        f"{gw.url}/v1/sessions/{ids('bye')}/stream", headers=bearer("service")
    ) as resp:
        assert resp.status == 200
        gw.child.proc.send_signal(signal.SIGTERM)

        async def drained() -> None:
            async for _ in sse_events(resp):
                pass

        await asyncio.wait_for(drained(), 30)
    assert await asyncio.to_thread(gw.child.proc.wait, 30) == 0


async def test_token_command_and_the_secret_rules(
    gateways: list[Gateway], http: aiohttp.ClientSession
) -> None:
    env = {"CONTINUITY_AUTH_SECRET": GATEWAY_SECRET}
    code, out, _ = await cli(
        "token", "--role", "customer", "--customer", "c-1", "--ttl", "60", env=env
    )
    assert code == 0
    assert verify(GATEWAY_SECRET, out.strip()) == Principal(Role.CUSTOMER, "c-1")
    code, out, _ = await cli("token", "--role", "pos", "--store", "s-1", env=env)
    assert verify(GATEWAY_SECRET, out.strip()) == Principal(Role.POS, store="s-1")
    code, out, _ = await cli("token", "--role", "service", env=env)
    status, _ = await get_json(
        http,
        f"{gateways[0].url}/v1/sessions/nobody-here",
        headers={"Authorization": f"Bearer {out.strip()}"},
    )
    assert status == 404, "the gateway accepts it"

    code, _, err = await cli("token", "--role", "pos", env=env)
    assert (code, "store" in err) == (2, True)
    code, _, err = await cli("token", "--role", "service", env={})
    assert (code, "CONTINUITY_AUTH_SECRET is not set" in err) == (2, True)

    code, _, err = await cli("gateway", env={})
    assert code == 2
    assert "refusing to start" in err
    code, _, err = await cli("gateway", env={"CONTINUITY_AUTH_SECRET": "too-short"})
    assert (code, "at least 32" in err) == (2, True)
    assert "too-short" not in err, "the secret itself is never printed"


EXAMPLE_KEY = "CHANGE-ME-to-32-or-more-random-characters"  # gateway-secret.example.yaml


async def test_the_gateway_refuses_example_and_predictable_keys_at_start() -> None:
    for env, says in (
        ({"CONTINUITY_AUTH_SECRET": EXAMPLE_KEY}, "example key shipped with Continuity"),
        ({"CONTINUITY_AUTH_SECRET": "Password1" * 4}, "too predictable"),
        (
            {
                "CONTINUITY_AUTH_SECRET": GATEWAY_SECRET,
                "CONTINUITY_AUTH_KEYS": f"old={EXAMPLE_KEY}",
            },
            "CONTINUITY_AUTH_KEYS key 'old' is an example key",
        ),
    ):
        code, _, err = await cli("gateway", env=env, timeout=90)
        assert (code, says in err, "refusing to start" in err) == (2, True, True), err
        assert EXAMPLE_KEY not in err, "a key is never printed"
        assert "Password1" not in err


async def test_keys_rotate_by_kid_and_lifetimes_are_capped(
    gateways: list[Gateway], http: aiohttp.ClientSession
) -> None:
    gw = gateways[0]
    env = {
        "CONTINUITY_AUTH_SECRET": GATEWAY_SECRET,
        "CONTINUITY_AUTH_KEYS": f"{GATEWAY_KID}={GATEWAY_NEXT_SECRET}",
    }
    code, out, err = await cli("token", "--role", "service", "--kid", GATEWAY_KID, env=env)
    assert code == 0, err
    assert jwt.get_unverified_header(out.strip())["kid"] == GATEWAY_KID
    ring = Keyring(None, {GATEWAY_KID: GATEWAY_NEXT_SECRET})
    assert verify(ring, out.strip()).role is Role.SERVICE
    signed_by_default = {**env, "CONTINUITY_AUTH_SIGNING_KID": GATEWAY_KID}
    code, second, _ = await cli("token", "--role", "pos", "--store", "s-1", env=signed_by_default)
    assert jwt.get_unverified_header(second.strip())["kid"] == GATEWAY_KID
    url = f"{gw.url}/v1/sessions/nobody-here"
    for token in (out.strip(), second.strip()):
        status, _ = await get_json(http, url, headers={"Authorization": f"Bearer {token}"})
        assert status == 404, "the gateway accepts the named key"
    code, _, err = await cli("token", "--role", "service", "--kid", "gone", env=env)
    assert (code, "no key named 'gone'" in err) == (2, True)
    code, _, err = await cli("token", "--role", "pos", "--store", "s-1", "--ttl", "90000", env=env)
    assert (code, "over the 57600 s" in err) == (2, True), err

    refused = {
        "unknown kid": issue(GATEWAY_NEXT_SECRET, Role.SERVICE, kid="retired"),
        "over the cap": issue(GATEWAY_SECRET, Role.SERVICE, ttl=43_201),
        "kid, wrong key": issue(GATEWAY_SECRET, Role.SERVICE, kid=GATEWAY_KID),
    }
    for why, token in refused.items():
        status, body = await get_json(http, url, headers={"Authorization": f"Bearer {token}"})
        assert (status, body["error"]) == (401, "invalid_token"), why


async def test_dev_runs_a_gateway_with_a_private_key(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    state = tmp_path / "state"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streams.cli",
        "dev",
        "--no-demo",
        "--state-dir",
        str(state),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    banner: list[str] = []
    try:

        async def read_banner() -> None:
            while not any("Ctrl-C stops everything" in ln for ln in banner):
                line = await proc.stdout.readline()  # type: ignore[union-attr]
                if not line:
                    raise AssertionError("dev exited early:\n" + "".join(banner))
                banner.append(line.decode())

        await asyncio.wait_for(read_banner(), 120)
        info = json.loads((state / "dev.json").read_text())
        gw = info["gateway"]
        assert any(gw in ln for ln in banner)
        key_file = state / "auth-secret"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        secret = key_file.read_text().strip()
        tokens = [ln.split()[-1] for ln in banner if ln.strip().startswith(("shopper", "service:"))]
        assert len(tokens) == 2
        for tok in tokens:
            assert verify(secret, tok).role in (Role.CUSTOMER, Role.SERVICE)

        code, out, _ = await cli(
            "token", "--role", "service", env={"CONTINUITY_STATE_DIR": str(state)}
        )
        assert code == 0, "continuity token finds the key of the running dev stack"
        status, _ = await get_json(
            http, f"{gw}/v1/sessions/nobody", headers={"Authorization": f"Bearer {out.strip()}"}
        )
        assert status == 404

        for name, text in log_texts(Path(info["logs"])).items():
            assert secret not in text, name
        assert secret not in "".join(banner)
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, rest.decode()
    assert not (state / "auth-secret").exists()
    assert secret not in rest.decode()
