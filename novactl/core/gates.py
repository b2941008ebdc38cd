"""Gate evaluation: pure, three-valued, and honest about missing data.

Every check answers PASS, FAIL or INCONCLUSIVE with the value, the threshold,
the sample size behind it and a reason.  No data, NaN, a probe error, too few
samples or a missing reference are INCONCLUSIVE — never PASS.

For criteria, PASS means the condition holds.  For triggers and alerts the
condition describes trouble, so FAIL means it holds (the trigger is firing).
``holds`` carries the raw truth of the condition either way.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from novactl._units import Dimension, format_duration, format_value
from novactl.core import histogram
from novactl.core.observations import Observation, ObsKey, ObsStatus
from novactl.core.state import Paired, RefValue
from novactl.plan._expr import RefKind, ThresholdKind
from novactl.plan._model import Check, CheckRole, MetricKind

__all__ = ["CheckResult", "References", "ResultFn", "Verdict", "evaluate", "explain",
           "subject_version", "window_for"]


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
    ref_sample_size: float | None = None  # the stable's, for checks comparing with it
    short: bool = False  # undecided for lack of data in this window: a longer one may decide
    close: bool = False  # undecided: the estimate's interval straddles the threshold
    # sequential checks: the counts behind the verdict; the interval is found when shown
    sequential: Mapping[str, Any] | None = None

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
        if self.sequential is not None:
            out["sequential"] = dict(self.sequential)
        if self.holds is not None:
            out["holds"] = self.holds
        for name in ("value", "threshold", "reference", "sample_size", "ref_sample_size",
                     "target_met"):
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
            "ref_sample_size": clean(self.ref_sample_size),
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
    sequential = brief.get("sequential")
    if problem:
        if sequential:  # the counts already say where; the interval follows them
            return (f"{problem}: {sequential['counts']} over "
                    f"{format_duration(brief.get('window', 0.0))}: "
                    f"{_interval({**sequential, 'prefix': ''})}")
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
        ref_size = brief.get("ref_sample_size")
        if ref_size is not None:
            text += f" (stable n={_f(ref_size):,.0f})"
    if sequential:
        text += f"; sequential: {_interval(sequential)}"
    if brief.get("note"):
        text += f"; {brief['note']}"
    return text


def _interval(seq: Mapping[str, Any]) -> str:
    from novactl.core.sequential import interval_text

    return seq.get("prefix", "") + interval_text(
        int(seq["x"]), int(seq["n"]), float(seq["share"]), float(seq["alpha"]),
        float(seq["alpha_worse"]), str(seq["family"]), str(seq["null"]))


def _f(value: Any) -> float:
    return float(value)


def window_for(check: Check, eval_window: float) -> float:
    """The window a check is measured over in a round, before pooling: its ``over``, the
    metric's own window, its ``for`` (counts pooled over the whole time it must hold), or
    the evaluation's."""
    cond = check.condition
    if cond.over is not None:
        return cond.over
    if check.metric.window is not None:
        return check.metric.window
    if cond.for_ is not None:
        return max(cond.for_, eval_window)
    return eval_window


def subject_version(check: Check, refs: References) -> str | None:
    if check.metric.scope == "global":
        return None
    return refs.stable_version if check.condition.subject == "stable" else refs.canary_version


def _key(metric: str, version: str | None, window: float) -> ObsKey:
    return (metric, version, round(window))


ResultFn = Callable[..., CheckResult]


def evaluate(
    check: Check,
    observations: Mapping[ObsKey, Observation],
    refs: References,
    eval_window: float,
    now: float,
    *,
    window: float | None = None,
    paired: Paired | None = None,
) -> CheckResult:
    """Evaluate one check against this round's observations.  Pure.

    ``window`` is what the check was measured over this round (default
    :func:`window_for`; longer while short rounds are pooled).  A sequential check is
    judged on ``paired``: the stage's counts of both versions, this round's included."""
    if window is None:
        window = window_for(check, eval_window)
    dim = check.dimension
    cond = check.condition

    relative = ""
    if cond.threshold.kind is not ThresholdKind.ABSOLUTE:
        relative = cond.threshold.describe(dim)

    def result(holds: bool | None, problem: str = "", value: float | None = None,
               threshold: float | None = None, reference: float | None = None,
               obs: Observation | None = None, *, ref_obs: Observation | None = None,
               sample_size: float | None = None, ref_sample_size: float | None = None,
               note: str = "", short: bool = False, close: bool = False,
               sequential: Mapping[str, Any] | None = None) -> CheckResult:
        if holds is None:
            verdict = Verdict.INCONCLUSIVE
        elif check.trigger:
            verdict = Verdict.FAIL if holds else Verdict.PASS
        else:
            verdict = Verdict.PASS if holds else Verdict.FAIL
        target_met = None
        if check.target is not None and value is not None and math.isfinite(value):
            target_met = check.target.met(value)
        if sample_size is None and obs is not None:
            sample_size = obs.sample_size
        if ref_sample_size is None and ref_obs is not None:
            ref_sample_size = ref_obs.sample_size
        return CheckResult(
            check_id=check.id,
            role=check.role,
            name=check.name,
            verdict=verdict,
            holds=holds,
            value=value,
            threshold=threshold,
            reference=reference,
            sample_size=sample_size,
            events=obs.events if obs else None,
            trials=obs.trials if obs else None,
            window=window,
            at=now,
            problem=problem,
            target_met=target_met,
            op=cond.op,
            dimension=dim,
            relative=relative,
            note=note,
            ref_sample_size=ref_sample_size,
            short=short,
            close=close,
            sequential=sequential,
        )

    if cond.sequential:
        from novactl.core.judges import judge_check

        return judge_check(check, paired, refs, result)
    version = subject_version(check, refs)
    obs = observations.get(_key(cond.metric, version, window))
    if obs is None:
        return result(None, "not measured this round")
    problem = _unusable(obs, check.min_samples)
    if problem:
        return result(None, problem, obs.value if obs.usable else None, obs=obs, short=True)
    value = float(obs.value)  # type: ignore[arg-type]

    threshold_spec = cond.threshold
    reference: float | None = None
    ref_obs: Observation | None = None
    if threshold_spec.kind is ThresholdKind.ABSOLUTE:
        threshold = threshold_spec.value
    else:
        ref = threshold_spec.reference
        assert ref is not None
        ref_value, why, ref_obs = _reference_value(check, ref.kind, ref.stage, observations,
                                                   refs, window, obs)
        if ref_value is None:
            return result(None, why, value, obs=obs, ref_obs=ref_obs,
                          short=ref_obs is not None)
        reference = ref_value
        resolved = threshold_spec.resolve(ref_value)
        assert resolved is not None
        threshold = resolved

    holds, interval = _against(check, obs, threshold)
    if holds is None:
        shown = format_value(threshold, dim)
        return result(None, f"not decided yet: {format_value(value, dim)} vs {cond.op} "
                      f"{shown} over {format_duration(window)}, n={obs.sample_size or 0:,.0f}: "
                      f"{interval}", value, threshold, reference, obs, ref_obs=ref_obs,
                      close=True)
    return result(holds, "", value, threshold, reference, obs, ref_obs=ref_obs, note=interval)


