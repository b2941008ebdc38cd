"""Sequential checks: the anytime-valid share test, checked against scipy, looked at every
round; the judges on accumulated canary/stable counts; whole rollouts on a fake clock."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from novactl._clock import FakeClock
from novactl._errors import PlanError
from novactl.adapters.fake import FakeProbe, FakeTrafficShifter, FakeWorkload
from novactl.core import judges, sequential
from novactl.core.gates import References, Verdict, evaluate
from novactl.core.observations import Observation, ObsStatus, ProbeQuery
from novactl.core.sequential import ERRORS, LATENCY, judge, log_e_value, ratio_bounds
from novactl.core.state import Paired, Phase
from novactl.plan import load_plan_text
from novactl.runner import AdapterSet, Runner, context_for
from novactl.store import MemoryStore

# --------------------------------------------------------------------------- statistics


def _scipy_log_e(x: int, n: int, share: float, null: float, mixture) -> float:
    """The same mixture likelihood ratio, from scipy's binomial pmf (independent code)."""
    theta0 = share * null / (share * null + 1 - share)
    log0 = stats.binom.logpmf(x, n, theta0)
    terms = []
    for factor, log_w in zip(mixture.factors, mixture.log_weights, strict=True):
        rho = null * factor
        theta = share * rho / (share * rho + 1 - share)
        terms.append(log_w + stats.binom.logpmf(x, n, theta) - log0)
    return float(np.logaddexp.reduce(terms))


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 5000), frac=st.floats(0, 1), share=st.floats(0.005, 0.9),
       null=st.sampled_from([0.5, 1.0, 1.5, 2.0]), side=st.sampled_from(["worse", "better"]),
       family=st.sampled_from(["errors", "latency"]))
def test_the_e_value_matches_scipy(n, frac, share, null, side, family) -> None:
    x = round(frac * n)
    mixtures = ERRORS if family == "errors" else LATENCY
    mixture = getattr(mixtures, side)
    assert log_e_value(x, n, share, null, mixture) == pytest.approx(
        _scipy_log_e(x, n, share, null, mixture), rel=1e-6, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 3000), frac=st.floats(0, 1), share=st.floats(0.005, 0.9),
       null=st.floats(0.2, 10))
def test_decisions_agree_with_the_interval(n, frac, share, null) -> None:
    x = round(frac * n)
    j = judge(x, share * 1e6, n - x, (1 - share) * 1e6, null, 0.01, ERRORS)
    low, high = ratio_bounds(j.x, j.n, j.share, 0.01, ERRORS)
    assert (low, high) == j.bounds
    assert low <= high
    # "worse" iff the whole interval is above the null, "better" iff below (up to the
    # bisection's precision next to the edge)
    if abs(math.log(null / low)) > 0.01 if low > 0 else True:
        assert j.worse == (low > null)
    if math.isfinite(high) and abs(math.log(null / high)) > 0.01:
        assert j.better == (high < null)
    assert not (j.worse and j.better)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 2000), frac=st.floats(0, 1), share=st.floats(0.01, 0.9))
def test_the_worse_side_weakens_as_the_null_rises(n, frac, share) -> None:
    x = round(frac * n)
    values = [log_e_value(x, n, share, rho, ERRORS.worse) for rho in (0.5, 1, 2, 4)]
    assert values == sorted(values, reverse=True)
    values = [log_e_value(x, n, share, rho, ERRORS.better) for rho in (0.5, 1, 2, 4)]
    assert values == sorted(values)


def _looked_every_round(seed: int, runs: int, rounds: int, canary_rps: float,
                        stable_rps: float, canary_rate: float, stable_rate: float,
                        null: float, mixtures, side: str) -> np.ndarray:
    """The round at which each run first decided ``side`` (-1: never), judged on the
    accumulated counts after every 30 s round, as a rollout looks."""
    rng = np.random.default_rng(seed)
    nc = rng.poisson(canary_rps * 30, (runs, rounds)).cumsum(1)
    ns = rng.poisson(stable_rps * 30, (runs, rounds)).cumsum(1)
    xc = rng.binomial(np.diff(nc, prepend=0, axis=1), canary_rate).cumsum(1)
    xs = rng.binomial(np.diff(ns, prepend=0, axis=1), stable_rate).cumsum(1)
    limit = math.log(100)  # alpha 1%
    mixture = getattr(mixtures, side)
    first = np.full(runs, -1)
    for r in range(runs):
        for t in range(rounds):
            share = nc[r, t] / (nc[r, t] + ns[r, t])
            n = xc[r, t] + xs[r, t]
            if log_e_value(xc[r, t], n, share, null, mixture) >= limit:
                first[r] = t
                break
    return first


