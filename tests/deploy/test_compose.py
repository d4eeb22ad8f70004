"""docker-compose.yml, checked statically (no Docker here): services, health, persistence, wiring."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml

from matteflow.settings import Settings

from .conftest import DEPLOY, REPO
from .dockerfile_lint import image_tag

COMPOSE = REPO / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # resolves the x-* anchors and << merges


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


def test_all_services_are_there_with_healthchecks(services) -> None:
    assert {"redis", "web", "worker", "exporter", "prometheus", "alertmanager", "grafana"} <= set(services)
    for name, service in services.items():
        test = service["healthcheck"]["test"]
        assert test[0] in {"CMD", "CMD-SHELL"} and len(test) > 1, name


def test_redis_persists_with_aof_on_a_named_volume(compose, services) -> None:
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    volume, target = services["redis"]["volumes"][0].split(":")[:2]
    assert target == "/data" and volume in compose["volumes"]


def test_volumes_are_declared_and_bind_mounts_exist(compose, services) -> None:
    for name, service in services.items():
        for spec in service.get("volumes", []):
            source = spec.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: {source} missing"
            else:
                assert source in compose["volumes"], f"{name}: volume {source} not declared"
    # uploads written by the web are read by the workers: the same volume at the same path
    jobs = {s.split(":")[0] for s in services["web"]["volumes"]} & {
        s.split(":")[0] for s in services["worker"]["volumes"]
    }
    assert jobs, "web and worker must share the jobs volume"


def test_one_queue_exporter_and_worker_ports_reachable_by_prometheus(services) -> None:
    """The queue gauges come from the exporter alone (one service, never scaled); workers listen on all of
    the container's interfaces (their default, 127.0.0.1, would hide them from Prometheus), and their
    health check sees the consumer."""
    exporter = services["exporter"]
    assert exporter["command"][:2] == ["matteflow", "exporter"] and "0.0.0.0" in exporter["command"]
    assert exporter["image"] == services["web"]["image"]
    for name in ("worker", "worker-gpu"):
        env = Settings.from_env({k: str(v) for k, v in services[name]["environment"].items()})
        assert env.worker_metrics_host == "0.0.0.0", name
        assert "/livez" in " ".join(services[name]["healthcheck"]["test"]), name
    gpu = Settings.from_env({k: str(v) for k, v in services["worker-gpu"]["environment"].items()})
    assert gpu.worker_pool == "prefork"  # the pool that enforces the task time limit


def test_prometheus_sends_alerts_to_alertmanager(services) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (target,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in services and services[host]["image"].startswith("prom/alertmanager:")
    mounts = dict(v.split(":")[:2] for v in services["alertmanager"]["volumes"])
    config_file = next(source for source, target in mounts.items() if target.endswith("alertmanager.yml"))
    routing = yaml.safe_load((REPO / config_file).read_text())
    receivers = {r["name"] for r in routing["receivers"]}
    assert routing["route"]["receiver"] in receivers


def test_start_order_waits_for_health(services) -> None:
    for name in ("web", "worker", "exporter"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy", name
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_settings_reach_the_app(services) -> None:
    for name in ("web", "worker"):
        env = services[name]["environment"]
        assert env["MATTEFLOW_REDIS_URL"].startswith("redis://redis:"), name
        settings = Settings.from_env({k: str(v) for k, v in env.items()})
        assert settings.redis_url.startswith("redis://redis:")
    assert services["web"]["ports"] == [f"{Settings().web_port}:{Settings().web_port}"]


def test_worker_is_cpu_by_default_and_gpu_in_a_profile(services) -> None:
    worker, gpu = services["worker"], services["worker-gpu"]
    assert "profiles" not in worker and worker["build"]["args"]["VARIANT"] == "cpu"
    assert "deploy" not in worker
    assert gpu["profiles"] == ["gpu"] and gpu["build"]["args"]["VARIANT"] == "cuda"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert gpu["environment"]["MATTEFLOW_DEVICE"].startswith("cuda")


def test_workers_stop_gracefully_and_expose_metrics(services) -> None:
    for name in ("worker", "worker-gpu"):
        service = services[name]
        grace = service["stop_grace_period"]
        assert grace.endswith("s") and int(grace[:-1]) >= int(service["environment"]["MATTEFLOW_TASK_TIME_LIMIT_S"])
        assert service["environment"]["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
        assert "/tmp" in service["tmpfs"] and service["read_only"] is True


def test_third_party_images_are_pinned(services) -> None:
    for name, service in services.items():
        if "build" in service:
            continue
        tag = image_tag(service["image"])
        assert tag and tag != "latest", f"{name}: {service['image']}"


def test_prometheus_and_grafana_use_the_files_in_deploy(services) -> None:
    prometheus_mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"])
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    mounted_targets = set(prometheus_mounts.values())
    for rule_file in config["rule_files"]:
        assert rule_file in mounted_targets, rule_file
    # scrape targets are compose services
    targets = [
        t.split(":")[0]
        for job in config["scrape_configs"]
        for sc in job.get("static_configs", [])
        for t in sc["targets"]
    ]
    targets += [n for job in config["scrape_configs"] for sd in job.get("dns_sd_configs", []) for n in sd["names"]]
    assert {t for t in targets if t != "localhost"} <= set(services)
    grafana_mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/matteflow.yml").read_text())
    dashboards_dir = provider["providers"][0]["options"]["path"]
    assert grafana_mounts["./deploy/grafana/dashboards"] == dashboards_dir
    assert grafana_mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    has_compose = docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    if not has_compose:
        pytest.skip("docker compose plugin not installed: checked statically above")
    result = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
