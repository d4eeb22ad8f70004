"""deploy/k8s: each overlay renders with kustomize, validates against Kubernetes' schemas offline, and
holds together (selectors, references, probes, security, GPU, KEDA on the right Redis list)."""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from matteflow.settings import Settings

from .conftest import DEPLOY

K8S = DEPLOY / "k8s"
SCHEMAS = Path(__file__).parent / "schemas"
OVERLAYS = ["dev", "prod"]
# Oldest Kubernetes we support and the newest schema kubernetes-validate bundles.
K8S_VERSIONS = ["1.29.0", kubernetes_validate.utils.latest_version()]
CUSTOM_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "prometheus-operator.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): "prometheus-operator.yaml",
}
WORKLOADS = {"Deployment", "StatefulSet"}


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with built-in kustomize) is not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def objects(overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in render(overlay) if o["kind"] == kind}


def one(overlay: str, kind: str, name: str) -> dict[str, Any]:
    found = objects(overlay, kind)
    assert name in found, f"{overlay}: no {kind} {name} (have {sorted(found)})"
    return found[name]


def settings_of(overlay: str) -> dict[str, str]:
    (config,) = [c for n, c in objects(overlay, "ConfigMap").items() if n.startswith("matteflow-settings")]
    return config["data"]


def pod_specs(overlay: str) -> dict[str, dict[str, Any]]:
    return {n: w["spec"]["template"]["spec"] for kind in WORKLOADS for n, w in objects(overlay, kind).items()}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@cache
