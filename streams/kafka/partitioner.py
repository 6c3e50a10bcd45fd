"""Which partition a key lands on: Kafka's default partitioner, for readers that must know.

Every producer here (the gateway, ``continuity produce``, the workers' relays)
leaves the partition to the client's default partitioner, which is murmur2 of
the key bytes, positive, modulo the partition count, as in the Java client. A
reader that needs a key's partition without a record in hand (the gateway's
freshness headers, the tests' routing) asks this one function, so the rule is
written once.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_of(key: str | bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partitions``."""
    raw = key.encode() if isinstance(key, str) else key
    hashed: int = murmur2(raw)
    return (hashed & 0x7FFFFFFF) % partitions
