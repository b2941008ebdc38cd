"""Sequential judges: the canary against the stable on the counts of a whole stage.

A ``sequential`` check is not judged on one round's window.  Every round adds the counts
both versions showed over the same window to the stage's :class:`~novactl.core.state.Paired`
(:func:`accumulate`); :func:`judge_check` then asks :mod:`novactl.core.sequential` whether
the canary's rate of events is above or below the threshold ratio with anytime-valid
confidence.  It decides in both directions and stays undecided, with its interval, until
the evidence allows.

* ``ratio`` metrics (errors / requests): the events are the numerator's counts.
* ``histogram`` metrics (latency): the events are the requests slower than a bucket bound.
  The stable's first paired round picks the bound — the one nearest its ``quantile`` (or,
  for the whole distribution, the ones nearest its 50th, 90th and 99th percentiles) — and,
  for a margin such as ``+10% stable``, the ratio of slow requests a latency ``(1 + m)``
  times the stable's would show there, read off that round's buckets (inside a bucket,
  log-latency is taken as locally normal: exact for log-normal latencies).  That round is
  not counted in the test: what a test compares must be fixed before the data it judges.
"""

from __future__ import annotations

import dataclasses
import math

from novactl._units import format_value
from novactl.core import histogram
from novactl.core.gates import CheckResult, References, ResultFn
from novactl.core.observations import Observation
from novactl.core.sequential import ERRORS, LATENCY, Judgement, judge
from novactl.core.state import Paired
from novactl.plan._model import Check, MetricKind, MetricSpec

__all__ = ["DISTRIBUTION_QUANTILES", "accumulate", "judge_check"]

#: Where a distribution-wide latency check compares (each at α/3 for "worse").
DISTRIBUTION_QUANTILES = (0.5, 0.9, 0.99)


# --------------------------------------------------------------------------- accumulate


def _buckets(bounds: list[float], counts: list[float]) -> histogram.Buckets:
    if not counts:
        return ()
    return (*zip(bounds, counts[:-1], strict=True), (math.inf, counts[-1]))


def _store(buckets: histogram.Buckets) -> tuple[list[float], list[float]]:
    finite = [(b, c) for b, c in buckets if math.isfinite(b)]
    return [b for b, _ in finite], [c for _, c in finite] + [histogram.total(buckets)]


def accumulate(paired: Paired, metric: MetricSpec, canary: Observation | None,
               stable: Observation | None, start: float, end: float) -> bool:
    """Add one round's counts of both versions over ``[start, end]``; False (nothing added)
    unless both answered it with counts."""
    if canary is None or stable is None or not canary.usable or not stable.usable:
        return False
    if metric.kind is MetricKind.HISTOGRAM:
        if not canary.buckets or not stable.buckets:
            return False
        if not paired.calibration_counts:
            paired.calibration_bounds, paired.calibration_counts = _store(stable.buckets)
            paired.until = end  # the next window starts here; this one is not counted
            return True
        mine = _buckets(paired.bounds, paired.canary_counts)
        theirs = _buckets(paired.bounds, paired.stable_counts)
        new_canary = histogram.add(mine, canary.buckets)
        new_stable = histogram.add(theirs, stable.buckets)
        common = {b for b, _ in new_canary} & {b for b, _ in new_stable}
        new_canary = tuple(p for p in new_canary if p[0] in common)
        new_stable = tuple(p for p in new_stable if p[0] in common)
        paired.bounds, paired.canary_counts = _store(new_canary)
        _, paired.stable_counts = _store(new_stable)
    else:
        counts = (canary.events, canary.trials, stable.events, stable.trials)
        if any(c is None or not math.isfinite(c) or c < 0 for c in counts):
            return False
        paired.canary_events += float(canary.events)  # type: ignore[arg-type]
        paired.canary_trials += float(canary.trials)  # type: ignore[arg-type]
        paired.stable_events += float(stable.events)  # type: ignore[arg-type]
        paired.stable_trials += float(stable.trials)  # type: ignore[arg-type]
    paired.since = start if paired.since is None else paired.since
    paired.until = end
    paired.rounds += 1
    return True


# --------------------------------------------------------------------------- judge


def judge_check(check: Check, paired: Paired | None, refs: References, result: ResultFn
                ) -> CheckResult:
    if not refs.stable_available:
        return result(None, "no stable version to compare with after promotion")
    if paired is None or (paired.rounds == 0 and not paired.calibration_counts):
        return result(None, "sequential: no round with both versions measured yet")
    covered = max((paired.until or 0.0) - (paired.since or 0.0), 0.0)
    if check.metric.kind is MetricKind.HISTOGRAM:
        out = _judge_latency(check, paired, result)
    else:
        out = _judge_errors(check, paired, result)
    return dataclasses.replace(out, window=covered)


def _holds(check: Check, worse: bool, better: bool) -> bool | None:
    if not worse and not better:
        return None
    above = worse
    return above if check.condition.op in (">", ">=") else not above


def _short(check: Check, canary: float, stable: float) -> str:
    need = max(check.min_samples, 1)
    if canary < need:
        return f"sequential: only {canary:,.0f} canary samples so far (need ≥ {need:,})"
    if stable < need:
        return f"sequential: only {stable:,.0f} stable samples so far (need ≥ {need:,})"
    return ""


