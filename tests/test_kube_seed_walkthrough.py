"""docs/kubernetes.md's walk-through, checked: the seed plan with the page's traffic,
workload and state blocks loads, validates, and runs stage 1 and a rollback on "a
cluster" (tests/_kubeapi.FakeKube) through the real Kubernetes adapters and store.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _kubeapi import FakeKube
from conftest import ROOT, SEED_PLAN
from test_kube_e2e import seed
from test_simulation import HEALTHY

from novactl._clock import FakeClock
from novactl.adapters.fake import FakeProbe, MemoryNotifier
from novactl.core import machine
from novactl.core.observations import ProbeQuery
from novactl.core.state import Phase
from novactl.plan import load_plan
from novactl.runner import AdapterSet, Runner, context_for

NS = "novacron"
ING = "networking.k8s.io/v1"
APPS = "apps/v1"
DAY = 86400.0


def walkthrough_plan(directory: Path) -> Path:
    """plans/novacron-v3.yaml with its traffic/workload blocks replaced by the doc's."""
    doc = (ROOT / "docs" / "kubernetes.md").read_text()
    section = doc.split("## Walk-through: NovaCron v3 on a cluster", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None, "the walk-through's YAML block is missing"
    seed = SEED_PLAN.read_text()
    verify = re.search(r"\n(    verify:\n(?:      .*\n)+)", seed)
    assert verify is not None
    replacement = block.group(1).replace("    verify: {…}                               # "
                                         "unchanged\n", verify.group(1))
    start, end = seed.index("\n  traffic:\n"), seed.index("\n  probes:\n")
    head = seed[:start + 1]
    # drop the comment line that introduces the workload block in the seed plan
    text = head + replacement + seed[end:]
    path = directory / "novacron-v3.yaml"
    path.write_text(text)
    return path


def seed_cluster(kube: FakeKube) -> None:
    seed(kube, "registry.novacron.io/novacron-api:v2.9.0",
         sidecars=({"name": "sidecar", "image": "envoy:1.30"},))


def test_the_walkthrough_plan_validates(tmp_path: Path, cli) -> None:
    plan = walkthrough_plan(tmp_path)
    code, out, err = cli("validate", plan)
    assert code == 0, out + err
    loaded = load_plan(plan)
    assert loaded.spec.traffic.type == "ingress-nginx"
    assert loaded.spec.workload.type == "deployment"
    assert loaded.spec.state.type == "kubernetes" and loaded.spec.state.namespace == NS
    assert loaded.spec.traffic.verify is not None and loaded.spec.traffic.verify.requests == 2000


def test_the_walkthrough_runs_stage_one_and_rolls_back_on_a_cluster(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("NOVACTL_KUBECONFIG", "NOVACTL_KUBE_CONTEXT", "NOVACTL_NAMESPACE",
                "NOVACTL_STORE", "NOVACTL_DRY_RUN"):
        monkeypatch.delenv(key, raising=False)
    with FakeKube() as kube:
        seed_cluster(kube)
        monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig(tmp_path / "kc", namespace=NS)))
        plan = load_plan(walkthrough_plan(tmp_path))
        from novactl.store.kube import store_for_plan

        store = store_for_plan(plan)
        clock = FakeClock(1_767_571_200.0)  # Monday 2026-01-05 00:00 UTC: stage 1 starts

        def metrics(query: ProbeQuery) -> float | None:
            value = HEALTHY[query.metric]
            return value * query.window / DAY if query.kind == "count" else value

        def runner() -> Runner:
            context = context_for(plan, clock=clock)
            probe = FakeProbe("prometheus", FakeProbe.Config(rate=50), context, script=metrics)
            notifiers = {n: MemoryNotifier(n) for n in plan.spec.notifications.targets}
            return Runner(plan, store, AdapterSet(plan, context, probes={"prometheus": probe},
                                                  notifiers=notifiers),
                          clock=clock, actor="walkthrough")

        # stage 1: canary deployed, header route and 1% on the canary Ingress, verified
        for _ in range(20):
            result = runner().reconcile()
            if result.state.step == "bake":
                break
            until = result.wait.until if result.wait and result.wait.until else None
            clock.set(max(clock.now() + 1.0, until or 0.0))
        assert result.state.phase is Phase.STAGE and result.state.step == "bake"
        assert result.state.weight_actual == 1.0
        canary = kube.get(ING, "Ingress", NS, "novacron-api-canary")
        ann = canary["metadata"]["annotations"]
        assert ann["nginx.ingress.kubernetes.io/canary-weight"] == "1"
        assert ann["nginx.ingress.kubernetes.io/canary-by-header"] == "X-Canary-Debug"
        dep = kube.get(APPS, "Deployment", NS, "novacron-api-canary")
        assert dep["spec"]["replicas"] == 1
        assert dep["spec"]["template"]["spec"]["containers"][1]["image"] == \
            "registry.novacron.io/novacron-api:v3.0.0"

        # the runbook's rollback
        run = runner()
        run.command(machine.request_rollback, "error-rate-threshold", "sre@novacron.io",
                    actor="sre@novacron.io", action="rollback", reason="error-rate-threshold")
        for _ in range(10):
            result = run.reconcile()
            if result.state.phase.terminal:
                break
            clock.advance(1.0)
        assert result.state.phase is Phase.ROLLED_BACK
        ann = kube.get(ING, "Ingress", NS, "novacron-api-canary")["metadata"]["annotations"]
        assert ann["nginx.ingress.kubernetes.io/canary-weight"] == "0"
        assert kube.get(APPS, "Deployment", NS, "novacron-api-canary")["spec"]["replicas"] == 0
        assert kube.get("v1", "ConfigMap", NS, "novactl-novacron-v3-state") is not None