def test_false_alarms_stay_below_alpha_when_looked_at_every_round() -> None:
    # healthy canary at 10% of 1,000 req/s, 0.1% errors both, 1 h of 30 s rounds: a
    # fixed-horizon test peeked at 120 times would false-alarm many times more often
    first = _looked_every_round(8, 1000, 120, 100, 900, 0.001, 0.001, 1.0, ERRORS, "worse")
    assert (first >= 0).mean() <= 0.015  # alpha 1%, plus sampling noise of 1,000 runs


def test_a_margin_is_not_passed_by_a_canary_exactly_at_it() -> None:
    # "not worse than 2x" must not be concluded for a canary that is 2x worse
    first = _looked_every_round(9, 1000, 120, 100, 900, 0.002, 0.001, 2.0, ERRORS, "better")
    assert (first >= 0).mean() <= 0.015


def test_a_fivefold_regression_at_one_percent_traffic_is_caught_fast() -> None:
    first = _looked_every_round(10, 200, 120, 10, 990, 0.005, 0.001, 1.0, ERRORS, "worse")
    assert (first >= 0).all()
    canary_requests = (first + 1) * 300
    assert np.median(canary_requests) <= 1800


def test_the_share_follows_the_ratio() -> None:
    assert sequential.share_for_ratio(1.0, 0.01) == pytest.approx(0.01)
    assert sequential.share_for_ratio(5.0, 0.01) == pytest.approx(0.05 / 1.04)


def test_nothing_known_from_no_events() -> None:
    j = judge(0, 1000, 0, 99_000, 1.0, 0.01, ERRORS)
    assert not j.decided and j.bounds == (0.0, math.inf)


# --------------------------------------------------------------------------- plan errors

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
    p95_latency: {{probe: m, kind: histogram, quantile: 0.95, unit: s, query: h}}
    latency: {{probe: m, kind: histogram, unit: s, query: h}}
    gauge: {{probe: m, unit: s, query: q}}
  defaults: {{interval: 30s}}
  stages:
    - name: one
      weight: 10
      replicas: 1
      duration: 1h
      criteria:
        mandatory: [error_rate < 5%]
      rollback:
        - {{name: regression, check: "{check}"}}
    - {{name: two, weight: 50, replicas: 2, duration: 1h,
        criteria: {{mandatory: [error_rate < 5%]}}}}
