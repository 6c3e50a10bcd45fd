"""``continuity dev``: the whole stack on loopback, with simulated traffic and a live view.

Workers run with a short ``CONTINUITY_ABANDON_AFTER`` (``DEV_ABANDON_AFTER``)
so the simulated shoppers who walk away show up as ``cart.abandoned`` within
a minute; every notification on ``session-notifications`` is printed as it
is published, next to the committed versions and dead letters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlencode

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from schemas.topics import CART_EVENTS, DEAD_LETTERS, NOTIFICATIONS
from streams.core import notice
from streams.core.dead_letter import describe
from streams.core.session_codec import decode as decode_session
from streams.dev import loopback
from streams.dev.files import DEV_FILE, DEV_SECRET_FILE
from streams.dev.simulate import endless, journey
from streams.gateway.auth import Role, issue
from streams.kafka import clients
from streams.kafka.publish import Publisher, prepare_dict
from streams.kafka.security import kafka_client_kwargs
from streams.kafka.topics import ensure_topics
from streams.settings import Settings
from streams.store import keys, sharded
from streams.store.client import connect
from streams.store.keys import Space
from streams.store.state import RedisState

DEV_TOKEN_TTL = 12 * 3600
DEMO_STORE = "store-1"
EXIT_CONFIG = 2  # a worker refusing its configuration: restarting cannot help
# Idle seconds before a cart counts as abandoned: production waits 30 min, the demo
# should show abandonments while one watches.
DEV_ABANDON_AFTER = 20
DEV_ABANDON_SWEEP_INTERVAL = 2

# Bad events the demo slips in, so the dead-letter path is visible too.
_BAD_EVENTS: tuple[bytes, ...] = (
    b'{"type": "cart.item_added", "event_id": "broken',
    b'{"type": "cart.teleported", "event_id": "bad-2", "occurred_at": "2026-11-24T09:00:00Z",'
    b' "channel": "web", "customer_id": "demo-bad", "payload": {}}',
    b'{"type": "cart.item_added", "event_id": "bad-3", "occurred_at": "2026-11-24T09:00:00Z",'
    b' "channel": "kiosk", "customer_id": "demo-bad", "payload": {"sku": "CAP-SUN",'
    b' "quantity": -2, "unit_price": "24.50", "currency": "EUR"}}',
)


def run(state_dir: Path, workers: int, demo: bool, rate: float, seed: int) -> int:
    """Start broker, Redis and workers; run the demo and the live view until Ctrl-C.

    Returns 0 when stopped by SIGINT or SIGTERM, 1 when a process it cannot
    restart (the broker, Redis) died on its own.
    """
    logs = state_dir / "logs"
    children: list[loopback.Child] = []
    # Installed explicitly, SIGINT included: a process started with SIGINT ignored
    # (a background job of a non-interactive shell, some CI runners) would otherwise
    # keep ignoring it, and Ctrl-C or ``kill -INT`` would never stop the stack.
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _interrupt)
    code = 0
    try:
        print(f"continuity dev: starting the embedded stack (logs in {logs}/)", flush=True)
        broker = loopback.start_broker(logs)
        children.append(broker)
        # The embedded broker keeps nothing across restarts, so neither may Redis:
        # applied offsets from an earlier run would make the new run skip events.
        shutil.rmtree(state_dir / "redis", ignore_errors=True)
        redis = loopback.start_redis(state_dir / "redis", logs)
        children.append(redis)
        bootstrap = f"127.0.0.1:{broker.port}"
        redis_url = f"redis://127.0.0.1:{redis.port}/0"
        settings = Settings(KAFKA_BOOTSTRAP=bootstrap, REDIS_URL=redis_url)
        # Before anything publishes: a broker auto-creates a missing topic with
        # its default partition count, which would break co-partitioning.
        asyncio.run(
            ensure_topics(
                bootstrap,
                settings.topic_partitions,
                kafka=kafka_client_kwargs(settings),
                retention_ms=settings.topic_retention_ms,
            )
        )
        metrics = []
        for i in range(workers):
            port = loopback.free_port()
            env = {
                "KAFKA_BOOTSTRAP": bootstrap,
                "REDIS_URL": redis_url,
                "CONTINUITY_METRICS_PORT": str(port),
                "CONTINUITY_METRICS_HOST": "127.0.0.1",
                "CONTINUITY_ABANDON_AFTER": str(DEV_ABANDON_AFTER),
                "CONTINUITY_ABANDON_SWEEP_INTERVAL": str(DEV_ABANDON_SWEEP_INTERVAL),
            }
            children.append(loopback.start_worker(f"worker-{i + 1}", env, logs))
            metrics.append(f"http://127.0.0.1:{port}/metrics")
        # The gateway's token key: in a 0600 file for ``continuity token``, in the
        # child's environment for the gateway, never on screen or in a log.
        secret = loopback.write_secret(state_dir / DEV_SECRET_FILE)
        gateway = loopback.start_gateway(
            "gateway",
            {
                "KAFKA_BOOTSTRAP": bootstrap,
                "REDIS_URL": redis_url,
                "CONTINUITY_AUTH_SECRET": secret,
                # The three-pane demo page at / (development only).
                "CONTINUITY_GATEWAY_DEMO": "1",
            },
            logs,
        )
        children.append(gateway)
        info = {
            "kafka_bootstrap": bootstrap,
            "redis_url": redis_url,
            "gateway": f"http://127.0.0.1:{gateway.port}",
            "worker_metrics": metrics,
            "gateway_metrics": f"http://127.0.0.1:{loopback.gateway_metrics_port(gateway)}/metrics",
            "logs": str(logs.resolve()),
            "pids": {c.name: c.pid for c in children},
        }
        (state_dir / DEV_FILE).write_text(json.dumps(info, indent=2) + "\n")
        _banner(info, state_dir, demo, secret, _demo_shopper(seed))
        code = asyncio.run(_live(settings, children, demo, rate, seed))
    except KeyboardInterrupt:
        print("\ncontinuity dev: stopping", flush=True)
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave children behind.
        for sig in _STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        for child in reversed(children):
            child.stop()
        with contextlib.suppress(FileNotFoundError):
            (state_dir / DEV_FILE).unlink()
        with contextlib.suppress(FileNotFoundError):
            (state_dir / DEV_SECRET_FILE).unlink()
    print("continuity dev: every process stopped", flush=True)
    return code


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A terminal's Ctrl-C reaches the whole process group at once, so the broker and
# Redis may die a moment before the signal is handled here: a watcher failing
# within this many seconds of a stop signal is part of the stop, not an error.
_STOP_GRACE = 2.0


class _Stopped(Exception):
    """A process the stack cannot do without died on its own."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _demo_shopper(seed: int) -> str:
    """The first simulated shopper who signs in (so has a customer session to show)."""
    for n in range(40):
        for ev in journey(seed, n, "demo0"):
            if "customer_id" in ev:
                return str(ev["customer_id"])
    return "demo0-00000"


