"""novactl deploy PLAN --version V --canary-weight W"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from novactl.cli._common import (
    ByOpt,
    LockWaitOpt,
    PlanArg,
    StateDirOpt,
    VarOpt,
    duration,
    session,
)
from novactl.cli._terminal import term


def command(
    plan: PlanArg,
    version: Annotated[str, typer.Option("--version", help="The canary version (must match "
                                         "the plan).", show_default=False)],
    canary_weight: Annotated[float, typer.Option("--canary-weight", min=0, max=100,
                                                 help="Percent of traffic: the weight of one "
                                                 "of the plan's stages.", show_default=False)],
    yes: Annotated[bool, typer.Option("--yes", help="Allow skipping stages whose gates have "
                                      "not passed (recorded).")] = False,
    by: ByOpt = None,
    timeout: Annotated[str, typer.Option("--timeout", metavar="DURATION",
                                         help="How long to wait for readiness.")] = "15m",
    lock_wait: LockWaitOpt = "30s",
    state_dir: StateDirOpt = None,
    var: VarOpt = None,
) -> None:
    """Deploy the canary and put it at a stage's weight now, like
    `canary-deploy.sh --version v3.0.0 --canary-weight 10`: deploy or scale, wait until
    ready, set the debug-header route, shift, and read the weight back.  The stage's bake
    starts then; `novactl run` takes it from there."""
    from novactl._errors import InputError
    from novactl.core import machine
    from novactl.core.state import Phase
    from novactl.exitcodes import ExitCode

    ctx = session(plan, var, state_dir, by, lock_wait)
    loaded, store, who, runner = ctx.plan, ctx.store, ctx.who, ctx.runner
    if version != loaded.spec.versions.canary:
        raise InputError(f"--version {version}: the plan's canary is "
                         f"{loaded.spec.versions.canary}")
    weights = [s.weight for s in loaded.stages]
    matches = [i for i, s in enumerate(loaded.stages) if abs(s.weight - canary_weight) < 1e-9]
    if not matches:
        raise InputError(f"--canary-weight {canary_weight:g} is not a stage of the plan "
                         f"(stage weights: {', '.join(f'{w:g}' for w in weights)})")
    index = matches[0]
    with store.lock("novactl deploy", wait=runner.lock_wait):
        state = runner.load_or_create()
        starting = state.phase in (Phase.PENDING, Phase.BASELINE)
    if starting and index > 0:
        raise InputError(f"the rollout has not started; deploy the first stage "
                         f"(--canary-weight {weights[0]:g}) or run it")
    if not starting:
        runner.command(machine.jump_to_stage, index, who, actor=who, action="deploy",
                       reason=f"deploy {version} at {canary_weight:g}%", force=yes)
    target = loaded.stages[index]
    deadline = time.monotonic() + duration(timeout, "--timeout")

    def done(r: object) -> bool:
        s = r.state  # type: ignore[attr-defined]
        if s.phase is Phase.STAGE and s.stage_index == index and s.step == "scheduled":
            # the plan schedules this stage; `deploy` means now
            runner.command(machine.jump_to_stage, index, who, actor=who, action="deploy",
                           reason=f"deploy {version} at {canary_weight:g}% now", force=yes)
            return False
        at_stage = s.phase is Phase.STAGE and s.stage_index == index and s.step == "bake"
        wait = r.wait  # type: ignore[attr-defined]
        return at_stage or s.phase.terminal or bool(wait and wait.human) or \
            time.monotonic() > deadline

    result = runner.run(poll=1.0, until=done)
    runner.adapters.close()
    state = result.state
    if state.phase is Phase.STAGE and state.stage_index == index and state.step == "bake":
        reported = ("unreadable" if state.weight_actual is None
                    else f"{state.weight_actual:g}%")
        deployed = state.deployed.get("canary")
        term.ok(f"{version} at {target.weight:g}% (router reports {reported}), "
                f"{deployed.replicas if deployed else '?'} replicas ready; "
                f"stage {target.name} is baking")
        raise typer.Exit(int(ExitCode.OK))
    if state.phase is Phase.ROLLED_BACK:
        term.error(f"rolled back: {state.rollback.reason if state.rollback else ''}")
        raise typer.Exit(int(ExitCode.ROLLED_BACK))
    reason = result.wait.reason if result.wait else state.step
    term.error(f"not deployed yet: {reason}")
    raise typer.Exit(int(result.exit_code or ExitCode.ACTION_FAILED))
