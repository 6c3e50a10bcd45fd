"""The deployment files are valid, consistent with each other, and alert when they should.

Checked offline with the tools that are there: YAML and JSON parse; Prometheus'
own ``promtool`` checks the rules and the config and runs alert scenarios; the
Kubernetes manifests are validated against the API schemas bundled with
``kubernetes-validate`` (Prometheus Operator resources, which it has no schema
for, are checked structurally); ``docker compose config`` runs only where the
compose plugin exists. Whether every queried metric is really exported is
checked against a live worker in ``test_metrics_e2e.py``.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from schemas.topics import DEAD_LETTERS, SESSION_CHANGELOG, SESSION_FORWARDS, SOURCE_TOPICS
from streams.kafka.topics import topic_configs
from tests.support.deploy_files import (
    ALERTS,
    COMPOSE,
    DEPLOY,
    PROMETHEUS_CONFIG,
    ROOT,
    compose_config,
    dashboard,
    documents,
    gateway_metrics,
    kubernetes_resources,
    resource,
    rule_groups,
    yaml_files,
)

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool missing: `make system-deps` installs Debian's prometheus package",
)
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
OPERATOR_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}
W = 'job="continuity-worker",instance="w1"'
G = 'job="continuity-gateway",instance="g1"'


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_every_manifest_parses() -> None:
    files = yaml_files()
    assert len(files) >= 8
    for path in files:
        assert documents(path), f"{path} holds YAML documents"
    assert dashboard()["panels"]


@needs_promtool
def test_alert_rules_pass_promtool() -> None:
    result = _run(["promtool", "check", "rules", str(ALERTS)], ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_compose_prometheus_config_passes_promtool() -> None:
    result = _run(["promtool", "check", "config", str(PROMETHEUS_CONFIG)], ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_for_duration_severity_summary_and_runbook() -> None:
    rules = [r for g in rule_groups() for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {
        "ContinuityNoWorkerUp",
        "ContinuityWorkerDown",
        "ContinuityConsumerLagGrowing",
        "ContinuityFoldingStalled",
        "ContinuityFreshnessP99High",
        "ContinuityStreamFreshnessP99High",
        "ContinuityDeadLetterSpike",
        "ContinuityRedisDown",
        "ContinuityRedisErrors",
        "ContinuityRedisRolledBack",
        "ContinuityNotificationsStuck",
    }
    for r in rules:
        assert r.get("for"), r["alert"]
        assert r["labels"]["severity"] in ("critical", "warning"), r["alert"]
        assert {"summary", "description", "runbook"} <= r["annotations"].keys(), r["alert"]


# Alert scenarios for `promtool test rules`: (series, values) inputs, then
# (time, alert, expected alerts' labels). Annotations are stripped from the
# rules under test: these scenarios test when alerts fire, not their wording.
SCENARIOS: list[dict[str, Any]] = [
    {
        "input": [(f"up{{{W}}}", "0x10"), ('up{job="continuity-worker",instance="w2"}', "1x10")],
        "expect": [
            ("1m", "ContinuityWorkerDown", []),
            ("6m", "ContinuityWorkerDown", [{"job": "continuity-worker", "instance": "w1"}]),
            ("6m", "ContinuityNoWorkerUp", []),
        ],
    },
    {
        "input": [(f"up{{{W}}}", "0x10")],
        "expect": [("1m", "ContinuityNoWorkerUp", []), ("3m", "ContinuityNoWorkerUp", [{}])],
    },
    {
        "input": [(f"continuity_redis_up{{{W}}}", "1 1 0 0 0 0")],
        "expect": [
            ("2m", "ContinuityRedisDown", []),
            ("4m", "ContinuityRedisDown", [{"job": "continuity-worker", "instance": "w1"}]),
        ],
    },
    {
        "input": [
            (f'continuity_consumer_lag_records{{{W},topic="cart-events",partition="0"}}', "100x20"),
            (f'continuity_events_processed_total{{{W},outcome="applied"}}', "50x20"),
        ],
        "expect": [("15m", "ContinuityFoldingStalled", [{}])],
    },
    {
        "input": [
            (f'continuity_consumer_lag_records{{{W},topic="cart-events",partition="0"}}', "100x20"),
            (f'continuity_events_processed_total{{{W},outcome="applied"}}', "0+60x20"),
        ],
        "expect": [("15m", "ContinuityFoldingStalled", [])],
    },
    {
        "input": [
            (
                f'continuity_consumer_lag_records{{{W},topic="cart-events",partition="0"}}',
                "0+200x30",
            )
        ],
        "expect": [
            ("5m", "ContinuityConsumerLagGrowing", []),
            ("25m", "ContinuityConsumerLagGrowing", [{"topic": "cart-events"}]),
        ],
    },
    {
        "input": [
            (f'continuity_dead_letters_total{{{W},topic="cart-events",reason="x"}}', "0+60x30"),
            (f'continuity_events_processed_total{{{W},outcome="applied"}}', "0+600x30"),
        ],
        "expect": [("25m", "ContinuityDeadLetterSpike", [{}])],
    },
    {
        "input": [
            (f'continuity_dead_letters_total{{{W},topic="cart-events",reason="x"}}', "0+6x30"),
            (f'continuity_events_processed_total{{{W},outcome="applied"}}', "0+600x30"),
        ],
        "expect": [("25m", "ContinuityDeadLetterSpike", [])],
    },
    {
        "input": [
            (f'continuity_kafka_age_at_commit_seconds_bucket{{{W},le="1"}}', "0+10x30"),
            (f'continuity_kafka_age_at_commit_seconds_bucket{{{W},le="5"}}', "0+10x30"),
            (f'continuity_kafka_age_at_commit_seconds_bucket{{{W},le="10"}}', "0+100x30"),
            (f'continuity_kafka_age_at_commit_seconds_bucket{{{W},le="+Inf"}}', "0+100x30"),
        ],
        "expect": [("25m", "ContinuityFreshnessP99High", [{}])],
    },
    {
        "input": [
            (f'continuity_kafka_age_at_commit_seconds_bucket{{{W},le="1"}}', "0+100x30"),
            (f'continuity_kafka_age_at_commit_seconds_bucket{{{W},le="+Inf"}}', "0+100x30"),
        ],
        "expect": [("25m", "ContinuityFreshnessP99High", [])],
    },
    {
        "input": [
            (f'continuity_freshness_seconds_bucket{{{G},le="0.5"}}', "0+10x30"),
            (f'continuity_freshness_seconds_bucket{{{G},le="1"}}', "0+10x30"),
            (f'continuity_freshness_seconds_bucket{{{G},le="2.5"}}', "0+100x30"),
            (f'continuity_freshness_seconds_bucket{{{G},le="+Inf"}}', "0+100x30"),
        ],
        "expect": [("25m", "ContinuityStreamFreshnessP99High", [{}])],
    },
    {
        "input": [
            (f'continuity_freshness_seconds_bucket{{{G},le="0.03"}}', "0+100x30"),
            (f'continuity_freshness_seconds_bucket{{{G},le="+Inf"}}', "0+100x30"),
        ],
        "expect": [("25m", "ContinuityStreamFreshnessP99High", [])],
    },
    {
        "input": [(f'continuity_redis_rollbacks_total{{{W},topic="cart-events"}}', "0x10 1x20")],
        "expect": [
            ("5m", "ContinuityRedisRolledBack", []),
            ("13m", "ContinuityRedisRolledBack", [{"topic": "cart-events"}]),
            ("25m", "ContinuityRedisRolledBack", []),
        ],
    },
    {
        "input": [(f'continuity_redis_errors_total{{{W},operation="commit"}}', "0+5x30")],
        "expect": [
            ("25m", "ContinuityRedisErrors", [{"instance": "w1", "operation": "commit"}]),
        ],
    },
    {
        "input": [
            (f"continuity_notifications_pending{{{W}}}", "40x30"),
            (f'continuity_notifications_sent_total{{{W},type="cart.abandoned"}}', "7x30"),
        ],
        "expect": [("25m", "ContinuityNotificationsStuck", [{}])],
    },
    {
        "input": [
            (f"continuity_notifications_pending{{{W}}}", "40x30"),
            (f'continuity_notifications_sent_total{{{W},type="cart.abandoned"}}', "0+5x30"),
        ],
        "expect": [("25m", "ContinuityNotificationsStuck", [])],
    },
]


@needs_promtool
def test_alerts_fire_in_their_scenarios_and_not_otherwise(tmp_path: Path) -> None:
    groups = copy.deepcopy(rule_groups())
    severity = {}
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations")
            severity[rule["alert"]] = rule["labels"]["severity"]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": groups}))
    tests = []
    for scenario in SCENARIOS:
        tests.append(
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in scenario["input"]],
                "alert_rule_test": [
                    {
                        "eval_time": at,
                        "alertname": name,
                        "exp_alerts": [
                            {"exp_labels": {**labels, "severity": severity[name]}}
                            for labels in alerts
                        ],
                    }
                    for at, name, alerts in scenario["expect"]
                ],
            }
        )
    unit = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "scenarios.yml").write_text(yaml.safe_dump(unit))
    result = _run(["promtool", "test", "rules", "scenarios.yml"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_prometheus_rule_embeds_the_rules_file_unchanged() -> None:
    rule = resource("PrometheusRule", "continuity")
    assert rule["spec"]["groups"] == rule_groups()


def test_kubernetes_manifests_match_the_api_schemas() -> None:
    checked = 0
    for path, doc in kubernetes_resources():
        if doc["kind"] in OPERATOR_KINDS:
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{path.name} {doc['kind']}/{doc['metadata']['name']}: {exc.message}")
        checked += 1
    assert checked >= 9


def test_operator_monitors_select_the_pods_and_ports_that_exist() -> None:
    # No bundled schema for these kinds: check what would silently scrape nothing.
    worker = resource("Deployment", "continuity-worker")["spec"]["template"]
    pod_monitor = resource("PodMonitor", "continuity-worker")["spec"]
    assert pod_monitor["selector"]["matchLabels"].items() <= worker["metadata"]["labels"].items()
    ports = {p["name"] for c in worker["spec"]["containers"] for p in c["ports"]}
    assert {e["port"] for e in pod_monitor["podMetricsEndpoints"]} <= ports

    gateway = resource("Deployment", "continuity-gateway")["spec"]["template"]
    monitor = resource("PodMonitor", "continuity-gateway")["spec"]
    assert monitor["selector"]["matchLabels"].items() <= gateway["metadata"]["labels"].items()
    ports = {p["name"] for c in gateway["spec"]["containers"] for p in c["ports"]}
    assert {e["port"] for e in monitor["podMetricsEndpoints"]} == {"metrics"} <= ports
    jobs = {
        r["replacement"]
        for e in (*pod_monitor["podMetricsEndpoints"], *monitor["podMetricsEndpoints"])
        for r in e["relabelings"]
        if r["targetLabel"] == "job"
    }
    assert jobs == {"continuity-worker", "continuity-gateway"}, "the names the rules use"


def test_the_gateway_deployment_has_probes_resources_and_production_settings() -> None:
    gateway = resource("Deployment", "continuity-gateway")["spec"]["template"]
    service = resource("Service", "continuity-gateway")["spec"]
    labels = gateway["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    (container,) = gateway["spec"]["containers"]
    assert container["args"] == ["gateway"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": 8080,
        "metrics": 9465,
    }
    # The Service fronts the API only: /metrics, with the business KPIs, is not behind it.
    assert [p["targetPort"] for p in service["ports"]] == ["http"]
    assert gateway["metadata"]["annotations"]["prometheus.io/port"] == "9465"
    config = resource("ConfigMap", "continuity-gateway")["data"]
    assert config["CONTINUITY_GATEWAY_METRICS_PORT"] == "9465"
    assert config["CONTINUITY_PRODUCER_IDEMPOTENCE"] == "true"
    assert config["CONTINUITY_GATEWAY_HOST"] == "0.0.0.0"
    secret = {e["name"]: e.get("valueFrom", {}) for e in container["env"]}
    assert "secretKeyRef" in secret["CONTINUITY_AUTH_SECRET"]
    for name in ("continuity-worker", "continuity-gateway"):
        for c in resource("Deployment", name)["spec"]["template"]["spec"]["containers"]:
            assert c["resources"]["requests"], name
            assert c["resources"]["limits"], name


def test_topics_script_defaults_to_replication_3_and_two_in_sync_replicas() -> None:
    script = (DEPLOY / "topics.sh").read_text()
    assert 'REPLICATION="${REPLICATION:-3}"' in script
    assert "default_isr=2" in script
    assert "min.insync.replicas" in script
    assert _run(["bash", "-n", str(DEPLOY / "topics.sh")], ROOT).returncode == 0


def _script_defaults(script: str) -> dict[str, str]:
    """``NAME="${NAME:-default}"`` lines of a shell script: each variable's default."""
    return dict(re.findall(r'^([A-Z_]+)="\$\{\1:-([^}]*)\}"$', script, flags=re.MULTILINE))


