"""kill -9 at any point: a resumed run converges to a consistent state, nothing lost.

The fake adapters keep their world in a JSON file and can SIGKILL the process
before or after the n-th call of an operation (NOVACTL_FAKE_CRASH), so the
very same plan runs before and after the crash.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, write_fake_plan

FAST = {"interval": "150ms", "duration": "450ms", "retire": "200ms", "window": "450ms",
        "hold": "300ms"}


def novactl(*args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "novactl", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def assert_consistent(directory: Path, plan: Path) -> None:
    done = novactl("status", str(plan), "--output", "json")
    status = json.loads(done.stdout)
    assert status["phase"] == "completed", status
    world = json.loads((directory / "world.json").read_text())
    assert world["weight"] == 0.0
    assert world["header_routes"] == {"X-Canary-Debug": "1"}
    assert world["deployments"]["stable"]["version"] == "v2"
    assert world["deployments"]["stable"]["replicas"] == 3
    assert world["deployments"]["canary"]["replicas"] == 0
    assert world["retired"] == ["v1"]
    audit_file = directory / ".novactl" / "fake-plan" / "audit.jsonl"
    entries = []
    for line in audit_file.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line torn by the kill; the next one starts clean
    actions = [e["action"] for e in entries]
    # every intent is followed by its outcome, directly or after a resume
    for i, action in enumerate(actions):
        if action.startswith("intent."):
            kind = action.split(".", 1)[1]
            later = actions[i + 1:]
            assert any(a in (f"done.{kind}", f"failed.{kind}", f"resume.{kind}")
                       for a in later), (action, actions[i:i + 5])
        if action.startswith("done."):
            kind = action.split(".", 1)[1]
            earlier = actions[:i]
            assert f"intent.{kind}" in earlier or f"resume.{kind}" in earlier
    for needed in ("rollout.started", "stage.started", "stage.passed", "promoted",
                   "version.retired", "rollout.completed"):
        assert needed in actions, needed
    stages = {e["reason"].split(":")[0] for e in entries if e["action"] == "stage.started"}
    assert stages == {"Stage 1/2 one", "Stage 2/2 two"}


ACTION_OF = {"set_header_route": "header_route"}  # adapter method → action kind
CRASH_POINTS = [
    ("set_header_route", 1, "after"),
    ("deploy", 1, "before"),
    ("deploy", 1, "after"),
    ("set_weight", 2, "before"),
    ("set_weight", 2, "after"),
    ("scale", 1, "after"),
    ("promote", 1, "before"),
    ("promote", 1, "after"),
    ("set_weight", 3, "after"),
    ("retire", 1, "before"),
    ("retire", 1, "after"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("op", "nth", "when"), CRASH_POINTS)
def test_kill_at_each_action_then_resume(tmp_path: Path, op: str, nth: int, when: str) -> None:
    plan = write_fake_plan(tmp_path, **FAST)
    crashed = novactl("run", str(plan), "--poll", "100ms",
                      env={"NOVACTL_FAKE_CRASH": f"{op}:{nth}:{when}"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    state = json.loads((tmp_path / ".novactl" / "fake-plan" / "state.json").read_text())
    kind = ACTION_OF.get(op, op)
    if when == "after":
        assert state["pending"] is not None and state["pending"]["kind"] == kind
    resumed = novactl("run", str(plan), "--poll", "100ms")
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert_consistent(tmp_path, plan)
    audit = (tmp_path / ".novactl" / "fake-plan" / "audit.jsonl").read_text()
    if when == "after":
        assert f'"action":"resume.{kind}"' in audit


@pytest.mark.slow
def test_random_kills_from_outside(tmp_path: Path) -> None:
    plan = write_fake_plan(tmp_path, **FAST)
    rng = random.Random(20261126)
    kills = 0
    for _ in range(12):
        child = subprocess.Popen([sys.executable, "-m", "novactl", "run", str(plan), "--poll",
                                  "100ms"], cwd=ROOT, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.3, 1.2))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
        child.wait(timeout=30)
        if child.returncode == 0:
            break
    final = novactl("run", str(plan), "--poll", "100ms")
    assert final.returncode == 0, final.stderr
    assert kills >= 3
    assert_consistent(tmp_path, plan)
