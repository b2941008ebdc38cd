"""novactl probe PLAN [METRIC ...]"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from novactl.cli._common import Output, OutputOpt, PlanArg, VarOpt, load
from novactl.cli._terminal import term

if TYPE_CHECKING:  # pragma: no cover
    from novactl.core.actions import ObsRequest
    from novactl.core.observations import Observation
    from novactl.plan import Plan
    from novactl.plan._model import StageSpec


def command(
    plan: PlanArg,
    metrics: Annotated[list[str] | None, typer.Argument(
        metavar="[METRIC]...", show_default=False,
        help="Only these metrics (default: every metric, or the stage's with --stage).")]
    = None,
    stage: Annotated[str | None, typer.Option(
        "--stage", metavar="NAME", show_default=False,
        help="Only the metrics this stage's checks use; fills {{stage}} and its interval "
        "is the default window.")] = None,
    window: Annotated[str | None, typer.Option(
        "--window", metavar="DURATION", show_default=False,
        help="Measure over this window (default: the metric's window, else the stage's or "
        "the default evaluation interval).")] = None,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Also print every rendered query.")] = False,
    var: VarOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """Run the plan's metric queries once, through the plan's real probes, for the canary
    and the stable version side by side (global metrics once), and show what they answer:
    value, sample size, and why a query had no data or failed.

    Queries are rendered exactly as in a rollout.  Nothing is changed and no state is read
    or written.  Exit 0 when every query answered (no data included: it is shown, and
    warned about on stderr), 6 when any query failed, 2 for bad input.
    """
    from novactl._errors import InputError
    from novactl.cli._common import duration
    from novactl.core.actions import ObsRequest
    from novactl.exitcodes import ExitCode
    from novactl.runner import AdapterSet, Executor, context_for

    term.output = output.value
    loaded = load(plan, var)
    stage_spec = _stage(loaded, stage)
    names = _select(loaded, metrics or [], stage_spec)
    fixed = None
    if window is not None:
        fixed = duration(window, "--window")
        if fixed <= 0:
            raise InputError("--window must be longer than 0s")
    default_window = (loaded.interval(stage_spec) if stage_spec is not None
                      else loaded.spec.defaults.interval)
    versions = loaded.spec.versions
    requests: list[ObsRequest] = []
    for name in names:
        metric = loaded.metric(name)
        span = fixed or metric.window or default_window
        if metric.scope == "global":
            requests.append(ObsRequest(name, None, None, span))
        else:
            requests.append(ObsRequest(name, versions.canary, "canary", span))
            requests.append(ObsRequest(name, versions.stable, "stable", span))

    def log(line: str) -> None:
        if term.debug:
            term.note(line)

    # no state directory: a probe that keeps history there (scrape) must not write into a
    # rollout's state behind its lock
    context = context_for(loaded, log=log)
    adapters = AdapterSet(loaded, context)
    executor = Executor(loaded, adapters, context.clock, parallel=8)
    stage_name = stage_spec.name if stage_spec is not None else None
    try:
        rendered = {request: executor.query_for(request, stage_name).parts
                    for request in requests}
        observations = executor.observe(requests, stage_name)
    finally:
        adapters.close()

    results = _results(loaded, names, requests, observations, rendered)
    counts = {"ok": 0, "no_data": 0, "error": 0}
    for obs in observations:
        counts[obs.status.value] = counts.get(obs.status.value, 0) + 1
    code = ExitCode.ACTION_FAILED if counts["error"] else ExitCode.OK
    if output is Output.json:
        term.json({
            "plan": loaded.name,
            "stage": stage_name,
            "versions": {"canary": versions.canary, "stable": versions.stable},
            "metrics": results,
            "summary": {"queries": len(observations), **counts},
            "exit_code": int(code),
        })
    else:
        _print(loaded, results, stage_name, verbose)
        term.info(f"{len(observations)} queries: {counts['ok']} ok, {counts['no_data']} no "
                  f"data, {counts['error']} failed")
    if counts["no_data"]:
        which = sorted({r["metric"] for r in results for side in r["results"].values()
                        if side["status"] == "no_data"})
        term.warn(f"no data for {', '.join(which)}: nothing to measure in the window "
                  "(a rollout would count these checks as inconclusive)")
    raise typer.Exit(int(code))


def _stage(plan: Plan, name: str | None) -> StageSpec | None:
    if name is None:
        return None
    from novactl._errors import InputError

    for stage in plan.stages:
        if stage.name == name:
            return stage
    raise InputError(f"unknown stage {name!r}{_suggest(name, [s.name for s in plan.stages])} "
                     f"(stages: {', '.join(s.name for s in plan.stages)})")


def _select(plan: Plan, asked: list[str], stage: StageSpec | None) -> list[str]:
    from novactl._errors import InputError

    known = plan.spec.metrics
    if asked:
        unknown = [name for name in asked if name not in known]
        if unknown:
            name = unknown[0]
            raise InputError(f"unknown metric {name!r}{_suggest(name, known)} "
                             f"(known: {', '.join(sorted(known)) or 'none defined'})")
        return list(dict.fromkeys(asked))
    if stage is not None:
        used = list(dict.fromkeys(check.condition.metric for check in stage.checks))
        if not used:
            raise InputError(f"stage {stage.name!r} has no checks, so no metrics to probe")
        return used
    if not known:
        raise InputError("the plan defines no metrics (spec.metrics)")
    return list(known)


def _suggest(word: str, choices: Any) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _results(plan: Plan, names: list[str], requests: list[ObsRequest],
             observations: list[Observation], rendered: dict[ObsRequest, dict[str, str]]
             ) -> list[dict[str, Any]]:
    """One entry per metric: its settings and, per side (canary/stable, or global), the
    observation with its display value and the queries as rendered."""
    from novactl._units import format_value

    by_metric: dict[str, dict[str, Any]] = {}
    for name in names:
        metric = plan.metric(name)
        by_metric[name] = {
            "metric": name,
            "kind": metric.kind.value,
            "unit": metric.effective_unit,
            "scope": metric.scope,
            "probe": metric.probe,
            "window": None,
            "results": {},
        }
    for request, obs in zip(requests, observations, strict=True):
        entry = by_metric[request.metric]
        entry["window"] = request.window
        dimension = plan.metric(request.metric).dimension
        side = request.role or "global"
        entry["results"][side] = {
            **obs.to_dict(),
            "role": request.role,
            "shown": format_value(obs.value, dimension) if obs.usable else
            obs.status.value.replace("_", " "),
            "queries": rendered[request],
        }
    return list(by_metric.values())


def _count(value: float | None) -> str:
    if value is None:
        return ""
    if value == int(value) or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def _sample(result: dict[str, Any] | None, kind: str) -> str:
    if result is None or result["status"] != "ok":
        return ""
    if kind == "ratio":
        return f"{_count(result.get('events'))}/{_count(result.get('trials'))}"
    return _count(result.get("samples"))


def _print(plan: Plan, results: list[dict[str, Any]], stage: str | None,
           verbose: bool) -> None:
    from novactl._units import format_duration

    versions = plan.spec.versions
    where = f", stage {stage}" if stage else ""
    term.info(f"{plan.name}: canary {versions.canary} vs stable {versions.stable}{where}")
    columns = ["metric", "kind", "window", f"canary {versions.canary}", "n",
               f"stable {versions.stable}", "n", "status"]
    rows: list[list[Any]] = []
    for entry in results:
        sides = entry["results"]
        kind = entry["kind"] + (", global" if entry["scope"] == "global" else "")
        if "global" in sides:
            cells = [sides["global"]["shown"], _sample(sides["global"], entry["kind"]),
                     "(global)", ""]
        else:
            cells = [sides["canary"]["shown"], _sample(sides["canary"], entry["kind"]),
                     sides["stable"]["shown"], _sample(sides["stable"], entry["kind"])]
        # the same failure on both sides (a syntax error, a server down) is shown once
        problems: dict[str, list[str]] = {}
        for side, result in sides.items():
            if result["status"] != "ok":
                text = f"{result['status'].replace('_', ' ')}: {result.get('reason', '')}"
                problems.setdefault(text, []).append(side)
        status = "; ".join(text if sides_ == ["global"] else f"{', '.join(sides_)}: {text}"
                           for text, sides_ in problems.items())
        rows.append([entry["metric"], kind, format_duration(entry["window"]), *cells,
                     status or "ok"])
    term.table(columns, rows)
    if verbose:
        query_rows = [[entry["metric"], side, part, text]
                      for entry in results for side, result in entry["results"].items()
                      for part, text in result["queries"].items()]
        term.table(["metric", "side", "part", "query"], query_rows, title="queries")
