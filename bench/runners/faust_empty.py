"""faust-empty: a Faust agent on the three topics that only counts. The framework's own floor.

Batches of up to 2000 (``stream.take``), raw bytes, nothing decoded, nothing
written; acknowledged by ``take`` itself. Invariant checked by the harness:
events counted == events sent.

    python -m bench.runners.faust_empty --expect N --report PATH
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from bench.runners.faust_app import bench_app, run
from bench.runners.tracker import Tracker, arguments
from streams.settings import Settings

BATCH = 2000
WITHIN = 0.05


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    settings = Settings()
    tracker = Tracker(args.expect, args.report)
    app, source = bench_app(settings)

    async def count(stream: Any) -> None:
        batches: AsyncIterator[list[bytes]] = stream.take(BATCH, within=WITHIN)
        async for values in batches:
            tracker.applied(len(values))

    app.agent(source, name="count_events", concurrency=1)(count)
    run(app, settings)


if __name__ == "__main__":
    main()
