"""``deploy/k8s``: rendered with kustomize, every object validated, and cross-checked against the code.

Built-in kinds are validated by ``kubernetes-validate`` (strict, Kubernetes 1.33 schemas); KEDA and
prometheus-operator kinds by the CRD-derived JSON schemas bundled in ``tests/deploy/schemas``.
Rendering needs ``kubectl`` (its built-in kustomize); the test fails without it.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from modelyard.queue.redis_streams import GROUP, RedisStreamsQueue
from modelyard.settings import load_settings

ROOT = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
SCHEMAS = Path(__file__).parent / "schemas"
K8S_VERSION = "1.33.0"
TARGETS = ["base", "overlays/example", "alternatives/prometheus-hpa"]
CRDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_v1alpha1_ScaledObject.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh_v1alpha1_TriggerAuthentication.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_ServiceMonitor.json",
}


def render(target: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with its built-in kustomize) is needed to render deploy/k8s"
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / target)], capture_output=True, text=True, check=True
    )
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def validate(doc: dict[str, Any]) -> None:
    crd = CRDS.get((doc["apiVersion"], doc["kind"]))
    if crd is not None:
        schema = json.loads((SCHEMAS / crd).read_text())
        jsonschema.Draft202012Validator(schema).validate(doc)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


@pytest.mark.parametrize("target", TARGETS)
def test_every_rendered_object_is_valid(target: str) -> None:
    docs = render(target)
    assert len(docs) >= 10
    for doc in docs:
        validate(doc)


def test_validators_reject_broken_objects() -> None:
    docs = render("overlays/example")
    scaled = copy.deepcopy(find(docs, "ScaledObject", "modelyard-worker"))
    scaled["spec"]["triggers"][0]["metadata"]["lagCount"] = "eight"
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)
    scaled["spec"]["triggers"][0]["metadata"] = {"stream": "s", "lagCount": "8", "adress": "x:6379"}
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)
    worker = copy.deepcopy(find(docs, "Deployment", "modelyard-worker"))
    worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "long"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(worker)
    worker = copy.deepcopy(find(docs, "Deployment", "modelyard-worker"))
    worker["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/ready"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(worker)


def test_manifests_agree_with_the_code(tmp_path: Path) -> None:
    docs = render("overlays/example")
    config = find(docs, "ConfigMap", "modelyard-config")["data"]["modelyard.yaml"]
    (tmp_path / "modelyard.yaml").write_text(config)
    settings = load_settings(tmp_path / "modelyard.yaml", env={})  # the shipped config is valid
    assert settings.queue.backend == "redis"

    # KEDA watches the very stream and consumer group the queue writes and reads.
    trigger = find(docs, "ScaledObject", "modelyard-worker")["spec"]["triggers"][0]
    queue = RedisStreamsQueue("redis://unused:1", key_prefix=settings.queue.key_prefix)
    assert trigger["type"] == "redis-streams"
    assert trigger["metadata"]["stream"] == queue.work_key(settings.local_models[0].name)
    assert trigger["metadata"]["consumerGroup"] == GROUP
    assert find(docs, "ScaledObject", "modelyard-worker")["spec"]["maxReplicaCount"] == 4  # overlay patch

    secret_keys = set(find(docs, "Secret", "modelyard-secrets")["data"])
    for name in ("modelyard-gateway", "modelyard-worker"):
        dep = find(docs, "Deployment", name)
        pod = dep["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        # the drain finishes before Kubernetes kills the pod
        assert pod["spec"]["terminationGracePeriodSeconds"] > settings.drain_timeout_s
        assert "preStop" in container["lifecycle"]
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == "modelyard-secrets" and ref["key"] in secret_keys
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert container["readinessProbe"]["httpGet"]["port"] in ports
        labels = pod["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
        pdb = find(docs, "PodDisruptionBudget", name)
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        svc = find(docs, "Service", name)
        assert svc["spec"]["selector"].items() <= labels.items()
    worker = find(docs, "Deployment", "modelyard-worker")["spec"]["template"]["spec"]["containers"][0]
    assert (
        worker["args"][0] == "worker"
        and "replicas" not in find(docs, "Deployment", "modelyard-worker")["spec"]
    )
    port = int(worker["args"][worker["args"].index("--http-port") + 1])
    assert {p["containerPort"] for p in worker["ports"]} == {port}
    assert (
        any(e["name"] == "REDIS_ADDRESS" for e in worker["env"])
        and trigger["metadata"]["addressFromEnv"] == "REDIS_ADDRESS"
    )

    # the ServiceMonitor scrapes ports the Services define
    monitor = find(docs, "ServiceMonitor", "modelyard")
    service_ports = {p["name"] for d in docs if d["kind"] == "Service" for p in d["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= service_ports


def test_prometheus_alternative_replaces_keda() -> None:
    docs = render("alternatives/prometheus-hpa")
    assert not [d for d in docs if d["apiVersion"].startswith("keda.sh/")]
    hpa = find(docs, "HorizontalPodAutoscaler", "modelyard-worker")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "modelyard-worker"
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "vllm_num_requests_waiting"
    rules = yaml.safe_load(
        find(docs, "ConfigMap", "modelyard-prometheus-adapter-rules")["data"]["config.yaml"]
    )
    assert rules["rules"][0]["name"]["as"] == "vllm_num_requests_waiting"
    assert "vllm:num_requests_waiting" in rules["rules"][0]["seriesQuery"]


def test_task_cronjob_runs_a_task_the_code_knows() -> None:
    from modelyard.jobs.catalog import known_tasks
    from modelyard.jobs.cli import LEASE_HELD_EXIT
    from modelyard.jobs.service import build_jobs

    docs = render("overlays/example")
    cron = find(docs, "CronJob", "modelyard-jobs-prune")
    job = cron["spec"]["jobTemplate"]["spec"]
    (container,) = job["template"]["spec"]["containers"]
    assert container["args"][:2] == ["tasks", "run"]
    settings = load_settings(None, env={})
    service = build_jobs(settings, [])
    try:
        names = {t.name for t in [*service.tasks(), *known_tasks(settings)]}
    finally:
        service.store.close()
    assert container["args"][2] in names
    (rule,) = job["podFailurePolicy"]["rules"]
    assert rule["onExitCodes"]["values"] == [LEASE_HELD_EXIT]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
