"""novactl validate PLAN"""

from __future__ import annotations

from novactl.cli._common import Output, OutputOpt, PlanArg, VarOpt, load
from novactl.cli._terminal import term


def command(plan: PlanArg, var: VarOpt = None, output: OutputOpt = Output.text) -> None:
    """Load and check a plan: YAML, types, references, units, adapter configs.

    Exits 2 with one line per problem (file:line:column: field: message).
    """
    from novactl._units import format_duration
    from novactl.plan._normal import normalized

    term.output = output.value
    loaded = load(plan, var)
    if output is Output.json:
        term.json(normalized(loaded))
        return
    spec = loaded.spec
    term.ok(f"{plan}: valid plan {loaded.name!r} ({spec.versions.stable} → "
            f"{spec.versions.canary}, {len(spec.stages)} stages, digest {loaded.digest})")
    rows = []
    for i, stage in enumerate(spec.stages, 1):
        counts: dict[str, int] = {}
        for check in stage.checks:
            counts[check.role.value] = counts.get(check.role.value, 0) + 1
        rows.append([
            str(i), stage.name, f"{stage.weight:g}%",
            "—" if stage.replicas is None else str(stage.replicas),
            str(stage.duration), format_duration(stage.sustain_for),
            format_duration(loaded.interval(stage)),
            f"{counts.get('mandatory', 0)}/{counts.get('desirable', 0)}",
            f"{counts.get('rollback', 0)}/{counts.get('pause', 0)}/{counts.get('alert', 0)}",
            ", ".join(stage.approval.roles) if stage.approval else "—",
        ])
    term.table(["#", "stage", "weight", "replicas", "duration", "sustain", "interval",
                "criteria m/d", "rollback/pause/alert", "approval"], rows)
    promo = spec.promotion
    term.info(f"promotion: {promo.replicas or 'same'} replicas; retire {spec.versions.stable} "
              f"after {format_duration(promo.retire_after)}; rollback window "
              f"{format_duration(promo.rollback_window)}; monitoring "
              f"{format_duration(promo.monitor_for)}")
