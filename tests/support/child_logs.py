"""A failed test's report carries the tails of the process logs written during it.

Workers, gateways, brokers and Redis servers run as child processes with their
output in log files under pytest's base temporary directory, which a CI run
does not keep. A failure that happens only on a loaded machine can then be read
from the report alone: each log written to while the test ran adds a section
with its last lines.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TAIL_LINES = 40
MAX_FILES = 8
MAX_LINE = 400
_started = pytest.StashKey[float]()
_base: list[Path] = []


@pytest.fixture(scope="session", autouse=True)
def _child_log_root(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Where the session's children write their logs (the base of every temp path)."""
    _base.append(tmp_path_factory.getbasetemp())


def written_since(root: Path, since: float) -> list[Path]:
    """Log files under ``root`` modified at or after ``since``, newest first (a file
    gone while looking is left out: the report must not fail on it)."""
    found: list[tuple[float, Path]] = []
    for p in root.rglob("*.log"):
        try:
            st = p.stat()
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mtime >= since:
            found.append((st.st_mtime, p))
    return [p for _, p in sorted(found, reverse=True)]


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of ``path``, each cut to ``MAX_LINE`` characters."""
    with path.open("rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - lines * MAX_LINE))
        text = f.read().decode("utf-8", "replace")
    kept = text.splitlines()[-lines:]
    return "\n".join(line[:MAX_LINE] for line in kept)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    item.stash[_started] = time.time()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On a failure, add a section per log written since the test's setup began."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or not _base or _started not in item.stash:
        return
    # A second of slack: some filesystems keep modification times coarsely.
    for path in written_since(_base[0], item.stash[_started] - 1.0)[:MAX_FILES]:
        name = path.relative_to(_base[0])
        report.sections.append((f"log tail: {name}", tail(path)))
