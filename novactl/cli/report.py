"""novactl report PLAN"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from novactl.cli._common import PlanArg, StateDirOpt, VarOpt, load, open_store
from novactl.cli._terminal import term


class ReportFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


def command(
    plan: PlanArg,
    output: Annotated[ReportFormat, typer.Option("--output", "-o")] = ReportFormat.text,
    state_dir: StateDirOpt = None,
    var: VarOpt = None,
) -> None:
    """The plan's success metrics per stage (value, sample size, target met), MTTR,
    business metrics against the baseline, stages and approvals."""
    from novactl._clock import SystemClock
    from novactl._errors import InputError
    from novactl.core.report import build_report, render_markdown

    term.output = "json" if output is ReportFormat.json else "text"
    loaded = load(plan, var)
    state = open_store(loaded, state_dir).load()
    if state is None:
        raise InputError(f"{loaded.name} has not started: nothing to report")
    report = build_report(loaded, state, SystemClock().now())
    if output is ReportFormat.json:
        term.json(report)
        return
    if output is ReportFormat.markdown:
        term.line(render_markdown(report).rstrip("\n"))
        return
    stages = [s["name"] for s in report["stages"]]
    term.info(f"{report['plan']}: {report['versions']['stable']} → "
              f"{report['versions']['canary']}: {report['outcome']}")
    if report["rollback"]:
        term.info(f"rollback: {report['rollback']['reason']}")
    rows = []
    for row in report["technical"]:
        rows.append([row["metric"], row["target"]] + [
            f"{c['text']}{' ✔' if c['met'] else ' ✖' if c['met'] is False else ''}"
            + (f" (n={c['samples']:,.0f})" if c["samples"] else "") for c in row["stages"]])
    rows.append(["MTTR", "<5 min"] + [m["text"] for m in report["mttr"]])
    term.table(["metric", "target", *stages], rows, title="technical metrics")
    if report["business"]:
        term.table(["metric", "target", "baseline", "post-rollout", "change"],
                   [[b["metric"], b["target"], b["text"]["baseline"],
                     b["text"]["after"] + (" ✔" if b["met"] else " ✖" if b["met"] is False
                                           else ""), b["text"]["change"]]
                    for b in report["business"]], title="business metrics")
