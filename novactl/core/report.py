"""What happened, per stage: the plan's "Success Metrics" tables, filled in.

Pure: built from the plan and the state.  Technical metrics show what the
canary showed in each stage (ratios pooled over every request, other values
time-weighted), with the sample size behind them; MTTR is the time from a
rollback's detection to traffic verified back on stable.  Business metrics
compare the pre-rollout baseline with what was last seen after promotion (or
in the last stage reached).
"""

from __future__ import annotations

from typing import Any

from novactl._units import format_duration, format_value
from novactl.core.state import Aggregate, Phase, RolloutState, StageRecord
from novactl.plan._expr import Condition, RefKind, ThresholdKind
from novactl.plan._model import MetricKind, Plan, ReportMetric

__all__ = ["build_report", "render_markdown"]


def _stage_value(plan: Plan, rec: StageRecord, metric: str, version: str | None
                 ) -> tuple[float | None, Aggregate | None]:
    key = f"{metric}@{version or '*'}"
    agg = rec.metrics.get(key)
    if agg is None:
        return None, None
    return agg.value(plan.metric(metric).kind.value), agg


def _met(condition: Condition | None, value: float | None, baseline: float | None
         ) -> bool | None:
    if condition is None or value is None:
        return None
    threshold = condition.threshold
    if threshold.kind is ThresholdKind.ABSOLUTE:
        return condition.holds(value, threshold.value)
    if threshold.reference is not None and threshold.reference.kind is RefKind.BASELINE:
        resolved = threshold.resolve(baseline)
        return None if resolved is None else condition.holds(value, resolved)
    return None


def _metric_row(plan: Plan, state: RolloutState, item: ReportMetric,
                records: list[StageRecord]) -> dict[str, Any]:
    metric = plan.metric(item.metric)
    version = None if metric.scope == "global" else state.canary_version
    cells = []
    for rec in records:
        value, agg = _stage_value(plan, rec, item.metric, version)
        baseline = state.baseline.get(item.metric)
        cells.append({
            "stage": rec.name,
            "value": value,
            "text": format_value(value, metric.dimension) if value is not None else "—",
            "samples": agg.sample_size() if agg else None,
            "observations": agg.n if agg else 0,
            "no_data": (agg.no_data + agg.errors) if agg else 0,
            "min": agg.min if agg else None,
            "max": agg.max if agg else None,
            "met": _met(item.check, value, baseline.value if baseline else None),
        })
    return {"metric": item.metric, "target": item.target, "dimension": metric.dimension.value,
            "stages": cells}


def _records(state: RolloutState) -> list[StageRecord]:
    records = list(state.stages)
    if state.post_stage is not None:
        records.append(state.post_stage)
    return records


