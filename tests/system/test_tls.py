"""TLS and credentials for real: Redis over TLS with an ACL user, Kafka over TLS and SASL.

Proves, with a throwaway CA made here:

* a worker and a gateway whose Redis URL (``rediss://`` + ACL user + CA file)
  and token key come from ``CONTINUITY_SECRETS_DIR`` files, and whose Kafka
  connections are TLS (CONTINUITY_KAFKA_SECURITY_PROTOCOL=SSL, CA file), carry
  an event from ``POST /v1/events`` through Kafka into Redis and serve it back;
  the state read over TLS matches; no secret reaches their logs;
* a wrong Redis password is refused (``AuthenticationError`` in the worker's
  log, ``/readyz`` 503 on the gateway) and is never logged;
* against the embedded broker with ``--authentication`` a SASL/SCRAM worker
  fails within seconds with one clear line naming the protocol, mechanism
  and user, not the password; a plaintext client is refused by that broker;
* a TLS client that does not trust the broker's CA is refused; the tools'
  producer and the reset guard's log probe speak TLS with the same arguments;
* Redis mutual TLS (client certificate, encrypted key) is set by the URL's
  ``ssl_certfile``, ``ssl_keyfile``, ``ssl_password`` parameters alone.

Redis terminates TLS itself (Debian's redis-server is built with TLS). The
embedded broker (Tansu 0.6.0) cannot: its ``--cert`` and ``--key`` options
exclude each other, so TLS never turns on. Its listener is advertised behind
``TlsTerminator`` below, a TLS server (Python's ssl, OpenSSL) that hands the
decrypted Kafka protocol to the broker, as a TLS-terminating proxy in front of
Kafka would. The clients' side (CA, hostname check, every client of a worker
and a gateway speaking TLS) is what is under test. Tansu offers SCRAM only,
keeps users in memory and lets only authenticated clients create them, so no
SASL login can succeed against it: refusal is what can be shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import pytest
from aiokafka.errors import KafkaConnectionError
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError

from schemas.session import Session
from streams.dev import loopback
from streams.gateway.auth import Role, issue
from streams.kafka.publish import Publisher
from streams.kafka.security import kafka_client_kwargs
from streams.kafka.topics import ensure_topics
from streams.settings import Settings
from streams.store.state import RedisState
from tests.support.events import event
from tests.support.stack import PARTITIONS, Stack, publish, redis_env, space, wait_until
from tests.support.tls_pki import Pki, make_pki

USER = "continuity"


# --- A throwaway PKI ----------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


# --- Redis with TLS and an ACL user -----------------------------------------------------


@dataclass
class TlsRedis:
    child: loopback.Child
    port: int
    password: str
    ca: Path

    def url(self, password: str | None = None) -> str:
        """The URL a worker is given: TLS, the ACL user, the CA as a query parameter."""
        secret = self.password if password is None else password
        return f"rediss://{USER}:{secret}@127.0.0.1:{self.port}/0?ssl_ca_certs={self.ca}"


@pytest.fixture(scope="module")
def tls_redis(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    """redis-server on a TLS-only port; ``default`` is off, ``continuity`` has a password."""
    root = tmp_path_factory.mktemp("tls-redis")
    password = secrets.token_urlsafe(24)
    port = loopback.free_port()
    exe = shutil.which("redis-server")
    assert exe is not None, "redis-server not on PATH (Debian: apt-get install redis-server)"
    child = loopback.spawn(
        "redis-tls",
        [
            exe,
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(pki.cert),
            "--tls-key-file",
            str(pki.key),
            "--tls-ca-cert-file",
            str(pki.ca),
            "--tls-auth-clients",
            "no",
            "--dir",
            str(root),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--user",
            "default",
            "off",
            "--user",
            USER,
            "on",
            f">{password}",
            "~*",
            "&*",
            "+@all",
        ],
        root / "redis.log",
        port=port,
    )
    loopback.wait_port(port, proc=child.proc)
    try:
        yield TlsRedis(child, port, password, pki.ca)
    finally:
        child.stop()


# --- Kafka behind a TLS terminator ---------------------------------------------------------


@dataclass
class TlsTerminator:
    """Accepts TLS on its own port and pipes the plaintext to ``upstream`` (a thread, own loop)."""

    upstream: int
    context: ssl.SSLContext
    port: int = field(default_factory=loopback.free_port)
    handshakes: int = 0
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _ready: threading.Event = field(default_factory=threading.Event)
    _stop: asyncio.Event | None = None
    _thread: threading.Thread | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> TlsTerminator:
        self._thread = threading.Thread(target=self._run, name="tls-terminator", daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "TLS terminator did not start"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stop = self._stop
        if stop is not None:
            self._loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        pipes: set[asyncio.Task[None]] = set()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # Called once the TLS handshake succeeded.
            self.handshakes += 1
            task = asyncio.current_task()
            assert task is not None
            pipes.add(task)
            try:
                await self._pipe(reader, writer)
            finally:
                pipes.discard(task)

        server = await asyncio.start_server(accept, "127.0.0.1", self.port, ssl=self.context)
        self._ready.set()
        await self._stop.wait()
        server.close()
        for task in list(pipes):
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        await server.wait_closed()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                dst.close()

        try:
            await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(ConnectionError, ssl.SSLError):
                    await w.wait_closed()


@dataclass
class TlsKafka:
    broker: loopback.Child
    terminator: TlsTerminator

    @property
    def bootstrap(self) -> str:
        return self.terminator.bootstrap


def _start_broker(log_dir: Path, name: str, advertised: int | None, *extra: str) -> loopback.Child:
    """The embedded broker on a port of its own, advertising ``advertised`` (or its own)."""
    port = loopback.free_port()
    advertised = advertised or port
    child = loopback.spawn(
        name,
        [
            loopback.broker_binary(),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{advertised}",
            *extra,
        ],
        log_dir / f"{name}.log",
        port=port,
    )
    loopback.wait_port(port, proc=child.proc)
    return child


def tls_settings(pki: Pki, bootstrap: str) -> Settings:
    return Settings(
        KAFKA_BOOTSTRAP=bootstrap,
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=pki.ca,
    )


@pytest.fixture(scope="module")
def tls_kafka(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsKafka]:
    """A private embedded broker whose advertised listener is a TLS terminator."""
    log_dir = tmp_path_factory.mktemp("tls-kafka")
    advertised = loopback.free_port()
    with TlsTerminator(0, pki.server_context(), port=advertised) as terminator:
        broker = _start_broker(log_dir, "broker-tls", advertised)
        terminator.upstream = broker.port or 0
        st = TlsKafka(broker, terminator)
        # The admin client over TLS, with the project's own arguments.
        settings = tls_settings(pki, st.bootstrap)
        asyncio.run(ensure_topics(st.bootstrap, PARTITIONS, kafka=kafka_client_kwargs(settings)))
        try:
            yield st
        finally:
            broker.stop()


# --- Helpers ----------------------------------------------------------------------------


def secrets_dir(root: Path, **files: str) -> Path:
    """A directory of secret files (mode 0600), like a mounted Kubernetes secret."""
    root.mkdir(parents=True, exist_ok=True)
    for name, value in files.items():
        path = root / name
        path.write_text(value + "\n")
        path.chmod(0o600)
    return root


def base_env(bootstrap: str, group: str, **extra: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP": bootstrap,
        "CONTINUITY_APP_ID": group,
        "CONTINUITY_REDIS_PREFIX": group,
        "CONTINUITY_TOPIC_PARTITIONS": str(PARTITIONS),
        "CONTINUITY_SESSION_TIMEOUT": "6",
        "CONTINUITY_RETRY_MAX_DELAY": "0.5",
        "CONTINUITY_LOG_LEVEL": "info",
        # Never the addresses of a ``continuity dev`` that may run in this tree.
        "CONTINUITY_STATE_DIR": "/nonexistent",
        **extra,
    }


def read_log(child: loopback.Child) -> str:
    return child.log_path.read_text(errors="replace")


async def log_shows(child: loopback.Child, text: str, timeout: float = 60) -> str:
    """Wait until ``text`` is in ``child``'s log; return the log."""

    async def seen() -> str | None:
        log = read_log(child)
        return log if text in log else None

    found: str = await wait_until(seen, timeout, interval=0.2)
    return found