def _create_block(script: str, topic_variable: str) -> str:
    """The ``kafka-topics.sh --create`` command of one topic, continuation lines joined."""
    joined = script.replace("\\\n", " ")
    (line,) = [
        line
        for line in joined.splitlines()
        if "--create" in line and f'--topic "${topic_variable}"' in line
    ]
    return line


def test_topics_script_keeps_sources_a_week_and_compacts_the_changelog() -> None:
    script = (DEPLOY / "topics.sh").read_text()
    defaults = _script_defaults(script)
    week = str(7 * 86400 * 1000)
    assert defaults["RETENTION_MS"] == week, "finite by default: Kafka's week"
    assert defaults["DLQ_RETENTION_MS"] == "$RETENTION_MS"
    assert int(defaults["SEGMENT_MS"]) <= 86400 * 1000, "bounds how long past retention"
    assert "keep them forever" not in script.lower()

    changelog = _create_block(script, "CHANGELOG_TOPIC")
    assert '--partitions "$first"' in changelog, "the source topics' real count"
    assert "cleanup.policy=compact" in changelog
    assert "retention.ms=" not in changelog.replace("delete.retention.ms=", "")
    # Tombstones outlive the version floors, which live one session TTL (90 days).
    assert int(defaults["CHANGELOG_DELETE_RETENTION_MS"]) >= 90 * 86400 * 1000
    assert 'delete.retention.ms="$CHANGELOG_DELETE_RETENTION_MS"' in changelog
    assert 0 < int(defaults["CHANGELOG_MIN_COMPACTION_LAG_MS"]) <= 3600 * 1000
    assert int(defaults["CHANGELOG_MAX_COMPACTION_LAG_MS"]) <= int(week)
    for setting in ("min.compaction.lag.ms", "max.compaction.lag.ms", "min.insync.replicas"):
        assert f"--config {setting}=" in changelog, setting

    forwards = _create_block(script, "FORWARDS_TOPIC")
    assert '--partitions "$first"' in forwards, "the source topics' real count"
    assert "cleanup.policy=delete" in forwards
    assert 'retention.ms="$FORWARDS_RETENTION_MS"' in forwards
    assert defaults["FORWARDS_RETENTION_MS"] == week

    erasures = _create_block(script, "ERASURES_TOPIC")
    assert "cleanup.policy=compact" in erasures
    assert "retention.ms" not in erasures, "erasures are kept for good"


