"""The bounded reader's bookkeeping (``streams/kafka/progress.py``), no broker.

Proves: a partition is done at its end or when let go early; the line counts done
partitions, lists the others as ``tp position/end`` (``?`` before the end is known)
and shows the kept count only when a caller filters; the stall clock gives up only
after ``timeout`` seconds without any change of state, and any change restarts it.
"""

from __future__ import annotations

from streams.kafka.progress import ReadProgress, Stall


def test_a_partition_is_done_at_its_end_or_when_let_go() -> None:
    p = ReadProgress(positions={"t:0": (5, 5), "t:1": (3, 9), "t:2": (0, None)})
    assert p.done("t:0")
    assert not p.done("t:1")
    assert not p.done("t:2")
    p.finished.add("t:1")
    assert p.done("t:1")
    assert not p.done("t:9"), "a partition never seen is not done"


def test_the_line_counts_done_partitions_and_lists_the_others() -> None:
    p = ReadProgress(records=42, positions={"t:0": (5, 5), "t:1": (3, 9), "t:2": (0, None)})
    line = p.line()
    assert line.startswith("42 records read, ")
    assert "/s, 1/3 partitions done; t:1 3/9, t:2 0/?" in line
    assert "kept" not in line
    p.kept = 7
    p.finished.add("t:1")
    line = p.line()
    assert line.startswith("42 records read (7 kept), ")
    assert line.endswith("2/3 partitions done; t:2 0/?")


def test_the_line_of_a_finished_read_lists_nothing() -> None:
    p = ReadProgress(records=0, positions={"t:0": (0, 0)})
    assert p.line().endswith("1/1 partitions done")


def test_the_stall_clock_runs_only_while_nothing_changes() -> None:
    stall = Stall(10.0, now=100.0)
    assert stall.observe(("a", 1), now=100.0) == 10.0
    assert stall.observe(("a", 1), now=104.0) == 6.0
    # Progress (a new state) restarts the clock, however late it comes.
    assert stall.observe(("a", 2), now=109.0) == 10.0
    assert stall.observe(("a", 2), now=118.0) == 1.0
    assert stall.observe(("a", 2), now=119.0) <= 0
    assert stall.observe(("a", 3), now=125.0) == 10.0
