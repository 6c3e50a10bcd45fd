"""The worker Deployment probes the worker's own health routes (``streams/worker/health.py``).

Proves: liveness is ``GET /healthz`` and readiness ``GET /readyz`` on the
metrics port, and the ConfigMap sets the Redis retry budget readiness uses.
"""

from __future__ import annotations

from tests.support.deploy_files import resource


def test_worker_probes_are_http_health_routes_on_the_metrics_port() -> None:
    worker = resource("Deployment", "continuity-worker")["spec"]["template"]
    (container,) = worker["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    config = resource("ConfigMap", "continuity-worker")["data"]
    assert float(config["CONTINUITY_REDIS_RETRY_BUDGET"]) > 0
