"""The fake Kubernetes API server (tests/_kubeapi.py), exercised through the official client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import urllib3
from _kubeapi import FakeKube
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
NS = "default"


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as server:
        yield server


@pytest.fixture
def api(kube: FakeKube) -> Iterator[client.ApiClient]:
    api_client = kube.api_client()
    try:
        yield api_client
    finally:
        api_client.close()


def raw(response: Any) -> dict[str, Any]:
    """The JSON of a ``_preload_content=False`` response."""
    return json.loads(response.data)


def status_of(exc: ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels or {}}, "data": data}


def deployment(name: str, replicas: int | None = 2) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"containers": [{"name": "app", "image": f"{name}:v1"}]}},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": spec}


def ingress(name: str) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "annotations": {"canary-weight": "0"}},
            "spec": {"rules": [{"host": "example.test"}]}}


# -- core CRUD ------------------------------------------------------------------------------

def test_create_read_list_with_label_selectors(kube: FakeKube, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    created = core.create_namespaced_config_map(NS, configmap("a", {"app": "web", "tier": "x"},
                                                              k="1"))
    assert created.metadata.namespace == NS and created.metadata.uid
    assert int(created.metadata.resource_version) > 0
    core.create_namespaced_config_map(NS, configmap("b", {"app": "web"}))
    core.create_namespaced_config_map(NS, configmap("c", {"app": "db"}))
    core.create_namespaced_config_map("other", configmap("d", {"app": "web"}))

    assert core.read_namespaced_config_map("a", NS).data == {"k": "1"}

    def names(selector: str | None = None) -> list[str]:
        listing = core.list_namespaced_config_map(NS, label_selector=selector)
        return [item.metadata.name for item in listing.items]

    assert names() == ["a", "b", "c"]
    assert names("app=web") == ["a", "b"]
    assert names("app=web,tier=x") == ["a"]
    assert names("app!=web") == ["c"]
    assert names("tier") == ["a"]
    assert names("!tier") == ["b", "c"]
    assert names("app in (db, cache)") == ["c"]

    body = raw(core.list_namespaced_config_map(NS, _preload_content=False))
    assert body["kind"] == "ConfigMapList" and body["apiVersion"] == "v1"
    assert int(body["metadata"]["resourceVersion"]) >= 4

    everywhere = core.list_config_map_for_all_namespaces(label_selector="app=web")
    assert sorted(i.metadata.name for i in everywhere.items) == ["a", "b", "d"]
    pods = core.list_namespaced_pod(NS, field_selector="metadata.name=nope")
    assert pods.items == []


def test_missing_objects_are_404_status(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    with pytest.raises(ApiException) as err:
        apps.read_namespaced_deployment("ghost", NS)
    assert err.value.status == 404
    body = status_of(err.value)
    assert body["kind"] == "Status" and body["reason"] == "NotFound"
    assert body["message"] == 'deployments.apps "ghost" not found'
    assert body["details"]["name"] == "ghost"
    with pytest.raises(ApiException) as err:
        client.CoreV1Api(api).delete_namespaced_config_map("ghost", NS)
    assert err.value.status == 404
    with pytest.raises(ApiException) as err:
        client.CoreV1Api(api).patch_namespaced_config_map("ghost", NS, {"data": {"a": "b"}})
    assert err.value.status == 404


def test_create_twice_is_409_already_exists(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_service(NS, {"apiVersion": "v1", "kind": "Service",
                                        "metadata": {"name": "web"},
                                        "spec": {"ports": [{"port": 80}]}})
    with pytest.raises(ApiException) as err:
        core.create_namespaced_service(NS, {"metadata": {"name": "web"}, "spec": {}})
    assert err.value.status == 409
    assert status_of(err.value)["reason"] == "AlreadyExists"


def test_generate_name_and_delete(kube: FakeKube, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    made = core.create_namespaced_config_map(NS, {"metadata": {"generateName": "cm-"}})
    assert made.metadata.name.startswith("cm-") and len(made.metadata.name) > 3
    result = core.delete_namespaced_config_map(made.metadata.name, NS)
    assert result["status"] == "Success"
    assert kube.get("v1", "ConfigMap", NS, made.metadata.name) is None


def test_dry_run_does_not_store(kube: FakeKube, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    made = core.create_namespaced_config_map(NS, configmap("dry"), dry_run="All")
    assert made.metadata.name == "dry"
    assert kube.get("v1", "ConfigMap", NS, "dry") is None
    kube.put(configmap("dry", x="1"))
    core.patch_namespaced_config_map("dry", NS, {"data": {"x": "2"}}, dry_run="All")
    assert kube.get("v1", "ConfigMap", NS, "dry")["data"] == {"x": "1"}


# -- updates and optimistic concurrency -----------------------------------------------------

def test_put_with_stale_resource_version_is_409(kube: FakeKube, api: client.ApiClient) -> None:
    net = client.NetworkingV1Api(api)
    net.create_namespaced_ingress(NS, ingress("web"))
    first = net.read_namespaced_ingress("web", NS, _preload_content=False)
    stale = raw(first)
    kube.put({**stale, "metadata": {**stale["metadata"], "labels": {"touched": "yes"}}})

    with pytest.raises(ApiException) as err:
        net.replace_namespaced_ingress("web", NS, stale)
    assert err.value.status == 409
    body = status_of(err.value)
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on ingresses.networking.k8s.io "web": the object has '
        "been modified; please apply your changes to the latest version and try again")

    fresh = raw(net.read_namespaced_ingress("web", NS, _preload_content=False))
    fresh["spec"]["rules"][0]["host"] = "new.test"
    replaced = net.replace_namespaced_ingress("web", NS, fresh)
    assert replaced.spec.rules[0].host == "new.test"
    assert int(replaced.metadata.resource_version) > int(fresh["metadata"]["resourceVersion"])
    assert replaced.metadata.generation == 2


def test_patch_with_stale_resource_version_is_409(api: client.ApiClient) -> None:
    net = client.NetworkingV1Api(api)
    created = net.create_namespaced_ingress(NS, ingress("web"))
    rv = created.metadata.resource_version
    patch = {"metadata": {"resourceVersion": rv, "annotations": {"canary-weight": "10"}}}
    patched = net.patch_namespaced_ingress("web", NS, patch, _content_type=MERGE)
    assert patched.metadata.annotations == {"canary-weight": "10"}
    assert patched.metadata.resource_version != rv

    patch["metadata"]["annotations"] = {"canary-weight": "20"}  # same, now stale, version
    with pytest.raises(ApiException) as err:
        net.patch_namespaced_ingress("web", NS, patch, _content_type=MERGE)
    assert err.value.status == 409
    assert status_of(err.value)["reason"] == "Conflict"
    assert net.read_namespaced_ingress("web", NS).metadata.annotations == {
        "canary-weight": "10"}


def test_merge_patch_removes_with_null_and_bumps_generation(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(NS, deployment("web", replicas=2))
    patch = {"metadata": {"labels": {"a": "1"}},
             "spec": {"replicas": 4, "template": {"metadata": {"labels": {"app": "web",
                                                                          "v": "2"}}}}}
    patched = raw(apps.patch_namespaced_deployment("web", NS, patch, _content_type=MERGE,
                                                   _preload_content=False))
    assert patched["spec"]["replicas"] == 4
    assert patched["metadata"]["generation"] == 2
    assert patched["status"]["observedGeneration"] == 2
    assert patched["status"]["readyReplicas"] == 4

    removed = apps.patch_namespaced_deployment("web", NS, {"metadata": {"labels": {"a": None}}},
                                               _content_type=MERGE)
    assert not removed.metadata.labels
    assert removed.metadata.generation == 2  # metadata only: no new generation


def test_json_patch_ops_and_failed_test_is_422(kube: FakeKube, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(NS, configmap("cfg", {"x": "1"}, a="1", b="2"))
    ops = [{"op": "test", "path": "/data/a", "value": "1"},
           {"op": "replace", "path": "/data/a", "value": "10"},
           {"op": "remove", "path": "/data/b"},
           {"op": "add", "path": "/metadata/labels/new~1key", "value": "v"}]
    patched = core.patch_namespaced_config_map("cfg", NS, ops)
    assert patched.data == {"a": "10"}
    assert patched.metadata.labels == {"x": "1", "new/key": "v"}
    assert kube.requests[-1][2] == JSON_PATCH and kube.requests[-1][3] == ops

    with pytest.raises(ApiException) as err:
        core.patch_namespaced_config_map("cfg", NS, [
            {"op": "test", "path": "/data/a", "value": "nope"},
            {"op": "replace", "path": "/data/a", "value": "bad"}])
    assert err.value.status == 422
    assert kube.get("v1", "ConfigMap", NS, "cfg")["data"] == {"a": "10"}


def test_strategic_merge_patch_is_default_for_objects(kube: FakeKube,
                                                      api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(NS, deployment("web"))
    patched = apps.patch_namespaced_deployment(
        "web", NS, {"spec": {"template": {"metadata": {"annotations": {"restart": "now"}}}}})
    assert patched.spec.template.metadata.annotations == {"restart": "now"}
    assert patched.spec.template.metadata.labels == {"app": "web"}
    method, path, content_type, _ = kube.requests[-1]
    assert (method, content_type) == ("PATCH", "application/strategic-merge-patch+json")
    assert path == "/apis/apps/v1/namespaces/default/deployments/web"


def test_status_only_changes_through_status_subresource(kube: FakeKube,
                                                        api: client.ApiClient) -> None:
    net = client.NetworkingV1Api(api)
    net.create_namespaced_ingress(NS, ingress("web"))
    lb = {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}
    with_status = net.patch_namespaced_ingress_status("web", NS, {"status": lb},
                                                      _content_type=MERGE)
    assert with_status.status.load_balancer.ingress[0].ip == "10.0.0.1"
    assert with_status.metadata.generation == 1

    body = raw(net.read_namespaced_ingress("web", NS, _preload_content=False))
    body["status"] = {"loadBalancer": {}}
    body["metadata"]["annotations"] = {"changed": "yes"}
    replaced = net.replace_namespaced_ingress("web", NS, body)
    assert replaced.metadata.annotations == {"changed": "yes"}
    assert replaced.status.load_balancer.ingress[0].ip == "10.0.0.1"  # kept

    body = raw(net.read_namespaced_ingress("web", NS, _preload_content=False))
    body["status"] = {"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}]}}
    body["spec"]["rules"][0]["host"] = "ignored.test"
    replaced = net.replace_namespaced_ingress_status("web", NS, body)
    assert replaced.status.load_balancer.ingress[0].ip == "10.0.0.2"
    assert replaced.spec.rules[0].host == "example.test"


def test_lease_round_trip_with_optimistic_concurrency(api: client.ApiClient) -> None:
    coord = client.CoordinationV1Api(api)
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "novactl-lock"},
             "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}
    created = coord.create_namespaced_lease(NS, lease)
    assert created.spec.holder_identity == "a"
    mine = raw(coord.read_namespaced_lease("novactl-lock", NS, _preload_content=False))
    theirs = json.loads(json.dumps(mine))
    mine["spec"]["holderIdentity"] = "b"
    coord.replace_namespaced_lease("novactl-lock", NS, mine)
    theirs["spec"]["holderIdentity"] = "c"
    with pytest.raises(ApiException) as err:
        coord.replace_namespaced_lease("novactl-lock", NS, theirs)
    assert err.value.status == 409
    assert coord.read_namespaced_lease("novactl-lock", NS).spec.holder_identity == "b"


# -- faults ---------------------------------------------------------------------------------

def test_injected_429_carries_retry_after_and_is_not_applied(kube: FakeKube,
                                                             api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    kube.put(configmap("cfg", a="1"))
    kube.inject("PATCH", r"/configmaps/cfg$", 429, retry_after=2, message="slow down")
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_config_map("cfg", NS, {"data": {"a": "2"}})
    assert err.value.status == 429
    assert err.value.headers["Retry-After"] == "2"
    body = status_of(err.value)
    assert (body["reason"], body["message"], body["code"]) == ("TooManyRequests",
                                                              "slow down", 429)
    assert kube.get("v1", "ConfigMap", NS, "cfg")["data"] == {"a": "1"}
    # used up: the next one goes through
    assert core.patch_namespaced_config_map("cfg", NS, {"data": {"a": "2"}}).data == {"a": "2"}


def test_injected_500_any_method_twice(kube: FakeKube, api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    kube.inject("*", "deployments", 500, times=2)
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            apps.create_namespaced_deployment(NS, deployment("web"))
        assert err.value.status == 500
        assert status_of(err.value)["reason"] == "InternalError"
    assert kube.list("apps/v1", "Deployment", NS) == []
    apps.create_namespaced_deployment(NS, deployment("web"))
    assert [m for m, *_ in kube.requests] == ["POST", "POST", "POST"]


def test_injected_drop_is_a_connection_error(kube: FakeKube, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    kube.put(configmap("cfg"))
    kube.inject("GET", "/configmaps/cfg", "drop")
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.HTTPError):
        core.read_namespaced_config_map("cfg", NS)
    assert time.monotonic() - started < 1
    assert core.read_namespaced_config_map("cfg", NS).metadata.name == "cfg"


# -- deployments ----------------------------------------------------------------------------

def test_deployment_scale_subresource_drives_replicas(kube: FakeKube,
                                                      api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    created = apps.create_namespaced_deployment(NS, deployment("web", replicas=None))
    assert created.spec.replicas == 1  # defaulted
    assert created.status.ready_replicas == 1

    scale = apps.read_namespaced_deployment_scale("web", NS)
    assert scale.spec.replicas == 1 and scale.status.selector == "app=web"
    assert scale.metadata.resource_version == created.metadata.resource_version

    scaled = apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 5}},
                                                    _content_type=MERGE)
    assert scaled.spec.replicas == 5 and scaled.status.replicas == 5
    dep = apps.read_namespaced_deployment("web", NS)
    assert dep.spec.replicas == 5 and dep.metadata.generation == 2
    assert dep.status.observed_generation == 2
    assert dep.status.ready_replicas == dep.status.available_replicas == 5

    scale_body = raw(apps.read_namespaced_deployment_scale("web", NS, _preload_content=False))
    scale_body["spec"]["replicas"] = 0
    assert apps.replace_namespaced_deployment_scale("web", NS, scale_body).spec.replicas == 0
    assert apps.read_namespaced_deployment("web", NS).status.replicas == 0
    with pytest.raises(ApiException) as err:  # stale resourceVersion in the Scale
        apps.replace_namespaced_deployment_scale("web", NS, scale_body)
    assert err.value.status == 409


def test_deployment_not_ready_behaviour(kube: FakeKube, api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    kube.deployment_behaviour(NS, "web", ready=False)
    apps.create_namespaced_deployment(NS, deployment("web", replicas=3))
    status = apps.read_namespaced_deployment_status("web", NS).status
    assert (status.replicas, status.updated_replicas) == (3, 3)
    assert not status.ready_replicas and not status.available_replicas
    assert status.unavailable_replicas == 3
    conditions = {c.type: (c.status, c.reason) for c in status.conditions}
    assert conditions == {"Available": ("False", "MinimumReplicasUnavailable"),
                          "Progressing": ("True", "ReplicaSetUpdated")}

    before = apps.read_namespaced_deployment("web", NS).metadata.resource_version
    kube.deployment_behaviour(NS, "web", ready=True)
    after = apps.read_namespaced_deployment("web", NS)
    assert after.metadata.resource_version != before
    assert after.status.available_replicas == 3 and not after.status.unavailable_replicas
    conditions = {c.type: (c.status, c.reason) for c in after.status.conditions}
    assert conditions == {"Available": ("True", "MinimumReplicasAvailable"),
                          "Progressing": ("True", "NewReplicaSetAvailable")}


def test_seeded_pods_and_direct_access(kube: FakeKube, api: client.ApiClient) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "web-1", "labels": {"app": "web"}},
           "spec": {"containers": [{"name": "app", "image": "web:v2"}]},
           "status": {"phase": "Pending", "containerStatuses": [{
               "name": "app", "image": "web:v2", "imageID": "", "ready": False,
               "restartCount": 0,
               "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}}
    stored = kube.put(pod)
    stored["metadata"]["name"] = "mutated"  # copies out: no effect on the server
    pods = client.CoreV1Api(api).list_namespaced_pod(NS, label_selector="app=web").items
    assert [p.metadata.name for p in pods] == ["web-1"]
    waiting = pods[0].status.container_statuses[0].state.waiting
    assert waiting.reason == "ImagePullBackOff"
    assert [p["metadata"]["name"] for p in kube.list("v1", "Pod", NS)] == ["web-1"]
    kube.delete("v1", "Pod", NS, "web-1")
    assert kube.get("v1", "Pod", NS, "web-1") is None


def test_put_keeps_a_seeded_deployment_status_when_asked(kube: FakeKube) -> None:
    body = deployment("web", replicas=2)
    body["status"] = {"observedGeneration": 1, "replicas": 2,
                      "conditions": [{"type": "Progressing", "status": "False",
                                      "reason": "ProgressDeadlineExceeded"}]}
    kept = kube.put(body, reconcile=False)
    assert kept["status"]["conditions"][0]["reason"] == "ProgressDeadlineExceeded"
    recomputed = kube.put(body)  # spec unchanged: the controller leaves it alone
    assert recomputed["status"]["conditions"][0]["reason"] == "ProgressDeadlineExceeded"
    body["spec"]["replicas"] = 3
    changed = kube.put(body)
    assert changed["status"]["readyReplicas"] == 3
    assert changed["metadata"]["generation"] == 2
    again = kube.get("apps/v1", "Deployment", NS, "web")
    again["spec"]["replicas"] = 4
    assert kube.put(again)["metadata"]["generation"] == 3


def test_concurrent_writers_get_distinct_resource_versions(kube: FakeKube) -> None:
    def work(worker: int) -> list[str]:
        api_client = kube.api_client()
        try:
            core = client.CoreV1Api(api_client)
            return [core.create_namespaced_config_map(NS, configmap(f"w{worker}-{i}"))
                    .metadata.resource_version for i in range(10)]
        finally:
            api_client.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        versions = [rv for chunk in pool.map(work, range(6), timeout=20) for rv in chunk]
    assert len(set(versions)) == 60
    assert len(kube.list("v1", "ConfigMap", NS)) == 60


# -- custom resources -----------------------------------------------------------------------

@pytest.mark.parametrize(("group", "version", "plural", "kind", "spec"), [
    ("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute",
     {"rules": [{"backendRefs": [{"name": "stable", "weight": 90},
                                 {"name": "canary", "weight": 10}]}]}),
    ("networking.istio.io", "v1beta1", "virtualservices", "VirtualService",
     {"hosts": ["web"], "http": [{"route": [{"destination": {"host": "stable"},
                                             "weight": 100}]}]}),
    ("networking.istio.io", "v1", "virtualservices", "VirtualService",
     {"hosts": ["web"], "http": []}),
    ("split.smi-spec.io", "v1alpha2", "trafficsplits", "TrafficSplit",
     {"service": "web", "backends": [{"service": "stable", "weight": 100}]}),
    ("split.smi-spec.io", "v1alpha4", "trafficsplits", "TrafficSplit",
     {"service": "web", "backends": [{"service": "canary", "weight": 5}]}),
    ("example.dev", "v1", "widgets", "Widget", {"size": 1}),
])
def test_custom_objects_round_trip(kube: FakeKube, api: client.ApiClient, group: str,
                                   version: str, plural: str, kind: str,
                                   spec: dict[str, Any]) -> None:
    custom = client.CustomObjectsApi(api)
    body = {"apiVersion": f"{group}/{version}", "kind": kind,
            "metadata": {"name": "web", "labels": {"app": "web"}}, "spec": spec}
    created = custom.create_namespaced_custom_object(group, version, NS, plural, body)
    assert created["metadata"]["generation"] == 1 and created["spec"] == spec
    got = custom.get_namespaced_custom_object(group, version, NS, plural, "web")
    assert got == created
    listing = custom.list_namespaced_custom_object(group, version, NS, plural,
                                                   label_selector="app=web")
    assert listing["kind"] == f"{kind}List"
    assert [i["metadata"]["name"] for i in listing["items"]] == ["web"]

    patched = custom.patch_namespaced_custom_object(group, version, NS, plural, "web",
                                                    {"spec": {"paused": True}})
    assert patched["spec"] == {**spec, "paused": True}
    assert patched["metadata"]["generation"] == 2
    with pytest.raises(ApiException) as err:
        custom.replace_namespaced_custom_object(group, version, NS, plural, "web", got)
    assert err.value.status == 409
    patched["spec"] = spec
    replaced = custom.replace_namespaced_custom_object(group, version, NS, plural, "web",
                                                       patched)
    assert replaced["spec"] == spec and replaced["metadata"]["generation"] == 3
    assert kube.get(f"{group}/{version}", kind, NS, "web")["spec"] == spec

    custom.delete_namespaced_custom_object(group, version, NS, plural, "web")
    with pytest.raises(ApiException) as err:
        custom.get_namespaced_custom_object(group, version, NS, plural, "web")
    assert err.value.status == 404


def test_virtualservice_versions_share_storage(kube: FakeKube, api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    kube.put({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
              "metadata": {"name": "web"}, "spec": {"hosts": ["web"]}})
    got = custom.get_namespaced_custom_object("networking.istio.io", "v1", NS,
                                              "virtualservices", "web")
    assert got["apiVersion"] == "networking.istio.io/v1" and got["spec"] == {"hosts": ["web"]}


# -- kubeconfig -----------------------------------------------------------------------------

def test_kubeconfig_works_with_new_client_from_config(kube: FakeKube, tmp_path: Path) -> None:
    path = kube.kubeconfig(tmp_path / "kube" / "config", namespace="canary", context="fake-ctx")
    assert path.is_file()
    api_client = config.new_client_from_config(config_file=str(path), context="fake-ctx")
    try:
        assert api_client.configuration.host == kube.url
        _, active = config.list_kube_config_contexts(config_file=str(path))
        assert active["name"] == "fake-ctx"
        assert active["context"]["namespace"] == "canary"
        core = client.CoreV1Api(api_client)
        core.create_namespaced_config_map("canary", configmap("cfg", a="1"))
        assert kube.get("v1", "ConfigMap", "canary", "cfg")["data"] == {"a": "1"}
        method, target, content_type, body = kube.requests[-1]
        assert (method, target) == ("POST", "/api/v1/namespaces/canary/configmaps")
        # this client sends no Content-Type on creates; the body is JSON all the same
        assert content_type in ("", "application/json") and body["metadata"]["name"] == "cfg"
    finally:
        api_client.close()


def test_stop_is_idempotent_and_frees_the_port(tmp_path: Path) -> None:
    kube = FakeKube().start()
    api_client = kube.api_client()
    client.CoreV1Api(api_client).list_namespaced_config_map(NS)
    kube.stop()
    kube.stop()
    with pytest.raises(urllib3.exceptions.HTTPError):
        client.CoreV1Api(api_client).list_namespaced_config_map(NS, _request_timeout=1)
    api_client.close()
