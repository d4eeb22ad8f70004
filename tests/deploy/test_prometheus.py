"""Prometheus config and alert rules, checked and unit-tested with promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import DEPLOY

PROMETHEUS = DEPLOY / "prometheus"
REQUIRED_ALERTS = {
    "MatteflowQueueBackingUp",
    "MatteflowItemsFailing",
    "MatteflowWorkerDown",
    "MatteflowGpuMemoryNearFull",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool missing: `apt-get install prometheus` (make test-system-deps does it)")
    return path


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_alert_rules_pass_promtool_check(promtool: str) -> None:
    result = run(promtool, "check", "rules", "alerts.yml", cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_unit_tests_pass(promtool: str) -> None:
    result = run(promtool, "test", "rules", "alerts_test.yml", cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_unit_tests_fail_when_a_rule_breaks(promtool: str, tmp_path: Path) -> None:
    """The unit tests can fail: with the GPU threshold raised past the test data, promtool says so."""
    rules = (PROMETHEUS / "alerts.yml").read_text()
    assert ") > 0.95" in rules
    (tmp_path / "alerts.yml").write_text(rules.replace(") > 0.95", ") > 0.99"))
    shutil.copy(PROMETHEUS / "alerts_test.yml", tmp_path)
    result = run(promtool, "test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "MatteflowGpuMemoryNearFull" in result.stdout + result.stderr


def test_required_alerts_exist_with_severity_and_summary() -> None:
    rules = [r for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert names >= REQUIRED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_scrape_config_is_valid_with_its_rules(promtool: str, tmp_path: Path) -> None:
    # The config names the rules by their path inside the container; point it at the repo's file.
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config["rule_files"] = [str(PROMETHEUS / "alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = run(promtool, "check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_config_targets_web_and_worker_ports() -> None:
    from matteflow.settings import Settings

    settings = Settings()
    jobs = {j["job_name"]: j for j in yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"]}
    assert jobs["matteflow-web"]["static_configs"][0]["targets"] == [f"web:{settings.web_port}"]
    assert jobs["matteflow-worker"]["dns_sd_configs"][0]["port"] == settings.worker_metrics_port
    assert "/etc/prometheus/alerts.yml" in yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["rule_files"]
