"""``continuity ARGS`` run as a process, as an operator runs it (tests of the CLI)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path


async def run_cli(
    *args: str,
    env: Mapping[str, str],
    timeout: float = 120,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    merge_stderr: bool = False,
) -> tuple[int, str, str]:
    """Run ``continuity ARGS`` with exactly ``env``; (exit status, stdout, stderr).

    ``merge_stderr``: stderr goes into stdout, in the order written (stderr is "").
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streams.cli",
        *args,
        env=dict(env),
        cwd=cwd,
        # Always a pipe, closed after ``stdin``: a command reading it never waits on ours.
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), (err or b"").decode()
