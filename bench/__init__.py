"""The benchmark: the worker against a ceiling, the framework's floor and a naive agent.

``make bench`` (``python -m bench``) drains one seeded backlog with each
consumer, several times, on fresh embedded brokers and Redis servers, checks
every run's final state, and prints medians. Modules, one concept each:
``workload`` (what is produced), ``expect`` (what must come out), ``stack``
(broker, Redis, backlog), ``variants`` and ``runners`` (the consumers),
``run`` (one measured run), ``check``, ``procstat``, ``memory``,
``freshness`` (the gateway hook), ``report`` and ``cli``.
"""