def _banner(info: dict[str, Any], state_dir: Path, demo: bool, secret: str, who: str) -> None:
    gw = info["gateway"]
    shopper = issue(secret, Role.CUSTOMER, subject=who, ttl=DEV_TOKEN_TTL)
    service = issue(secret, Role.SERVICE, subject="dev", ttl=DEV_TOKEN_TTL)
    pos = issue(secret, Role.POS, store=DEMO_STORE, ttl=DEV_TOKEN_TTL)
    print(
        f"""
  Kafka (embedded)   {info["kafka_bootstrap"]}
  Redis              {info["redis_url"]}
  gateway            {gw}
  worker metrics     {", ".join(info["worker_metrics"])}
  gateway metrics    {info["gateway_metrics"]}
  addresses          {state_dir / DEV_FILE}
  logs               {info["logs"]}/

  Look at a session: .venv/bin/continuity session show <customer or guest id>
  Publish events:    .venv/bin/continuity produce events.jsonl
  Gateway tokens (valid {DEV_TOKEN_TTL // 3600} h; more with .venv/bin/continuity token --help):
    shopper {who}: {shopper}
    service: {service}
    pos ({DEMO_STORE}): {pos}
  Demo page (mobile, desktop and in-store POS panes for the shopper, live KPIs):
    {demo_url(gw, who, shopper, pos, service)}
  Try it:     TOKEN=<the shopper token above>
              curl -H "Authorization: Bearer $TOKEN" {gw}/v1/sessions/{who}
              curl -N -H "Authorization: Bearer $TOKEN" {gw}/v1/sessions/{who}/stream
  Omnichannel KPIs (SERVICE=<the service token above>):
              curl -H "Authorization: Bearer $SERVICE" {gw}/v1/kpis
              curl -H "Authorization: Bearer $SERVICE" {gw}/v1/sessions/{who}/journey
              curl -s {info["gateway_metrics"]} | grep continuity_kpi_
  Notifications: topic {NOTIFICATIONS}, printed below as NOTIFY lines; carts idle
              {DEV_ABANDON_AFTER} s count as abandoned (CONTINUITY_ABANDON_AFTER).
  {"Simulated shoppers start once a worker is ready (about 10 s)." if demo else "No demo traffic."}
  Ctrl-C stops everything.
""",
        flush=True,
    )


