"""Kafka's partitioner, as the readers and the key layout use it: Java vectors, aiokafka's hash."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from streams.core.placement import murmur2, partition_of

# From Apache Kafka's UtilsTest (the Java client's murmur2, as signed 32-bit ints).
JAVA_MURMUR2 = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}


@pytest.mark.parametrize(("key", "java"), sorted(JAVA_MURMUR2.items()))
def test_the_hash_is_the_java_clients(key: str, java: int) -> None:
    assert murmur2(key.encode()) & 0xFFFFFFFF == java & 0xFFFFFFFF


@pytest.mark.parametrize(("key", "java"), sorted(JAVA_MURMUR2.items()))
def test_the_partition_is_the_java_clients(key: str, java: int) -> None:
    for partitions in (1, 3, 12, 100):
        # The Java client's toPositive(murmur2(key)) % numPartitions.
        assert partition_of(key, partitions) == (java & 0x7FFFFFFF) % partitions
        assert partition_of(key.encode(), partitions) == partition_of(key, partitions)


@given(st.binary(max_size=64))
def test_the_hash_is_aiokafkas(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data) & 0xFFFFFFFF
