"""novactl validate PLAN"""

from __future__ import annotations

from typing import Annotated

import typer

from novactl.cli._common import Output, OutputOpt, PlanArg, VarOpt, load
from novactl.cli._terminal import term

RpsOpt = Annotated[
    float | None,
    typer.Option("--rps", min=0.001, show_default=False,
                 help="Requests per second the service receives (overrides "
                      "spec.traffic.expected_rps) for the sample-size forecast."),
]


def command(plan: PlanArg, var: VarOpt = None, rps: RpsOpt = None,
            output: OutputOpt = Output.text) -> None:
    """Load and check a plan: YAML, types, references, units, adapter configs.

    Exits 2 with one line per problem (file:line:column: field: message).  With the
    expected traffic (spec.traffic.expected_rps or --rps) it also warns about each check
    that cannot reach its min_samples in a round at its stage's weight, saying what would.
    """
    from novactl._units import format_duration
    from novactl.core.forecast import forecast
    from novactl.plan._normal import normalized

    term.output = output.value
    loaded = load(plan, var)
    expected = rps if rps is not None else loaded.spec.traffic.expected_rps
    warnings = forecast(loaded, expected) if expected is not None else []
    if output is Output.json:
        data = normalized(loaded)
        data["forecast"] = {"requests_per_second": expected,
                            "warnings": [w.to_dict() for w in warnings]}
        term.json(data)
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
    if expected is None:
        term.info("no sample-size forecast: set spec.traffic.expected_rps or pass --rps")
        return
    if not warnings:
        term.ok(f"at {expected:,.6g} req/s every check reaches its min_samples in a round")
        return
    never = sum(w.level == "never" for w in warnings)
    term.warn(f"sample-size forecast at {expected:,.6g} req/s: {len(warnings)} check(s) "
              f"short of the samples they need in a round" + (
                  f", {never} can never decide" if never else ""))
    for warning in warnings:
        term.warn(warning.message)
