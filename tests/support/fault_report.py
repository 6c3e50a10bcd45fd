"""The fault suite's scale switch and its report table (hook imported by conftest).

``FAULT_SCALE=long`` (``make test-faults``) runs the long versions; the
default, ``bounded``, keeps ``make test`` short. Each fault test records one
row (fault, injections, how many landed mid-work, events sent, sessions
checked, lost, doubled, wrong); rows
are appended to ``.continuity/fault-report.json`` (git-ignored) and printed as
a table at the end of the session.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from schemas.session import Session
from tests.support.model import Cart, count, disagreements

REPORT = Path(".continuity") / "fault-report.json"
T = TypeVar("T")
_PROPERTY = "fault_row"
_rows: list[FaultRow] = []  # the table: rows of every test's report
_pending: list[FaultRow] = []  # rows the running test recorded, not yet on its report


def long_scale() -> bool:
    """True when the long versions of the fault tests were asked for."""
    return os.environ.get("FAULT_SCALE", "bounded") == "long"


def pick(bounded: T, long: T) -> T:
    """``bounded`` normally, ``long`` under ``FAULT_SCALE=long``."""
    return long if long_scale() else bounded


@dataclass
class FaultRow:
    fault: str
    injections: int
    events: int
    sessions: int
    lost: int
    doubled: int
    wrong: int = 0
    # Injections that landed mid-work: a kill that left records applied in Redis but
    # not yet committed in Kafka (they come again and must be skipped); None: n/a.
    landed: int | None = None


def compare(
    expected: dict[str, Session],
    stored: dict[str, Session | None],
    carts: dict[str, Cart] | None = None,
) -> tuple[int, int, int]:
    """(lost, doubled, wrong) sessions: version short of, beyond, or equal to the oracle's
    but with different bytes, or (with ``carts``) a cart the independent model disagrees
    with. A missing session counts as lost."""
    off_model = set(disagreements(carts, stored)) if carts is not None else set()

    def same(key: str, want: Session, have: Session) -> bool:
        return have.model_dump_json() == want.model_dump_json() and key not in off_model

    return count(expected, stored, same)


def record(row: FaultRow) -> None:
    """Add a row to this session's table and to the JSON report (once the test's
    report reaches the process printing the table: with ``pytest -n`` that is the
    controller, not the worker running the test)."""
    _pending.append(row)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Carry the rows a test recorded on its report (xdist sends reports across)."""
    outcome = yield
    if _pending:
        report = outcome.get_result()
        report.user_properties.extend((_PROPERTY, asdict(r)) for r in _pending)
        _pending.clear()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect the rows of every test's report, where the table is printed."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # a worker: its controller collects them
    rows = [FaultRow(**value) for name, value in report.user_properties if name == _PROPERTY]
    if rows:
        _rows.extend(rows)
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(json.dumps([asdict(r) for r in _rows], indent=2) + "\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _rows:
        return
    tr = terminalreporter
    tr.section(f"fault suite ({'long' if long_scale() else 'bounded'}; {REPORT})")
    head = ("fault", "injections", "landed", "events", "sessions", "lost", "doubled", "wrong")
    width = max(len(r.fault) for r in _rows) + 2
    tr.write_line(f"{head[0]:<{width}}" + "".join(f"{h:>11}" for h in head[1:]))
    for r in _rows:
        landed = "-" if r.landed is None else r.landed
        nums = (r.injections, landed, r.events, r.sessions, r.lost, r.doubled, r.wrong)
        tr.write_line(f"{r.fault:<{width}}" + "".join(f"{n:>11}" for n in nums))