def test_topics_script_and_the_processes_create_topics_alike() -> None:
    # What a worker creates when a topic is missing (development, tests) is what
    # production gets from the script.
    defaults = _script_defaults((DEPLOY / "topics.sh").read_text())
    source = topic_configs(SOURCE_TOPICS[0])
    assert source["retention.ms"] == defaults["RETENTION_MS"]
    assert source["segment.ms"] == defaults["SEGMENT_MS"]
    assert topic_configs(DEAD_LETTERS)["retention.ms"] == defaults["RETENTION_MS"]
    changelog = topic_configs(SESSION_CHANGELOG)
    assert changelog["cleanup.policy"] == "compact"
    for setting, variable in (
        ("delete.retention.ms", "CHANGELOG_DELETE_RETENTION_MS"),
        ("min.compaction.lag.ms", "CHANGELOG_MIN_COMPACTION_LAG_MS"),
        ("max.compaction.lag.ms", "CHANGELOG_MAX_COMPACTION_LAG_MS"),
    ):
        assert changelog[setting] == defaults[variable], setting
    forwards = topic_configs(SESSION_FORWARDS)
    assert forwards["cleanup.policy"] == "delete"
    assert forwards["retention.ms"] == defaults["FORWARDS_RETENTION_MS"]


def test_compose_runs_kraft_kafka_aof_redis_workers_gateways_and_monitoring() -> None:
    services = documents(COMPOSE)[0]["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    assert "--appendonly" in services["redis"]["command"]
    topics = services["topics"]
    assert topics["entrypoint"] == ["bash", "/deploy/topics.sh"]
    assert topics["environment"]["RETENTION_MS"].endswith(":-604800000}"), "a week, not forever"
    gateway = services["gateway"]
    assert gateway["command"] == ["gateway"]
    assert gateway["environment"]["CONTINUITY_AUTH_SECRET"].startswith("${CONTINUITY_AUTH_SECRET")
    assert gateway["environment"]["CONTINUITY_PRODUCER_IDEMPOTENCE"] == "true"
    for name in ("worker", "gateway"):
        assert "replicas" in services[name]["deploy"], name
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}"
    scrape = documents(PROMETHEUS_CONFIG)[0]["scrape_configs"]
    assert {j["job_name"] for j in scrape} == {"continuity-worker", "continuity-gateway"}
    # Prometheus scrapes the gateways' metrics listener, which compose does not publish.
    environment = gateway["environment"]
    (job,) = [j for j in scrape if j["job_name"] == "continuity-gateway"]
    assert job["dns_sd_configs"][0]["port"] == int(environment["CONTINUITY_GATEWAY_METRICS_PORT"])
    assert str(environment["CONTINUITY_GATEWAY_METRICS_PORT"]) not in " ".join(
        str(p) for p in gateway["ports"]
    )


