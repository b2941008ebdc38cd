"""Three-valued gates: no data, NaN or a probe error is never a pass."""

from __future__ import annotations

import math

import pytest

from novactl.core.gates import References, Verdict, evaluate
from novactl.core.observations import Observation, ObsStatus
from novactl.core.state import RefValue
from novactl.plan import CheckRole, load_plan_text

PLAN = """\
apiVersion: novactl.dev/v1
kind: RolloutPlan
metadata: {name: gates}
spec:
  versions: {stable: v1, canary: v2}
  traffic: {type: fake}
  workload: {type: fake}
  probes: {m: {type: fake}}
  metrics:
    error_rate: {probe: m, kind: ratio, min_samples: 100, query: {numerator: a, denominator: b}}
    p95: {probe: m, unit: s, query: q}
    tickets: {probe: m, kind: count, scope: global, query: t}
  stages:
    - name: one
      weight: 10
      duration: 1h
      criteria:
        mandatory:
          - {check: error_rate < 0.1%, target: < 0.05%}
          - p95 < 100ms
          - p95 <= +10% stable
        desirable:
          - tickets <= 2x baseline
      rollback:
        - error_rate > 1% for 5m
    - name: two
      weight: 50
      duration: 1h
      criteria:
        mandatory: [p95 <= 1.1x stage:one]
"""


@pytest.fixture(scope="module")
def plan():
    return load_plan_text(PLAN, "gates.yaml")


def check(plan, text: str, stage: int = 0):
    return next(c for c in plan.stages[stage].checks if c.condition.text == text)


REFS = References(stable_version="v1", canary_version="v2")
W = 300.0


def ratio(events: float, trials: float, version: str = "v2") -> Observation:
    return Observation("error_rate", version, ObsStatus.OK, value=events / trials,
                       events=events, trials=trials, window=W)


def value(metric: str, v: float, version: str | None = "v2", samples: float | None = None
          ) -> Observation:
    return Observation(metric, version, ObsStatus.OK, value=v, samples=samples, window=W)


def obs_map(*observations: Observation):
    return {o.key: o for o in observations}


def test_pass_and_fail_carry_value_sample_size_and_reason(plan) -> None:
    c = check(plan, "error_rate < 0.1%")
    good = evaluate(c, obs_map(ratio(2, 20000)), REFS, W, 0.0)
    assert good.verdict is Verdict.PASS and good.holds is True
    assert good.value == pytest.approx(0.0001) and good.sample_size == 20000
    assert good.events == 2 and good.trials == 20000
    assert good.reason == "0.01% < 0.1% over 5m, n=20,000; 99% interval 0.001952%–0.0512%"
    assert good.target_met is True
    bad = evaluate(c, obs_map(ratio(30, 10000)), REFS, W, 0.0)
    assert bad.verdict is Verdict.FAIL and "0.3% ≥ 0.1%" in bad.reason


def test_a_rate_decides_only_when_its_interval_is_clear_of_the_threshold(plan) -> None:
    c = check(plan, "error_rate < 0.1%")
    # 1 error in 600 requests reads 0.17%, but says little: pooled with the next rounds,
    # never a failed criterion (which would restart a 7-day streak on noise)
    noisy = evaluate(c, obs_map(ratio(1, 600)), REFS, W, 0.0)
    assert noisy.verdict is Verdict.INCONCLUSIVE and noisy.close and not noisy.short
    assert noisy.reason.startswith("not decided yet: 0.1667% vs < 0.1% over 5m, n=600: 99% "
                                   "interval ")
    assert evaluate(c, obs_map(ratio(2, 10000)), REFS, W, 0.0).verdict is Verdict.INCONCLUSIVE
    assert evaluate(c, obs_map(ratio(9, 2000)), REFS, W, 0.0).verdict is Verdict.FAIL


@pytest.mark.parametrize(("observation", "why"), [
    (None, "not measured"),
    (Observation.no_data("error_rate", "v2", W, 0.0, "no values found"), "no data: no values"),
    (Observation.error("error_rate", "v2", W, 0.0, "connection refused"), "probe error"),
    (Observation("error_rate", "v2", ObsStatus.OK, value=math.nan, window=W), "no data"),
    (Observation("error_rate", "v2", ObsStatus.OK, value=math.inf, window=W), "no data"),
    (ratio(0, 40), "only 40 samples (need ≥ 100)"),
    (Observation("error_rate", "v2", ObsStatus.OK, value=0.0, window=W), "sample size unknown"),
])
def test_missing_data_is_never_a_pass(plan, observation, why: str) -> None:
    c = check(plan, "error_rate < 0.1%")
    result = evaluate(c, obs_map(observation) if observation else {}, REFS, W, 0.0)
    assert result.verdict is Verdict.INCONCLUSIVE and result.holds is None
    assert why in result.reason


