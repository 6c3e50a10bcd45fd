"""The gateway: HTTP and Server-Sent Events in front of the session state.

Frontends and POS terminals read sessions, follow them live and publish
events through it. It holds no state of its own (sessions, aliases and
applied offsets are in Redis, events go to Kafka), so any number of gateway
processes can run behind a load balancer.

Pure rules, thin edges, as in the worker:

* pure (no I/O): ``auth`` (tokens), ``policy`` (who may read or publish
  what), ``params`` (query and path values), ``body`` and ``ingest``
  (request bodies, per-event verdicts), ``sse`` (what a stream sends when),
  ``slots``, ``errors``;
* edges: ``sessions`` (Redis reads and read-your-writes waits), ``fanout``
  (one shared pub/sub connection), ``producer`` (Kafka), ``guard`` and
  ``middleware`` (authentication, error bodies, request metrics),
  ``access_log``, ``metrics``, ``keys`` (what the app and requests carry);
* ``routes/``, one module per area, each with a ``register(app)``;
  ``app`` assembles them.
"""
