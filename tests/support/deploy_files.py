"""The deployment files, loaded for tests: manifests, rules, dashboard, expected gateway series."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.kafka.yml"
KUBERNETES = DEPLOY / "kubernetes"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "continuity.json"
GATEWAY_METRICS = DEPLOY / "gateway-metrics.txt"
# Series Prometheus adds to every target itself.
SCRAPE_SERIES = frozenset({"up"})


def yaml_files() -> list[Path]:
    """Every YAML file of the deployment, the compose file included."""
    return sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml"), COMPOSE])


def documents(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of ``path`` (empty ones left out)."""
    with path.open(encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def kubernetes_resources() -> list[tuple[Path, dict[str, Any]]]:
    """Every resource of every manifest under ``deploy/kubernetes``."""
    return [(p, d) for p in sorted(KUBERNETES.glob("*.yaml")) for d in documents(p)]


def resource(kind: str, name: str) -> dict[str, Any]:
    """One Kubernetes resource by kind and name."""
    for _, doc in kubernetes_resources():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise KeyError(f"{kind}/{name}")


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard JSON."""
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def dashboard_exprs() -> list[str]:
    """The PromQL of every dashboard panel target."""
    return [
        t["expr"]
        for p in dashboard()["panels"]
        if p.get("type") != "row"
        for t in p.get("targets", [])
    ]


def rule_groups() -> list[dict[str, Any]]:
    """The groups of the Prometheus alert rules file."""
    groups: list[dict[str, Any]] = documents(ALERTS)[0]["groups"]
    return groups


def rule_exprs() -> list[str]:
    """The PromQL of every alert rule."""
    return [r["expr"] for g in rule_groups() for r in g["rules"]]


def gateway_metrics() -> set[str]:
    """Series the gateway exports (the one list of them), by name."""
    names = set()
    for line in GATEWAY_METRICS.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            names.add(line.split()[0])
    return names


def compose_config(*files: Path) -> subprocess.CompletedProcess[str] | None:
    """``docker compose -f ... config --quiet`` over ``files`` (with the secret it asks
    for), or ``None`` where the compose plugin is not installed."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
    if probe.returncode != 0:
        return None
    return subprocess.run(
        [docker, "compose", *(a for f in files for a in ("-f", str(f))), "config", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "CONTINUITY_AUTH_SECRET": "x" * 32},
    )