CONFIDENCE = 0.99  # an absolute threshold on counts decides when this interval is clear of it


def _against(check: Check, obs: Observation, threshold: float) -> tuple[bool | None, str]:
    """Compare a measured value with a threshold, honestly about its sampling noise.

    A ratio of counts (errors of requests) and a quantile read off histogram buckets are
    estimates: they decide only when their 99% interval lies wholly on one side of the
    threshold (for a quantile, the share of observations above the threshold against
    1 − q); otherwise (None, the interval) — the check is pooled over more rounds.  Other
    values (gauges, counts of events) compare as they are."""
    from novactl.core.stats import wilson_interval

    op, value = check.condition.op, float(obs.value)  # type: ignore[arg-type]
    if op in ("==", "!="):
        return check.condition.holds(value, threshold), ""
    kind = check.metric.kind
    if kind is MetricKind.RATIO and obs.events is not None and obs.trials:
        lo, hi = wilson_interval(obs.events, obs.trials, CONFIDENCE)
        scale = check.metric.scale  # counts → the value's unit, as the probe scaled it
        lo, hi, dim = lo * scale, hi * scale, check.dimension
        text = f"{CONFIDENCE:.0%} interval {format_value(lo, dim)}–{format_value(hi, dim)}"
        above, below = lo > threshold, hi < threshold
    elif kind is MetricKind.HISTOGRAM and obs.buckets and check.metric.quantile is not None:
        n = histogram.total(obs.buckets)
        slow = histogram.fraction_above(obs.buckets, threshold)
        if n <= 0 or not math.isfinite(slow):
            return check.condition.holds(value, threshold), ""
        lo, hi = wilson_interval(slow * n, n, CONFIDENCE)
        tail = 1.0 - check.metric.quantile
        text = (f"{slow:.2%} of requests above {format_value(threshold, check.dimension)}, "
                f"{CONFIDENCE:.0%} interval {lo:.2%}–{hi:.2%} vs {tail:.2%}")
        above, below = lo > tail, hi < tail  # the quantile is above / below the threshold
    else:
        return check.condition.holds(value, threshold), ""
    if not above and not below:
        return None, text
    return (above if op in (">", ">=") else below), text


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
) -> tuple[float | None, str, Observation | None]:
    metric = check.metric
    name = check.condition.metric
    if kind is RefKind.STABLE:
        if not refs.stable_available:
            return None, "no stable version to compare with after promotion", None
        ref_obs = observations.get(_key(name, refs.stable_version, window))
        if ref_obs is None:
            return None, "stable not measured this round", None
        problem = _unusable(ref_obs, check.min_samples)
        if problem:
            return None, f"stable: {problem}", ref_obs
        return float(ref_obs.value), "", ref_obs  # type: ignore[arg-type]
    if kind is RefKind.BASELINE:
        recorded = refs.baseline.get(name)
        if recorded is None:
            return None, f"no baseline recorded for {name}", None
        value = recorded.value
        if metric.kind is MetricKind.COUNT and recorded.window > 0 and obs.window > 0:
            value = value * (obs.window / recorded.window)  # same rate, this window
        return value, "", None
    recorded_stage = refs.stages.get(stage or "", {})
    recorded = recorded_stage.get(name)
    if recorded is None:
        return None, f"no value recorded for {name} in stage {stage!r}", None
    return recorded.value, "", None


def _negate(op: str) -> str:
    return {"<": "≥", "<=": ">", ">": "≤", ">=": "<", "==": "≠", "!=": "="}[op]
