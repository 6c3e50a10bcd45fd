"""The Redis Cluster deployment examples agree with the code that will read them.

The compose override (``deploy/compose.redis-cluster.yml``) and the Kubernetes
example (``deploy/kubernetes/redis-cluster.example.yaml``) are checked offline:
every node runs in cluster mode and announces the name the others reach it by,
the cluster is formed from every node, the processes' URL parses as the cluster
URL the client takes and names only nodes that exist, and the settings the
processes would start with validate (a cluster runs in forward mode).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from streams.settings import Settings
from streams.store.client import is_cluster_url, parse_cluster_url
from tests.support.deploy_files import COMPOSE, DEPLOY, compose_config, documents, resource

OVERRIDE = DEPLOY / "compose.redis-cluster.yml"


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def _interpolated(value: str) -> str:
    """``${VAR:-default}`` as compose reads it with VAR unset; a required
    ``${VAR:?message}`` as a value of the size the processes ask for."""
    default = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
    if default:
        return default.group(1)
    return "x" * 32 if value.startswith("${") else value


def _merged_services() -> dict[str, dict[str, Any]]:
    """The base compose file's services with the override's laid over, as compose
    merges them (mappings key by key, lists and scalars replaced)."""
    base = documents(COMPOSE)[0]["services"]
    override = documents(OVERRIDE)[0]["services"]
    merged = {name: dict(svc) for name, svc in base.items()}
    for name, svc in override.items():
        target = merged.setdefault(name, {})
        for field, value in svc.items():
            if isinstance(value, dict) and isinstance(target.get(field), dict):
                target[field] = {**target[field], **value}
            else:
                target[field] = value
    return merged


def test_the_compose_override_runs_three_announced_cluster_primaries() -> None:
    services = _merged_services()
    nodes = [n for n, s in services.items() if "--cluster-enabled" in s.get("command", [])]
    assert sorted(nodes) == ["redis", "redis-2", "redis-3"]
    for name in nodes:
        command = services[name]["command"]
        assert _flag(command, "--cluster-announce-hostname") == name, "reachable by its name"
        assert _flag(command, "--maxmemory-policy") == "noeviction"
        assert _flag(command, "--appendonly") == "yes"
    create = services["redis-cluster"]["command"][0]
    assert "--cluster create" in create
    assert set(re.findall(r"for host in ([\w\- ]+);", create)[0].split()) == set(nodes)
    assert set(services["redis-cluster"]["depends_on"]) == set(nodes)


def test_the_compose_processes_reach_the_cluster_in_forward_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = _merged_services()
    for name in ("worker", "gateway"):
        service = services[name]
        env = service["environment"]
        target = parse_cluster_url(env["REDIS_URL"])
        assert {host for host, _ in target.nodes} <= services.keys(), name
        assert env["CONTINUITY_CROSS_PARTITION"] == "forward"
        assert service["depends_on"]["redis-cluster"] == {
            "condition": "service_completed_successfully"
        }
        # The base file's environment with the override's, read as the process reads it.
        with monkeypatch.context() as env_of:
            for key, value in env.items():
                env_of.setenv(key, _interpolated(str(value)))
            settings = Settings()
        assert settings.cross_partition == "forward"
        assert is_cluster_url(settings.redis_dsn())


def test_the_kubernetes_example_forms_one_cluster_from_every_pod() -> None:
    service = resource("Service", "redis-cluster")
    nodes = resource("StatefulSet", "redis-cluster")["spec"]
    job = resource("Job", "redis-cluster-create")["spec"]["template"]["spec"]
    assert service["spec"]["clusterIP"] == "None", "one stable DNS name per pod"
    assert nodes["serviceName"] == "redis-cluster"
    assert {p["port"] for p in service["spec"]["ports"]} == {6379, 16379}
    (container,) = nodes["template"]["spec"]["containers"]
    args = container["args"]
    assert _flag(args, "--cluster-enabled") == "yes"
    assert _flag(args, "--cluster-announce-hostname") == "$(POD_NAME).redis-cluster"
    assert _flag(args, "--maxmemory-policy") == "noeviction"
    script = job["containers"][0]["args"][0]
    pods = re.findall(r"for i in ([\d ]+);", script)[0].split()
    assert [int(i) for i in pods] == list(range(nodes["replicas"])), "every pod joins"
    assert "--cluster-replicas 1" in script
    # The URL the Secret is told to hold parses as a cluster URL of these pods.
    text = (DEPLOY / "kubernetes" / "redis-cluster.example.yaml").read_text(encoding="utf-8")
    (url,) = re.findall(r"`(redis\+cluster://[^`]+)`", text)
    for host, port in parse_cluster_url(url).nodes:
        assert re.fullmatch(r"redis-cluster-\d\.redis-cluster", host)
        assert port == 6379


def test_the_cluster_override_passes_docker_compose_config() -> None:
    result = compose_config(COMPOSE, OVERRIDE)
    if result is None:
        pytest.skip("the docker compose plugin is not installed; structure checked above")
    assert result.returncode == 0, result.stderr