def test_triggers_fail_when_their_condition_holds(plan) -> None:
    c = check(plan, "error_rate > 1% for 5m")
    assert c.role is CheckRole.ROLLBACK
    firing = evaluate(c, obs_map(ratio(300, 10000)), REFS, W, 0.0)
    assert firing.verdict is Verdict.FAIL and firing.holds is True
    quiet = evaluate(c, obs_map(ratio(1, 10000)), REFS, W, 0.0)
    assert quiet.verdict is Verdict.PASS and quiet.holds is False
    unknown = evaluate(c, {}, REFS, W, 0.0)
    assert unknown.verdict is Verdict.INCONCLUSIVE


def test_relative_to_stable(plan) -> None:
    c = check(plan, "p95 <= +10% stable")
    both = obs_map(value("p95", 0.105), value("p95", 0.100, "v1"))
    result = evaluate(c, both, REFS, W, 0.0)
    assert result.verdict is Verdict.PASS and result.reference == pytest.approx(0.1)
    assert result.threshold == pytest.approx(0.11)
    assert "(+10% stable = 100ms)" in result.reason
    worse = obs_map(value("p95", 0.2), value("p95", 0.1, "v1"))
    assert evaluate(c, worse, REFS, W, 0.0).verdict is Verdict.FAIL
    missing_stable = evaluate(c, obs_map(value("p95", 0.105)), REFS, W, 0.0)
    assert missing_stable.verdict is Verdict.INCONCLUSIVE
    assert "stable not measured" in missing_stable.reason
    after = References("v1", "v2", stable_available=False)
    assert "after promotion" in evaluate(c, both, after, W, 0.0).reason


def test_relative_to_baseline_scales_counts_to_the_window(plan) -> None:
    c = check(plan, "tickets <= 2x baseline")
    # baseline: 700 tickets over a week = 100/day; this window: one day
    refs = References("v1", "v2", baseline={"tickets": RefValue(700.0, 7 * 86400.0)})
    day = Observation("tickets", None, ObsStatus.OK, value=150.0, window=86400.0)
    result = evaluate(c, {day.key: day}, refs, 86400.0, 0.0)
    assert result.reference == pytest.approx(100.0) and result.verdict is Verdict.PASS
    spike = Observation("tickets", None, ObsStatus.OK, value=250.0, window=86400.0)
    assert evaluate(c, {spike.key: spike}, refs, 86400.0, 0.0).verdict is Verdict.FAIL
    no_baseline = evaluate(c, {day.key: day}, REFS, 86400.0, 0.0)
    assert no_baseline.verdict is Verdict.INCONCLUSIVE
    assert "no baseline recorded" in no_baseline.reason


def test_relative_to_an_earlier_stage(plan) -> None:
    c = check(plan, "p95 <= 1.1x stage:one", stage=1)
    refs = References("v1", "v2", stages={"one": {"p95": RefValue(0.08)}})
    ok = evaluate(c, obs_map(value("p95", 0.085)), refs, W, 0.0)
    assert ok.verdict is Verdict.PASS and ok.threshold == pytest.approx(0.088)
    missing = evaluate(c, obs_map(value("p95", 0.085)), REFS, W, 0.0)
    assert missing.verdict is Verdict.INCONCLUSIVE


def test_brief_round_trips_through_json(plan) -> None:
    import json

    from novactl.core.gates import explain

    c = check(plan, "error_rate < 0.1%")
    result = evaluate(c, obs_map(ratio(2, 10000)), REFS, W, 0.0)
    brief = json.loads(json.dumps(result.brief()))
    assert explain(brief, c.condition.op, c.dimension) == result.reason


def test_a_nan_sample_size_is_unknown(plan) -> None:
    c = check(plan, "error_rate < 0.1%")
    weird = Observation("error_rate", "v2", ObsStatus.OK, value=0.0, events=0.0,
                        trials=math.nan, window=W)
    result = evaluate(c, obs_map(weird), REFS, W, 0.0)
    assert result.verdict is Verdict.INCONCLUSIVE and "sample size unknown" in result.reason
