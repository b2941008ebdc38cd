"""kill -9 with the cluster store: the dead holder's Lease is taken over, the resumed run
converges, and the audit log in the ConfigMaps pairs every intent with its outcome."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _kubeapi import FakeKube
from conftest import ROOT, write_fake_plan
from test_crash import ACTION_OF, FAST

NS = "ns1"
CRASH_POINTS = [("deploy", 1, "after"), ("set_weight", 2, "after"), ("promote", 1, "before"),
                ("retire", 1, "after")]


def novactl(*args: str, env: dict[str, str], timeout: float = 90
            ) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env}
    for key in ("NOVACTL_STORE", "NOVACTL_NAMESPACE", "NOVACTL_DRY_RUN", "NOVACTL_KUBECONFIG"):
        full.pop(key, None)
    return subprocess.run([sys.executable, "-m", "novactl", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=full)


@pytest.mark.slow
@pytest.mark.parametrize(("op", "nth", "when"), CRASH_POINTS)
def test_kill_then_resume_with_the_cluster_store(tmp_path: Path, op: str, nth: int,
                                                 when: str) -> None:
    plan = write_fake_plan(tmp_path, **FAST)
    plan.write_text(plan.read_text().replace(
        "spec:\n", f"spec:\n  state: {{type: kubernetes, namespace: {NS}, "
        "lease_duration: 2s}\n", 1))
    with FakeKube() as kube:
        env = {"KUBECONFIG": str(kube.kubeconfig(tmp_path / "kc", namespace=NS))}
        crashed = novactl("run", str(plan), "--poll", "100ms",
                          env={**env, "NOVACTL_FAKE_CRASH": f"{op}:{nth}:{when}"})
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        lease = kube.get("coordination.k8s.io/v1", "Lease", NS, "novactl-fake-plan")
        assert lease["spec"]["holderIdentity"]  # the dead process still "holds" it
        state = json.loads(kube.get("v1", "ConfigMap", NS, "novactl-fake-plan-state")[
            "data"]["state.json"])
        if when == "after":
            assert state["pending"]["kind"] == ACTION_OF.get(op, op)
        # the next run waits for the dead holder's Lease to expire, then resumes
        resumed = novactl("run", str(plan), "--poll", "100ms", "--lock-wait", "10s", env=env)
        assert resumed.returncode == 0, resumed.stderr + resumed.stdout
        status = json.loads(novactl("status", str(plan), "-o", "json", env=env).stdout)
        assert status["phase"] == "completed"
        world = json.loads((tmp_path / "world.json").read_text())
        assert world["weight"] == 0.0 and world["retired"] == ["v1"]
        stable = world["deployments"]["stable"]
        assert stable["version"] == "v2" and stable["replicas"] == 3
        assert world["deployments"]["canary"]["replicas"] == 0
        audit = []
        for index in range(10):
            chunk = kube.get("v1", "ConfigMap", NS, f"novactl-fake-plan-audit-{index}")
            if chunk is None:
                break
            audit += [json.loads(line) for line in chunk["data"]["log.jsonl"].splitlines()]
        actions = [e["action"] for e in audit]
        for i, action in enumerate(actions):
            if action.startswith("intent."):
                kind = action.split(".", 1)[1]
                assert any(a in (f"done.{kind}", f"failed.{kind}", f"resume.{kind}")
                           for a in actions[i + 1:]), (action, actions[i:i + 5])
        if when == "after":
            assert f"resume.{ACTION_OF.get(op, op)}" in actions
        lease = kube.get("coordination.k8s.io/v1", "Lease", NS, "novactl-fake-plan")
        assert not lease["spec"].get("holderIdentity")
        assert lease["spec"]["leaseTransitions"] >= 1  # taken over from the dead holder
