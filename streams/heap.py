"""Python's cyclic garbage collector, set for a long-running stream process.

CPython collects cyclic garbage in three generations. A full collection walks
every tracked object of the process, with the GIL held: in a worker folding
1,000 events/s that was about 47 ms every 1.2 s (the 100k objects of the
imports, Faust, aiokafka and the app among them, walked again each time), a
pause every record in flight waits out, and about 6% of the worker's time
with the young collections (``docs/benchmarks.md``). Two settings answer it:

* **Freeze what startup made** (``gc.freeze``): objects alive once the
  process is up (modules, clients, the app) live as long as it does; frozen,
  no collection walks them again. A full collection then walks only what
  came after: about 2 ms. Frozen objects are still freed when their last
  reference goes; only a cycle among them would outlive its use, and startup
  objects are not let go of while the process runs.
* **Collect the young generation less often** (``gc.set_threshold``): a batch
  allocates and drops thousands of objects, nearly all freed by reference
  counting; a collection every 700 allocations (Python's default) mostly
  walks objects that are about to be freed anyway.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass


@dataclass(frozen=True)
class Settled:
    """What ``settle`` did: objects frozen and the collector's thresholds after it."""

    frozen: int
    thresholds: tuple[int, int, int]

    def describe(self) -> str:
        """One log line."""
        young, middle, old = self.thresholds
        return (
            f"garbage collector: {self.frozen} startup objects frozen out of collection; "
            f"thresholds {young}, {middle}, {old}"
        )


def settle(freeze: bool, young_threshold: int) -> Settled:
    """Freeze the objects alive now (``freeze``) and set the young generation's threshold
    (``young_threshold`` allocations; 0 keeps the current one). Call it once, when the
    process has started."""
    if freeze:
        # Garbage left by startup is collected first rather than frozen with the rest.
        gc.collect()
        gc.freeze()
    if young_threshold > 0:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)
    young, middle, old = gc.get_threshold()
    return Settled(gc.get_freeze_count(), (young, middle, old))
