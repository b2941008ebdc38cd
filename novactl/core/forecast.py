"""Sample-size forecast: can each check decide at the expected traffic?

``novactl validate`` runs it with ``spec.traffic.expected_rps`` (or ``--rps``): for every
stage and check whose metric counts samples, how many a round brings at the stage's
weight against what the check needs — its ``min_samples``, and for a criterion on an
estimate (a rate, a quantile) the samples its 99% interval needs to clear the threshold
even when every sample is on the good side (``error_rate < 0.1%`` needs ~6,600 requests
with no error).  When a round is short: how long a pooled window must be, or that not even
a day's pooling (:data:`~novactl.core.rounds.MAX_POOL`) reaches it, so the check could
never decide and the stage never pass on its own.  Pure arithmetic on the plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from novactl._units import format_duration
from novactl.core.gates import CONFIDENCE, window_for
from novactl.core.rounds import CRITERIA, MAX_POOL
from novactl.plan._expr import ThresholdKind
from novactl.plan._model import Check, MetricKind, MetricSpec, Plan

__all__ = ["Forecast", "forecast"]


@dataclass(frozen=True)
class Forecast:
    stage: str
    check: str
    metric: str
    level: str  # pooled | never
    per_second: float  # samples a second for the version the check measures
    window: float  # the check's round window
    min_samples: int
    message: str

    def to_dict(self) -> dict[str, object]:
        return {"stage": self.stage, "check": self.check, "metric": self.metric,
                "level": self.level, "per_second": self.per_second, "window": self.window,
                "min_samples": self.min_samples, "message": self.message}


def _rate(plan: Plan, metric: MetricSpec, rps: float | None) -> float | None:
    if metric.expected_rate is not None:
        return metric.expected_rate
    return rps if metric.has_samples else None


def forecast(plan: Plan, rps: float | None = None) -> list[Forecast]:
    """The checks that cannot reach ``min_samples`` in a round at the expected traffic."""
    rps = rps if rps is not None else plan.spec.traffic.expected_rps
    out: list[Forecast] = []
    for stage in plan.stages:
        interval = plan.interval(stage)
        for check in stage.checks:
            item = _one(plan, stage.name, stage.weight, stage.duration.longest, interval,
                        check, rps)
            if item is not None:
                out.append(item)
    return out


def _one(plan: Plan, stage: str, weight: float, longest: float, interval: float,
         check: Check, rps: float | None) -> Forecast | None:
    metric = check.metric
    total = _rate(plan, metric, rps)
    need = check.min_samples
    if total is None or need <= 0:
        return None
    if metric.scope == "global":
        rate, who = total, ""
    elif check.condition.subject == "stable":
        rate, who = total * (1 - weight / 100.0), " stable"
    else:
        rate, who = total * weight / 100.0, " canary"
    if rate <= 0:
        return Forecast(stage, check.name, check.condition.metric, "never", 0.0, 0.0, need,
                        f"stage {stage}: {check.name}: no{who} samples at {weight:g}%")
    takes = need / rate
    speed = f"{_rate_text(rate)}{who} samples/s"
    if check.condition.sequential:
        if takes <= longest:
            return None
        return Forecast(stage, check.name, check.condition.metric, "never", rate, takes,
                        need, f"stage {stage}: {check.name}: at {speed} the stage "
                        f"({format_duration(longest)}) gathers {rate * longest:,.0f} "
                        f"samples, fewer than min_samples {need:,}: it can never decide")
    window = window_for(check, interval)
    per_round = rate * window
    decide = _to_decide(check)
    if decide is not None and check.role in CRITERIA:
        longest_window = max(window, MAX_POOL)
        if decide > rate * longest_window:
            return Forecast(
                stage, check.name, check.condition.metric, "never", rate, window, need,
                f"stage {stage}: {check.name}: even with every sample on the good side, "
                f"showing it at {CONFIDENCE:.0%} takes ≥ {decide:,.0f} samples; at {speed} "
                f"a {format_duration(longest_window)} window brings "
                f"{rate * longest_window:,.0f}: it can never decide here (a human decides "
                "at the stage's maximum); judge it in a later stage or over a longer window")
    wanted = f"need ≥ {need:,}"
    if decide is not None and check.role in CRITERIA and decide > need:
        need = math.ceil(decide)
        takes = need / rate
        wanted = f"≥ {need:,} to show it at {CONFIDENCE:.0%} even with none on the bad side"
    if per_round >= need:
        return None
    head = (f"stage {stage}: {check.name}: ~{per_round:,.0f} samples per "
            f"{format_duration(window)} window at {speed} ({wanted})")
    if takes <= MAX_POOL:
        return Forecast(stage, check.name, check.condition.metric, "pooled", rate, window,
                        need, f"{head}: decided on windows of ≥ {format_duration(takes)}, "
                        "pooled over rounds")
    return Forecast(stage, check.name, check.condition.metric, "never", rate, window, need,
                    f"{head}: it can never decide; it needs {format_duration(takes)} of "
                    f"traffic; lower min_samples to {max(1, int(per_round)):,}, raise the "
                    "weight, or measure over a longer window")


def _to_decide(check: Check) -> float | None:
    """Samples a threshold on an estimate needs before its interval can clear it, even
    with every sample on the good side (0 errors, 100% success, no request over the
    threshold); None for checks that compare values as they are."""
    cond = check.condition
    if cond.sequential or cond.op in ("==", "!=") or \
            cond.threshold.kind is not ThresholdKind.ABSOLUTE:
        return None
    below = cond.op in ("<", "<=")
    if check.metric.kind is MetricKind.RATIO:
        tail = cond.threshold.value if below else 1.0 - cond.threshold.value
    elif check.metric.kind is MetricKind.HISTOGRAM and check.metric.quantile is not None:
        tail = 1.0 - check.metric.quantile if below else check.metric.quantile
    else:
        return None
    if not 0.0 < tail < 1.0:
        return None
    z2 = _z(CONFIDENCE) ** 2
    return z2 * (1.0 - tail) / tail  # the Wilson bound of 0 of n reaches the tail here


def _z(confidence: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + confidence / 2)


def _rate_text(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 10 else f"{rate:.3g}"