def _finish(check: Check, result: ResultFn, worse: bool, better: bool, shown: Judgement,
            family: str, null: str, counts: str, prefix: str, value: float,
            threshold: float, reference: float, canary_n: float, stable_n: float
            ) -> CheckResult:
    """The verdict, with the counts behind it (the interval is computed when shown)."""
    seq = {"x": shown.x, "n": shown.n, "share": shown.share, "alpha": shown.alpha,
           "alpha_worse": shown.alpha_worse, "family": family, "null": null,
           "counts": counts, "prefix": prefix}
    holds = _holds(check, worse, better)
    problem = "sequential: not decided yet" if holds is None else ""
    return result(holds, problem, value, threshold, reference, sample_size=canary_n,
                  ref_sample_size=stable_n, sequential=seq)


def _judge_errors(check: Check, paired: Paired, result: ResultFn) -> CheckResult:
    c_err, c_all = paired.canary_events, paired.canary_trials
    s_err, s_all = paired.stable_events, paired.stable_trials
    if short := _short(check, c_all, s_all):
        return result(None, short, sample_size=c_all, ref_sample_size=s_all)
    if c_all <= 0 or s_all <= 0:
        return result(None, "sequential: no requests on one side")
    factor = check.condition.threshold.multiple
    j = judge(c_err, c_all, s_err, s_all, factor, check.alpha, ERRORS)
    dim = check.dimension
    canary_rate, stable_rate = c_err / c_all, s_err / s_all
    counts = (f"canary {format_value(canary_rate, dim)} ({c_err:,.0f} of {c_all:,.0f}) vs "
              f"stable {format_value(stable_rate, dim)} ({s_err:,.0f} of {s_all:,.0f})")
    return _finish(check, result, j.worse, j.better, j, "errors", f"{factor:g}", counts, "",
                   canary_rate, factor * stable_rate, stable_rate, c_all, s_all)


def _judge_latency(check: Check, paired: Paired, result: ResultFn) -> CheckResult:
    calibration = _buckets(paired.calibration_bounds, paired.calibration_counts)
    canary = _buckets(paired.bounds, paired.canary_counts)
    stable = _buckets(paired.bounds, paired.stable_counts)
    if not canary:
        return result(None, "sequential: the stable's first round picked the bounds; "
                            "comparing from the next round on")
    c_all, s_all = histogram.total(canary), histogram.total(stable)
    if short := _short(check, c_all, s_all):
        return result(None, short, sample_size=c_all, ref_sample_size=s_all)
    q = check.metric.quantile
    wanted = (q,) if q is not None else DISTRIBUTION_QUANTILES
    bounds = sorted({b for p in wanted if (b := histogram.choose_bound(calibration, p))
                     is not None})
    if not bounds:
        return result(None, "sequential: the stable's histogram has no bucket bound with "
                            "requests on both sides to compare at")
    factor = check.condition.threshold.multiple
    dim = check.dimension
    judgements: list[tuple[float, Judgement]] = []
    for bound in bounds:
        c_slow = histogram.count_above(canary, bound)
        s_slow = histogram.count_above(stable, bound)
        if c_slow is None or s_slow is None:
            return result(None, f"sequential: {format_value(bound, dim)} is not a bucket "
                                "bound of both versions")
        null = 1.0 if factor == 1.0 else _null_ratio(calibration, bound, factor)
        if null is None:
            return result(None, "sequential: cannot tell from the stable's buckets what "
                                f"{factor:g}x its latency means at {format_value(bound, dim)}")
        j = judge(c_slow, c_all, s_slow, s_all, null, check.alpha, LATENCY,
                  alpha_worse=check.alpha / len(bounds))
        judgements.append((bound, j))
    worse = any(j.worse for _, j in judgements)
    better = all(j.better for _, j in judgements)
    # show the bound with the most evidence of being slower
    bound, shown = max(judgements, key=lambda bj: (bj[1].worse, bj[1].log_e_worse))
    c_slow = histogram.count_above(canary, bound) or 0.0
    s_slow = histogram.count_above(stable, bound) or 0.0
    where = "" if len(bounds) == 1 else f" (of {len(bounds)} bounds)"
    counts = (f"slower than {format_value(bound, dim)}{where}: canary "
              f"{c_slow / c_all:.2%} of {c_all:,.0f} vs stable {s_slow / s_all:.2%} of "
              f"{s_all:,.0f}")
    prefix = (f"slower than {format_value(bound, dim)}{where}: canary "
              f"{c_slow / c_all:.2%} vs stable {s_slow / s_all:.2%}: ")
    level = q if q is not None else 0.5
    value = histogram.quantile(level, canary)
    reference = histogram.quantile(level, stable)
    return _finish(check, result, worse, better, shown, "latency",
                   _null_text(factor, bound, calibration), counts, prefix, value,
                   factor * reference, reference, c_all, s_all)


def _null_ratio(calibration: histogram.Buckets, bound: float, factor: float) -> float | None:
    """How many more requests above ``bound`` a latency ``factor`` × the stable's shows:
    P(L > bound / factor) / P(L > bound), from the stable's calibration buckets (log-latency
    taken as locally normal inside the bucket ``bound / factor`` falls in)."""
    above = histogram.fraction_above(calibration, bound)
    scaled = histogram.fraction_above_smooth(calibration, bound / factor)
    if not above or not math.isfinite(above) or not math.isfinite(scaled) or scaled <= 0:
        return None
    return scaled / above


def _null_text(factor: float, bound: float, calibration: histogram.Buckets) -> str:
    if factor == 1.0:
        return "1"
    null = _null_ratio(calibration, bound, factor)
    return f"{null:.3g} (= {factor:g}x latency)" if null is not None else f"{factor:g}x"