def test_compose_file_passes_docker_compose_config() -> None:
    result = compose_config(COMPOSE)
    if result is None:
        pytest.skip("the docker compose plugin is not installed; YAML and structure checked above")
    assert result.returncode == 0, result.stderr


def test_the_dashboard_has_its_rows_and_every_panel_queries_something() -> None:
    panels = dashboard()["panels"]
    rows = [p["title"] for p in panels if p["type"] == "row"]
    assert rows == [
        "Throughput by channel",
        "Freshness",
        "Consumer lag",
        "Dead letters",
        "Redis health",
        "SSE subscribers (gateway)",
        "Handoffs",
        "Omnichannel KPIs",
    ]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for p in panels:
        if p["type"] == "row":
            continue
        assert p["targets"], p["title"]
        assert all(t["expr"].strip() for t in p["targets"]), p["title"]
        assert p["datasource"]["uid"] == "${datasource}", p["title"]


def test_the_gateway_series_list_names_only_gateway_series() -> None:
    names = gateway_metrics()
    assert names == {
        "continuity_sse_subscribers",
        "continuity_sse_messages_total",
        "continuity_freshness_seconds_bucket",
        "continuity_sse_drops_total",
        "continuity_ingest_events_total",
        "continuity_handoffs_total",
    }


# The gateway is the one front door (authenticated HTTP); everything else a compose
# file publishes is for the operator on the host.
PUBLIC_SERVICES = {"gateway"}


def _published(entry: object) -> tuple[str | None, str]:
    """(host address or None for every interface, the rest) of one ``ports`` entry."""
    if isinstance(entry, dict):
        return entry.get("host_ip"), str(entry.get("target"))
    text = str(entry)
    # "C", "H:C", "IP:H:C", "IP::C"; H may be "${VAR:-6379}" (IPv6 would be bracketed).
    first = text.split(":", 1)[0]
    return (first if re.fullmatch(r"[0-9.]+", first) and "." in first else None), text


def test_compose_publishes_kafka_and_every_internal_port_on_loopback_only() -> None:
    for path in (COMPOSE, *sorted(DEPLOY.glob("compose.*.yml"))):
        services = documents(path)[0].get("services", {})
        for name, service in services.items():
            if name in PUBLIC_SERVICES:
                continue
            for entry in service.get("ports", []):
                host, text = _published(entry)
                assert host == "127.0.0.1", f"{path.name}: {name} publishes {text} beyond loopback"
    kafka = documents(COMPOSE)[0]["services"]["kafka"]
    assert kafka["ports"] == ["127.0.0.1:9092:9092"], "the plaintext listener stays on the host"
    advertised = kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert "PLAINTEXT_HOST://localhost:9092" in advertised
