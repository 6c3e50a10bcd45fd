"""Continuity stream processing: the pure core and the thin I/O edges around it.

``core`` decides (no I/O); ``store`` (Redis) and ``kafka`` are the adapters;
``worker``, ``gateway`` and ``ops`` put them together; ``cli`` and ``dev`` are
how people run them. The README's table says what is in each.
"""
