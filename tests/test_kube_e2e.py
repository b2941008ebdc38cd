"""A compressed plan end to end on "Kubernetes": the ingress-nginx shifter and the
Deployment workload through the official client against tests/_kubeapi.FakeKube,
the state in the cluster store (ConfigMaps + Lease), metrics scripted on a fake clock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _kubeapi import FakeKube

from novactl._clock import FakeClock
from novactl.adapters.fake import FakeProbe
from novactl.core.observations import ProbeQuery
from novactl.core.state import Phase
from novactl.plan import load_plan
from novactl.runner import AdapterSet, PassResult, Runner, context_for

NS = "novacron"
ING = "networking.k8s.io/v1"
APPS = "apps/v1"
P = "nginx.ingress.kubernetes.io"

PLAN = """\
apiVersion: novactl.dev/v1
kind: RolloutPlan
metadata: {name: kube-e2e}
spec:
  versions: {stable: v2.9.0, canary: v3.0.0}
  variables: {registry: registry.novacron.io/api}
  state: {type: kubernetes, namespace: novacron, lease_duration: 10s}
  traffic:
    type: ingress-nginx
    debug_header: {name: X-Canary-Debug, value: "1"}
    config: {namespace: novacron, stable_ingress: novacron-api,
             canary_service: novacron-api-canary}
  workload:
    type: deployment
    ready_timeout: 2m
    ready_poll: 5s
    config:
      namespace: novacron
      image: "{{registry}}:{{version}}"
      container: api
      roles:
        canary: {deployment: novacron-api-canary}
        stable: {deployment: novacron-api}
  probes:
    m: {type: fake}
  metrics:
    error_rate: {probe: m, kind: ratio, min_samples: 10,
                 query: {numerator: errors, denominator: requests}}
  defaults: {interval: 1m}
  every_stage:
    rollback:
      - {name: error-rate-threshold, check: error_rate > 5% for 3m}
  stages:
    - {name: canary-1, weight: 1, replicas: 1, duration: 10m,
       criteria: {mandatory: [error_rate < 1%]}}
    - {name: canary-10, weight: 10, replicas: 2, duration: 10m,
       criteria: {mandatory: [error_rate < 1%]}}
    - {name: canary-50, weight: 50, replicas: 5, duration: 10m,
       criteria: {mandatory: [error_rate < 1%]}}
  promotion: {replicas: 10, retire_after: 5m, rollback_window: 10m, monitor: 15m}
"""


def seed(kube: FakeKube, image: str = "registry.novacron.io/api:v2.9.0",
         sidecars: tuple[dict[str, str], ...] = ()) -> None:
    """The team's objects: the stable Ingress, and a Deployment per role running v2.9.0."""
    kube.put({"apiVersion": ING, "kind": "Ingress",
              "metadata": {"name": "novacron-api", "namespace": NS},
              "spec": {"ingressClassName": "nginx", "rules": [{"host": "api.novacron.io",
                       "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
                           "service": {"name": "novacron-api", "port": {"number": 80}}}}]}}]}})
    for name, replicas in (("novacron-api", 10), ("novacron-api-canary", 0)):
        labels = {"app": name}
        kube.put({"apiVersion": APPS, "kind": "Deployment",
                  "metadata": {"name": name, "namespace": NS},
                  "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                           "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                               *sidecars, {"name": "api", "image": image}]}}}})


