"""The command line with Kubernetes adapters and the cluster store (tests/_kubeapi.FakeKube)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _kubeapi import FakeKube
from conftest import run_novactl
from test_kube_e2e import PLAN, seed

NS = "novacron"
ING = "networking.k8s.io/v1"
P = "nginx.ingress.kubernetes.io"
ENV_KEYS = ("NOVACTL_KUBECONFIG", "NOVACTL_KUBE_CONTEXT", "NOVACTL_NAMESPACE", "NOVACTL_STORE",
            "NOVACTL_DRY_RUN", "KUBECONFIG")


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for key in ENV_KEYS:  # the root options write these; monkeypatch puts them back
        monkeypatch.delenv(key, raising=False)
    with FakeKube() as kube:
        seed(kube)
        kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig", namespace=NS)
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        # the plan's fake probe answers 0.2% errors for everything
        plan = PLAN.replace("m: {type: fake}", "m: {type: fake, config: {values: "
                            "{error_rate: 0.002}, rate: 100}}")
        (tmp_path / "plan.yaml").write_text(plan)
        kube.plan = tmp_path / "plan.yaml"
        yield kube


def test_dry_run_shows_the_patches_and_changes_nothing(cluster: FakeKube, cli) -> None:
    code, out, err = cli("--dry-run", "run", "--once", cluster.plan)
    text = out + err
    assert code == 0, text
    assert "dry run: create ingresses.networking.k8s.io/novacron-api-canary" in text
    assert "dry run: patch deployments.apps/novacron-api-canary" in text
    assert '"replicas":1' in text
    assert cluster.get(ING, "Ingress", NS, "novacron-api-canary") is None
    canary = cluster.get("apps/v1", "Deployment", NS, "novacron-api-canary")
    assert canary["spec"]["replicas"] == 0
    assert cluster.get("v1", "ConfigMap", NS, "novactl-kube-e2e-state") is None
    assert cluster.get("coordination.k8s.io/v1", "Lease", NS, "novactl-kube-e2e") is None
    writes = [p for m, p, _c, _b in cluster.requests if m in ("POST", "PATCH", "PUT", "DELETE")]
    assert writes and all("dryRun=All" in p for p in writes)


def test_run_status_and_rollback_against_the_cluster(cluster: FakeKube, cli) -> None:
    code, out, err = cli("run", "--once", cluster.plan)
    assert code == 0, out + err
    ann = cluster.get(ING, "Ingress", NS, "novacron-api-canary")["metadata"]["annotations"]
    assert ann[f"{P}/canary-weight"] == "1"
    code, out, err = cli("status", "-o", "json", cluster.plan)
    status = json.loads(out)
    assert status["stage"] == "canary-1" and status["weight"]["actual"] == 1.0
    assert status["deployed"]["canary"] == {"version": "v3.0.0", "replicas": 1}
    assert status["state_dir"] == "kubernetes:novacron/novactl-kube-e2e"
    code, out, err = cli("rollback", "--reason", "smoke test", cluster.plan)
    assert code == 0, out + err
    assert "router confirms" in out + err
    ann = cluster.get(ING, "Ingress", NS, "novacron-api-canary")["metadata"]["annotations"]
    assert ann[f"{P}/canary-weight"] == "0"
    assert cluster.get("apps/v1", "Deployment", NS, "novacron-api-canary")["spec"][
        "replicas"] == 0
    state = json.loads(cluster.get("v1", "ConfigMap", NS, "novactl-kube-e2e-state")["data"][
        "state.json"])
    assert state["phase"] == "rolled_back"
    code, out, err = cli("history", cluster.plan)
    assert "smoke test" in out + err


def test_a_held_lease_makes_run_exit_5_naming_the_holder(cluster: FakeKube) -> None:
    from novactl.plan import load_plan
    from novactl.store.kube import store_for_plan

    store = store_for_plan(load_plan(cluster.plan))
    with store.lock("novactl run (ci-runner-7)"):
        result = run_novactl("run", "--once", cluster.plan, timeout=60)
    assert result.returncode == 5, result.stdout + result.stderr
    assert "Lease novacron/novactl-kube-e2e" in result.stderr
    assert "novactl run (ci-runner-7)" in result.stderr
    assert cluster.get(ING, "Ingress", NS, "novacron-api-canary") is None  # nothing done


def test_store_flag_and_namespace_flag(cluster: FakeKube, cli, tmp_path: Path) -> None:
    text = cluster.plan.read_text().replace(
        "state: {type: kubernetes, namespace: novacron, lease_duration: 10s}", "")
    local = tmp_path / "local.yaml"
    local.write_text(text.replace("name: kube-e2e", "name: flagged"))
    code, out, err = cli("--store", "kubernetes", "-n", "elsewhere", "run", "--once", local)
    # -n moves the store and the adapters: the adapters' objects are not in "elsewhere"
    assert code == 0, out + err
    assert "deployment novacron-api-canary not found in namespace elsewhere" in out + err
    assert cluster.get("v1", "ConfigMap", "elsewhere", "novactl-flagged-state") is not None
    assert not (tmp_path / ".novactl").exists()
    code, out, err = cli("--store", "etcd", "status", local)
    assert code == 2 and "--store 'etcd': expected local or kubernetes" in err


def test_help_does_not_import_kubernetes() -> None:
    import subprocess
    import sys

    code = ("import sys; from novactl.cli import main; "
            "import contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['--help'])\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('kubernetes', 'httpx', 'urllib3', 'tenacity')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "[]"


def test_history_and_validate_with_the_cluster_store(cluster: FakeKube, cli) -> None:
    code, out, err = cli("history", cluster.plan)
    assert code == 0 and "no audit entries in kubernetes:novacron/novactl-kube-e2e" in out + err
    text = cluster.plan.read_text()
    broken = cluster.plan.with_name("broken.yaml")
    broken.write_text(text.replace("        stable: {deployment: novacron-api}\n", ""))
    code, out, err = cli("validate", broken)
    assert code == 2 and "missing stable" in err, out + err


def test_state_takes_plan_variables_and_checks_its_name(cluster: FakeKube, cli) -> None:
    text = cluster.plan.read_text().replace(
        "state: {type: kubernetes, namespace: novacron, lease_duration: 10s}",
        'state: {type: kubernetes, namespace: "{{ns}}", lease_duration: 10s}').replace(
        "variables: {registry:", "variables: {ns: novacron, registry:")
    plan = cluster.plan.with_name("vars.yaml")
    plan.write_text(text)
    code, out, err = cli("status", "-o", "json", plan)
    assert code == 0 and json.loads(out)["state_dir"] == "kubernetes:novacron/novactl-kube-e2e"
    bad = cluster.plan.with_name("badname.yaml")
    bad.write_text(text.replace("lease_duration: 10s}", "lease_duration: 10s, name: Bad_Name}"))
    code, out, err = cli("status", bad)
    assert code == 2 and "spec.state.name 'Bad_Name'" in err


def test_rollback_with_a_broken_plan_uses_the_copy_in_the_cluster(cluster: FakeKube,
                                                                  cli) -> None:
    code, out, err = cli("run", "--once", cluster.plan)
    assert code == 0, out + err
    ann = cluster.get(ING, "Ingress", NS, "novacron-api-canary")["metadata"]["annotations"]
    assert ann[f"{P}/canary-weight"] == "1"
    cluster.plan.write_text("spec: [this is: not a plan\n")  # a bad edit at 3 a.m.
    code, out, err = cli("--store", "kubernetes", "-n", NS, "rollback", "--reason", "page",
                         cluster.plan)
    assert code == 0, out + err
    assert "copy of the plan saved in ConfigMap novacron/novactl-kube-e2e-plan" in err
    ann = cluster.get(ING, "Ingress", NS, "novacron-api-canary")["metadata"]["annotations"]
    assert ann[f"{P}/canary-weight"] == "0"
