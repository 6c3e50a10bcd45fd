"""The rebuild's progress line (the reader's, ``streams/kafka/progress.py``). Proves: it names
only the partitions still short of their end (or whose end is not known yet) and counts the
finished ones."""

from __future__ import annotations

from streams.kafka.progress import ReadProgress


def test_progress_line_lists_unfinished_partitions() -> None:
    p = ReadProgress(records=1200)
    p.positions = {
        "cart-events:0": (500, 500),
        "cart-events:1": (300, 800),
        "browse-events:0": (0, None),
    }
    line = p.line()
    assert line.startswith("1200 records read, ")
    assert "1/3 partitions done" in line
    assert "cart-events:1 300/800" in line
    assert "browse-events:0 0/?" in line
    assert "cart-events:0" not in line
