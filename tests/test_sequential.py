"""Sequential checks: canary vs stable on error counts, anytime-valid, three-valued."""

from __future__ import annotations

import random

import pytest

from novactl._clock import FakeClock
from novactl._errors import PlanError
from novactl.adapters.fake import FakeProbe, FakeTrafficShifter, FakeWorkload
from novactl.core.gates import SEQUENTIAL_ALPHA, References, Verdict, evaluate
from novactl.core.observations import Observation, ObsStatus, ProbeQuery
from novactl.core.state import Phase
from novactl.core.stats import error_share_interval, ratio_for_share, share_for_ratio
from novactl.plan import load_plan_text
from novactl.runner import AdapterSet, Runner, context_for
from novactl.store import MemoryStore

# --------------------------------------------------------------------------- statistics


def test_the_interval_covers_the_observed_share_and_narrows() -> None:
    assert error_share_interval(0, 0) == (0.0, 1.0)  # no errors: nothing is known
    wide = error_share_interval(5, 50)
    narrow = error_share_interval(100, 1000)
    assert wide[0] < 0.1 < wide[1] and narrow[0] < 0.1 < narrow[1]
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    lo, hi = error_share_interval(0, 500)
    assert lo == 0.0 and hi < 0.025


def test_ratio_and_share_are_inverse() -> None:
    for traffic in (0.01, 0.1, 0.5, 0.9):
        for ratio in (0.5, 1.0, 1.5, 5.0):
            assert ratio_for_share(share_for_ratio(ratio, traffic), traffic) == \
                pytest.approx(ratio)


def _looks(rng: random.Random, canary_rate: float, stable_rate: float, traffic: float,
           looks: int, per_look: int) -> str:
    """Look after every batch, as a rollout does every round; the first decision stands."""
    ce = se = ct = st = 0
    for _ in range(looks):
        nc = round(per_look * traffic)
        ce += sum(rng.random() < canary_rate for _ in range(nc))
        se += sum(rng.random() < stable_rate for _ in range(per_look - nc))
        ct, st = ct + nc, st + per_look - nc
        share = ct / (ct + st)
        lo, hi = error_share_interval(ce, ce + se, SEQUENTIAL_ALPHA)
        if lo > share_for_ratio(1.0, share):
            return "worse"
        if hi < share_for_ratio(2.0, share):
            return "not worse"
    return "undecided"


def test_false_alarms_stay_below_alpha_despite_looking_every_round() -> None:
    rng = random.Random(20261126)
    runs = [_looks(rng, 0.01, 0.01, 0.1, looks=40, per_look=500) for _ in range(200)]
    # alpha is 1%: allow sampling noise, but a test that peeks without correction would
    # reach several times this
    assert runs.count("worse") <= 4


def test_a_fivefold_regression_at_one_percent_traffic_is_caught() -> None:
    # the anchors' example: stable 0.1% errors, canary 0.5%, canary at 1% of traffic
    rng = random.Random(7)
    runs = [_looks(rng, 0.005, 0.001, 0.01, looks=100, per_look=20000) for _ in range(20)]
    assert runs.count("worse") >= 19


# --------------------------------------------------------------------------- plan and gate

PLAN = """\
apiVersion: novactl.dev/v1
kind: RolloutPlan
metadata: {{name: seq}}
spec:
  versions: {{stable: v1, canary: v2}}
  traffic: {{type: fake}}
  workload: {{type: fake}}
  probes: {{m: {{type: fake}}}}
  metrics:
    error_rate: {{probe: m, kind: ratio, min_samples: 100, query: {{numerator: e, denominator: t}}}}
    p95: {{probe: m, unit: s, query: q}}
  defaults: {{interval: 1m}}
  stages:
    - name: one
      weight: 10
      replicas: 1
      duration: 1h
      criteria:
        mandatory: [error_rate < 5%]
      rollback:
        - {{name: error-regression, check: "{check}"}}
    - {{name: two, weight: 50, replicas: 2, duration: 1h,
        criteria: {{mandatory: [error_rate < 5%]}}}}
"""


def plan_with(check: str):
    return load_plan_text(PLAN.format(check=check), "seq.yaml")


