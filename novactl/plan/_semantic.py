"""What only the whole plan can tell: the second validation pass.

pydantic has checked shapes and types (:mod:`._model`); :func:`semantic_issues` checks
what needs the whole plan — weights going down, unknown metric names, a ``for`` window
longer than its stage, a sequential check on a metric without counts.  Each issue is a
path into the YAML, so the loader can name file, line and column.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from novactl._units import Dimension, format_duration
from novactl.plan._expr import Condition, RefKind, ThresholdKind
from novactl.plan._model import (
    _NAME,
    _VAR,
    RUNTIME_VARS,
    CheckRole,
    CheckSpec,
    MetricKind,
    MetricSpec,
    Plan,
    Spec,
    iter_check_specs,
)

__all__ = ["Issue", "semantic_issues"]


Issue = tuple[tuple[str | int, ...], str]


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _known(choices: Any) -> str:
    names = sorted(choices)
    return ", ".join(names) if names else "none defined"


def semantic_issues(plan: Plan) -> list[Issue]:
    """What only the whole plan can tell.  Returns (yaml path, message) pairs."""
    issues: list[Issue] = []
    spec = plan.spec
    stages = spec.stages
    stage_names: dict[str, int] = {}

    # stages: unique names, weights never going down, timing sanity
    for i, stage in enumerate(stages):
        base: tuple[str | int, ...] = ("spec", "stages", i)
        if stage.name in stage_names:
            issues.append(((*base, "name"), f"stage name {stage.name!r} is used twice"))
        stage_names.setdefault(stage.name, i)
        if i > 0 and stage.weight < stages[i - 1].weight:
            issues.append((
                (*base, "weight"),
                f"weights must not go down: stage {stage.name!r} has {stage.weight:g}% "
                f"after {stages[i - 1].name!r} at {stages[i - 1].weight:g}%",
            ))
        interval = plan.interval(stage)
        if interval <= 0:
            issues.append(((*base, "interval"), "the evaluation interval must be longer than zero"))
        elif stage.duration.min and interval > stage.duration.longest:
            issues.append((
                (*base, "interval"),
                f"the evaluation interval {format_duration(interval)} is longer than the "
                f"stage ({stage.duration})",
            ))
        if stage.duration.max is not None and stage.sustain_for > stage.duration.max:
            issues.append((
                (*base, "sustain"),
                f"sustain {format_duration(stage.sustain_for)} can never be met within the "
                f"stage's maximum {format_duration(stage.duration.max)}",
            ))
        for j, target in enumerate(stage.notify):
            if target not in spec.notifications.targets:
                issues.append(((*base, "notify", j), _unknown_target(target, spec)))
        for j, announcement in enumerate(stage.announce):
            for k, target in enumerate(announcement.to):
                if target not in spec.notifications.targets:
                    issues.append(((*base, "announce", j, "to", k), _unknown_target(target, spec)))

    # probes referenced by metrics, query shapes
    for name, metric in spec.metrics.items():
        base = ("spec", "metrics", name)
        if metric.probe not in spec.probes:
            issues.append((
                (*base, "probe"),
                f"unknown probe {metric.probe!r}{_suggest(metric.probe, spec.probes)} "
                f"(known: {_known(spec.probes)})",
            ))
        parts = metric.queries()
        if metric.quantile is not None and metric.kind is not MetricKind.HISTOGRAM:
            issues.append(((*base, "quantile"), "'quantile' belongs to histogram metrics; a "
                           "value metric computes its quantile in the query"))
        if metric.kind is MetricKind.HISTOGRAM:
            if not isinstance(metric.query, str):
                issues.append(((*base, "query"), "a histogram metric needs one query string "
                               "answering the bucket counts by le, e.g. sum by (le) (increase("
                               "http_request_duration_seconds_bucket{...}[{{window}}]))"))
        elif metric.kind is MetricKind.RATIO:
            missing = {"numerator", "denominator"} - set(parts)
            if isinstance(metric.query, str) or missing:
                issues.append((
                    (*base, "query"),
                    "a ratio metric needs query: {numerator: ..., denominator: ...}",
                ))
        else:
            allowed = {"value", "samples"}
            extra = set(parts) - allowed
            if extra or "value" not in parts:
                issues.append((
                    (*base, "query"),
                    f"a {metric.kind.value} metric needs a query string or {{value: ..., "
                    f"samples: ...}}" + (f"; unexpected {sorted(extra)}" if extra else ""),
                ))
        for part, text in parts.items():
            for var in _VAR.findall(text):
                if var not in RUNTIME_VARS and var not in spec.variables:
                    issues.append((
                        (*base, "query") if isinstance(metric.query, str)
                        else (*base, "query", part),
                        f"unknown variable {{{{{var}}}}} (runtime: "
                        f"{', '.join(sorted(RUNTIME_VARS))}; plan: {_known(spec.variables)})",
                    ))
            if metric.scope == "global" and "{{version}}" in text.replace(" ", ""):
                issues.append((
                    (*base, "scope"),
                    "a global metric cannot use {{version}}; set scope: version",
                ))

    for name in spec.baseline.values:
        if name not in spec.metrics:
            issues.append((
                ("spec", "baseline", "values", name),
                f"unknown metric {name!r}{_suggest(name, spec.metrics)}",
            ))

    # every check
    for index, role, check_spec, path in iter_check_specs(plan):
        issues.extend(_check_issues(plan, index, role, check_spec, path, stage_names))

    # approvals
    for i, stage in enumerate(stages):
        if stage.approval and spec.approvers:
            for j, role_name in enumerate(stage.approval.roles):
                if role_name not in spec.approvers:
                    issues.append((
                        ("spec", "stages", i, "approval", "roles", j),
                        f"role {role_name!r} has no approvers under spec.approvers"
                        f"{_suggest(role_name, spec.approvers)}",
                    ))

    promotion = spec.promotion
    if promotion.monitor is not None and promotion.monitor < max(promotion.rollback_window,
                                                                 promotion.retire_after):
        issues.append((
            ("spec", "promotion", "monitor"),
            "monitoring must last at least as long as the rollback window and the grace period",
        ))

    # notifications
    for i, route in enumerate(spec.notifications.routes):
        for j, target in enumerate(route.to):
            if target not in spec.notifications.targets:
                issues.append((("spec", "notifications", "routes", i, "to", j),
                               _unknown_target(target, spec)))
    for i, summary in enumerate(spec.notifications.summaries):
        for j, target in enumerate(summary.to):
            if target not in spec.notifications.targets:
                issues.append((("spec", "notifications", "summaries", i, "to", j),
                               _unknown_target(target, spec)))

    for section in ("technical", "business"):
        for i, item in enumerate(getattr(spec.report, section)):
            if item.metric not in spec.metrics:
                issues.append((("spec", "report", section, i, "metric"),
                               f"unknown metric {item.metric!r}"
                               f"{_suggest(item.metric, spec.metrics)}"))

    for name in spec.signals:
        if not re.match(_NAME, name):
            issues.append((("spec", "signals", name),
                           f"signal name {name!r} must be lower-case letters, digits and -"))
    return issues


def _unknown_target(target: str, spec: Spec) -> str:
    targets = spec.notifications.targets
    return (f"unknown notification target {target!r}{_suggest(target, targets)} "
            f"(known: {_known(targets)})")


def _check_issues(
    plan: Plan,
    index: int | None,
    role: CheckRole,
    check_spec: CheckSpec,
    path: tuple[str | int, ...],
    stage_names: dict[str, int],
) -> list[Issue]:
    spec = plan.spec
    cond = check_spec.check
    at = (*path, "check") if not isinstance(check_spec, str) else path
    issues: list[Issue] = []
    metric = spec.metrics.get(cond.metric)
    if metric is None:
        return [(
            at,
            f"unknown metric {cond.metric!r}{_suggest(cond.metric, spec.metrics)} "
            f"(known: {_known(spec.metrics)})",
        )]
    threshold = cond.threshold
    if threshold.kind is ThresholdKind.ABSOLUTE:
        dim = threshold.dimension
        if dim is not None and dim is not metric.dimension:
            issues.append((
                at,
                f"{cond.metric} measures a {metric.dimension} but the threshold is a {dim}",
            ))
        if dim is None and metric.dimension is Dimension.TIME:
            issues.append((at, f"{cond.metric} is a time: give the threshold a unit (ms, s)"))
    ref = threshold.reference
    if (cond.subject == "stable" or (ref and ref.kind is RefKind.STABLE)) and (
        metric.scope == "global"
    ):
        issues.append((at, f"{cond.metric} is a global metric: it has no per-version value"))
    if ref is not None and ref.kind is RefKind.STABLE and cond.subject == "stable":
        issues.append((at, "comparing the stable version with itself"))
    if ref is not None and ref.kind is RefKind.STAGE:
        target_index = stage_names.get(ref.stage or "")
        if target_index is None:
            issues.append((at, f"unknown stage {ref.stage!r}"
                               f"{_suggest(ref.stage or '', stage_names)}"))
        elif index is None or target_index >= index:
            issues.append((at, f"stage {ref.stage!r} does not come before this stage"))
        if metric.kind is MetricKind.COUNT:
            issues.append((at, "a count metric cannot be compared with a stage; use a ratio"))
    if cond.sequential:
        issues.extend(_sequential_issues(plan, index, cond, metric, at))
    elif check_spec.alpha is not None:
        issues.append(((*path, "alpha"), "'alpha' is the false-alarm bound of a sequential "
                       "check; this check is not sequential"))
    if cond.for_ is not None and not role.is_trigger:
        issues.append((
            at,
            "'for' belongs to triggers and alerts; criteria are held for the stage's 'sustain'",
        ))
    if cond.for_ is not None:
        stages = plan.spec.stages if index is None else [plan.spec.stages[index]]
        for stage in stages:
            if stage.duration.longest and cond.for_ > stage.duration.longest:
                issues.append((
                    at,
                    f"'for {format_duration(cond.for_)}' is longer than stage {stage.name!r} "
                    f"({stage.duration}); it could never fire",
                ))
                break
    target = check_spec.parsed_target
    if target is not None and target.dimension not in (None, metric.dimension):
        issues.append(((*path, "target"),
                       f"{cond.metric} measures a {metric.dimension} but the target is a "
                       f"{target.dimension}"))
    return issues


def _sequential_issues(plan: Plan, index: int | None, cond: Condition, metric: MetricSpec,
                       at: tuple[str | int, ...]) -> list[Issue]:
    issues: list[Issue] = []
    threshold = cond.threshold
    ref = threshold.reference
    if metric.kind not in (MetricKind.RATIO, MetricKind.HISTOGRAM):
        issues.append((at, f"'sequential' needs counts: {cond.metric} is a "
                           f"{metric.kind.value} metric; use a ratio metric (errors / requests) "
                           "or a histogram metric (latency buckets)"))
    if ref is None or ref.kind is not RefKind.STABLE or cond.subject != "canary":
        issues.append((at, "'sequential' compares the canary with the stable: write e.g. "
                           "'error_rate > stable sequential' or 'p95_latency > +10% stable "
                           "sequential'"))
    if cond.op in ("==", "!="):
        issues.append((at, "'sequential' needs <, <=, > or >="))
    if threshold.multiple <= 0:
        issues.append((at, "'sequential' compares rates: the multiple of the stable's must "
                           "be above 0"))
    if cond.for_ is not None or cond.over is not None:
        issues.append((at, "'sequential' accumulates the whole stage already: drop "
                           "'for' and 'over'"))
    stages = plan.spec.stages if index is None else [plan.spec.stages[index]]
    for stage in stages:
        if stage.weight >= 100:
            issues.append((at, f"at {stage.weight:g}% in stage {stage.name!r} no request "
                               "reaches the stable: a sequential check has nothing to compare "
                               "with there"))
            break
    return issues
