"""The normalised plan: what `novactl validate --output json` prints.

Durations in seconds, thresholds in canonical units, every check of a stage
listed (every_stage merged in).  Adapter configs are summarised by their
keys only: values may hold URLs or other things that should stay private.
"""

from __future__ import annotations

from typing import Any

from novactl.plan._model import Check, Plan


def _check(check: Check) -> dict[str, Any]:
    cond = check.condition
    threshold = cond.threshold
    out: dict[str, Any] = {
        "id": check.id,
        "role": check.role.value,
        "name": check.name,
        "check": check.describe(),
        "metric": cond.metric,
        "subject": cond.subject,
        "op": cond.op,
        "threshold": {
            "kind": threshold.kind.value,
            "value": threshold.value,
            "reference": str(threshold.reference) if threshold.reference else None,
        },
        "dimension": check.dimension.value,
        "min_samples": check.min_samples,
    }
    if cond.for_ is not None:
        out["for_seconds"] = cond.for_
    if cond.over is not None:
        out["over_seconds"] = cond.over
    if cond.sequential:
        out["sequential"] = True
    if check.target is not None:
        out["target"] = {"op": check.target.op, "value": check.target.value,
                         "text": check.target.text}
    if check.severity:
        out["severity"] = check.severity
    return out


def normalized(plan: Plan) -> dict[str, Any]:
    spec = plan.spec
    stages = []
    for index, stage in enumerate(spec.stages):
        stages.append({
            "index": index,
            "name": stage.name,
            "description": stage.description,
            "weight": stage.weight,
            "replicas": stage.replicas,
            "min_duration_seconds": stage.duration.min,
            "max_duration_seconds": stage.duration.max,
            "sustain_seconds": stage.sustain_for,
            "interval_seconds": plan.interval(stage),
            "approval": ({"roles": list(stage.approval.roles), "note": stage.approval.note}
                         if stage.approval else None),
            "notify": list(stage.notify),
            "announce": [a.model_dump() for a in stage.announce],
            "checks": [_check(c) for c in stage.checks],
        })
    promo = spec.promotion
    return {
        "apiVersion": plan.api_version,
        "kind": plan.kind,
        "name": plan.name,
        "source": plan.source,
        "digest": plan.digest,
        "service": spec.service,
        "versions": spec.versions.model_dump(),
        "traffic": {
            "type": spec.traffic.type,
            "config_keys": sorted(spec.traffic.config),
            "debug_header": spec.traffic.debug_header.model_dump() if spec.traffic.debug_header
            else None,
            "weight_tolerance": spec.traffic.weight_tolerance,
        },
        "workload": {
            "type": spec.workload.type,
            "config_keys": sorted(spec.workload.config),
            "ready_timeout_seconds": spec.workload.ready_timeout,
            "ready_poll_seconds": spec.workload.ready_poll,
        },
        "probes": {name: {"type": p.type, "config_keys": sorted(p.config)}
                   for name, p in spec.probes.items()},
        "metrics": {
            name: {
                "probe": m.probe,
                "kind": m.kind.value,
                "unit": m.effective_unit,
                "dimension": m.dimension.value,
                "scope": m.scope,
                "window_seconds": m.window,
                "min_samples": m.min_samples,
                "queries": m.queries(),
            }
            for name, m in spec.metrics.items()
        },
        "baseline": {"window_seconds": spec.baseline.window, "values": spec.baseline.values,
                     "timeout_seconds": spec.baseline.timeout},
        "stages": stages,
        "promotion": {
            "replicas": promo.replicas,
            "retire_after_seconds": promo.retire_after,
            "rollback_window_seconds": promo.rollback_window,
            "monitor_seconds": promo.monitor_for,
            "approval": {"roles": list(promo.approval.roles)} if promo.approval else None,
        },
        "signals": {name: s.model_dump() for name, s in spec.signals.items()},
        "approvers": spec.approvers,
        "notifications": {
            "targets": {name: t.type for name, t in spec.notifications.targets.items()},
            "routes": [r.model_dump() for r in spec.notifications.routes],
            "summaries": [s.model_dump() for s in spec.notifications.summaries],
        },
        "dashboards": [d.model_dump() for d in spec.dashboards],
        "report": {
            "technical": [r.metric for r in spec.report.technical],
            "business": [r.metric for r in spec.report.business],
        },
    }
