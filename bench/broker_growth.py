"""``python -m bench.broker_growth``: the embedded broker's CPU at a constant rate, over time.

One fresh broker (``streams.dev.loopback.start_broker``, as every bench stack
starts it), one topic of 8 partitions, a producer appending 400-byte records
at ``--rate`` with ``--linger-ms`` (0: every record its own batch, as the
freshness measurement's producer sends them), and one consumer long-polling
with the worker's fetch wait (``CONTINUITY_FETCH_MAX_WAIT_MS``, 10 ms). Every
``--every`` seconds it prints the broker's CPU (% of one core, ``/proc``) over
that interval and the records produced and consumed so far.

On Apache Kafka a fetch finds its offset through an index, so the broker's
CPU at a constant rate stays flat. The embedded broker's grows with the
record batches it holds: compare ``--linger-ms 0`` with ``--linger-ms 50``
(docs/benchmarks.md, "The embedded broker's cost grows with what it holds").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.procstat import cpu_seconds
from streams.dev import loopback

TOPIC = "growth"
PARTITIONS = 8
RECORD = b"x" * 400
FETCH_MAX_WAIT_MS = 10


async def run(rate: int, linger_ms: int, seconds: float, every: float) -> list[float]:
    """Produce and consume for ``seconds``; return the broker's CPU % per interval."""
    logs = Path(tempfile.mkdtemp(prefix="continuity-broker-growth-"))
    broker = loopback.start_broker(logs)
    print(f"broker pid {broker.pid}, log {broker.log_path}; {rate}/s, linger {linger_ms} ms")
    shares: list[float] = []
    try:
        bootstrap = f"127.0.0.1:{broker.port}"
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=linger_ms, acks="all", enable_idempotence=False
        )
        consumer = AIOKafkaConsumer(
            TOPIC,
            bootstrap_servers=bootstrap,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            auto_offset_reset="earliest",
        )
        await producer.start()
        await consumer.start()
        consumed = 0

        async def consume() -> None:
            nonlocal consumed
            while True:
                fetched = await consumer.getmany(timeout_ms=100)
                consumed += sum(len(batch) for batch in fetched.values())

        reader = asyncio.create_task(consume())
        try:
            started = time.monotonic()
            mark, cpu = started, cpu_seconds(broker.pid)
            produced = 0
            # In ticks of 10 ms, so a tick's records leave together only if linger holds them.
            per_tick = max(1, rate // 100)
            while time.monotonic() - started < seconds:
                for _ in range(per_tick):
                    await producer.send(TOPIC, RECORD, key=str(produced).encode())
                    produced += 1
                await asyncio.sleep(0.01)
                now = time.monotonic()
                if now - mark >= every:
                    used = cpu_seconds(broker.pid)
                    shares.append(100 * (used - cpu) / (now - mark))
                    print(
                        f"  {now - started:5.1f} s: broker {shares[-1]:3.0f}% of a core; "
                        f"produced {produced:,}, consumed {consumed:,}",
                        flush=True,
                    )
                    mark, cpu = now, used
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await consumer.stop()
            await producer.stop()
    finally:
        broker.stop()
    return shares


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.broker_growth", description=__doc__)
    p.add_argument("--rate", type=int, default=1000, help="records/s")
    p.add_argument("--linger-ms", type=int, default=0)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--every", type=float, default=5.0, help="seconds per printed interval")
    args = p.parse_args(argv)
    asyncio.run(run(args.rate, args.linger_ms, args.seconds, args.every))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
