"""`novactl validate` forecasts, per check, whether min_samples is reachable at the traffic."""

from __future__ import annotations

import json

from conftest import SEED_PLAN

from novactl.core.forecast import forecast
from novactl.plan import load_plan, load_plan_text

PLAN = """\
apiVersion: novactl.dev/v1
kind: RolloutPlan
metadata: {name: fc}
spec:
  versions: {stable: v1, canary: v2}
  traffic: {type: fake, expected_rps: 200}
  workload: {type: fake}
  probes: {m: {type: fake}}
  metrics:
    error_rate: {probe: m, kind: ratio, min_samples: 500, query: {numerator: e, denominator: t}}
    migrations: {probe: m, kind: ratio, min_samples: 20, expected_rate: 0.001,
                 query: {numerator: e, denominator: t}}
    cpu: {probe: m, unit: ratio, min_samples: 50, query: c}
  defaults: {interval: 30s}
  stages:
    - name: one
      weight: 1
      duration: 2h
      criteria: {mandatory: [error_rate < 1%, migrations > 98%, cpu < 70%]}
      rollback: [error_rate > stable sequential]
    - {name: two, weight: 50, duration: 2h, criteria: {mandatory: [error_rate < 1%]}}
"""


def test_short_rounds_are_pooled_and_unreachable_checks_named() -> None:
    plan = load_plan_text(PLAN, "fc.yaml")
    items = {(f.stage, f.check): f for f in forecast(plan)}
    pooled = items[("one", "error_rate < 1%")]
    assert pooled.level == "pooled" and pooled.per_second == 2.0
    # < 1% needs ~657 requests before its 99% interval can clear 1%, even with no error
    assert pooled.message == ("stage one: error_rate < 1%: ~60 samples per 30s window at 2 "
                              "canary samples/s (≥ 657 to show it at 99% even with none on "
                              "the bad side): decided on windows of ≥ 5m28s, pooled over "
                              "rounds")
    never = items[("one", "migrations > 98%")]
    assert never.level == "never" and "it can never decide" in never.message
    # a sequential check needs min_samples over the stage, not a round: 14,400 in 2h
    assert ("one", "error_rate > stable sequential") not in items
    assert ("two", "error_rate < 1%") not in items  # 100 req/s: 3,000 a round
    assert not any(f.metric == "cpu" for f in items.values())  # samples of a gauge: unknown
    assert forecast(plan, rps=1_000_000) == [
        f for f in forecast(plan, rps=1_000_000) if f.metric == "migrations"]


def test_validate_prints_the_forecast(cli, tmp_path) -> None:
    path = tmp_path / "fc.yaml"
    path.write_text(PLAN)
    code, out, err = cli("validate", path)
    assert code == 0 and "valid plan 'fc'" in out
    assert ("sample-size forecast at 200 req/s: 2 check(s) short of the samples they need in "
            "a round, 1 can never decide") in err
    assert "stage one: migrations > 98%" in err and "it can never decide" in err
    code, out, _ = cli("validate", path, "--rps", "100000", "-o", "json")
    data = json.loads(out)
    assert data["forecast"]["requests_per_second"] == 100000
    assert [w["check"] for w in data["forecast"]["warnings"]] == ["migrations > 98%"]


def test_the_seed_plan_at_its_own_traffic() -> None:
    items = forecast(load_plan(SEED_PLAN))
    names = {(f.stage, f.check, f.level) for f in items}
    assert ("canary", "p99 API latency", "pooled") in names  # 600 a minute, needs 1,000
    assert ("canary", "error rate", "pooled") in names  # < 0.1% takes ~6,600 requests
    # 43 canary migrations a day at 1% cannot show "> 98%" at 99% (that takes 325 even
    # with no failure): the one check of the seed plan that never decides in stage 1
    never = [f for f in items if f.level == "never"]
    assert [(f.stage, f.check) for f in never] == [("canary", "DWCP migration success")]
    assert "takes ≥ 325 samples" in never[0].message
