"""novactl signal PLAN NAME"""

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
    name: Annotated[str, typer.Argument(metavar="SIGNAL", help="A signal from spec.signals.",
                                        show_default=False)],
    reason: Annotated[str, typer.Option("--reason", help="What happened.")] = "",
    by: ByOpt = None,
    lock_wait: LockWaitOpt = "10s",
    state_dir: StateDirOpt = None,
    var: VarOpt = None,
) -> None:
    """Raise a signal the plan defines: a security incident (rollback), a high-severity
    bug (pause and ask), a feature flag turned off (note only).  A rollback signal is
    carried out at once."""
    from novactl.cli import rollback as rollback_cmd
    from novactl.core import machine

    ctx = session(plan, var, state_dir, by, lock_wait)
    loaded, who, runner = ctx.plan, ctx.who, ctx.runner
    spec = loaded.spec.signals.get(name)
    if spec is not None and spec.action == "rollback":
        text = f"signal {name}" + (f": {reason}" if reason else "")
        rollback_cmd.carry_out(loaded, ctx.store, text, who, lock_wait=runner.lock_wait)
        return
    runner.command(machine.signal, name, who, actor=who, action="signal",
                   reason=f"{name}" + (f": {reason}" if reason else ""), note=reason)
    if spec is not None and spec.action == "pause":
        term.ok(f"signal {name} recorded; the rollout pauses at its next pass and waits "
                "for a decision (novactl rollback or novactl resume)")
    else:
        term.ok(f"signal {name} recorded")
