"""The monitoring component's copies of the compose files: the PrometheusRule wraps deploy/prometheus/alerts.yml,
the dashboard ConfigMap carries deploy/grafana/dashboards/matteflow-overview.json (kustomize may not read files
outside a kustomization's folder). tests/deploy/test_k8s.py fails when a copy differs; this rewrites them:

    .venv/bin/python -m tests.deploy.sync_monitoring
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "matteflow-overview.json"
COMPONENT = REPO / "deploy" / "k8s" / "components" / "monitoring"
RULE = COMPONENT / "prometheusrule.yaml"
DASHBOARD_COPY = COMPONENT / "dashboards" / DASHBOARD.name

_HEADER = (
    "# Generated from deploy/prometheus/alerts.yml (the rules compose loads); tests/deploy/test_k8s.py fails when the\n"
    "# two differ. Regenerate: .venv/bin/python -m tests.deploy.sync_monitoring\n"
)


def prometheus_rule() -> dict[str, Any]:
    """The PrometheusRule whose spec.groups are alerts.yml's groups."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "matteflow",
            "labels": {"app.kubernetes.io/name": "matteflow", "app.kubernetes.io/component": "alerts"},
        },
        "spec": {"groups": yaml.safe_load(ALERTS.read_text())["groups"]},
    }


class _Dumper(yaml.SafeDumper):
    pass


def _block_strings(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _block_strings)


def main() -> None:
    body = yaml.dump(prometheus_rule(), Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
    RULE.write_text(_HEADER + body)
    DASHBOARD_COPY.parent.mkdir(exist_ok=True)
    shutil.copyfile(DASHBOARD, DASHBOARD_COPY)


if __name__ == "__main__":
    main()
