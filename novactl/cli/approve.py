"""novactl approve PLAN --stage S --role R --by NAME"""

from __future__ import annotations

from typing import Annotated

import typer

from novactl.cli._common import (
    ByOpt,
    LockWaitOpt,
    PlanArg,
    StateDirOpt,
    VarOpt,
    session,
)
from novactl.cli._terminal import term


def command(
    plan: PlanArg,
    stage: Annotated[str, typer.Option("--stage", help="The stage whose GO/NO-GO this is "
                                       "(or 'promotion').", show_default=False)],
    role: Annotated[str, typer.Option("--role", help="The role you decide for "
                                      "(e.g. cto, sre-lead).", show_default=False)],
    by: ByOpt = None,
    no_go: Annotated[bool, typer.Option("--no-go", help="Record NO-GO: the rollout "
                                        "pauses.")] = False,
    comment: Annotated[str, typer.Option("--comment", "-m", help="Why.")] = "",
    lock_wait: LockWaitOpt = "10s",
    state_dir: StateDirOpt = None,
    var: VarOpt = None,
) -> None:
    """Record a GO/NO-GO decision for a stage, by role.  The rollout advances once every
    required role said GO and the stage's gates hold (at the next `run` pass)."""
    from novactl.core import machine

    ctx = session(plan, var, state_dir, by, lock_wait)
    loaded, who, runner = ctx.plan, ctx.who, ctx.runner
    decision = "no-go" if no_go else "go"
    state = runner.command(machine.approve, stage, role, who, actor=who, action="approve",
                           reason=f"{decision.upper()} for {stage} as {role}"
                           + (f": {comment}" if comment else ""),
                           decision=decision, comment=comment)
    term.ok(f"{decision.upper()} for {stage} from {role} recorded (by {who})")
    spec = (loaded.spec.promotion.approval if stage == machine.PROMOTION
            else loaded.stages[loaded.stage_index(stage)].approval)
    if spec is not None:
        missing = [r for r in spec.roles
                   if (d := state.latest_decision(stage, r)) is None or d.decision != "go"]
        if missing:
            term.info(f"{stage} still needs GO from: {', '.join(missing)}")
        else:
            term.info(f"every required role said GO for {stage}")
    if no_go:
        term.warn("the rollout is paused; decide: novactl rollback, or fix and novactl resume")
