"""The bounded reader's error, no broker (the reads themselves: ``test_reader_e2e.py``).

Proves: ``LogUnreadable`` names the topic, the partition if one and the reason, reads
as ``topic:partition: reason``, and is a ``KafkaError`` (so every handler of broker
errors covers it).
"""

from __future__ import annotations

from aiokafka.errors import KafkaError

from streams.kafka.reader import LogUnreadable


def test_the_one_error_names_where_and_why() -> None:
    exc = LogUnreadable("cart-events", 3, "no progress for 30 s")
    assert isinstance(exc, KafkaError), "every handler of broker errors covers it"
    assert (exc.topic, exc.partition, exc.reason) == ("cart-events", 3, "no progress for 30 s")
    assert str(exc) == "cart-events:3: no progress for 30 s"
    assert "cart-events:3: no progress" in repr(exc)
    assert str(LogUnreadable("a, b", None, "no such topic on x:1")) == "a, b: no such topic on x:1"
