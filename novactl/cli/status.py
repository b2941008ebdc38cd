"""novactl status PLAN"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from novactl.cli._common import Output, OutputOpt, PlanArg, StateDirOpt, VarOpt, load, open_store
from novactl.cli._terminal import term


def command(
    plan: PlanArg,
    live: Annotated[bool, typer.Option("--live", help="Also ask the router and the workload "
                                       "what they report now.")] = False,
    state_dir: StateDirOpt = None,
    var: VarOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """Where the rollout stands: phase, stage, weight (desired vs. reported), every check
    with its value, threshold and sample size, approvals, and what it waits for.

    Reads the state without taking the lock.  Exit code as for `run`: 0, 3 rolled back,
    4 waiting for a human.
    """
    from novactl._clock import SystemClock, iso
    from novactl.cli._views import CHECK_COLUMNS, check_rows, header_lines
    from novactl.core import machine
    from novactl.runner import exit_code_for

    term.output = output.value
    loaded = load(plan, var)
    store = open_store(loaded, state_dir)
    state = store.load()
    now = SystemClock().now()
    if state is None:
        if output is Output.json:
            term.json({"plan": loaded.name, "phase": "not-started", "state_dir": str(store)})
        else:
            term.info(f"{loaded.name}: not started (no state in {store}); "
                      f"start it with: novactl run {plan}")
        return
    decision = machine.decide(loaded, state, now)
    wait = decision.wait
    if wait is None and state.last_wait:  # something is due; say what the last pass waited for
        from novactl.core.actions import Wait

        last = state.last_wait
        wait = Wait(last.get("until"), str(last.get("reason", "")), bool(last.get("human")))
    next_action = decision.action.describe() if decision.action else None
    observed = _observe_live(loaded, store) if live else {}
    if output is Output.json:
        term.json(_as_json(loaded, state, wait, next_action, observed, str(store),
                           store.lock_holder()))
    else:
        for line in header_lines(loaded, state, now, wait):
            term.info(line)
        if next_action:
            term.info(f"next: {next_action} (on the next `novactl run` pass)")
        for key, value in observed.items():
            term.info(f"live {key}: {value}")
        holder = store.lock_holder()
        if holder:
            from novactl.store.local import describe_holder

            term.info(f"lock held by {describe_holder(holder)}")
        rows = check_rows(loaded, state, styled=term.interactive)
        if rows:
            term.table(CHECK_COLUMNS, rows)
        approvals = [a for a in state.approvals]
        if approvals:
            term.table(["stage", "role", "decision", "by", "at", "comment"],
                       [[a.stage, a.role, a.decision, a.by, iso(a.at), a.comment]
                        for a in approvals], title="approvals")
        if state.stages:
            term.table(["#", "stage", "weight", "entered", "left", "outcome", "evaluations"],
                       [[str(r.index + 1), r.name, f"{r.weight:g}%", iso(r.entered_at),
                         iso(r.left_at), r.outcome or "running", str(r.evaluations)]
                        for r in state.stages], title="stages")
    raise typer.Exit(int(exit_code_for(state, wait)))


def _observe_live(plan: Any, store: Any) -> dict[str, str]:
    from novactl._errors import NovactlError
    from novactl.runner import AdapterSet, context_for

    adapters = AdapterSet(plan, context_for(plan, state_dir=getattr(store, "path", None)))
    out: dict[str, str] = {}
    try:
        try:
            weight = adapters.traffic.get_weight()
            out["router weight"] = "unreadable" if weight is None else f"{weight:g}%"
        except NovactlError as exc:
            out["router weight"] = f"error: {exc.message}"
        for role in ("canary", "stable"):
            try:
                ready = adapters.workload.ready(role)
                out[f"{role} readiness"] = ("ready" if ready.ready else "not ready") + (
                    f" ({ready.message})" if ready.message else "")
            except NovactlError as exc:
                out[f"{role} readiness"] = f"error: {exc.message}"
    finally:
        adapters.close()
    return out


def _as_json(plan: Any, state: Any, wait: Any, next_action: str | None,
             observed: dict[str, str], path: Any, holder: dict[str, Any]) -> dict[str, Any]:
    stage = plan.stages[state.stage_index].name if state.phase.value == "stage" else None
    return {
        "plan": plan.name,
        "rollout": state.rollout_id,
        "state_dir": str(path),
        "phase": state.phase.value,
        "stage": stage,
        "stage_index": state.stage_index if stage else None,
        "step": state.step,
        "versions": {"stable": state.stable_version, "canary": state.canary_version},
        "weight": {"desired": state.weight_desired, "actual": state.weight_actual,
                   "verified_at": state.weight_verified_at},
        "deployed": {k: {"version": v.version, "replicas": v.replicas}
                     for k, v in state.deployed.items()},
        "paused": None if state.paused is None else {
            "reason": state.paused.reason, "by": state.paused.by, "at": state.paused.at,
            "kind": state.paused.kind},
        "waiting": None if wait is None else {"reason": wait.reason, "until": wait.until,
                                              "human": wait.human},
        "next_action": next_action,
        "checks": state.last_results,
        "streak_since": state.streak_since,
        "approvals": [a.__dict__ for a in state.approvals],
        "rollback": None if state.rollback is None else {
            "reason": state.rollback.reason, "by": state.rollback.by,
            "trigger": state.rollback.trigger,
            "time_to_restore_seconds": state.rollback.time_to_restore,
            "completed_at": state.rollback.completed_at},
        "promoted_at": state.promoted_at,
        "retired_at": state.retired_at,
        "completed_at": state.completed_at,
        "live": observed,
        "lock_holder": holder or None,
        "stages": [{"name": r.name, "weight": r.weight, "entered_at": r.entered_at,
                    "left_at": r.left_at, "outcome": r.outcome, "evaluations": r.evaluations}
                   for r in state.stages],
    }
