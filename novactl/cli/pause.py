"""novactl pause PLAN / novactl resume PLAN"""

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
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).",
                                        show_default=False)],
    by: ByOpt = None,
    lock_wait: LockWaitOpt = "10s",
    state_dir: StateDirOpt = None,
    var: VarOpt = None,
) -> None:
    """Pause at the current stage (Plan A): no traffic increase, no advance, no promotion.
    Evaluation goes on and automatic rollback triggers stay armed."""
    from novactl.core import machine

    ctx = session(plan, var, state_dir, by, lock_wait)
    runner, who = ctx.runner, ctx.who
    runner.command(machine.pause, reason, who, actor=who, action="pause", reason=reason)
    term.ok(f"paused by {who}: {reason}")
    term.info(f"resume with: novactl resume {plan}")


def resume_command(
    plan: PlanArg,
    by: ByOpt = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).")] = "",
    lock_wait: LockWaitOpt = "10s",
    state_dir: StateDirOpt = None,
    var: VarOpt = None,
) -> None:
    """Resume a paused rollout.  Manual rollback signals that are firing now are
    acknowledged: they pause again only after they clear and fire anew."""
    from novactl.core import machine

    ctx = session(plan, var, state_dir, by, lock_wait)
    runner, who = ctx.runner, ctx.who
    runner.command(machine.resume, who, actor=who, action="resume",
                   reason=reason or "resumed", note=reason)
    term.ok(f"resumed by {who}")
