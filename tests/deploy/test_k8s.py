"""deploy/k8s: each overlay renders with kustomize, validates against Kubernetes' schemas offline, and
holds together (selectors, references, probes, security, images, storage, GPU, KEDA on every queue, one
queue exporter, monitoring that kube-prometheus-stack picks up)."""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from matteflow import metrics
from matteflow.settings import Settings
from matteflow.workers.queues import consumed_queues
from matteflow.workers.runner import TIME_LIMITED_POOLS, choose_pool

from .conftest import DEPLOY, REPO
from .sync_monitoring import DASHBOARD, prometheus_rule

K8S = DEPLOY / "k8s"
SCHEMAS = Path(__file__).parent / "schemas"
OVERLAYS = ["dev", "prod"]
# Oldest Kubernetes we support and the newest schema kubernetes-validate bundles.
K8S_VERSIONS = ["1.29.0", kubernetes_validate.utils.latest_version()]
CUSTOM_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "prometheus-operator.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): "prometheus-operator.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheus-operator.yaml",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda-triggerauthentication.yaml",
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
    kinds = [t["type"] for t in scaled["spec"]["triggers"]]
    redis_at, prometheus_at = kinds.index("redis"), kinds.index("prometheus")
    bad_number = yaml.safe_load(yaml.safe_dump(scaled))
    bad_number["spec"]["triggers"][redis_at]["metadata"]["listLength"] = 20  # must be a string
    assert not validator.is_valid(bad_number)
    typo = yaml.safe_load(yaml.safe_dump(scaled))
    meta = typo["spec"]["triggers"][redis_at]["metadata"]
    meta["listname"] = meta.pop("listName")
    assert not validator.is_valid(typo)
    no_threshold = yaml.safe_load(yaml.safe_dump(scaled))
    del no_threshold["spec"]["triggers"][prometheus_at]["metadata"]["threshold"]
    assert not validator.is_valid(no_threshold)
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
    # The worker's probes see its consumer (the heartbeat paths the worker serves, workers/app.py), not
    # just the metrics thread that answers /metrics whatever the consumer does.
    assert worker["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
    assert worker["startupProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    # A pod is scraped on its IP: the ports must not listen on loopback only.
    assert settings_of(overlay)["MATTEFLOW_WORKER_METRICS_HOST"] == "0.0.0.0"
    exporter = one(overlay, "Deployment", "matteflow-exporter")["spec"]["template"]["spec"]["containers"][0]
    assert exporter["args"][:2] == ["matteflow", "exporter"] and "0.0.0.0" in exporter["args"]
    exporter_port = {p["name"]: p["containerPort"] for p in exporter["ports"]}["metrics"]
    assert exporter_port == int(settings_of(overlay)["MATTEFLOW_QUEUE_METRICS_PORT"])


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


def container_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_and_web_reach_redis_through_its_service_with_its_password(overlay: str) -> None:
    redis = one(overlay, "StatefulSet", "matteflow-redis")
    redis_container = redis["spec"]["template"]["spec"]["containers"][0]
    args = redis_container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"  # AOF: queued tasks survive a restart
    assert redis["spec"]["volumeClaimTemplates"], "Redis needs a persistent volume"
    # Redis demands the password of the Secret; its probes' redis-cli reads it from REDISCLI_AUTH.
    password_var = args[args.index("--requirepass") + 1]
    assert password_var.startswith("$(") and password_var.endswith(")")
    redis_env = container_env(redis_container)
    secret = redis_env[password_var[2:-1]]["valueFrom"]["secretKeyRef"]
    assert redis_env["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"] == secret
    for name in ("matteflow-web", "matteflow-worker", "matteflow-exporter"):
        container = one(overlay, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        env = container_env(container)
        names = [e["name"] for e in container["env"]]
        url = env["MATTEFLOW_REDIS_URL"]["value"]  # overrides the ConfigMap's URL without the password
        var = url.split("//:", 1)[1].split("@", 1)[0]
        assert var.startswith("$(") and var.endswith(")"), url
        assert env[var[2:-1]]["valueFrom"]["secretKeyRef"] == secret, name
        assert names.index(var[2:-1]) < names.index("MATTEFLOW_REDIS_URL"), "kubelet expands only earlier vars"
        host, port = url.split("@", 1)[1].split("/")[0].split(":")
        service = one(overlay, "Service", host)
        assert int(port) in {p["port"] for p in service["spec"]["ports"]}
        assert url.rsplit("/", 1)[1] == settings_of(overlay)["MATTEFLOW_REDIS_URL"].rsplit("/", 1)[1]
    secrets = set(objects(overlay, "Secret"))
    if overlay == "dev":
        assert secret["name"] in secrets  # generated (hashed name, references rewritten)
    else:
        # created by the operator outside git, as the docs say
        assert not secrets
        docs = (REPO / "docs" / "operations.md").read_text()
        assert f"create secret generic {secret['name']}" in docs
        (auth,) = objects(overlay, "TriggerAuthentication").values()
        assert {"parameter": "password", "name": secret["name"], "key": secret["key"]} in auth["spec"][
            "secretTargetRef"
        ]
        for trigger in one(overlay, "ScaledObject", "matteflow-worker")["spec"]["triggers"]:
            if trigger["type"] == "redis":
                assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_shutdown_waits_for_the_running_task(overlay: str) -> None:
    worker = one(overlay, "Deployment", "matteflow-worker")["spec"]["template"]["spec"]
    time_limit = int(settings_of(overlay).get("MATTEFLOW_TASK_TIME_LIMIT_S", Settings().task_time_limit_s))
    assert worker["terminationGracePeriodSeconds"] >= time_limit + 10
    # exec form, no shell wrapper: SIGTERM reaches Celery, which does a warm shutdown
    assert worker["containers"][0]["args"][:2] == ["matteflow", "worker"]
    mounts = {m["mountPath"] for m in worker["containers"][0]["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in worker["containers"][0]["env"]}
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/") and "/tmp" in mounts  # writable on a RO root


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_pool_enforces_the_task_time_limit_within_the_grace_period(overlay: str) -> None:
    """The pool the worker will pick with this overlay's settings kills a task at its time limit (the threads
    pool ignores it), so warm shutdowns, scale-in and drains end within terminationGracePeriodSeconds."""
    config = settings_of(overlay)
    settings = Settings.from_env({f"{k}": v for k, v in config.items()})
    device = "cuda" if settings.device.startswith("cuda") else "cpu"
    assert choose_pool(settings, device) in TIME_LIMITED_POOLS
    worker = one(overlay, "Deployment", "matteflow-worker")["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] >= settings.task_time_limit_s + 10
    # no hook in front of the SIGTERM that starts the warm shutdown (it would only eat the grace period)
    assert "lifecycle" not in worker["containers"][0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_run_the_images_they_name(overlay: str) -> None:
    """The base leaves the image names alone, so each overlay's `images:` entries really apply."""
    images = {
        n: [c["image"] for c in spec["containers"]] for n, spec in pod_specs(overlay).items() if n != "matteflow-redis"
    }
    expected = {
        "dev": {"web": "matteflow-web:dev", "worker": "matteflow-worker:dev-cpu"},
        "prod": {
            "web": "ghcr.io/matteflow/matteflow-web:0.1.0",
            "worker": "ghcr.io/matteflow/matteflow-worker:0.1.0-cuda",
        },
    }[overlay]
    assert images == {
        "matteflow-web": [expected["web"]],
        "matteflow-exporter": [expected["web"]],  # no model, no Celery: the slim web image
        "matteflow-worker": [expected["worker"]],
    }
    if overlay == "dev":
        assert not any("cuda" in image or "ghcr.io" in image for found in images.values() for image in found)


def test_jobs_volume_binds_where_it_is_deployed() -> None:
    """prod: ReadWriteMany in a named class (the cluster default is ReadWriteOnce on EKS/GKE/AKS and the claim
    would stay Pending); dev: ReadWriteOnce in the default class of a one-node cluster. The class is a
    documented parameter, and the docs say which storage works."""
    prod = one("prod", "PersistentVolumeClaim", "matteflow-jobs")["spec"]
    assert prod["accessModes"] == ["ReadWriteMany"] and prod.get("storageClassName")
    dev = one("dev", "PersistentVolumeClaim", "matteflow-jobs")["spec"]
    assert dev["accessModes"] == ["ReadWriteOnce"] and "storageClassName" not in dev
    docs = (REPO / "docs" / "operations.md").read_text()
    assert "overlays/prod/jobs-storage.yaml" in docs
    for storage in ("NFS", "EFS", "Filestore", "CephFS", "Azure Files", prod["storageClassName"]):
        assert storage in docs, storage
    for overlay in OVERLAYS:
        for name, spec in pod_specs(overlay).items():
            if any(
                v.get("persistentVolumeClaim", {}).get("claimName") == "matteflow-jobs" for v in spec.get("volumes", [])
            ):
                security = spec["securityContext"]
                assert security["fsGroup"] == security["runAsGroup"] == 10001, name  # the images' uid/gid


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
    # The GPU request places the pod; labels that only GPU Feature Discovery / NFD set would leave it
    # Pending on clusters without them.
    selector = worker["spec"]["template"]["spec"].get("nodeSelector", {})
    assert not [k for k in selector if k.startswith(("nvidia.com/", "feature.node.kubernetes.io/"))], selector
    # autoscalers own the replica counts
    assert "replicas" not in worker["spec"]
    assert "replicas" not in one("prod", "Deployment", "matteflow-web")["spec"]


def queue_metric_names() -> set[str]:
    """What the queue exporter exports (its collectors describe themselves without touching Redis)."""
    return {family.name for family in metrics.QueueLengthCollector("redis://unused:6379/0", ["q"]).describe()}


def test_prod_keda_counts_every_queue_and_the_work_in_flight() -> None:
    scaled = one("prod", "ScaledObject", "matteflow-worker")
    spec = scaled["spec"]
    target = spec["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert one("prod", "Deployment", target["name"])
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    namespace = scaled["metadata"]["namespace"]
    config = settings_of("prod")
    triggers = spec["triggers"]

    # One redis trigger per queue the workers consume: a queue without one is work KEDA never sees.
    redis_triggers = [t["metadata"] for t in triggers if t["type"] == "redis"]
    assert sorted(m["listName"] for m in redis_triggers) == sorted(consumed_queues(config["MATTEFLOW_WORKER_QUEUE"]))
    for meta in redis_triggers:
        # KEDA's operator runs in its own namespace: the address must be the Service's full DNS name.
        host, port = meta["address"].split(":")
        assert host.split(".")[:3] == ["matteflow-redis", namespace, "svc"]
        assert int(port) in {p["port"] for p in one("prod", "Service", "matteflow-redis")["spec"]["ports"]}
        assert meta.get("databaseIndex", "0") == config["MATTEFLOW_REDIS_URL"].rsplit("/", 1)[1]

    # The Prometheus triggers query what the one exporter exports, in this namespace, and together count
    # waiting and in-flight work.
    queries = {t["name"]: t["metadata"] for t in triggers if t["type"] == "prometheus"}
    for meta in queries.values():
        assert set(re.findall(r"\bmatteflow_[a-z_]+", meta["query"])) <= queue_metric_names(), meta["query"]
    outstanding = queries["outstanding"]["query"]
    assert "matteflow_queue_length" in outstanding and "matteflow_tasks_in_flight" in outstanding
    assert "matteflow_tasks_held_back" in outstanding  # big batches' images not yet in a queue (window.py)
    assert "max by (queue)" in outstanding  # a second exporter never doubles the count
    assert queries["outstanding"].get("ignoreNullValues") == "false"  # no data is a failure -> fallback
    for meta in queries.values():
        assert f'namespace="{namespace}"' in meta["query"]
        assert meta["serverAddress"].startswith("http://prometheus-operated.")
    # Never fewer workers than tasks in flight: one per worker (concurrency 1).
    assert "matteflow_tasks_in_flight" in queries["busy"]["query"]
    assert float(queries["busy"]["threshold"]) <= int(config["MATTEFLOW_WORKER_CONCURRENCY"])

    # Scale-in is slow and one pod at a time; each pod removed finishes its task first (its grace period
    # covers the time limit, test_worker_pool_enforces_the_task_time_limit_within_the_grace_period).
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 120
    assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "probe"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 2, "behavior": behavior},
    }
    kubernetes_validate.validate(hpa, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_queue_exporter(overlay: str) -> None:
    """The queue gauges have one source: a single exporter that is replaced, never surged."""
    exporter = one(overlay, "Deployment", "matteflow-exporter")["spec"]
    assert exporter["replicas"] == 1 and exporter["strategy"]["type"] == "Recreate"
    service = one(overlay, "Service", "matteflow-exporter")
    assert matches(service["spec"]["selector"], exporter["template"]["metadata"]["labels"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_redis_is_bounded_private_and_protected(overlay: str) -> None:
    redis = one(overlay, "StatefulSet", "matteflow-redis")
    container = redis["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    # noeviction does nothing without maxmemory: Redis would grow until the kernel kills it.
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    maxmemory = args[args.index("--maxmemory") + 1]
    assert maxmemory.endswith("mb") and int(maxmemory[:-2]) * 2**20 < _bytes(container["resources"]["limits"]["memory"])
    # serviceName names a headless Service (stable pod DNS), as StatefulSets require.
    governing = one(overlay, "Service", redis["spec"]["serviceName"])
    assert governing["spec"].get("clusterIP") == "None"
    (policy,) = objects(overlay, "NetworkPolicy").values()
    pod_labels = redis["spec"]["template"]["metadata"]["labels"]
    assert matches(policy["spec"]["podSelector"]["matchLabels"], pod_labels)
    sources = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    assert {"kubernetes.io/metadata.name": "keda"} in [
        p.get("namespaceSelector", {}).get("matchLabels") for p in sources
    ]
    budgets = [
        b
        for b in objects(overlay, "PodDisruptionBudget").values()
        if matches(b["spec"]["selector"]["matchLabels"], pod_labels)
    ]
    # prod: a drain stops at Redis instead of evicting it unannounced; dev: drains just proceed
    assert [b["spec"].get("minAvailable") for b in budgets] == ([1] if overlay == "prod" else [])


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(quantity[:-2]) * units[quantity[-2:]] if quantity[-2:] in units else int(quantity)


def test_prod_web_hpa_targets_the_web_deployment() -> None:
    (hpa,) = objects("prod", "HorizontalPodAutoscaler").values()
    target = hpa["spec"]["scaleTargetRef"]
    assert target["kind"] == "Deployment" and one("prod", "Deployment", target["name"])
    assert target["name"] == "matteflow-web"
    assert hpa["spec"]["minReplicas"] >= 2  # one web pod can be drained (PDB minAvailable 1)
    web = one("prod", "Deployment", "matteflow-web")["spec"]["template"]["spec"]["containers"][0]
    assert "cpu" in web["resources"]["requests"]  # utilisation needs a request to divide by


def test_prod_monitoring_reaches_kube_prometheus_stack() -> None:
    """Monitors under the alerting job names, labelled for the chart's selectors; the alert rules as a
    PrometheusRule and the dashboard as a sidecar ConfigMap, both identical to the compose files."""
    alerts = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    monitors = {**objects("prod", "ServiceMonitor"), **objects("prod", "PodMonitor")}
    jobs = set()
    for monitor in monitors.values():
        endpoints = monitor["spec"].get("endpoints") or monitor["spec"]["podMetricsEndpoints"]
        for endpoint in endpoints:
            assert endpoint["path"] == "/metrics"
            jobs |= {r["replacement"] for r in endpoint["relabelings"] if r["targetLabel"] == "job"}
    assert jobs == {"matteflow-web", "matteflow-worker", "matteflow-exporter"}
    for job in jobs:
        assert f'job="{job}"' in alerts
    for name, port in (("matteflow-web", "http"), ("matteflow-exporter", "metrics")):
        assert one("prod", "ServiceMonitor", name)["spec"]["endpoints"][0]["port"] == port
        assert port in {p["name"] for p in one("prod", "Service", name)["spec"]["ports"]}
    worker = one("prod", "Deployment", "matteflow-worker")["spec"]["template"]
    assert (
        worker["metadata"]["annotations"]["prometheus.io/port"] == settings_of("prod")["MATTEFLOW_WORKER_METRICS_PORT"]
    )
    # kube-prometheus-stack's Prometheus selects monitors and rules by the Helm release label.
    operator_objects = [o for o in render("prod") if o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert {o["kind"] for o in operator_objects} == {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    for obj in operator_objects:
        assert obj["metadata"]["labels"].get("release"), f"{obj['kind']} {obj['metadata']['name']} has no release label"
    (rule,) = objects("prod", "PrometheusRule").values()
    assert rule["spec"] == prometheus_rule()["spec"], "regenerate: python -m tests.deploy.sync_monitoring"
    dashboards = [
        c for c in objects("prod", "ConfigMap").values() if c["metadata"].get("labels", {}).get("grafana_dashboard")
    ]
    assert len(dashboards) == 1
    (content,) = dashboards[0]["data"].values()
    assert content == DASHBOARD.read_text(), "regenerate: python -m tests.deploy.sync_monitoring"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_web_shutdown_and_disruptions(overlay: str) -> None:
    """The grace period covers the preStop pause plus the drain `matteflow web` does on SIGTERM (which covers
    the synchronous single-image call); drains are never blocked by the web's PodDisruptionBudget."""
    spec = one(overlay, "Deployment", "matteflow-web")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    settings = Settings.from_env(settings_of(overlay))
    assert settings.web_shutdown_grace_s >= settings.single_image_timeout_s
    assert spec["terminationGracePeriodSeconds"] >= pause + settings.web_shutdown_grace_s + 5
    budget = one(overlay, "PodDisruptionBudget", "matteflow-web")["spec"]
    replicas = one(overlay, "Deployment", "matteflow-web")["spec"].get("replicas", 2)
    assert budget.get("maxUnavailable", 0) >= 1 or budget["minAvailable"] < replicas


def test_prod_scale_to_zero_only_if_web_readiness_allows_it(redis_url: str, tmp_path: Path) -> None:
    """Web readiness and KEDA's minimum must agree: if /readyz fails while no worker runs, a pool scaled to
    zero would take the web pods out of their Service, no task would ever be queued and KEDA would never
    scale up. Asked of the real web app with a real Redis and no worker: it is ready (readiness does not
    depend on workers, so busy workers cannot take status and downloads out of the Service either)."""
    from matteflow.web import create_app

    client = create_app(Settings(redis_url=redis_url, storage_dir=tmp_path)).test_client()
    ready_without_workers = client.get("/readyz").status_code == 200
    assert ready_without_workers
    web = one("prod", "Deployment", "matteflow-web")["spec"]["template"]["spec"]["containers"][0]
    if web["readinessProbe"]["httpGet"]["path"] == "/readyz" and not ready_without_workers:
        assert one("prod", "ScaledObject", "matteflow-worker")["spec"]["minReplicaCount"] >= 1
