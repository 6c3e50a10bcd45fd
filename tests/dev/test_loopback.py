"""Starting servers on loopback: a port taken between the probe and the bind costs a retry,
never a test. Real redis-server processes; the port thief is a real listening socket."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.dev import loopback

pytestmark = pytest.mark.e2e


@pytest.fixture
def thief() -> Iterator[int]:
    """A port some other process already listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_a_server_that_loses_its_port_starts_again_on_another(
    tmp_path: Path, thief: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    offered = iter([thief])
    real = loopback.free_port
    monkeypatch.setattr(loopback, "free_port", lambda: next(offered, None) or real())
    child = loopback.start_redis(tmp_path / "data", tmp_path)
    try:
        assert child.port != thief
        assert loopback.listens(child.pid, child.port)
        assert not loopback.listens(child.pid, thief), "the thief's socket is not ours"
    finally:
        child.stop()


def test_a_port_asked_for_by_number_is_not_swapped_when_taken(tmp_path: Path, thief: int) -> None:
    with pytest.raises(loopback.PortLost):
        loopback.start_redis(tmp_path / "data", tmp_path, port=thief)


def test_free_ports_come_from_below_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    if low < 11_000:
        pytest.skip(f"the ephemeral range starts at {low}: no room below it")
    assert all(10_000 <= loopback.free_port() < low for _ in range(50))
