"""novactl demo"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from novactl.cli._terminal import term


class Fault(StrEnum):
    none = "none"
    errors = "errors"
    latency = "latency"
    critical = "critical"


_FAULTS: dict[Fault, dict[str, float]] = {
    Fault.errors: {"errors": 0.3},
    Fault.latency: {"latency": 0.3},
    Fault.critical: {"errors": 0.02, "critical": 1.0},
}


def demo_plan_path() -> Path:
    import novactl.sandbox

    return Path(novactl.sandbox.__file__).parent / "demo.yaml"


def command(
    fault: Annotated[Fault, typer.Option("--fault", help="Make the canary misbehave: 30% "
                                         "errors, +300 ms latency, or critical errors.")]
    = Fault.none,
    rps: Annotated[int, typer.Option("--rps", min=20, max=1000,
                                     help="Load sent through the router.")] = 300,
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", help="Keep the demo's state here (default: a temporary directory).",
        show_default=False)] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed the router and faults.",
                                             show_default=False)] = None,
) -> None:
    """Run the staged rollout of plans/demo.yaml against a local sandbox: two versions of a
    sample service behind a weighted router, with load.  Loopback only; no services needed.
    Ends promoted (exit 0) or, with --fault, rolled back automatically (exit 3)."""
    import tempfile

    from novactl.cli._common import make_runner
    from novactl.cli._views import RunView
    from novactl.core import machine
    from novactl.core.state import Phase
    from novactl.exitcodes import ExitCode
    from novactl.plan import load_plan
    from novactl.sandbox import Sandbox
    from novactl.store import LocalStore

    faults = {"v3.0.0": _FAULTS[fault]} if fault is not Fault.none else None
    temp = None if state_dir is not None else tempfile.TemporaryDirectory(prefix="novactl-demo-")
    directory = state_dir if state_dir is not None else Path(temp.name)  # type: ignore[union-attr]
    sandbox = Sandbox(stable_version="v2.9.0", stable_replicas=2, startup_delay=0.5,
                      faults=faults, seed=seed)
    try:
        sandbox.start()
        plan = load_plan(demo_plan_path(), {"router": sandbox.router_url,
                                            "control": sandbox.control_url})
        term.info(f"sandbox: router {sandbox.router_url}, control {sandbox.control_url}; "
                  f"{rps} requests/s of load" + (f"; canary fault: {fault.value}"
                                                 if faults else ""))
        load = sandbox.start_load(rps)
        store = LocalStore(directory)
        view = RunView(plan, clock=None)
        runner = make_runner(plan, store, by="demo", observer=view)
        view.clock = runner.clock

        def auto_approve(result: Any) -> bool:
            wait = result.wait
            if wait is not None and wait.human and "approval" in wait.reason:
                stage = result.state.stages[-1].name
                spec = plan.stages[plan.stage_index(stage)].approval
                for role in spec.roles if spec else []:
                    runner.command(machine.approve, stage, role, "demo", actor="demo",
                                   action="approve", reason=f"GO for {stage} as {role} "
                                   "(the demo approves by itself)")
                    term.info(f"demo: GO for {stage} as {role} — in a real rollout: "
                              f"novactl approve PLAN --stage {stage} --role {role} --by NAME")
            return False

        try:
            with term.live(view.render) as live:
                view.live = live
                result = runner.run(poll=0.5, until=auto_approve)
                view.live = None
        finally:
            load.stop()
            runner.adapters.close()
        _summary(plan, result.state, runner.clock.now())
        if state_dir is not None:
            term.info(f"state kept in {directory}: novactl report {demo_plan_path()} "
                      f"--state-dir {directory}")
        code = ExitCode.ROLLED_BACK if result.state.phase is Phase.ROLLED_BACK else ExitCode.OK
    finally:
        sandbox.stop()
        if temp is not None:
            temp.cleanup()
    raise typer.Exit(int(code))


def _summary(plan: Any, state: Any, now: float) -> None:
    from novactl.core.report import build_report
    from novactl.core.state import Phase

    report = build_report(plan, state, now)
    stages = [s["name"] for s in report["stages"]]
    rows = [[row["metric"], row["target"], *[c["text"] + (" ✔" if c["met"] else " ✖"
                                                          if c["met"] is False else "")
                                             for c in row["stages"]]]
            for row in report["technical"]]
    rows.append(["MTTR", "", *[m["text"] for m in report["mttr"]]])
    term.table(["metric", "target", *stages], rows, title="what each stage showed")
    if state.phase is Phase.ROLLED_BACK and state.rollback is not None:
        rb = state.rollback
        took = rb.time_to_restore
        term.line(f"ROLLED BACK to {state.stable_version}: {rb.reason}", "critical")
        if took is not None:
            term.info(f"traffic was back on {state.stable_version} {took:.2f}s after detection")
    elif state.phase is Phase.COMPLETED:
        term.ok(f"PROMOTED: {state.canary_version} is stable; {state.stable_version} retired")
    else:
        term.warn(f"demo ended while {state.phase.value}")
