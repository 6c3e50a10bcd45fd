"""The failure report's log tails (``tests/support/child_logs.py``): which logs, how much."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.support.child_logs import MAX_LINE, tail, written_since


def test_tail_keeps_the_last_lines_cut_to_length(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)) + "x" * (MAX_LINE + 50) + "\n")
    got = tail(log, lines=3).splitlines()
    assert got[:2] == ["line 98", "line 99"]
    assert got[2] == "x" * MAX_LINE


def test_only_logs_written_since_the_start_newest_first(tmp_path: Path) -> None:
    old, older_new, newest = (tmp_path / n for n in ("old.log", "a.log", "b.log"))
    (tmp_path / "sub").mkdir()
    deep = tmp_path / "sub" / "c.log"
    for p in (old, older_new, newest, deep, tmp_path / "notes.txt"):
        p.write_text("x\n")
    now = time.time()
    os.utime(old, (now - 100, now - 100))
    os.utime(older_new, (now - 5, now - 5))
    os.utime(deep, (now - 3, now - 3))
    os.utime(newest, (now, now))
    assert written_since(tmp_path, now - 10) == [newest, deep, older_new]