@pytest.mark.parametrize(("check", "message"), [
    ("p95 > +50% stable sequential", "needs a ratio metric"),
    ("error_rate > 1% sequential", "compares the canary with the stable"),
    ("error_rate > +50% stable sequential for 5m", "drop 'for' and 'over'"),
    ("error_rate > +50% baseline sequential", "compares the canary with the stable"),
    ("error_rate > -150% stable sequential", "must be above 0"),
])
def test_sequential_needs_a_ratio_against_stable(check: str, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan_with(check)


def test_sequential_refuses_the_scrape_probe() -> None:
    text = PLAN.format(check="error_rate > +50% stable sequential").replace(
        "probes: {m: {type: fake}}",
        "probes: {m: {type: scrape, config: {targets: ['http://127.0.0.1:1/metrics']}}}")
    with pytest.raises(PlanError, match="scrape probe keeps only a thinned history"):
        load_plan_text(text, "seq.yaml")


def test_the_condition_reads_back() -> None:
    plan = plan_with("error_rate > +50% stable sequential")
    check = next(c for c in plan.stages[0].checks if c.name == "error-regression")
    assert check.condition.sequential
    assert check.condition.describe(check.dimension) == "error_rate > +50% stable sequential"


def _obs(version: str, errors: int, requests: int, window: float) -> Observation:
    return Observation("error_rate", version, ObsStatus.OK, value=errors / requests,
                       events=errors, trials=requests, window=window, at=0.0, source="t")


def _gate(canary: tuple[int, int], stable: tuple[int, int], check: str):
    plan = plan_with(check)
    chk = next(c for c in plan.stages[0].checks if c.name == "error-regression")
    stage_window = 1800.0
    observations = {o.key: o for o in (_obs("v2", *canary, stage_window),
                                       _obs("v1", *stable, stage_window))}
    refs = References(stable_version="v1", canary_version="v2")
    return evaluate(chk, observations, refs, 60.0, 1800.0, stage_window)


def test_a_clear_regression_fires_the_trigger() -> None:
    result = _gate((60, 10_000), (100, 90_000), "error_rate > +50% stable sequential")
    assert result.verdict is Verdict.FAIL and result.holds is True  # a trigger: FAIL fires
    assert result.window == 1800.0 and result.sample_size == 10_000
    assert "anytime-valid" in result.reason and "vs 1.5" in result.reason


def test_no_difference_decides_no_regression_once_there_is_evidence() -> None:
    result = _gate((300, 30_000), (2_700, 270_000), "error_rate > +50% stable sequential")
    assert result.verdict is Verdict.PASS and result.holds is False


def test_too_few_errors_is_inconclusive_never_a_pass() -> None:
    result = _gate((1, 10_000), (5, 90_000), "error_rate > +50% stable sequential")
    assert result.verdict is Verdict.INCONCLUSIVE and "not decided yet" in result.problem
    assert result.holds is None  # a trigger does not fire, a criterion does not pass


def test_missing_counts_or_stable_are_inconclusive() -> None:
    plan = plan_with("error_rate > +50% stable sequential")
    chk = next(c for c in plan.stages[0].checks if c.name == "error-regression")
    refs = References(stable_version="v1", canary_version="v2")
    only_canary = {_obs("v2", 60, 10_000, 1800.0).key: _obs("v2", 60, 10_000, 1800.0)}
    result = evaluate(chk, only_canary, refs, 60.0, 1800.0, 1800.0)
    assert result.verdict is Verdict.INCONCLUSIVE and "stable not measured" in result.problem
    no_counts = Observation("error_rate", "v1", ObsStatus.OK, value=0.001, samples=90_000,
                            window=1800.0, at=0.0, source="t")
    both = {**only_canary, no_counts.key: no_counts}
    result = evaluate(chk, both, refs, 60.0, 1800.0, 1800.0)
    assert result.verdict is Verdict.INCONCLUSIVE and "raw counts" in result.problem


# --------------------------------------------------------------------------- a rollout


def _rollout(canary_rate: float) -> tuple[object, MemoryStore, list[tuple[float, float]]]:
    """A canary whose error rate is below the absolute limit (5%) throughout: only the
    sequential comparison with the stable can tell a regression."""
    plan = plan_with("error_rate > +50% stable sequential")
    clock = FakeClock()
    windows: list[tuple[float, float]] = []

    def metrics(query: ProbeQuery):
        windows.append((clock.now(), query.window))
        rate = canary_rate if query.role == "canary" else 0.01
        requests = round((20 if query.role == "canary" else 180) * query.window)
        return (round(rate * requests), requests)

    context = context_for(plan, clock=clock)
    adapters = AdapterSet(plan, context, traffic=FakeTrafficShifter("t", context=context),
                          workload=FakeWorkload("w", context=context),
                          probes={"m": FakeProbe("m", context=context, script=metrics)})
    store = MemoryStore()
    runner = Runner(plan, store, adapters, clock=clock, actor="test")
    result = runner.run(poll=60, max_passes=500)
    return result, store, windows


def test_a_doubled_error_rate_under_the_absolute_limit_is_rolled_back() -> None:
    result, store, windows = _rollout(0.02)  # 2% vs the stable's 1%: under "< 5%"
    state = result.state  # type: ignore[attr-defined]
    assert state.phase is Phase.ROLLED_BACK
    assert state.rollback.trigger == "rollback:error-regression"
    assert "anytime-valid" in state.rollback.reason
    assert max(w for _at, w in windows) > 60  # measured over the stage so far
    assert any(e["action"] == "rollback.started" and "error-regression" in e["reason"]
               for e in store.audit)


def test_an_equal_error_rate_is_promoted() -> None:
    result, _store, windows = _rollout(0.01)
    state = result.state  # type: ignore[attr-defined]
    assert state.phase in (Phase.COMPLETED, Phase.PROMOTED)
    # the stage's aggregates hold every round's counts, not just the first round's
    stage = state.stages[0]
    canary = stage.metrics["error_rate@v2"]
    assert canary.trials == pytest.approx(20 * 3600, rel=0.05)
    # after promotion there is no stable to compare with: no stage-long queries any more
    assert state.promoted_at is not None
    assert all(w <= 61 for at, w in windows if at > state.promoted_at)
