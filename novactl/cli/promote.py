"""novactl promote PLAN"""

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
    yes: Annotated[bool, typer.Option("--yes", help="Promote even though stages or gates "
                                      "remain (recorded as forced).")] = False,
    by: ByOpt = None,
    timeout: Annotated[str, typer.Option("--timeout", metavar="DURATION",
                                         help="How long to wait for the promotion.")] = "15m",
    lock_wait: LockWaitOpt = "30s",
    state_dir: StateDirOpt = None,
    var: VarOpt = None,
) -> None:
    """Promote the canary to stable now (promote-canary-to-stable.sh): the stable gets the
    new version at the promotion's replicas, traffic moves to it, the canary scales down.
    Without --yes this only works at the last stage with its gates passed."""
    from novactl.core import machine
    from novactl.core.state import Phase
    from novactl.exitcodes import ExitCode

    ctx = session(plan, var, state_dir, by, lock_wait)
    loaded, who, runner = ctx.plan, ctx.who, ctx.runner
    runner.command(machine.request_promotion, who, actor=who, action="promote",
                   reason="promote now" + (" (forced)" if yes else ""), force=yes)
    deadline = time.monotonic() + duration(timeout, "--timeout")
    result = runner.run(poll=1.0, until=lambda r: r.state.phase is not Phase.PROMOTING
                        or bool(r.wait and r.wait.human) or time.monotonic() > deadline)
    runner.adapters.close()
    state = result.state
    if state.phase in (Phase.PROMOTED, Phase.COMPLETED):
        promo = loaded.spec.promotion
        term.ok(f"{state.canary_version} is stable")
        term.info(f"{state.stable_version} retires after "
                  f"{promo.retire_after:g}s; keep `novactl run` going for the rollback window")
        raise typer.Exit(int(ExitCode.OK))
    if state.phase is Phase.ROLLED_BACK:
        term.error(f"promotion failed and the rollout rolled back: "
                   f"{state.rollback.reason if state.rollback else ''}")
        raise typer.Exit(int(ExitCode.ROLLED_BACK))
    reason = result.wait.reason if result.wait else state.phase.value
    term.error(f"promotion not finished: {reason}")
    raise typer.Exit(int(result.exit_code if result.exit_code else ExitCode.ACTION_FAILED))
