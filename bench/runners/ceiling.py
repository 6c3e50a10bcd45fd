"""ceiling: plain aiokafka and a Redis pipeline, no framework and no logic. The upper bound.

Assigns itself every partition of the three topics (no consumer group), reads
with ``getmany`` (up to 2000 records), validates each value with the wire
contract's decoder (``streams.decode.decode``, as the worker does) and counts
events per customer key; after each batch one pipeline stores the running
count of every customer the batch touched (``HSET <prefix>:n:{key} n <count>``),
so Redis ends with each customer's final count. Invariant checked by the
harness: the stored counts add up to the events sent, over every customer key.

    python -m bench.runners.ceiling --expect N --report PATH
"""

from __future__ import annotations

import asyncio
from collections import Counter

from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.asyncio import Redis

from bench.runners.tracker import Tracker, arguments
from schemas.topics import SOURCE_TOPICS
from streams.core.decode import decode
from streams.core.fold import Rejected
from streams.kafka.security import kafka_client_kwargs
from streams.settings import Settings

BATCH = 2000


async def drain(settings: Settings, tracker: Tracker) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **kafka_client_kwargs(settings),
    )
    redis = Redis.from_url(settings.redis_dsn())
    await consumer.start()
    try:
        parts = [
            TopicPartition(topic, p)
            for topic in SOURCE_TOPICS
            for p in range(settings.topic_partitions)
        ]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        counts: Counter[str] = Counter()
        prefix = settings.redis_prefix
        while True:
            batch = await consumer.getmany(timeout_ms=100, max_records=BATCH)
            touched: set[str] = set()
            n = 0
            for records in batch.values():
                for record in records:
                    event = decode(record.value)
                    key = "rejected" if isinstance(event, Rejected) else event.routing_key
                    counts[key] += 1
                    touched.add(key)
                    n += 1
            if not n:
                continue
            pipe = redis.pipeline(transaction=False)
            for key in touched:
                pipe.hset(f"{prefix}:n:{{{key}}}", "n", counts[key])
            await pipe.execute()
            tracker.applied(n, round_trips=1)
    finally:
        await consumer.stop()
        await redis.aclose()


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    asyncio.run(drain(Settings(), Tracker(args.expect, args.report)))


if __name__ == "__main__":
    main()
