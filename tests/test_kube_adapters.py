"""Kubernetes adapters through the official client against a server speaking the API.

Every test talks HTTP to tests/_kubeapi.FakeKube on 127.0.0.1 and checks the exact
objects the cluster ends with, with conflicts, throttling, 5xx and dropped
connections injected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _kubeapi import FakeKube

from novactl._errors import AdapterError, TrafficError, WorkloadError
from novactl.adapters._base import AdapterContext
from novactl.adapters._kube import KubeConfig, KubeError, connect
from novactl.adapters._registry import create

NS = "novacron"
ING = "networking.k8s.io/v1"


@pytest.fixture
def kube(tmp_path: Path):
    with FakeKube() as server:
        server.kubeconfig_path = server.kubeconfig(tmp_path / "kubeconfig", namespace=NS)
        yield server


def context(server: FakeKube, **env: str) -> AdapterContext:
    announced: list[str] = []
    ctx = AdapterContext(env={"KUBECONFIG": str(server.kubeconfig_path), **env})
    ctx.announce = announced.append
    ctx.announced = announced  # type: ignore[attr-defined]
    return ctx


def build(kind: str, type_name: str, server: FakeKube, config: dict[str, Any],
          ctx: AdapterContext | None = None) -> Any:
    adapter = create(kind, type_name, type_name, config, ctx or context(server))
    adapter.kube.sleep = lambda _s: None  # retries must not slow the tests
    return adapter


def writes(server: FakeKube) -> list[tuple[str, str]]:
    return [(m, p) for m, p, _ct, _b in server.requests if m in ("POST", "PATCH", "PUT",
                                                                   "DELETE")]


def stable_ingress() -> dict[str, Any]:
    return {
        "apiVersion": ING, "kind": "Ingress",
        "metadata": {"name": "novacron-api", "namespace": NS,
                     "annotations": {"kubernetes.io/ingress.class": "nginx",
                                     "team.io/owner": "api"}},
        "spec": {"ingressClassName": "nginx",
                 "tls": [{"hosts": ["api.novacron.io"], "secretName": "tls"}],
                 "rules": [{"host": "api.novacron.io", "http": {"paths": [
                     {"path": "/", "pathType": "Prefix",
                      "backend": {"service": {"name": "novacron-api",
                                              "port": {"number": 80}}}}]}}]},
    }


# --------------------------------------------------------------------------- ingress-nginx


INGRESS_CONFIG = {"namespace": NS, "stable_ingress": "novacron-api",
                  "canary_service": "novacron-api-canary"}
P = "nginx.ingress.kubernetes.io"


def test_ingress_nginx_creates_the_canary_ingress_from_the_stable_one(kube: FakeKube) -> None:
    kube.put(stable_ingress())
    before = kube.get(ING, "Ingress", NS, "novacron-api")
    shifter = build("traffic", "ingress-nginx", kube, INGRESS_CONFIG)
    assert shifter.get_weight() == 0.0  # no canary Ingress yet: nothing reaches the canary
    shifter.set_weight(10)
    canary = kube.get(ING, "Ingress", NS, "novacron-api-canary")
    assert canary["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "novactl"}
    assert canary["metadata"]["annotations"] == {
        "kubernetes.io/ingress.class": "nginx", f"{P}/canary": "true",
        f"{P}/canary-weight": "10", f"{P}/canary-weight-total": "100"}
    backend = canary["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "novacron-api-canary", "port": {"number": 80}}
    assert canary["spec"]["tls"] == before["spec"]["tls"]
    assert canary["spec"]["ingressClassName"] == "nginx"
    assert kube.get(ING, "Ingress", NS, "novacron-api") == before  # stable untouched
    assert shifter.get_weight() == 10.0


def test_ingress_nginx_only_writes_its_own_annotations(kube: FakeKube) -> None:
    kube.put(stable_ingress())
    kube.put({"apiVersion": ING, "kind": "Ingress",
              "metadata": {"name": "novacron-api-canary", "namespace": NS,
                           "annotations": {"team.io/owner": "api", f"{P}/canary": "true",
                                           f"{P}/canary-weight": "0"}},
              "spec": {"rules": [{"host": "api.novacron.io"}]}})
    shifter = build("traffic", "ingress-nginx", kube, INGRESS_CONFIG)
    shifter.set_weight(50)
    assert shifter.set_header_route("X-Canary-Debug", "1") is True
    obj = kube.get(ING, "Ingress", NS, "novacron-api-canary")
    assert obj["metadata"]["annotations"] == {
        "team.io/owner": "api", f"{P}/canary": "true", f"{P}/canary-weight": "50",
        f"{P}/canary-weight-total": "100", f"{P}/canary-by-header": "X-Canary-Debug",
        f"{P}/canary-by-header-value": "1"}
    assert obj["spec"] == {"rules": [{"host": "api.novacron.io"}]}
    assert "labels" not in obj["metadata"]  # not ours: not relabelled
    patches = [b for m, _p, _c, b in kube.requests if m == "PATCH"]
    assert patches and all(b["metadata"].get("resourceVersion") for b in patches)
    count = len(writes(kube))
    shifter.set_weight(50)  # already so: nothing is sent
    assert len(writes(kube)) == count


def test_ingress_nginx_rereads_on_conflict_and_keeps_the_other_writers_change(
        kube: FakeKube) -> None:
    kube.put(stable_ingress())
    shifter = build("traffic", "ingress-nginx", kube, INGRESS_CONFIG)
    shifter.set_weight(1)
    # another writer changes the object between our read and our patch: the API says 409
    kube.inject("PATCH", "ingresses/novacron-api-canary$", 409)
    shifter.set_weight(10)
    assert kube.pending_faults == 0
    ann = kube.get(ING, "Ingress", NS, "novacron-api-canary")["metadata"]["annotations"]
    assert ann[f"{P}/canary-weight"] == "10"
    assert [m for m, p in writes(kube) if p.endswith("novacron-api-canary")].count("PATCH") == 2


@pytest.mark.parametrize("fault", [429, 500, 503, "drop"])
def test_transient_faults_are_retried(kube: FakeKube, fault: int | str) -> None:
    kube.put(stable_ingress())
    shifter = build("traffic", "ingress-nginx", kube, INGRESS_CONFIG)
    shifter.set_weight(1)
    slept: list[float] = []
    shifter.kube.sleep = slept.append
    kube.inject("PATCH", "novacron-api-canary$", fault, times=2,
                retry_after=3 if fault == 429 else None)
    shifter.set_weight(10)
    assert kube.pending_faults == 0
    assert shifter.get_weight() == 10.0
    assert len(slept) == 2
    if fault == 429:
        assert slept == [3.0, 3.0]  # Retry-After is honoured


def test_retries_are_bounded_and_the_error_is_one_line(kube: FakeKube) -> None:
    kube.put(stable_ingress())
    shifter = build("traffic", "ingress-nginx", kube, {**INGRESS_CONFIG, "retries": 2})
    kube.inject("GET", "novacron-api-canary$", 503, times=10)
    with pytest.raises(KubeError) as err:
        shifter.set_weight(10)
    message = err.value.message
    assert "\n" not in message and "after 3 attempts" in message and "503" in message
    assert "ingresses.networking.k8s.io/novacron-api-canary in namespace novacron" in message


def test_forbidden_is_not_retried_and_points_at_rbac(kube: FakeKube) -> None:
    kube.put(stable_ingress())
    shifter = build("traffic", "ingress-nginx", kube, INGRESS_CONFIG)
    kube.inject("GET", "novacron-api-canary$", 403, times=5)
    with pytest.raises(KubeError) as err:
        shifter.get_weight()
    assert "RBAC" in err.value.message and "get ingresses" in err.value.message
    assert sum(1 for m, p in writes(kube)) == 0
    assert len([r for r in kube.requests if "novacron-api-canary" in r[1]]) == 1


def test_fractional_weights_need_a_finer_total(kube: FakeKube) -> None:
    kube.put(stable_ingress())
    shifter = build("traffic", "ingress-nginx", kube, INGRESS_CONFIG)
    with pytest.raises(TrafficError, match="weight_total"):
        shifter.set_weight(0.5)
    fine = build("traffic", "ingress-nginx", kube, {**INGRESS_CONFIG, "weight_total": 1000})
    fine.set_weight(0.5)
    ann = kube.get(ING, "Ingress", NS, "novacron-api-canary")["metadata"]["annotations"]
    assert ann[f"{P}/canary-weight"] == "5" and ann[f"{P}/canary-weight-total"] == "1000"
    assert fine.get_weight() == 0.5


def test_missing_canary_ingress_without_a_service_is_a_clear_error(kube: FakeKube) -> None:
    kube.put(stable_ingress())
    shifter = build("traffic", "ingress-nginx", kube, {"namespace": NS,
                                                       "stable_ingress": "novacron-api"})
    with pytest.raises(TrafficError, match="set canary_service"):
        shifter.set_weight(10)


def test_dry_run_sends_writes_with_dry_run_all_and_changes_nothing(kube: FakeKube) -> None:
    kube.put(stable_ingress())
    ctx = context(kube)
    ctx.dry_run = True
    shifter = build("traffic", "ingress-nginx", kube, INGRESS_CONFIG, ctx)
    shifter.set_weight(10)
    assert kube.get(ING, "Ingress", NS, "novacron-api-canary") is None
    assert shifter.get_weight() == 10.0  # later reads in the run see the would-be object
    posts = [p for m, p, _c, _b in kube.requests if m == "POST"]
    assert posts and all("dryRun=All" in p for p in posts)
    shown = ctx.announced  # type: ignore[attr-defined]
    assert shown and shown[0].startswith("dry run: create ingresses.networking.k8s.io/"
                                         "novacron-api-canary")
    assert '"nginx.ingress.kubernetes.io/canary-weight":"10"' in shown[0]


# --------------------------------------------------------------------------- cluster access


def test_flags_override_the_plan_and_the_kubeconfig(kube: FakeKube, tmp_path: Path) -> None:
    ctx = context(kube, NOVACTL_NAMESPACE="other")
    assert connect(KubeConfig(namespace="planned"), ctx, label="x").namespace == "other"
    assert connect(KubeConfig(namespace="planned"), context(kube), label="x"
                   ).namespace == "planned"
    assert connect(KubeConfig(), context(kube), label="x").namespace == NS  # the context's
    second = kube.kubeconfig(tmp_path / "second", namespace="ns2", context="second")
    ctx = context(kube, NOVACTL_KUBECONFIG=str(second))
    assert connect(KubeConfig(), ctx, label="x").namespace == "ns2"


def test_a_missing_kubeconfig_or_context_is_one_line(kube: FakeKube, tmp_path: Path) -> None:
    ctx = AdapterContext(env={"KUBECONFIG": str(tmp_path / "nope")})
    with pytest.raises(AdapterError, match="not found") as err:
        connect(KubeConfig(), ctx, label="x")
    assert "\n" not in err.value.message
    with pytest.raises(AdapterError, match="kubeconfig") as err:
        connect(KubeConfig(context="no-such-context"), context(kube), label="x")
    assert "\n" not in err.value.message


def test_the_bearer_token_never_appears_in_errors(kube: FakeKube) -> None:
    shifter = build("traffic", "ingress-nginx", kube, INGRESS_CONFIG)
    kube.inject("GET", "novacron-api-canary$", 401)
    with pytest.raises(KubeError) as err:
        shifter.get_weight()
    assert "fake-token" not in err.value.message


# --------------------------------------------------------------------------- gateway-api

GW = "gateway.networking.k8s.io/v1"


def http_route() -> dict[str, Any]:
    return {"apiVersion": GW, "kind": "HTTPRoute",
            "metadata": {"name": "novacron-api", "namespace": NS},
            "spec": {"parentRefs": [{"name": "public"}], "hostnames": ["api.novacron.io"],
                     "rules": [
                         {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                          "backendRefs": [{"name": "novacron-api", "port": 8080}]},
                         {"matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                          "backendRefs": [{"name": "cdn", "port": 80}]}]}}


GW_CONFIG = {"namespace": NS, "route": "novacron-api", "stable_service": "novacron-api",
             "canary_service": "novacron-api-canary"}


def test_gateway_api_weights_and_header_rule(kube: FakeKube) -> None:
    kube.put(http_route())
    shifter = build("traffic", "gateway-api", kube, GW_CONFIG)
    assert shifter.get_weight() == 0.0
    shifter.set_weight(10)
    assert shifter.set_header_route("X-Canary-Debug", "1") is True
    shifter.set_header_route("X-Canary-Debug", "1")  # idempotent: one header rule
    rules = kube.get(GW, "HTTPRoute", NS, "novacron-api")["spec"]["rules"]
    assert rules[0]["backendRefs"] == [{"name": "novacron-api", "port": 8080, "weight": 90},
                                       {"name": "novacron-api-canary", "port": 8080,
                                        "weight": 10}]
    assert rules[1] == http_route()["spec"]["rules"][1]  # another service's rule: untouched
    assert len(rules) == 3
    assert rules[2] == {"matches": [{"path": {"type": "PathPrefix", "value": "/api"},
                                     "headers": [{"type": "Exact", "name": "X-Canary-Debug",
                                                  "value": "1"}]}],
                        "backendRefs": [{"name": "novacron-api-canary", "port": 8080}]}
    assert shifter.get_weight() == 10.0
    shifter.set_weight(0)  # 0 = all stable: the header rule goes too
    assert shifter.get_weight() == 0.0
    obj = kube.get(GW, "HTTPRoute", NS, "novacron-api")
    assert obj["spec"]["rules"][1:] == http_route()["spec"]["rules"][1:]
    assert len(obj["spec"]["rules"]) == 2
    assert "novactl.io/header-route" not in obj["metadata"].get("annotations", {})


def test_gateway_api_route_without_the_stable_service_is_an_error(kube: FakeKube) -> None:
    kube.put(http_route())
    shifter = build("traffic", "gateway-api", kube, {**GW_CONFIG, "stable_service": "nope"})
    with pytest.raises(TrafficError, match="no rule with a backendRef to service nope"):
        shifter.set_weight(10)
    missing = build("traffic", "gateway-api", kube, {**GW_CONFIG, "route": "absent"})
    with pytest.raises(TrafficError, match="HTTPRoute absent not found"):
        missing.set_weight(10)


# --------------------------------------------------------------------------- istio

IST = "networking.istio.io/v1"


def virtual_service() -> dict[str, Any]:
    return {"apiVersion": IST, "kind": "VirtualService",
            "metadata": {"name": "novacron-api", "namespace": NS},
            "spec": {"hosts": ["api.novacron.io"], "gateways": ["public"],
                     "http": [{"name": "primary", "retries": {"attempts": 3},
                               "route": [{"destination": {"host": "novacron-api",
                                                          "subset": "stable"}}]}]}}


IST_CONFIG = {"namespace": NS, "virtual_service": "novacron-api",
              "stable": {"host": "novacron-api", "subset": "stable"},
              "canary": {"host": "novacron-api", "subset": "canary"}}


def test_istio_weights_and_header_route_first(kube: FakeKube) -> None:
    kube.put(virtual_service())
    shifter = build("traffic", "istio", kube, IST_CONFIG)
    assert shifter.get_weight() == 0.0  # a single destination takes everything
    shifter.set_weight(25)
    shifter.set_header_route("X-Canary-Debug", "1")
    http = kube.get(IST, "VirtualService", NS, "novacron-api")["spec"]["http"]
    assert http[0] == {"name": "novactl-debug-header",
                       "match": [{"headers": {"x-canary-debug": {"exact": "1"}}}],
                       "route": [{"destination": {"host": "novacron-api", "subset": "canary"}}]}
    assert http[1]["retries"] == {"attempts": 3} and http[1]["name"] == "primary"
    assert http[1]["route"] == [
        {"destination": {"host": "novacron-api", "subset": "stable"}, "weight": 75},
        {"destination": {"host": "novacron-api", "subset": "canary"}, "weight": 25}]
    assert shifter.get_weight() == 25.0
    with pytest.raises(TrafficError, match="whole percents"):
        shifter.set_weight(0.5)


# --------------------------------------------------------------------------- smi

SMI = "split.smi-spec.io/v1alpha2"


def test_smi_weights_and_no_header_route(kube: FakeKube) -> None:
    kube.put({"apiVersion": SMI, "kind": "TrafficSplit",
              "metadata": {"name": "novacron-api", "namespace": NS},
              "spec": {"service": "novacron-api",
                       "backends": [{"service": "novacron-api-stable", "weight": 100}]}})
    shifter = build("traffic", "smi", kube, {
        "namespace": NS, "traffic_split": "novacron-api",
        "stable_service": "novacron-api-stable", "canary_service": "novacron-api-canary"})
    shifter.set_weight(50)
    spec = kube.get(SMI, "TrafficSplit", NS, "novacron-api")["spec"]
    assert spec == {"service": "novacron-api",
                    "backends": [{"service": "novacron-api-stable", "weight": 50},
                                 {"service": "novacron-api-canary", "weight": 50}]}
    assert shifter.get_weight() == 50.0
    count = len(writes(kube))
    assert shifter.set_header_route("X-Canary-Debug", "1") is False  # explicit no-op
    assert len(writes(kube)) == count


# --------------------------------------------------------------------------- deployment

APPS = "apps/v1"


def deployment(name: str, image: str, replicas: int = 1) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": APPS, "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [
                                      {"name": "sidecar", "image": "envoy:1"},
                                      {"name": "api", "image": image}]}}}}


WL_CONFIG = {"namespace": NS, "image": "registry.novacron.io/api:{{version}}",
             "container": "api",
             "roles": {"canary": {"deployment": "novacron-api-canary"},
                       "stable": {"deployment": "novacron-api"}}}


def seed_deployments(kube: FakeKube) -> None:
    kube.put(deployment("novacron-api", "registry.novacron.io/api:v2.9.0", 10))
    kube.put(deployment("novacron-api-canary", "registry.novacron.io/api:v2.9.0", 0))


def test_deployment_deploy_scale_ready_promote(kube: FakeKube) -> None:
    seed_deployments(kube)
    workload = build("workload", "deployment", kube, WL_CONFIG)
    workload.deploy("canary", "v3.0.0", 3)
    dep = kube.get(APPS, "Deployment", NS, "novacron-api-canary")
    containers = dep["spec"]["template"]["spec"]["containers"]
    assert containers == [{"name": "sidecar", "image": "envoy:1"},
                          {"name": "api", "image": "registry.novacron.io/api:v3.0.0"}]
    assert dep["spec"]["replicas"] == 3
    assert dep["metadata"]["annotations"] == {"novactl.io/version": "v3.0.0"}
    ready = workload.ready("canary")
    assert ready.ready and ready.version == "v3.0.0" and ready.desired_replicas == 3
    workload.scale("canary", 5)
    assert kube.get(APPS, "Deployment", NS, "novacron-api-canary")["spec"]["replicas"] == 5
    assert any(p.endswith("/deployments/novacron-api-canary/scale") for m, p in writes(kube))
    workload.promote("v3.0.0", None)  # keeps the stable's 10 replicas
    stable = kube.get(APPS, "Deployment", NS, "novacron-api")
    assert stable["spec"]["replicas"] == 10
    assert stable["spec"]["template"]["spec"]["containers"][1]["image"].endswith(":v3.0.0")
    assert workload.ready("stable").ready


def test_deployment_not_ready_names_the_stuck_pods(kube: FakeKube) -> None:
    seed_deployments(kube)
    kube.deployment_behaviour(NS, "novacron-api-canary", ready=False)
    for i in range(2):
        kube.put({"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": f"canary-{i}", "namespace": NS,
                               "labels": {"app": "novacron-api-canary"}},
                  "status": {"phase": "Pending", "containerStatuses": [
                      {"name": "api", "ready": False, "state": {"waiting": {
                          "reason": "ImagePullBackOff",
                          "message": 'Back-off pulling image "registry/api:v3"'}}}]}})
    kube.put({"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": "other", "namespace": NS, "labels": {"app": "x"}},
              "status": {"phase": "Pending"}})
    workload = build("workload", "deployment", kube, WL_CONFIG)
    workload.deploy("canary", "v3.0.0", 2)
    ready = workload.ready("canary")
    assert not ready.ready
    assert ready.message == ("deployment novacron-api-canary: 0 of 2 updated replicas "
                             "available; pods: 2× ImagePullBackOff (Back-off pulling image "
                             '"registry/api:v3")')


def test_deployment_progress_deadline_and_missing_objects(kube: FakeKube) -> None:
    seed_deployments(kube)
    workload = build("workload", "deployment", kube, WL_CONFIG)
    assert workload.ready("canary").message == ("deployment novacron-api-canary is scaled to 0 "
                                                "replicas")  # 0/0 is no canary: not ready
    with pytest.raises(WorkloadError, match="scaled to 0 and no replica count"):
        workload.deploy("canary", "v3.0.0", None)
    workload.scale("canary", 2)
    dep = kube.get(APPS, "Deployment", NS, "novacron-api-canary")
    dep["status"] = {"observedGeneration": dep["metadata"]["generation"], "conditions": [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}
    kube.put(dep, reconcile=False)
    workload = build("workload", "deployment", kube, WL_CONFIG)
    assert "progress deadline exceeded" in workload.ready("canary").message
    missing = build("workload", "deployment", kube, {
        **WL_CONFIG, "roles": {"canary": {"deployment": "nope"},
                               "stable": {"deployment": "novacron-api"}}})
    with pytest.raises(WorkloadError, match="deployment nope not found in namespace novacron"):
        missing.deploy("canary", "v3", 1)
    with pytest.raises(WorkloadError, match="no container 'web'"):
        build("workload", "deployment", kube, {**WL_CONFIG, "container": "web"}
              ).deploy("canary", "v3", 1)


def test_deployment_conflict_is_reread(kube: FakeKube) -> None:
    seed_deployments(kube)
    workload = build("workload", "deployment", kube, WL_CONFIG)
    kube.inject("PATCH", "deployments/novacron-api-canary$", 409, times=2)
    workload.deploy("canary", "v3.0.0", 1)
    assert kube.pending_faults == 0
    image = kube.get(APPS, "Deployment", NS, "novacron-api-canary")["spec"]["template"]["spec"][
        "containers"][1]["image"]
    assert image.endswith(":v3.0.0")


def test_retire_deletes_only_the_old_versions_empty_replicasets(kube: FakeKube) -> None:
    seed_deployments(kube)
    uid = kube.get(APPS, "Deployment", NS, "novacron-api")["metadata"]["uid"]

    def rs(name: str, image: str, replicas: int, owner: str | None = uid) -> None:
        meta: dict[str, Any] = {"name": name, "namespace": NS,
                                "labels": {"app": "novacron-api"}}
        if owner:
            meta["ownerReferences"] = [{"kind": "Deployment", "name": "novacron-api",
                                        "uid": owner}]
        kube.put({"apiVersion": APPS, "kind": "ReplicaSet", "metadata": meta,
                  "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                      {"name": "api", "image": image}]}}}})

    rs("old", "registry.novacron.io/api:v2.9.0", 0)
    rs("current", "registry.novacron.io/api:v3.0.0", 10)
    rs("old-but-running", "registry.novacron.io/api:v2.9.0", 2)
    rs("someone-elses", "registry.novacron.io/api:v2.9.0", 0, owner="another-uid")
    workload = build("workload", "deployment", kube, WL_CONFIG)
    workload.retire("v2.9.0")
    left = sorted(o["metadata"]["name"] for o in kube.list(APPS, "ReplicaSet", NS))
    assert left == ["current", "old-but-running", "someone-elses"]


def test_plan_validation_of_adapter_configs(kube: FakeKube) -> None:
    with pytest.raises(Exception, match="stable_ingress"):
        build("traffic", "ingress-nginx", kube, {"namespace": NS})
    with pytest.raises(Exception, match="missing stable"):
        build("workload", "deployment", kube, {
            "image": "x:{{version}}", "roles": {"canary": {"deployment": "c"}}})
    with pytest.raises(Exception, match="image must contain"):
        build("workload", "deployment", kube, {**WL_CONFIG, "image": "x:latest"})


def test_requests_are_json_merge_patches(kube: FakeKube) -> None:
    kube.put(stable_ingress())
    shifter = build("traffic", "ingress-nginx", kube, INGRESS_CONFIG)
    shifter.set_weight(1)
    shifter.set_weight(2)
    kinds = {ct for m, _p, ct, _b in kube.requests if m == "PATCH"}
    assert kinds == {"application/merge-patch+json"}
    body = next(b for m, _p, _c, b in kube.requests if m == "PATCH")
    assert json.dumps(body).count("resourceVersion") == 1


def test_in_cluster_config_is_used_without_a_kubeconfig(tmp_path: Path) -> None:
    # No kubeconfig file, but running in a pod: the service-account config is loaded.
    # Outside a pod its token file is missing, which must be a one-line error naming it.
    ctx = AdapterContext(env={"KUBECONFIG": str(tmp_path / "absent"),
                              "KUBERNETES_SERVICE_HOST": "10.0.0.1",
                              "KUBERNETES_SERVICE_PORT": "443"})
    with pytest.raises(AdapterError) as err:
        connect(KubeConfig(), ctx, label="x")
    assert "\n" not in err.value.message
    assert err.value.message == ("x: in-cluster config (service account): Service token file "
                                 "does not exist.")


# --------------------------------------------------------------------------- review fixes


def test_dry_run_on_a_fresh_cluster_patches_what_it_would_create(kube: FakeKube) -> None:
    kube.put(stable_ingress())
    ctx = context(kube)
    ctx.dry_run = True
    shifter = build("traffic", "ingress-nginx", kube, INGRESS_CONFIG, ctx)
    shifter.set_header_route("X-Canary-Debug", "1")  # "creates" the canary Ingress
    shifter.set_weight(10)  # patches the would-be object: no NotFound from the server
    assert shifter.get_weight() == 10.0
    assert kube.get(ING, "Ingress", NS, "novacron-api-canary") is None
    shown = ctx.announced  # type: ignore[attr-defined]
    assert len(shown) == 2 and shown[1].startswith("dry run: patch ingresses")


def test_a_relative_kubeconfig_flag_is_relative_to_the_current_directory(
        kube: FakeKube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "plans").mkdir()
    kube.kubeconfig(tmp_path / "kc", namespace="from-flag")
    monkeypatch.chdir(tmp_path)
    ctx = AdapterContext(env={"NOVACTL_KUBECONFIG": "kc"}, base_dir=tmp_path / "plans")
    assert connect(KubeConfig(), ctx, label="x").namespace == "from-flag"


def test_an_explicit_missing_kubeconfig_never_falls_back_to_the_pod(tmp_path: Path) -> None:
    ctx = AdapterContext(env={"NOVACTL_KUBECONFIG": str(tmp_path / "typo"),
                              "KUBERNETES_SERVICE_HOST": "10.0.0.1",
                              "KUBERNETES_SERVICE_PORT": "443"})
    with pytest.raises(AdapterError, match="typo not found"):
        connect(KubeConfig(), ctx, label="x")


def test_gateway_api_read_back_without_the_stable_rule_is_an_error(kube: FakeKube) -> None:
    kube.put(http_route())
    shifter = build("traffic", "gateway-api", kube, {**GW_CONFIG, "stable_service": "nope"})
    with pytest.raises(TrafficError, match="no rule with a backendRef"):
        shifter.get_weight()  # never None ("cannot read back") for a route it cannot drive


def test_gateway_api_leaves_the_teams_own_header_rules_alone(kube: FakeKube) -> None:
    route = http_route()
    teams = {"matches": [{"headers": [{"type": "Exact", "name": "X-Beta", "value": "yes"}]}],
             "backendRefs": [{"name": "novacron-api-canary", "port": 8080}]}
    route["spec"]["rules"].append(teams)
    kube.put(route)
    shifter = build("traffic", "gateway-api", kube, GW_CONFIG)
    shifter.set_header_route("X-Canary-Debug", "1")
    shifter.set_weight(10)
    shifter.set_header_route("X-Canary-Debug", "1")
    obj = kube.get(GW, "HTTPRoute", NS, "novacron-api")
    rules = obj["spec"]["rules"]
    assert teams in rules and len(rules) == 4
    assert obj["metadata"]["annotations"]["novactl.io/header-route"] == "X-Canary-Debug=1"


def test_istio_header_route_keeps_the_weighted_routes_conditions(kube: FakeKube) -> None:
    vs = virtual_service()
    vs["spec"]["http"][0]["match"] = [{"uri": {"prefix": "/api"}}]
    vs["spec"]["http"].append({"name": "static", "route": [{"destination": {"host": "cdn"}}]})
    kube.put(vs)
    shifter = build("traffic", "istio", kube, IST_CONFIG)
    shifter.set_header_route("X-Canary-Debug", "1")
    http = kube.get(IST, "VirtualService", NS, "novacron-api")["spec"]["http"]
    assert http[0]["match"] == [{"uri": {"prefix": "/api"},
                                 "headers": {"x-canary-debug": {"exact": "1"}}}]
    assert http[2] == vs["spec"]["http"][1]


def test_istio_refuses_a_route_with_a_third_destination(kube: FakeKube) -> None:
    vs = virtual_service()
    vs["spec"]["http"][0]["route"] = [
        {"destination": {"host": "novacron-api", "subset": "stable"}, "weight": 90},
        {"destination": {"host": "novacron-legacy"}, "weight": 10}]
    kube.put(vs)
    shifter = build("traffic", "istio", kube, IST_CONFIG)
    with pytest.raises(TrafficError, match="also sends to novacron-legacy"):
        shifter.set_weight(10)
    assert kube.get(IST, "VirtualService", NS, "novacron-api")["spec"]["http"][0]["route"] == \
        vs["spec"]["http"][0]["route"]


# --------------------------------------------------------------------------- second review


@pytest.mark.parametrize("config", [
    {"namespace": NS, "stable_ingress": "novacron-api"},                # no canary_service
    {**INGRESS_CONFIG, "create": False},
    INGRESS_CONFIG,
])
def test_rollback_without_a_canary_ingress_is_a_no_op(kube: FakeKube,
                                                     config: dict[str, Any]) -> None:
    kube.put(stable_ingress())
    shifter = build("traffic", "ingress-nginx", kube, config)
    shifter.set_weight(0)  # nothing reaches a canary that has no Ingress: nothing to do
    assert shifter.get_weight() == 0.0
    assert writes(kube) == []


def test_weight_zero_takes_the_debug_header_off_the_canary(kube: FakeKube) -> None:
    kube.put(stable_ingress())
    ingress = build("traffic", "ingress-nginx", kube, INGRESS_CONFIG)
    ingress.set_header_route("X-Canary-Debug", "1")
    ingress.set_weight(10)
    ingress.set_weight(0)
    ann = kube.get(ING, "Ingress", NS, "novacron-api-canary")["metadata"]["annotations"]
    assert f"{P}/canary-by-header" not in ann and f"{P}/canary-by-header-value" not in ann
    assert ann[f"{P}/canary-weight"] == "0"
    kube.put(virtual_service())
    istio = build("traffic", "istio", kube, IST_CONFIG)
    istio.set_header_route("X-Canary-Debug", "1")
    istio.set_weight(0)
    names = [r.get("name") for r in
             kube.get(IST, "VirtualService", NS, "novacron-api")["spec"]["http"]]
    assert names == ["primary"]


def test_other_backends_count_in_the_read_back_and_block_the_split(kube: FakeKube) -> None:
    route = http_route()
    route["spec"]["rules"][0]["backendRefs"] = [
        {"name": "novacron-api", "port": 8080, "weight": 90},
        {"name": "legacy", "port": 8080, "weight": 20},
        {"name": "novacron-api-canary", "port": 8080, "weight": 10}]
    kube.put(route)
    gateway = build("traffic", "gateway-api", kube, GW_CONFIG)
    assert gateway.get_weight() == pytest.approx(100 * 10 / 120, abs=1e-4)
    with pytest.raises(TrafficError, match="also sends to legacy"):
        gateway.set_weight(50)
    kube.put({"apiVersion": SMI, "kind": "TrafficSplit",
              "metadata": {"name": "s", "namespace": NS},
              "spec": {"service": "api", "backends": [
                  {"service": "stable", "weight": 90}, {"service": "legacy", "weight": 20},
                  {"service": "canary", "weight": 10}]}})
    smi = build("traffic", "smi", kube, {"namespace": NS, "traffic_split": "s",
                                         "stable_service": "stable", "canary_service": "canary"})
    assert smi.get_weight() == pytest.approx(100 * 10 / 120, abs=1e-4)
    with pytest.raises(TrafficError, match="also sends to legacy"):
        smi.set_weight(50)


def test_dry_run_never_prints_environment_values(kube: FakeKube) -> None:
    seed_deployments(kube)
    dep = kube.get(APPS, "Deployment", NS, "novacron-api-canary")
    dep["spec"]["template"]["spec"]["containers"][1]["env"] = [
        {"name": "DATABASE_URL", "value": "postgres://app:S3cr3t@db/app"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}}}]
    kube.put(dep)
    ctx = context(kube)
    ctx.dry_run = True
    workload = build("workload", "deployment", kube, WL_CONFIG, ctx)
    workload.deploy("canary", "v3.0.0", 2)
    shown = "\n".join(ctx.announced)  # type: ignore[attr-defined]
    assert "DATABASE_URL" in shown and "S3cr3t" not in shown and '"value":"***"' in shown
    assert "secretKeyRef" in shown