# --- Tests --------------------------------------------------------------------------------


async def test_worker_and_gateway_over_tls_with_secrets_from_files(
    pki: Pki,
    tls_redis: TlsRedis,
    tls_kafka: TlsKafka,
    stack: Stack,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    group = f"tls{secrets.token_hex(4)}"
    auth_secret = secrets.token_urlsafe(40)
    vault = secrets_dir(
        tmp_path / "secrets", REDIS_URL=tls_redis.url(), CONTINUITY_AUTH_SECRET=auth_secret
    )
    env = base_env(
        tls_kafka.bootstrap,
        group,
        CONTINUITY_KAFKA_SECURITY_PROTOCOL="SSL",
        CONTINUITY_KAFKA_SSL_CA_FILE=str(pki.ca),
        CONTINUITY_SECRETS_DIR=str(vault),
    )
    handshakes_before = tls_kafka.terminator.handshakes
    worker = loopback.start_worker(f"{group}-worker", env, tmp_path / "logs")
    stack.workers.append(worker)  # stopped with the session at the latest
    gateway = loopback.start_gateway(f"{group}-gateway", env, tmp_path / "logs")
    stack.workers.append(gateway)
    customer = f"{group}-shopper"
    headers = {"Authorization": f"Bearer {issue(auth_secret, Role.SERVICE, subject='tls')}"}
    try:
        ev = event(
            "cart.item_added",
            {"sku": "SKU-TLS", "quantity": 2, "unit_price": "9.50", "currency": "EUR"},
            customer=customer,
        )
        async with http.post(
            f"http://127.0.0.1:{gateway.port}/v1/events", json=ev, headers=headers
        ) as r:
            assert r.status == 202, await r.text()
            after = (await r.json())["after"]
        # Read your write through the gateway: Kafka (TLS) -> worker -> Redis (TLS) -> gateway.
        async with http.get(
            f"http://127.0.0.1:{gateway.port}/v1/sessions/{customer}",
            params={"after": after, "wait": "60"},
            headers=headers,
        ) as r:
            assert r.status == 200, await r.text()
            served = await r.json()
        assert served["version"] == 1
        assert [(ln["sku"], ln["quantity"]) for ln in served["cart"]] == [("SKU-TLS", 2)]

        # The same state read over TLS as the ACL user.
        client = Redis.from_url(tls_redis.url(), socket_timeout=5)
        try:
            stored: Session | None = await RedisState(client, space(group)).get(customer)
            assert stored is not None
            assert stored.public() == served
            # The ACL is enforced: the default user is off.
            anonymous = Redis.from_url(
                f"rediss://127.0.0.1:{tls_redis.port}/0?ssl_ca_certs={pki.ca}", socket_timeout=5
            )
            with pytest.raises(AuthenticationError):
                await anonymous.ping()
            await anonymous.aclose()
        finally:
            await client.aclose()

        # The worker's consumer and producer and the gateway's producer and admin
        # client all came in through TLS (the broker advertises only the TLS port).
        assert tls_kafka.terminator.handshakes - handshakes_before >= 3
    finally:
        gateway.stop()
        worker.stop()
    worker_log, gateway_log = read_log(worker), read_log(gateway)
    assert "(SSL)" in worker_log, worker_log[-2000:]
    assert f"(Kafka {tls_kafka.bootstrap} SSL, prefix" in gateway_log, gateway_log[-2000:]
    for log in (worker_log, gateway_log):
        assert tls_redis.password not in log
        assert auth_secret not in log


async def test_a_wrong_redis_password_is_refused_clearly_and_never_logged(
    tls_redis: TlsRedis,
    stack: Stack,
    publisher: Publisher,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    group = f"bad{secrets.token_hex(4)}"
    wrong = secrets.token_urlsafe(24)
    client = Redis.from_url(tls_redis.url(wrong), socket_timeout=5)
    with pytest.raises(AuthenticationError) as refused:
        await client.ping()
    await client.aclose()
    assert wrong not in str(refused.value)

    env = base_env(stack.bootstrap, group, REDIS_URL=tls_redis.url(wrong))
    worker = loopback.start_worker(f"{group}-worker", env, tmp_path / "logs")
    stack.workers.append(worker)
    gateway = loopback.start_gateway(
        f"{group}-gateway",
        {**env, "CONTINUITY_AUTH_SECRET": secrets.token_urlsafe(40)},
        tmp_path / "logs",
    )
    stack.workers.append(gateway)
    try:
        # The worker only touches Redis with a batch in hand: give it one.
        customer = f"{group}-shopper"
        await publish(publisher, [event("browse.search", {"query": "tls"}, customer=customer)])
        await log_shows(worker, "redis unavailable (AuthenticationError); retrying batch")
        async with http.get(f"http://127.0.0.1:{gateway.port}/readyz") as r:
            assert r.status == 503
            checks = (await r.json())["checks"]
        assert checks["redis"] == "down"
        assert checks["kafka"] == "up"
    finally:
        gateway.stop()
        worker.stop()
    for log in (read_log(worker), read_log(gateway)):
        assert wrong not in log


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
async def test_kafka_sasl_against_the_embedded_brokers_scram_fails_fast_and_clearly(
    protocol: str, pki: Pki, stack: Stack, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    advertised = loopback.free_port()
    password = secrets.token_urlsafe(24)
    vault = secrets_dir(tmp_path / "secrets", CONTINUITY_KAFKA_SASL_PASSWORD=password)
    with TlsTerminator(0, pki.server_context(), port=advertised) as terminator:
        broker = _start_broker(
            logs, "broker-auth", advertised if protocol == "SASL_SSL" else None, "--authentication"
        )
        try:
            direct = f"127.0.0.1:{broker.port}"
            terminator.upstream = broker.port or 0
            # The broker really demands authentication: a plaintext client is turned away.
            with pytest.raises(KafkaConnectionError):
                await ensure_topics(direct, PARTITIONS)
            env = base_env(
                terminator.bootstrap if protocol == "SASL_SSL" else direct,
                f"sasl{secrets.token_hex(4)}",
                REDIS_URL=stack.redis_url,
                **redis_env(stack.redis_url),
                CONTINUITY_KAFKA_SECURITY_PROTOCOL=protocol,
                CONTINUITY_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
                CONTINUITY_KAFKA_SASL_USERNAME=USER,
                CONTINUITY_SECRETS_DIR=str(vault),
                **({"CONTINUITY_KAFKA_SSL_CA_FILE": str(pki.ca)} if protocol == "SASL_SSL" else {}),
            )
            started = time.monotonic()
            worker = loopback.start_worker(f"worker-{protocol}", env, logs)
            try:
                code = await asyncio.to_thread(worker.proc.wait, 30)
            finally:
                worker.stop()
            took = time.monotonic() - started
        finally:
            broker.stop()
    log = read_log(worker)
    assert code == 1, log[-3000:]
    assert took < 30
    where = env["KAFKA_BOOTSTRAP"]
    expected = f"cannot connect to Kafka at {where} ({protocol} SCRAM-SHA-512 as '{USER}')"
    assert expected in log, log[-3000:]
    assert "the SASL login was refused: check the user name and password" in log
    assert "Traceback" not in log
    assert password not in log
    if protocol == "SASL_SSL":
        assert terminator.handshakes >= 1  # the SCRAM exchange ran inside TLS


async def test_a_tls_client_that_does_not_trust_the_brokers_ca_is_refused(
    tls_kafka: TlsKafka,
) -> None:
    # The system trust store does not know the throwaway CA.
    untrusting = Settings(KAFKA_BOOTSTRAP=tls_kafka.bootstrap, kafka_security_protocol="SSL")
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(
            ensure_topics(tls_kafka.bootstrap, PARTITIONS, kafka=kafka_client_kwargs(untrusting)),
            30,
        )
    # Nor does a plaintext client get anywhere on the TLS port.
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(ensure_topics(tls_kafka.bootstrap, PARTITIONS), 30)


async def test_a_publisher_and_the_log_probe_use_tls(pki: Pki, tls_kafka: TlsKafka) -> None:
    """The tools' producer and the reset guard's consumer speak TLS with the same arguments."""
    from streams.core.log_reset import Applied
    from streams.kafka.log_probe import probe_logs

    kafka = kafka_client_kwargs(tls_settings(pki, tls_kafka.bootstrap))
    customer = f"probe{secrets.token_hex(4)}"
    async with Publisher(tls_kafka.bootstrap, kafka=kafka) as pub:
        written = await publish(pub, [event("browse.search", {"query": "x"}, customer=customer)])
    [(tp, offset)] = written.items()
    topic, partition = tp.rsplit(":", 1)
    probes: dict[Any, Any] = await probe_logs(
        tls_kafka.bootstrap,
        {(topic, int(partition)): Applied(offset, None)},
        kafka=kafka,
    )
    assert probes[(topic, int(partition))].high_watermark == offset + 1


async def test_redis_mutual_tls_is_configured_by_url_parameters(
    pki: Pki, tls_redis: TlsRedis
) -> None:
    """redis-py's ``from_url`` takes the client certificate and key from the query string."""
    admin = Redis.from_url(tls_redis.url(), socket_timeout=5)
    await admin.config_set("tls-auth-clients", "yes")
    try:
        without = Redis.from_url(tls_redis.url(), socket_timeout=5)
        with pytest.raises(RedisConnectionError):
            await without.ping()
        await without.aclose()
        with_cert = Redis.from_url(
            tls_redis.url()
            + f"&ssl_certfile={pki.client_cert}&ssl_keyfile={pki.client_key}"
            + f"&ssl_password={pki.client_key_password}&ssl_cert_reqs=required",
            socket_timeout=5,
        )
        assert await with_cert.ping()
        await with_cert.aclose()
    finally:
        # Connections made before the change keep working: reset through the same one.
        await admin.config_set("tls-auth-clients", "no")
        await admin.aclose()