def custom_validator(filename: str) -> jsonschema.Validator:
    schema = yaml.safe_load((SCHEMAS / filename).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates_against_kubernetes_schemas(overlay: str) -> None:
    docs = render(overlay)
    assert {"Deployment", "StatefulSet", "Service", "ConfigMap", "PersistentVolumeClaim"} <= {d["kind"] for d in docs}
    for doc in docs:
        custom = CUSTOM_KINDS.get((doc["apiVersion"], doc["kind"]))
        if custom:
            errors = sorted(custom_validator(custom).iter_errors(doc), key=str)
            assert not errors, f"{doc['kind']}/{doc['metadata']['name']}: {errors[0].message}"
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{overlay} {doc['kind']}/{doc['metadata']['name']} (k8s {version}): {exc.message}")


def test_custom_schemas_reject_what_the_cluster_would() -> None:
    """The hand-written KEDA schema fails on the mistakes it is there for."""
    scaled = one("prod", "ScaledObject", "matteflow-worker")
    validator = custom_validator(CUSTOM_KINDS[("keda.sh/v1alpha1", "ScaledObject")])
    assert validator.is_valid(scaled)
    bad_number = yaml.safe_load(yaml.safe_dump(scaled))
    bad_number["spec"]["triggers"][0]["metadata"]["listLength"] = 20  # must be a string
    assert not validator.is_valid(bad_number)
    typo = yaml.safe_load(yaml.safe_dump(scaled))
    typo["spec"]["triggers"][0]["metadata"]["listname"] = typo["spec"]["triggers"][0]["metadata"].pop("listName")
    assert not validator.is_valid(typo)
    misplaced = yaml.safe_load(yaml.safe_dump(scaled))
    misplaced["spec"]["minReplicas"] = 0  # HPA's name for it, not KEDA's
    assert not validator.is_valid(misplaced)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_probed_limited_and_unprivileged(overlay: str) -> None:
    for name, spec in pod_specs(overlay).items():
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True, name
        assert pod_security["runAsUser"] > 0, name
        assert pod_security["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            where = f"{overlay} {name}/{container['name']}"
            assert "livenessProbe" in container and "readinessProbe" in container, where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), where
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{where}: {image}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_web_probes_and_ports_match_the_app(overlay: str) -> None:
    web = one(overlay, "Deployment", "matteflow-web")["spec"]["template"]["spec"]["containers"][0]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {p["name"]: p["containerPort"] for p in web["ports"]}
    assert ports["http"] == int(settings_of(overlay)["MATTEFLOW_WEB_PORT"]) == Settings().web_port
    worker = one(overlay, "Deployment", "matteflow-worker")["spec"]["template"]["spec"]["containers"][0]
    metrics_port = {p["name"]: p["containerPort"] for p in worker["ports"]}["metrics"]
    assert metrics_port == int(settings_of(overlay)["MATTEFLOW_WORKER_METRICS_PORT"])
    assert worker["livenessProbe"]["httpGet"]["port"] == "metrics"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_and_references_resolve(overlay: str) -> None:
    docs = render(overlay)
    pods = [
        (o["kind"], o["metadata"]["name"], o["spec"]["template"]["metadata"]["labels"])
        for o in docs
        if o["kind"] in WORKLOADS
    ]
    for kind, name, labels in pods:
        workload = one(overlay, kind, name)
        assert matches(workload["spec"]["selector"]["matchLabels"], labels), name
    for obj in docs:
        if obj["kind"] in {"Service", "PodDisruptionBudget", "ServiceMonitor", "PodMonitor"}:
            selector = obj["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            assert [n for _, n, labels in pods if matches(selector, labels)], f"{obj['kind']} {obj['metadata']['name']}"
    claims = set(objects(overlay, "PersistentVolumeClaim"))
    configs = set(objects(overlay, "ConfigMap"))
    for name, spec in pod_specs(overlay).items():
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, name
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in configs, name  # the generated, hashed name
    # Everything namespaced lands in the overlay's namespace, which the overlay creates.
    (namespace,) = objects(overlay, "Namespace")
    assert {o["metadata"].get("namespace") for o in docs if o["kind"] != "Namespace"} == {namespace}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_and_web_reach_redis_through_its_service(overlay: str) -> None:
    url = settings_of(overlay)["MATTEFLOW_REDIS_URL"]
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    service = one(overlay, "Service", host)
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}
    redis = one(overlay, "StatefulSet", host)
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"  # AOF: queued tasks survive a restart
    assert redis["spec"]["volumeClaimTemplates"], "Redis needs a persistent volume"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_shutdown_waits_for_the_running_task(overlay: str) -> None:
    worker = one(overlay, "Deployment", "matteflow-worker")["spec"]["template"]["spec"]
    time_limit = int(settings_of(overlay).get("MATTEFLOW_TASK_TIME_LIMIT_S", Settings().task_time_limit_s))
    assert worker["terminationGracePeriodSeconds"] >= time_limit + 10
    # exec form, no shell wrapper: SIGTERM reaches Celery, which does a warm shutdown
    assert worker["containers"][0]["args"][:2] == ["matteflow", "worker"]
    mounts = {m["mountPath"] for m in worker["containers"][0]["volumeMounts"]}
    env = {e["name"]: e["value"] for e in worker["containers"][0]["env"]}
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/") and "/tmp" in mounts  # writable on a RO root


def test_dev_runs_cpu_workers() -> None:
    worker = one("dev", "Deployment", "matteflow-worker")["spec"]["template"]["spec"]
    resources = worker["containers"][0]["resources"]
    assert "nvidia.com/gpu" not in resources["limits"] and "nvidia.com/gpu" not in resources["requests"]
    assert settings_of("dev")["MATTEFLOW_DEVICE"] == "cpu"
    assert "ScaledObject" not in {o["kind"] for o in render("dev")}


def test_prod_runs_gpu_workers() -> None:
    worker = one("prod", "Deployment", "matteflow-worker")
    container = worker["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert settings_of("prod")["MATTEFLOW_DEVICE"].startswith("cuda")
    assert container["image"].endswith("-cuda")
    tolerations = worker["spec"]["template"]["spec"]["tolerations"]
    assert any(t["key"] == "nvidia.com/gpu" for t in tolerations)
    # autoscalers own the replica counts
    assert "replicas" not in worker["spec"]
    assert "replicas" not in one("prod", "Deployment", "matteflow-web")["spec"]


def test_prod_keda_scales_workers_on_the_celery_queue_list() -> None:
    scaled = one("prod", "ScaledObject", "matteflow-worker")
    spec = scaled["spec"]
    target = spec["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert one("prod", "Deployment", target["name"])
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "redis"
    meta = trigger["metadata"]
    assert meta["listName"] == settings_of("prod")["MATTEFLOW_WORKER_QUEUE"]
    # KEDA's operator runs in its own namespace: the address must be the Service's full DNS name.
    namespace = scaled["metadata"]["namespace"]
    host, port = meta["address"].split(":")
    assert host.split(".")[:3] == ["matteflow-redis", namespace, "svc"]
    assert int(port) in {p["port"] for p in one("prod", "Service", "matteflow-redis")["spec"]["ports"]}
    assert meta.get("databaseIndex", "0") == settings_of("prod")["MATTEFLOW_REDIS_URL"].rsplit("/", 1)[1]
    # the nested HPA behaviour is a real autoscaling/v2 behaviour
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "probe"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 2, "behavior": behavior},
    }
    kubernetes_validate.validate(hpa, K8S_VERSIONS[-1], strict=True)


def test_prod_web_hpa_targets_the_web_deployment() -> None:
    (hpa,) = objects("prod", "HorizontalPodAutoscaler").values()
    target = hpa["spec"]["scaleTargetRef"]
    assert target["kind"] == "Deployment" and one("prod", "Deployment", target["name"])
    assert target["name"] == "matteflow-web"
    assert hpa["spec"]["minReplicas"] >= 2  # one web pod can be drained (PDB minAvailable 1)
    web = one("prod", "Deployment", "matteflow-web")["spec"]["template"]["spec"]["containers"][0]
    assert "cpu" in web["resources"]["requests"]  # utilisation needs a request to divide by


def test_prod_monitoring_scrapes_web_and_workers_under_the_alerting_job_names() -> None:
    alerts = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    monitors = {**objects("prod", "ServiceMonitor"), **objects("prod", "PodMonitor")}
    jobs = set()
    for monitor in monitors.values():
        endpoints = monitor["spec"].get("endpoints") or monitor["spec"]["podMetricsEndpoints"]
        for endpoint in endpoints:
            assert endpoint["path"] == "/metrics"
            jobs |= {r["replacement"] for r in endpoint["relabelings"] if r["targetLabel"] == "job"}
    assert jobs == {"matteflow-web", "matteflow-worker"}
    for job in jobs:
        assert f'job="{job}"' in alerts
    web_port = one("prod", "ServiceMonitor", "matteflow-web")["spec"]["endpoints"][0]["port"]
    assert web_port in {p["name"] for p in one("prod", "Service", "matteflow-web")["spec"]["ports"]}
    worker = one("prod", "Deployment", "matteflow-worker")["spec"]["template"]
    assert (
        worker["metadata"]["annotations"]["prometheus.io/port"] == settings_of("prod")["MATTEFLOW_WORKER_METRICS_PORT"]
    )


def test_prod_scale_to_zero_only_if_web_readiness_allows_it(redis_url: str, tmp_path: Path) -> None:
    """Web readiness and KEDA's minimum must agree: if /readyz fails while no worker runs, a pool scaled to
    zero would take the web pods out of their Service, no task would ever be queued and KEDA would never
    scale up. Asked of the real web app with a real Redis and no worker."""
    from matteflow.web import create_app

    client = create_app(Settings(redis_url=redis_url, storage_dir=tmp_path)).test_client()
    ready_without_workers = client.get("/readyz").status_code == 200
    web = one("prod", "Deployment", "matteflow-web")["spec"]["template"]["spec"]["containers"][0]
    if web["readinessProbe"]["httpGet"]["path"] == "/readyz" and not ready_without_workers:
        assert one("prod", "ScaledObject", "matteflow-worker")["spec"]["minReplicaCount"] >= 1
