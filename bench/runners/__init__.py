"""Consumers the benchmark compares against the real worker, each run as its own process.

``python -m bench.runners.ceiling``, ``...faust_empty`` and ``...naive`` read the
backlog, apply it their way, and write one report (``bench.runners.tracker``)
when every expected event is applied; then they idle until stopped, so the
harness can read their peak memory from ``/proc`` first.
"""