class World:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kube: FakeKube,
                 error_rate: Any) -> None:
        monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig(tmp_path / "kubeconfig",
                                                             namespace=NS)))
        for key in ("NOVACTL_KUBECONFIG", "NOVACTL_KUBE_CONTEXT", "NOVACTL_NAMESPACE",
                    "NOVACTL_STORE", "NOVACTL_DRY_RUN"):
            monkeypatch.delenv(key, raising=False)
        (tmp_path / "plan.yaml").write_text(PLAN)
        self.plan = load_plan(tmp_path / "plan.yaml")
        self.clock = FakeClock()
        self.kube = kube
        self.error_rate = error_rate
        from novactl.store.kube import store_for_plan

        self.store = store_for_plan(self.plan)
        self.weights: list[float] = []

    def metrics(self, query: ProbeQuery) -> Any:
        rate = self.error_rate(query, self) if query.role == "canary" else 0.001
        if query.parts.get("numerator") is None:
            return None
        requests = round(1000 * query.window / 60)  # 1,000 a minute
        return (round(rate * requests), requests)

    def runner(self) -> Runner:
        context = context_for(self.plan, clock=self.clock)
        probe = FakeProbe("m", context=context, script=self.metrics)
        return Runner(self.plan, self.store, AdapterSet(self.plan, context, probes={"m": probe}),
                      clock=self.clock, actor="e2e")

    def canary_weight(self) -> str | None:
        obj = self.kube.get(ING, "Ingress", NS, "novacron-api-canary")
        return None if obj is None else obj["metadata"]["annotations"][f"{P}/canary-weight"]

    def deployment(self, name: str) -> dict[str, Any]:
        found = self.kube.get(APPS, "Deployment", NS, name)
        assert found is not None
        return found

    def drive(self, passes: int = 400) -> PassResult:
        """One `novactl run --once` per wake-up, as a cron job would, on the fake clock."""
        result = None
        for _ in range(passes):
            runner = self.runner()
            try:
                result = runner.reconcile()
            finally:
                runner.adapters.close()
            weight = self.canary_weight()
            if weight is not None and (not self.weights or self.weights[-1] != float(weight)):
                self.weights.append(float(weight))
            if result.state.phase.terminal:
                return result
            until = result.wait.until if result.wait and result.wait.until else None
            self.clock.set(max(self.clock.now() + 1.0, until or 0.0))
        raise AssertionError(f"not finished: {result.state.phase if result else None}")


def test_a_healthy_canary_is_promoted_on_the_cluster(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeKube() as kube:
        seed(kube)
        world = World(tmp_path, monkeypatch, kube, lambda q, w: 0.002)
        result = world.drive()
        assert result.state.phase is Phase.COMPLETED
        assert world.weights == [1.0, 10.0, 50.0, 0.0]
        stable = world.deployment("novacron-api")
        assert stable["spec"]["replicas"] == 10
        assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == \
            "registry.novacron.io/api:v3.0.0"
        assert stable["metadata"]["annotations"]["novactl.io/version"] == "v3.0.0"
        assert world.deployment("novacron-api-canary")["spec"]["replicas"] == 0
        ann = kube.get(ING, "Ingress", NS, "novacron-api-canary")["metadata"]["annotations"]
        assert ann[f"{P}/canary-weight"] == "0"
        assert f"{P}/canary-by-header" not in ann  # 0% = all stable, debug requests too
        # the state and the audit log are in the cluster, the Lease is free
        state_cm = kube.get("v1", "ConfigMap", NS, "novactl-kube-e2e-state")
        assert '"phase":"completed"' in state_cm["data"]["state.json"]
        actions = [r["action"] for r in world.store.read_audit()]
        assert actions.count("intent.promote") == 1 and "done.promote" in actions
        lease = kube.get("coordination.k8s.io/v1", "Lease", NS, "novactl-kube-e2e")
        assert not lease["spec"].get("holderIdentity")


def test_a_failing_canary_is_rolled_back_on_the_cluster(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def errors(query: ProbeQuery, world: World) -> float:
        # healthy through the first stage, then 20% errors once at 10%
        return 0.2 if world.weights and world.weights[-1] >= 10 else 0.002

    with FakeKube() as kube:
        seed(kube)
        world = World(tmp_path, monkeypatch, kube, errors)
        # throttling and conflicts on the way: the rollout does not notice
        kube.inject("PATCH", "ingresses/novacron-api-canary$", 429, times=2, retry_after=0)
        kube.inject("PATCH", "deployments/novacron-api-canary$", 409, times=1)
        result = world.drive()
        assert kube.pending_faults == 0
        assert result.state.phase is Phase.ROLLED_BACK
        rollback = result.state.rollback
        assert rollback is not None and rollback.trigger == "rollback:error-rate-threshold"
        assert rollback.reason.startswith("trigger error-rate-threshold: 20% > 5%")
        assert rollback.stage == "canary-10"
        assert world.weights == [1.0, 10.0, 0.0]
        assert world.deployment("novacron-api-canary")["spec"]["replicas"] == 0
        stable = world.deployment("novacron-api")  # never touched: still v2.9.0 at 10
        assert stable["spec"]["replicas"] == 10
        assert stable["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v2.9.0")
        # traffic went back to stable before the canary was scaled down
        order = [r["action"] for r in world.store.read_audit()
                 if r["action"] in ("done.set_weight", "done.scale")]
        assert order[-2:] == ["done.set_weight", "done.scale"]