def demo_url(gateway: str, customer: str, token: str, pos: str, service: str) -> str:
    """The demo page's address; tokens ride in the fragment, which browsers never send.

    The service token lets the page read ``GET /v1/kpis``. Development only: it
    is the same token the banner prints, signed with this run's throwaway key.
    """
    fragment = urlencode(
        {"customer": customer, "token": token, "pos": pos, "store": DEMO_STORE, "service": service}
    )
    return f"{gateway}/#{fragment}"


async def _live(
    settings: Settings, children: list[loopback.Child], demo: bool, rate: float, seed: int
) -> int:
    """Run the watchers and the demo until a stop signal (0) or a fatal child death (1)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    redis = connect(settings.redis_dsn())
    space = settings.space()
    state = RedisState(redis, space)
    kafka = kafka_client_kwargs(settings)
    tasks = [
        asyncio.create_task(_watch(state, space)),
        asyncio.create_task(_watch_dead_letters(settings.kafka_bootstrap, kafka)),
        asyncio.create_task(_watch_notifications(settings.kafka_bootstrap, kafka)),
        asyncio.create_task(_watch_children(children)),
    ]
    if demo:
        tasks.append(asyncio.create_task(_demo(settings.kafka_bootstrap, kafka, state, rate, seed)))
    stopping = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _STOP_GRACE)
        if stop.is_set():
            # The broker may be gone already (Ctrl-C reached it too): the Kafka
            # clients' reconnect complaints would only bury the line below.
            logging.getLogger("aiokafka").setLevel(logging.CRITICAL + 1)
            print("\ncontinuity dev: stopping", flush=True)
            return 0
        failed = next(t for t in done if t is not stopping)
        exc = failed.exception()
        if isinstance(exc, _Stopped):
            print(f"continuity dev: {exc}; stopping", file=sys.stderr, flush=True)
            return 1
        if exc is not None:
            raise exc
        return 0
    finally:
        for t in [*tasks, stopping]:
            t.cancel()
        # Bounded: a library that swallows a cancellation must not hold the stop up.
        await asyncio.wait([*tasks, stopping], timeout=5.0)
        with contextlib.suppress(RedisError, OSError):
            await redis.aclose()


async def _demo(
    bootstrap: str, kafka: Mapping[str, Any], state: RedisState, rate: float, seed: int
) -> None:
    async with Publisher(bootstrap, kafka=kafka) as pub:
        await _wait_for_worker(pub, state)
        # Simulated times around the present: journeys are kept for
        # CONTINUITY_JOURNEY_MAX_AGE only, and event ages read as real ones.
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        for i, event in enumerate(endless(seed, start=start)):
            fut = await pub.send(prepare_dict(event))
            await fut
            if i % 37 == 36:
                bad = _BAD_EVENTS[(i // 37) % len(_BAD_EVENTS)]
                await pub.send_raw(CART_EVENTS, b"demo-bad", bad)
            await asyncio.sleep(1.0 / rate)


async def _wait_for_worker(pub: Publisher, state: RedisState) -> None:
    """Publish a probe and wait until a worker has folded it: the stack is live."""
    started = time.monotonic()
    probe = f"probe-{int(time.time())}"
    fut = await pub.send(
        prepare_dict(
            {
                "event_id": probe,
                "type": "browse.search",
                "channel": "web",
                "customer_id": probe,
                "occurred_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "payload": {"query": "ready?"},
            }
        )
    )
    await fut
    while await state.get(probe) is None:
        await asyncio.sleep(0.1)
    print(
        f"{_now()}  a worker is folding events ({time.monotonic() - started:.1f} s after "
        "start); simulated shoppers begin",
        flush=True,
    )


async def _watch(state: RedisState, space: Space) -> None:
    """Print one line per committed session version: carts moving between channels.

    Survives Redis going away: whether that ends the stack is ``_watch_children``'s
    call (Redis died) or the user's (Ctrl-C reached Redis first).
    """
    while True:
        try:
            await _print_commits(state, space)
        except (RedisConnectionError, RedisTimeoutError, OSError):
            await asyncio.sleep(1.0)


async def _print_commits(state: RedisState, space: Space) -> None:
    channels = [keys.updates(space, n) for n in space.all_partitions()]
    # Sharded channels have no pattern subscription: one SSUBSCRIBE per partition, on
    # the connection of the primary owning its slot (one, unless REDIS_URL is a cluster).
    made = await sharded.shards(state.redis, channels)
    try:
        await asyncio.gather(*(_print_shard(state, shard) for shard in made))
    finally:
        with contextlib.suppress(RedisError, OSError):
            await sharded.close(made)


async def _print_shard(state: RedisState, shard: sharded.Shard) -> None:
    pubsub = shard.client.pubsub()
    try:
        for channel in shard.channels:
            await pubsub.ssubscribe(channel)
        async for message in pubsub.listen():
            if message["type"] != "smessage":
                continue
            heard = notice.read(message["data"])
            if heard.key is None:
                continue
            if heard.merged_into is not None:
                print(
                    f"{_now()}  {heard.key:<24} guest session merged into {heard.merged_into}",
                    flush=True,
                )
                continue
            # A session write's notice carries the state it announces; others are news only.
            session = (
                decode_session(heard.state)
                if heard.state is not None
                else await state.get(heard.key)
            )
            if session is None or session.version != heard.version:
                continue  # a newer version is already on its way
            cart = (
                ", ".join(f"{ln.quantity}x {ln.name or ln.sku}" for ln in session.cart) or "empty"
            )
            path = " > ".join(c.value for c in session.channels)
            checkout: str = session.checkout.status
            if session.checkout.order_id and checkout == "completed":
                checkout += f" {session.checkout.order_id}"
            print(
                f"{_now()}  {session.key:<24} v{session.version:<3} "
                f"[{path}] last={session.last_channel}  cart: {cart} = {session.subtotal} "
                f"{session.currency or ''}  checkout: {checkout}",
                flush=True,
            )
    finally:
        with contextlib.suppress(RedisError, OSError):
            await pubsub.aclose()


async def _watch_dead_letters(bootstrap: str, kafka: Mapping[str, Any]) -> None:
    def line(msg: Any) -> str:
        h = describe(list(msg.headers))
        return (
            f"DEAD LETTER  {h.get('continuity.dlq.reason')}  from "
            f"{h.get('continuity.dlq.topic')}[{h.get('continuity.dlq.partition')}]"
            f"@{h.get('continuity.dlq.offset')}: {h.get('continuity.dlq.detail')}"
        )

    await _tail(DEAD_LETTERS, bootstrap, kafka, line)


async def _watch_notifications(bootstrap: str, kafka: Mapping[str, Any]) -> None:
    """Print one line per notification published (abandoned carts, resumes elsewhere)."""
    await _tail(
        NOTIFICATIONS, bootstrap, kafka, lambda msg: f"NOTIFY  {_describe_notification(msg.value)}"
    )


async def _tail(
    topic: str, bootstrap: str, kafka: Mapping[str, Any], line: Callable[[Any], str]
) -> None:
    """Print a line for every new record of ``topic`` until cancelled."""
    consumer = clients.consumer(bootstrap, "dev-tail", kafka=kafka, auto_offset_reset="latest")
    consumer.subscribe([topic])
    await consumer.start()
    try:
        async for msg in consumer:
            print(f"{_now()}  {line(msg)}", flush=True)
    finally:
        await consumer.stop()


def _describe_notification(raw: bytes | None) -> str:
    try:
        note = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return "(not JSON)"
    key, kind = note.get("key"), note.get("type")
    if kind == "cart.abandoned":
        path = " > ".join(note.get("cart_path") or [])
        return (
            f"{kind:<26} {key}  "
            f"{note.get('item_count')} item(s) = {note.get('subtotal')} "
            f"{note.get('currency') or ''}  path [{path}]"
        )
    if kind == "session.resumed_elsewhere":
        return f"{kind:<26} {key}  {note.get('from_channel')} -> {note.get('to_channel')}"
    return f"{kind} {key}"


async def _watch_children(children: list[loopback.Child]) -> None:
    """Restart a worker that died (as a process supervisor would); stop if infra died."""
    while True:
        for i, child in enumerate(children):
            if child.alive():
                continue
            print(
                f"continuity dev: {child.name} exited with {child.proc.returncode}; "
                f"see {child.log_path}",
                file=sys.stderr,
                flush=True,
            )
            # Workers and the gateway hold no state of their own: restart them.
            restartable = child.name.startswith(("worker", "gateway"))
            if not restartable or child.proc.returncode == EXIT_CONFIG:
                raise _Stopped(f"{child.name} exited with {child.proc.returncode}")
            children[i] = child.restart()
            print(f"continuity dev: {child.name} restarted", file=sys.stderr, flush=True)
        await asyncio.sleep(1.0)


def _now() -> str:
    return time.strftime("%H:%M:%S")
