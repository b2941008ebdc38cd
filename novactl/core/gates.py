"""Gate evaluation: pure, three-valued, and honest about missing data.

Every check answers PASS, FAIL or INCONCLUSIVE with the value, the threshold,
the sample size behind it and a reason.  No data, NaN, a probe error, too few
samples or a missing reference are INCONCLUSIVE — never PASS.

For criteria, PASS means the condition holds.  For triggers and alerts the
condition describes trouble, so FAIL means it holds (the trigger is firing).
``holds`` carries the raw truth of the condition either way.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from novactl._units import Dimension, format_duration, format_value
from novactl.core.observations import Observation, ObsKey, ObsStatus
from novactl.core.state import RefValue
from novactl.plan._expr import RefKind, ThresholdKind
from novactl.plan._model import Check, CheckRole, MetricKind

__all__ = ["CheckResult", "References", "Verdict", "evaluate", "explain", "window_for"]


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"

    @property
    def symbol(self) -> str:
        return {"pass": "✔", "fail": "✖", "inconclusive": "?"}[self.value]


@dataclass(frozen=True)
class References:
    """Recorded values relative checks compare against."""

    stable_version: str
    canary_version: str
    baseline: Mapping[str, RefValue] = field(default_factory=dict)
    stages: Mapping[str, Mapping[str, RefValue]] = field(default_factory=dict)
    stable_available: bool = True  # False after promotion: nothing to compare with


@dataclass(frozen=True)
class CheckResult:
    """One check's answer.  ``reason`` is built on first use (it is only needed
    when someone reads it), so evaluating thousands of rounds stays cheap."""

    check_id: str
    role: CheckRole
    name: str
    verdict: Verdict
    holds: bool | None
    value: float | None
    threshold: float | None
    reference: float | None
    sample_size: float | None
    events: float | None
    trials: float | None
    window: float
    at: float
    problem: str = ""  # why the check is inconclusive ("" when it decided)
    target_met: bool | None = None
    op: str = ""
    dimension: Dimension = Dimension.NUMBER
    relative: str = ""  # the relative threshold as written ("2x baseline")
    note: str = ""  # how a decided check decided, when a value alone does not say it

    @functools.cached_property
    def reason(self) -> str:
        return explain(self.brief(), self.op, self.dimension, self.relative)

    def brief(self) -> dict[str, Any]:
        """The compact form kept in the state for `status` (see :func:`explain`)."""
        out: dict[str, Any] = {"verdict": self.verdict, "window": self.window}
        if self.problem:
            out["problem"] = self.problem
        if self.note:
            out["note"] = self.note
        if self.holds is not None:
            out["holds"] = self.holds
        for name in ("value", "threshold", "reference", "sample_size", "target_met"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value if not isinstance(value, float) or math.isfinite(value) \
                    else str(value)
        return out

    def to_dict(self) -> dict[str, Any]:
        def clean(x: float | None) -> float | str | None:
            if x is None or math.isfinite(x):
                return x
            return str(x)

        return {
            "check": self.check_id,
            "role": self.role.value,
            "name": self.name,
            "verdict": self.verdict.value,
            "holds": self.holds,
            "value": clean(self.value),
            "threshold": clean(self.threshold),
            "reference": clean(self.reference),
            "sample_size": clean(self.sample_size),
            "events": clean(self.events),
            "trials": clean(self.trials),
            "window": self.window,
            "at": self.at,
            "reason": self.reason,
            "target_met": self.target_met,
        }


def explain(brief: dict[str, Any], op: str, dimension: Dimension, relative: str = "") -> str:
    """Human text for a result: ``0.04% < 0.1% over 5m, n=12,034``."""
    problem = brief.get("problem")
    if problem:
        return str(problem)
    value, threshold = brief.get("value"), brief.get("threshold")
    if value is None or threshold is None:
        return "no result"
    holds = brief.get("holds")
    relation = op if holds in (True, None) else _negate(op)
    shown = format_value(_f(threshold), dimension)
    text = f"{format_value(_f(value), dimension)} {relation} {shown}"
    reference = brief.get("reference")
    if reference is not None and relative:
        text += f" ({relative} = {format_value(_f(reference), dimension)})"
    text += f" over {format_duration(brief.get('window', 0.0))}"
    size = brief.get("sample_size")
    if size is not None:
        text += f", n={_f(size):,.0f}"
    if brief.get("note"):
        text += f"; {brief['note']}"
    return text


def _f(value: Any) -> float:
    return float(value)


SEQUENTIAL_ALPHA = 0.01  # false-alarm bound of a sequential check, over all its looks


def window_for(check: Check, eval_window: float, stage_window: float | None = None) -> float:
    """The window a check is measured over: the whole stage so far (sequential), its
    ``over``, the metric's, or the evaluation's."""
    if check.condition.sequential and stage_window is not None:
        return max(stage_window, eval_window)
    if check.condition.over is not None:
        return check.condition.over
    if check.metric.window is not None:
        return check.metric.window
    return eval_window


def subject_version(check: Check, refs: References) -> str | None:
    if check.metric.scope == "global":
        return None
    return refs.stable_version if check.condition.subject == "stable" else refs.canary_version


def _key(metric: str, version: str | None, window: float) -> ObsKey:
    return (metric, version, round(window))


def evaluate(
    check: Check,
    observations: Mapping[ObsKey, Observation],
    refs: References,
    eval_window: float,
    now: float,
    stage_window: float | None = None,
) -> CheckResult:
    """Evaluate one check against this round's observations.  Pure.

    ``stage_window`` is how long the stage has been evaluated so far: a sequential check
    is measured over all of it."""
    window = window_for(check, eval_window, stage_window)
    version = subject_version(check, refs)
    dim = check.dimension
    cond = check.condition

    relative = ""
    if cond.threshold.kind is not ThresholdKind.ABSOLUTE:
        relative = cond.threshold.describe(dim)

    def result(holds: bool | None, problem: str = "", value: float | None = None,
               threshold: float | None = None, reference: float | None = None,
               obs: Observation | None = None) -> CheckResult:
        if holds is None:
            verdict = Verdict.INCONCLUSIVE
        elif check.trigger:
            verdict = Verdict.FAIL if holds else Verdict.PASS
        else:
            verdict = Verdict.PASS if holds else Verdict.FAIL
        target_met = None
        if check.target is not None and value is not None and math.isfinite(value):
            target_met = check.target.met(value)
        return CheckResult(
            check_id=check.id,
            role=check.role,
            name=check.name,
            verdict=verdict,
            holds=holds,
            value=value,
            threshold=threshold,
            reference=reference,
            sample_size=obs.sample_size if obs else None,
            events=obs.events if obs else None,
            trials=obs.trials if obs else None,
            window=window,
            at=now,
            problem=problem,
            target_met=target_met,
            op=cond.op,
            dimension=dim,
            relative=relative,
        )

    obs = observations.get(_key(cond.metric, version, window))
    if obs is None:
        return result(None, "not measured this round")
    problem = _unusable(obs, check.min_samples)
    if problem:
        return result(None, problem, obs.value if obs.usable else None, obs=obs)
    value = float(obs.value)  # type: ignore[arg-type]
    if cond.sequential:
        return _sequential(check, obs, observations, refs, window, result)

    threshold_spec = cond.threshold
    reference: float | None = None
    if threshold_spec.kind is ThresholdKind.ABSOLUTE:
        threshold = threshold_spec.value
    else:
        ref = threshold_spec.reference
        assert ref is not None
        ref_value, why = _reference_value(check, ref.kind, ref.stage, observations, refs, window,
                                          obs)
        if ref_value is None:
            return result(None, why, value, obs=obs)
        reference = ref_value
        resolved = threshold_spec.resolve(ref_value)
        assert resolved is not None
        threshold = resolved

    return result(cond.holds(value, threshold), "", value, threshold, reference, obs)


def _unusable(obs: Observation, min_samples: int) -> str:
    if obs.status is ObsStatus.ERROR:
        return f"probe error: {obs.reason or 'unknown'}"
    if obs.status is ObsStatus.NO_DATA:
        return f"no data: {obs.reason or 'empty result'}"
    if obs.value is None or not math.isfinite(obs.value):
        return f"no data: value is {obs.value!r}"
    if min_samples > 0:
        size = obs.sample_size
        if size is None or not math.isfinite(size):
            return f"sample size unknown (need ≥ {min_samples:,})"
        if size < min_samples:
            return f"only {size:,.0f} samples (need ≥ {min_samples:,})"
    return ""


def _reference_value(
    check: Check,
    kind: RefKind,
    stage: str | None,
    observations: Mapping[ObsKey, Observation],
    refs: References,
    window: float,
    obs: Observation,
) -> tuple[float | None, str]:
    metric = check.metric
    name = check.condition.metric
    if kind is RefKind.STABLE:
        if not refs.stable_available:
            return None, "no stable version to compare with after promotion"
        ref_obs = observations.get(_key(name, refs.stable_version, window))
        if ref_obs is None:
            return None, "stable not measured this round"
        problem = _unusable(ref_obs, check.min_samples)
        if problem:
            return None, f"stable: {problem}"
        return float(ref_obs.value), ""  # type: ignore[arg-type]
    if kind is RefKind.BASELINE:
        recorded = refs.baseline.get(name)
        if recorded is None:
            return None, f"no baseline recorded for {name}"
        value = recorded.value
        if metric.kind is MetricKind.COUNT and recorded.window > 0 and obs.window > 0:
            value = value * (obs.window / recorded.window)  # same rate, this window
        return value, ""
    recorded_stage = refs.stages.get(stage or "", {})
    recorded = recorded_stage.get(name)
    if recorded is None:
        return None, f"no value recorded for {name} in stage {stage!r}"
    return recorded.value, ""


def _sequential(check: Check, obs: Observation, observations: Mapping[ObsKey, Observation],
                refs: References, window: float, result: Any) -> CheckResult:
    """Canary vs stable on the stage's error counts, with an anytime-valid interval.

    The check asks whether the canary's error rate is (not) above ``factor`` × the
    stable's.  Given all errors of both, the canary's share of them is binomial with the
    canary's share of the traffic when both fail alike; the interval for that share
    (core.stats.error_share_interval) may be looked at every round.  It decides only
    when it lies wholly on one side of the threshold: otherwise inconclusive.
    """
    from novactl.core.stats import error_share_interval, ratio_for_share, share_for_ratio

    cond = check.condition
    value = float(obs.value)  # type: ignore[arg-type]
    if not refs.stable_available:
        return result(None, "no stable version to compare with after promotion", value,
                      obs=obs)
    stable = observations.get(_key(cond.metric, refs.stable_version, window))
    if stable is None:
        return result(None, "stable not measured this round", value, obs=obs)
    problem = _unusable(stable, check.min_samples)
    if problem:
        return result(None, f"stable: {problem}", value, obs=obs)
    counts = (obs.events, obs.trials, stable.events, stable.trials)
    if any(c is None or not math.isfinite(c) or c < 0 for c in counts):
        return result(None, "sequential needs raw counts (events and trials) from the probe",
                      value, obs=obs)
    c_err, c_all, s_err, s_all = (float(c) for c in counts)  # type: ignore[arg-type]
    if c_all <= 0 or s_all <= 0:
        return result(None, "no requests on one side", value, obs=obs)
    traffic = c_all / (c_all + s_all)
    threshold_spec = cond.threshold
    factor = (threshold_spec.value if threshold_spec.kind is ThresholdKind.FACTOR
              else 1.0 + threshold_spec.value)
    stable_rate = s_err / s_all
    errors = round(c_err + s_err)
    lo, hi = error_share_interval(min(round(c_err), errors), errors, SEQUENTIAL_ALPHA)
    cut = share_for_ratio(factor, traffic)
    low_ratio, high_ratio = ratio_for_share(lo, traffic), ratio_for_share(hi, traffic)
    span = (f"canary/stable error-rate ratio in [{low_ratio:.3g}, {high_ratio:.3g}] "
            f"({(1 - SEQUENTIAL_ALPHA):.0%} anytime-valid, {errors} errors) vs {factor:g}")
    above = lo > cut  # the canary is worse than factor × stable, with confidence
    below = hi < cut  # ... it is not
    if not above and not below:
        return result(None, f"sequential: not decided yet: {span}", value,
                      factor * stable_rate, stable_rate, obs)
    is_above = above
    holds = is_above if cond.op in (">", ">=") else not is_above
    decided: CheckResult = result(holds, "", value, factor * stable_rate, stable_rate, obs)
    return dataclasses.replace(decided, note=f"sequential: {span}")


def _negate(op: str) -> str:
    return {"<": "≥", "<=": ">", ">": "≤", ">=": "<", "==": "≠", "!=": "="}[op]