"""


def plan_with(check: str, text: str = PLAN):
    return load_plan_text(text.format(check=check), "seq.yaml")


@pytest.mark.parametrize(("check", "message"), [
    ("gauge > +50% stable sequential",
     "seq.yaml:23:37: spec.stages[0].rollback[0].check: 'sequential' needs counts: gauge is "
     "a value metric; use a ratio metric (errors / requests) or a histogram metric"),
    ("error_rate > 1% sequential", "compares the canary with the stable"),
    ("error_rate > +50% stable sequential for 5m", "drop 'for' and 'over'"),
    ("error_rate > +50% baseline sequential", "compares the canary with the stable"),
    ("error_rate > -150% stable sequential", "must be above 0"),
    ("error_rate == stable sequential", "needs <, <=, > or >="),
])
def test_misuse_is_one_line_with_file_line_and_column(check: str, message: str) -> None:
    with pytest.raises(PlanError) as caught:
        plan_with(check)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value).strip() or message.startswith("seq.yaml")


def test_a_sequential_check_at_full_traffic_is_refused() -> None:
    text = PLAN.replace("weight: 50", "weight: 100").replace(
        "criteria: {{mandatory: [error_rate < 5%]}}}}",
        "criteria: {{mandatory: [error_rate < 5%]}}, rollback: [\"{check}\"]}}")
    with pytest.raises(PlanError, match="no request reaches the stable"):
        plan_with("error_rate > stable sequential", text)


def test_alpha_belongs_to_sequential_checks() -> None:
    text = PLAN.replace('- {{name: regression, check: "{check}"}}',
                        '- {{name: regression, check: "{check}", alpha: 0.5%}}')
    check = next(c for c in plan_with("error_rate > stable sequential", text).stages[0].checks
                 if c.name == "regression")
    assert check.alpha == pytest.approx(0.005)
    with pytest.raises(PlanError, match="'alpha' is the false-alarm bound of a sequential"):
        plan_with("error_rate > 1%", text)


def test_the_condition_reads_back() -> None:
    plan = plan_with("latency > stable sequential")
    check = next(c for c in plan.stages[0].checks if c.name == "regression")
    assert check.condition.sequential and check.alpha == 0.01
    assert check.condition.describe(check.dimension) == "latency > stable sequential"


# --------------------------------------------------------------------------- judges


def _check(text: str):
    plan = plan_with(text)
    return next(c for c in plan.stages[0].checks if c.name == "regression")


def _obs(metric: str, version: str, *, errors: float = 0, requests: float = 0,
         buckets=None) -> Observation:
    if buckets is not None:
        return Observation(metric, version, ObsStatus.OK, value=0.1, samples=buckets[-1][1],
                           window=30.0, at=0.0, buckets=tuple(buckets))
    return Observation(metric, version, ObsStatus.OK, value=errors / requests, events=errors,
                       trials=requests, window=30.0, at=0.0)


REFS = References(stable_version="v1", canary_version="v2")


def _judged(check, paired: Paired):
    return evaluate(check, {}, REFS, 30.0, 1800.0, window=30.0, paired=paired)


def test_a_clear_error_regression_fires_with_its_interval_and_both_sample_sizes() -> None:
    check = _check("error_rate > stable sequential")
    paired = Paired()
    assert judges.accumulate(paired, check.metric, _obs("error_rate", "v2", errors=60,
                                                        requests=10_000),
                             _obs("error_rate", "v1", errors=100, requests=90_000), 0, 1800)
    result = _judged(check, paired)
    assert result.verdict is Verdict.FAIL and result.holds is True
    assert result.sample_size == 10_000 and result.ref_sample_size == 90_000
    assert result.window == 1800.0
    assert result.reason.startswith("0.6% > 0.1111% (stable = 0.1111%) over 30m, n=10,000 "
                                    "(stable n=90,000); sequential: ratio 5.4, anytime-valid [")
    assert result.reason.endswith("] vs 1 (α=1%)")


def test_no_difference_is_decided_not_worse_than_a_margin() -> None:
    check = _check("error_rate > +50% stable sequential")
    paired = Paired(canary_events=300, canary_trials=30_000, stable_events=2_700,
                    stable_trials=270_000, rounds=10, since=0, until=1800)
    result = _judged(check, paired)
    assert result.verdict is Verdict.PASS and result.holds is False


def test_too_little_evidence_is_undecided_with_its_interval() -> None:
    check = _check("error_rate > +50% stable sequential")
    paired = Paired(canary_events=1, canary_trials=10_000, stable_events=5,
                    stable_trials=90_000, rounds=3, since=0, until=90)
    result = _judged(check, paired)
    assert result.verdict is Verdict.INCONCLUSIVE and result.holds is None
    assert result.problem == "sequential: not decided yet"
    assert result.reason.startswith(
        "sequential: not decided yet: canary 0.01% (1 of 10,000) vs stable 0.005556% (5 of "
        "90,000) over 1m30s: ratio 1.8, anytime-valid [0, ")
    assert result.reason.endswith("] vs 1.5 (α=1%)")


def test_a_round_one_version_missed_is_not_added() -> None:
    check = _check("error_rate > stable sequential")
    paired = Paired()
    missing = Observation.error("error_rate", "v1", 30.0, 0.0, "connection refused")
    assert not judges.accumulate(paired, check.metric,
                                 _obs("error_rate", "v2", errors=5, requests=300), missing, 0, 30)
    assert paired.rounds == 0 and paired.canary_events == 0
    result = _judged(check, paired)
    assert result.verdict is Verdict.INCONCLUSIVE and "no round with both" in result.problem


def _lognormal(n: float, median: float, sigma: float, bounds) -> list[tuple[float, float]]:
    cdf = stats.lognorm(sigma, scale=median).cdf
    return [*((b, round(n * cdf(b))) for b in bounds), (math.inf, n)]


BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)


def test_a_slower_p95_is_judged_above_the_bound_the_stable_picked() -> None:
    check = _check("p95_latency > stable sequential")
    paired = Paired()
    for i in range(12):  # the first round calibrates: it is not counted
        judges.accumulate(paired, check.metric,
                          _obs("p95_latency", "v2", buckets=_lognormal(300, 0.033, 0.6, BOUNDS)),
                          _obs("p95_latency", "v1",
                               buckets=_lognormal(29_700, 0.030, 0.6, BOUNDS)),
                          30 * i, 30 * (i + 1))
    assert paired.calibration_counts and len(paired.canary_counts) == len(BOUNDS) + 1
    result = _judged(check, paired)
    assert result.verdict is Verdict.FAIL, result.reason
    assert "slower than 75ms: canary" in result.reason
    assert result.sample_size == 300 * 11 and result.ref_sample_size == 29_700 * 11
    assert result.value == pytest.approx(0.087, rel=0.1)  # the canary's p95


def test_a_margin_on_latency_reads_the_null_off_the_stables_buckets() -> None:
    check = _check("p95_latency > +50% stable sequential")
    paired = Paired()
    for i in range(12):  # the canary is 10% slower: well within +50%
        judges.accumulate(paired, check.metric,
                          _obs("p95_latency", "v2", buckets=_lognormal(300, 0.033, 0.6, BOUNDS)),
                          _obs("p95_latency", "v1",
                               buckets=_lognormal(29_700, 0.030, 0.6, BOUNDS)),
                          30 * i, 30 * (i + 1))
    result = _judged(check, paired)
    assert result.verdict is Verdict.PASS, result.reason
    assert "(= 1.5x latency)" in result.reason


def test_a_canary_exactly_at_the_margin_is_never_passed_not_worse_than_it() -> None:
    plan = load_plan_text(PLAN.format(check="p95_latency <= +10% stable sequential"),
                          "seq.yaml")
    check = next(c for c in plan.stages[0].checks if c.name == "regression")
    paired = Paired()
    for i in range(200):  # a canary exactly 10% slower, expected counts: no noise at all
        judges.accumulate(paired, check.metric,
                          _obs("p95_latency", "v2", buckets=_lognormal(300, 0.033, 0.6, BOUNDS)),
                          _obs("p95_latency", "v1",
                               buckets=_lognormal(29_700, 0.030, 0.6, BOUNDS)),
                          30 * i, 30 * (i + 1))
    result = _judged(check, paired)
    assert result.verdict is not Verdict.PASS, result.reason
    assert "vs 1.35 (= 1.1x latency)" in result.reason


def test_the_distribution_form_compares_at_three_bounds() -> None:
    check = _check("latency > stable sequential")
    paired = Paired()
    for i in range(12):
        judges.accumulate(paired, check.metric,
                          _obs("latency", "v2", buckets=_lognormal(300, 0.030, 0.6, BOUNDS)),
                          _obs("latency", "v1", buckets=_lognormal(29_700, 0.030, 0.6, BOUNDS)),
                          30 * i, 30 * (i + 1))
    result = _judged(check, paired)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "(of 3 bounds)" in result.reason


# --------------------------------------------------------------------------- a rollout


def _rollout(check: str, canary_rate: float, *, stable_down_rounds: int = 0):
    """Stable 1% errors at 180 req/s, canary at 20 req/s; the absolute limit is 5%: only
    the comparison with the stable can tell a regression."""
    plan = plan_with(check)
    clock = FakeClock()
    windows: list[tuple[str | None, float]] = []
    down = {"left": stable_down_rounds}

    def metrics(query: ProbeQuery):
        windows.append((query.role, query.window))
        if query.role == "stable" and down["left"] > 0 and query.window <= 30:
            down["left"] -= 1
            return Observation.error(query.metric, query.version, query.window, query.at,
                                     "connection refused")
        rate = canary_rate if query.role == "canary" else 0.01
        requests = round((20 if query.role == "canary" else 180) * query.window)
        return (round(rate * requests), requests)

    context = context_for(plan, clock=clock)
    adapters = AdapterSet(plan, context, traffic=FakeTrafficShifter("t", context=context),
                          workload=FakeWorkload("w", context=context),
                          probes={"m": FakeProbe("m", context=context, script=metrics)})
    store = MemoryStore()
    runner = Runner(plan, store, adapters, clock=clock, actor="test")
    result = runner.run(poll=30, max_passes=1000)
    return result, store, windows


def test_a_doubled_error_rate_under_the_absolute_limit_is_rolled_back() -> None:
    result, store, _windows = _rollout("error_rate > stable sequential", 0.02)
    state = result.state
    assert state.phase is Phase.ROLLED_BACK
    assert state.rollback.trigger == "rollback:regression"
    assert "anytime-valid" in state.rollback.reason
    assert any(e["action"] == "rollback.started" and "regression" in e["reason"]
               for e in store.audit)


def test_an_equal_error_rate_is_promoted_and_counted_round_by_round() -> None:
    result, _store, windows = _rollout("error_rate > +50% stable sequential", 0.01)
    state = result.state
    assert state.phase in (Phase.COMPLETED, Phase.PROMOTED)
    stage = state.stages[0]
    paired = stage.paired["error_rate"]
    assert paired.canary_trials == pytest.approx(20 * 3600, rel=0.05)
    assert paired.canary_trials == pytest.approx(stage.metrics["error_rate@v2"].trials)
    # the comparison with the stable adds up round windows: no stage-long queries for it
    assert max(w for role, w in windows if role == "stable") <= 31


def test_a_round_the_stable_missed_is_measured_again_with_the_next() -> None:
    result, _store, windows = _rollout("error_rate > stable sequential", 0.01,
                                       stable_down_rounds=2)
    state = result.state
    assert state.phase in (Phase.COMPLETED, Phase.PROMOTED)
    assert ("stable", 60.0) in windows or ("stable", 90.0) in windows
    paired = state.stages[0].paired["error_rate"]
    assert paired.stable_trials == pytest.approx(180 * 3600, rel=0.05)  # nothing lost
