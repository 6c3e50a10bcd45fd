"""The ``continuity`` command as operators use it, run as real processes.

Proves: ``produce`` validates and publishes JSON lines (reporting bad lines
by number); ``session show`` prints a session as JSON and fails clearly for
an unknown id; ``schema --check`` passes; ``dev`` brings up the whole stack,
shows carts moving between channels and dead letters, and Ctrl-C leaves no
process behind: exit 0, one line saying so, no traceback, whether the signal
reaches ``dev`` alone or its whole process group (a terminal's Ctrl-C, which
kills the broker and Redis at the same moment), and even when ``dev`` was
started with SIGINT ignored, as a background job of a non-interactive shell is.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from streams.store.state import RedisState
from tests.support.cli import run_cli as cli
from tests.support.events import added, event
from tests.support.stack import PARTITIONS, Stack, wait_version


async def run_cli(
    *args: str, env: dict[str, str], stdin: bytes | None = None, cwd: Path | None = None
) -> tuple[int, str, str]:
    """``continuity ARGS`` with the test's environment plus ``env``."""
    return await cli(*args, env={**os.environ, **env}, stdin=stdin, cwd=cwd, timeout=60)


def cli_env(stack: Stack) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP": stack.bootstrap,
        "REDIS_URL": stack.redis_url,
        "CONTINUITY_APP_ID": "continuity-tests",
        "CONTINUITY_STATE_DIR": "/nonexistent",
        # The keys are placed by partition: the CLI counts the test topics' partitions.
        "CONTINUITY_TOPIC_PARTITIONS": str(PARTITIONS),
    }


async def test_produce_then_session_show(
    stack: Stack, shared_worker: RedisState, ids: Callable[[str], str], tmp_path: Path
) -> None:
    c = ids("cli")
    lines = [
        orjson.dumps(event("cart.item_added", added("A-1", 2, "3.50"), customer=c)),
        orjson.dumps(
            event("browse.product_viewed", {"sku": "B-2"}, customer=c, channel="mobile_app")
        ),
        b'{"type": "cart.item_added", "payload": {}}',
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    code, out, err = await run_cli("produce", str(path), env=cli_env(stack))
    assert code == 1, "a bad line makes the exit status non-zero"
    assert "sent 2 events" in out
    assert "line 3: invalid_event" in err

    await wait_version(shared_worker, c, 2)
    code, out, err = await run_cli("session", "show", c, env=cli_env(stack))
    assert code == 0, err
    shown = json.loads(out)
    assert shown["cart"][0]["sku"] == "A-1"
    assert shown["subtotal"] == "7.00"
    assert shown["recently_viewed"][0]["sku"] == "B-2"
    assert "recent_event_ids" not in shown, "internal bookkeeping stays internal"

    code, _, err = await run_cli("session", "show", ids("nobody"), env=cli_env(stack))
    assert code == 1
    assert "no session for" in err


async def test_produce_reads_stdin(
    stack: Stack, shared_worker: RedisState, ids: Callable[[str], str]
) -> None:
    c = ids("stdin")
    line = orjson.dumps(event("browse.search", {"query": "socks"}, customer=c)) + b"\n"
    code, out, err = await run_cli("produce", env=cli_env(stack), stdin=line)
    assert code == 0, err
    assert "browse-events: 1" in out
    session = await wait_version(shared_worker, c, 1)
    assert session.recent_searches == ["socks"]


async def test_schema_check_passes() -> None:
    code, _, err = await run_cli("schema", "--check", env={})
    assert code == 0, err


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("target", ["process", "group"])
async def test_dev_runs_the_stack_shows_carts_moving_and_stops_everything(
    tmp_path: Path, target: str
) -> None:
    state_dir = tmp_path / "state"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streams.cli",
        "dev",
        "--rate",
        "40",
        "--state-dir",
        str(state_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        # Its own process group, so that the group signal reaches dev and its
        # children only, not this test.
        start_new_session=True,
        preexec_fn=_ignore_sigint,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:

        async def read_until_carts_and_dead_letters() -> None:
            while not (
                any(" cart: " in ln and " > " in ln for ln in seen)
                and any("DEAD LETTER" in ln for ln in seen)
            ):
                line = await proc.stdout.readline()  # type: ignore[union-attr]
                if not line:
                    raise AssertionError("dev exited early:\n" + "".join(seen))
                seen.append(line.decode())

        await asyncio.wait_for(read_until_carts_and_dead_letters(), timeout=120)
        info = json.loads((state_dir / "dev.json").read_text())
        assert info["kafka_bootstrap"].startswith("127.0.0.1:")
        assert info["redis_url"].startswith("redis://127.0.0.1:")
    finally:
        if target == "group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        try:
            rest, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    tail = rest.decode()
    assert proc.returncode == 0, "".join(seen) + tail
    assert "Traceback" not in tail, tail
    assert tail.rstrip().splitlines()[-1] == "continuity dev: every process stopped", tail
    for name, pid in info["pids"].items():
        assert not _alive(pid), f"{name} (pid {pid}) outlived continuity dev"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie not yet reaped by its (dead) parent counts as gone.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()
