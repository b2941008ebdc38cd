"""What the seed plan's command adapters actually run, with recording stand-ins for
kubectl and the team's scripts (canary-deploy.sh, promote-canary-to-stable.sh...)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import SEED_PLAN

from novactl.adapters._registry import create
from novactl.plan import load_plan
from novactl.runner import context_for

RECORDER = """#!/bin/sh
printf '%s' "$(basename "$0")" >> "$NOVACTL_TEST_LOG"
for a in "$@"; do printf ' %s' "$a" >> "$NOVACTL_TEST_LOG"; done
printf '\\n' >> "$NOVACTL_TEST_LOG"
case "$(basename "$0") $1" in
  "kubectl get") echo 10 ;;
esac
"""


@pytest.fixture
def seed(tmp_path: Path):
    deploy = tmp_path / "deployment"
    for script in ("bin/kubectl", "deployment/canary/canary-deploy.sh",
                   "deployment/canary/promote-canary-to-stable.sh",
                   "deployment/rollback/retire-old-version.sh"):
        path = tmp_path / script
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(RECORDER)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.log"
    plan = load_plan(SEED_PLAN, {"deploy_dir": str(deploy)})
    context = context_for(plan)
    context.env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
                   "NOVACTL_TEST_LOG": str(log)}
    workload = create("workload", "command", "workload", plan.spec.workload.config, context)
    traffic = create("traffic", "command", "traffic", plan.spec.traffic.config, context)

    def calls() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    return workload, traffic, calls


def test_canary_deploy_and_traffic(seed) -> None:
    workload, traffic, calls = seed
    workload.deploy("canary", "v3.0.0", 3)
    traffic.set_weight(10)
    assert traffic.get_weight() == 10.0
    assert traffic.set_header_route("X-Canary-Debug", "1") is True
    assert calls() == [
        "kubectl set image deployment/novacron-api-canary -n novacron "
        "api=registry.novacron.io/novacron-api:v3.0.0",
        "kubectl scale deployment/novacron-api-canary -n novacron --replicas=3",
        "canary-deploy.sh --version v3.0.0 --canary-weight 10",
        "kubectl get ingress novacron-api-canary -n novacron -o "
        "jsonpath={.metadata.annotations.nginx\\.ingress\\.kubernetes\\.io/canary-weight}",
        "kubectl annotate ingress novacron-api-canary -n novacron --overwrite "
        "nginx.ingress.kubernetes.io/canary-by-header=X-Canary-Debug "
        "nginx.ingress.kubernetes.io/canary-by-header-value=1",
    ]


def test_promote_retire_and_rollback_after_promotion(seed) -> None:
    workload, _traffic, calls = seed
    workload.promote("v3.0.0", 10)
    workload.retire("v2.9.0")
    workload.deploy("stable", "v2.9.0", 10)  # a rollback inside the 7-day window
    assert calls() == [
        "promote-canary-to-stable.sh --version v3.0.0",
        "kubectl scale deployment/novacron-api -n novacron --replicas=10",
        "retire-old-version.sh --version v2.9.0 --grace-period 0s",
        "kubectl set image deployment/novacron-api -n novacron "
        "api=registry.novacron.io/novacron-api:v2.9.0",
        "kubectl scale deployment/novacron-api -n novacron --replicas=10",
    ]


def test_values_stay_single_arguments(seed, tmp_path: Path) -> None:
    workload, _traffic, calls = seed
    workload.deploy("canary", "v3.0.0; rm -rf /", 1)
    assert calls()[0].endswith("api=registry.novacron.io/novacron-api:v3.0.0; rm -rf /")
    assert len(calls()) == 2  # nothing else ran
