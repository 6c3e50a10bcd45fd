"""One-type traffic in ``make bench``: the worker on carts against a plain GET+SET agent,
and what a cart event costs the worker against a view.

Two more seeded workloads (``bench.workload``, ``mix="cart"`` and ``"browse"``,
40,000 events of 4,000 members by default), each checked like the main one
(the oracle's projection, ``bench.expect``), each drained as a backlog on a
fresh stack per run (``bench.run``):

* cart: ``backbone`` (every event arms an abandonment timer, writes a journey
  entry and KPIs in its commit) and ``getset`` (one GET and one SET of JSON per
  event); the ratio of their events/s;
* browse: ``backbone``; its CPU per event against the cart run's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import report
from bench.expect import expect
from bench.run import RunResult, run_once
from bench.variants import all_variants
from bench.workload import WorkloadSpec, encode, generate, self_check

Say = Callable[[str], None]
PLAN: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cart", ("backbone", "getset")),
    ("browse", ("backbone",)),
)


@dataclass
class MixResults:
    """Every run of every mix, and their medians by mix and variant."""

    runs: list[RunResult] = field(default_factory=list)
    medians: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def figure(self, mix: str, variant: str, name: str) -> float | None:
        value = self.medians.get(mix, {}).get(variant, {}).get(name)
        return None if value is None else float(value)

    def lines(self) -> list[str]:
        """The comparison as printed: the ratio, and the worker's CPU per event by type."""
        worker = self.figure("cart", "backbone", "events_per_s")
        plain = self.figure("cart", "getset", "events_per_s")
        cart_cpu = self.figure("cart", "backbone", "cpu_s_per_m")
        view_cpu = self.figure("browse", "backbone", "cpu_s_per_m")
        out = []
        if worker and plain:
            out.append(
                f"cart mix: worker {worker:,.0f} events/s, plain GET+SET agent {plain:,.0f} "
                f"events/s: worker / GET+SET {worker / plain:.2f}"
            )
        if cart_cpu and view_cpu:
            out.append(
                f"worker CPU per event: cart.item_added {cart_cpu:.0f} us, "
                f"browse.product_viewed {view_cpu:.0f} us: cart / browse {cart_cpu / view_cpu:.2f}"
            )
        return out

    def as_json(self) -> dict[str, Any]:
        return {"medians": self.medians, "lines": self.lines()}


async def run_mixes(
    events: int, customers: int, seed: int, runs: int, orders: int, logs: Path, say: Say
) -> MixResults:
    """Generate, check and drain each mix ``runs`` times with its variants."""
    out = MixResults()
    for mix, names in PLAN:
        spec = WorkloadSpec(events=events, customers=customers, seed=seed, mix=mix)
        workload = generate(spec)
        self_check(workload)
        expected = expect(workload, orders=orders)
        records = encode(workload.events)
        variants = [v for v in all_variants(len(records)) if v.name in names]
        say(f"{mix} mix: {events:,} events of {customers:,} members; {', '.join(names)}")
        mine: list[RunResult] = []
        for round_no in range(1, runs + 1):
            for variant in variants:
                mine.append(
                    await run_once(variant, workload, records, expected, round_no, logs / mix, say)
                )
        out.runs += mine
        out.medians[mix] = report.medians(mine)
    return out