def build_report(plan: Plan, state: RolloutState, now: float) -> dict[str, Any]:
    records = _records(state)
    technical = [_metric_row(plan, state, item, records) for item in plan.spec.report.technical]
    rb = state.rollback
    mttr = []
    for rec in records:
        took = None
        if rb is not None and rb.stage == rec.name:
            took = rb.time_to_restore
        mttr.append({"stage": rec.name, "seconds": took,
                     "text": format_duration(took) if took is not None else "—"})
    business = []
    for item in plan.spec.report.business:
        metric = plan.metric(item.metric)
        recorded = state.baseline.get(item.metric)
        base_value = recorded.value if recorded else None
        if (recorded is not None and metric.kind is MetricKind.COUNT
                and metric.window and recorded.window):
            # a count over the baseline window, shown for the metric's own window
            base_value = recorded.value * metric.window / recorded.window
        version = None if metric.scope == "global" else state.canary_version
        after: float | None = None
        for rec in reversed(records):
            _value, agg = _stage_value(plan, rec, item.metric, version)
            if agg is not None and agg.last is not None:
                after = agg.last
                break
        change = None
        if base_value is not None and after is not None and base_value:
            change = (after - base_value) / abs(base_value)
        business.append({
            "metric": item.metric,
            "target": item.target,
            "baseline": base_value,
            "after": after,
            "change": change,
            "text": {
                "baseline": format_value(base_value, metric.dimension)
                if base_value is not None else "—",
                "after": format_value(after, metric.dimension) if after is not None else "—",
                "change": f"{change * 100:+.1f}%" if change is not None else "—",
            },
            "met": _met(item.check, after, base_value),
        })
    stages = [{
        "name": rec.name,
        "weight": rec.weight,
        "entered_at": rec.entered_at,
        "left_at": rec.left_at,
        "duration_seconds": ((rec.left_at or now) - rec.entered_at),
        "outcome": rec.outcome or ("running" if not state.phase.terminal else ""),
        "evaluations": rec.evaluations,
        "longest_streak_seconds": rec.longest_streak,
        "tallies": {k: vars(v) for k, v in rec.tallies.items()},
    } for rec in records]
    return {
        "plan": plan.name,
        "rollout": state.rollout_id,
        "versions": {"stable": state.stable_version, "canary": state.canary_version},
        "phase": state.phase.value,
        "started_at": state.started_at,
        "promoted_at": state.promoted_at,
        "retired_at": state.retired_at,
        "completed_at": state.completed_at,
        "outcome": {Phase.COMPLETED: "promoted", Phase.ROLLED_BACK: "rolled back"}.get(
            state.phase, "in progress"),
        "rollback": None if rb is None else {
            "reason": rb.reason, "by": rb.by, "trigger": rb.trigger, "stage": rb.stage,
            "detected_at": rb.detected_at, "traffic_restored_at": rb.traffic_restored_at,
            "time_to_restore_seconds": rb.time_to_restore},
        "approvals": [vars(a) for a in state.approvals],
        "stages": stages,
        "technical": technical,
        "mttr": mttr,
        "business": business,
    }


def _mark(met: bool | None) -> str:
    return {True: " ✔", False: " ✖"}.get(met, "")  # type: ignore[arg-type]


def render_markdown(report: dict[str, Any]) -> str:
    stages = [s["name"] for s in report["stages"]]
    lines = [f"# Rollout report: {report['plan']} ({report['versions']['stable']} → "
             f"{report['versions']['canary']})", "",
             f"Outcome: **{report['outcome']}**", ""]
    if report["rollback"]:
        rb = report["rollback"]
        lines += [f"Rolled back: {rb['reason']} (by {rb['by']})", ""]
    lines += ["## Technical metrics", "",
              "| Metric | Target | " + " | ".join(stages) + " |",
              "|---|---|" + "---|" * len(stages)]
    for row in report["technical"]:
        cells = [f"{c['text']}{_mark(c['met'])}" for c in row["stages"]]
        lines.append(f"| {row['metric']} | {row['target']} | " + " | ".join(cells) + " |")
    lines.append("| MTTR | <5 min | " + " | ".join(m["text"] for m in report["mttr"]) + " |")
    lines += ["", "## Business metrics", "",
              "| Metric | Target | Baseline | Post-rollout | Change |", "|---|---|---|---|---|"]
    for row in report["business"]:
        text = row["text"]
        lines.append(f"| {row['metric']} | {row['target']} | {text['baseline']} | "
                     f"{text['after']}{_mark(row['met'])} | {text['change']} |")
    lines += ["", "## Stages", "", "| Stage | Weight | Duration | Outcome | Evaluations |",
              "|---|---|---|---|---|"]
    for stage in report["stages"]:
        lines.append(f"| {stage['name']} | {stage['weight']:g}% | "
                     f"{format_duration(stage['duration_seconds'])} | {stage['outcome']} | "
                     f"{stage['evaluations']} |")
    if report["approvals"]:
        from novactl._clock import iso

        lines += ["", "## Approvals", "", "| Stage | Role | Decision | By | At |",
                  "|---|---|---|---|---|"]
        for a in report["approvals"]:
            lines.append(f"| {a['stage']} | {a['role']} | {a['decision']} | {a['by']} | "
                         f"{iso(a['at'])} |")
    return "\n".join(lines) + "\n"
