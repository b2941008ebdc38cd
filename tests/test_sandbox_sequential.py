"""The latency judge on the sandbox through the scrape probe: real HTTP requests, real
/metrics histograms, round-by-round counts in the state."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from novactl.cli._common import make_runner
from novactl.core.state import Phase
from novactl.plan import load_plan_text
from novactl.sandbox import Sandbox
from novactl.store import LocalStore

PLAN = """\
apiVersion: novactl.dev/v1
kind: RolloutPlan
metadata: {{name: seq-sandbox}}
spec:
  versions: {{stable: v2.9.0, canary: v3.0.0}}
  traffic: {{type: local, config: {{url: "{router}"}}}}
  workload: {{type: local, ready_timeout: 20s, ready_poll: 250ms, config: {{url: "{control}"}}}}
  probes:
    sandbox: {{type: scrape, config: {{targets: ["{control}/metrics"], timeout: 2s}}}}
  metrics:
    latency:
      probe: sandbox
      kind: histogram
      unit: s
      query: http_request_duration_seconds{{version="{{{{version}}}}"}}
    p95_latency:
      probe: sandbox
      kind: histogram
      quantile: 0.95
      unit: s
      query: http_request_duration_seconds{{version="{{{{version}}}}"}}
  defaults: {{interval: 1s}}
  stages:
    - name: canary
      weight: 20
      replicas: 1
      duration: 30s
      rollback:
        - {{name: slower than stable, check: p95_latency > stable sequential}}
      criteria:
        desirable:
          - {{name: not twice as slow, check: latency <= 2x stable sequential}}
"""


def _run(tmp_path: Path, faults: dict | None, *, seconds: float):  # type: ignore[no-untyped-def]
    with Sandbox(stable_version="v2.9.0", stable_replicas=1, startup_delay=0.2,
                 faults=faults, seed=4) as sandbox:
        plan = load_plan_text(PLAN.format(router=sandbox.router_url,
                                          control=sandbox.control_url), "seq-sandbox.yaml")
        load = sandbox.start_load(200)
        runner = make_runner(plan, LocalStore(tmp_path / "state"), by="test")
        deadline = time.monotonic() + seconds
        try:
            result = runner.run(poll=0.2, until=lambda r: time.monotonic() > deadline or (
                r.state.stages and r.state.stages[-1].tallies.get(
                    "desirable:not twice as slow") is not None
                and r.state.stages[-1].tallies["desirable:not twice as slow"].passed > 0
                and faults is None))
        finally:
            load.stop()
            runner.adapters.close()
        return result


@pytest.mark.slow
def test_a_slower_canary_is_rolled_back_by_the_latency_judge(tmp_path: Path) -> None:
    result = _run(tmp_path, {"v3.0.0": {"latency": 0.03}}, seconds=40)
    state = result.state
    assert state.phase is Phase.ROLLED_BACK, result.wait
    assert state.rollback.trigger == "rollback:slower than stable"
    assert "sequential: slower than " in state.rollback.reason
    paired = state.stages[0].paired["p95_latency"]
    assert paired.calibration_counts and paired.canary_counts[-1] > 0  # real buckets


@pytest.mark.slow
def test_a_healthy_canary_is_shown_not_twice_as_slow(tmp_path: Path) -> None:
    result = _run(tmp_path, None, seconds=40)
    state = result.state
    assert state.phase is Phase.STAGE
    tally = state.stages[0].tallies["desirable:not twice as slow"]
    assert tally.passed > 0 and tally.failed == 0
    assert state.triggers.get("rollback:slower than stable") is None or not (
        state.triggers["rollback:slower than stable"].firing)
