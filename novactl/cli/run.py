"""novactl run PLAN"""

from __future__ import annotations

from typing import Annotated

import typer

from novactl.cli._common import (
    ByOpt,
    LockWaitOpt,
    PlanArg,
    StateDirOpt,
    VarOpt,
    dry_run,
    dry_run_store,
    duration,
    load,
    make_runner,
    open_store,
)
from novactl.cli._terminal import term


def command(
    plan: PlanArg,
    once: Annotated[bool, typer.Option("--once", help="One reconcile pass, then exit "
                                       "(for cron and CI).")] = False,
    restart: Annotated[bool, typer.Option("--restart", help="Start a new rollout after one "
                                          "that ended (its state goes to history/).")] = False,
    poll: Annotated[str, typer.Option("--poll", metavar="DURATION",
                                      help="Longest sleep between passes.")] = "5s",
    lock_wait: LockWaitOpt = "0s",
    state_dir: StateDirOpt = None,
    var: VarOpt = None,
    by: ByOpt = None,
) -> None:
    """Carry out the plan: deploy, shift, verify, bake, wait for approvals, advance,
    promote, retire — or roll back when a trigger fires.

    Exit codes: 0 progressing or completed, 3 rolled back, 4 waiting for a human,
    5 locked by another novactl, 6 an action keeps failing, 2 invalid plan.
    """
    from novactl._errors import InputError
    from novactl.cli._views import RunView, header_lines

    loaded = load(plan, var)
    store = open_store(loaded, state_dir)
    if dry_run():
        term.warn(f"dry run: one pass; nothing is changed and no state is saved ({store})")
        store = dry_run_store(store)
        once = True
    if restart:
        _restart(store)
    view = RunView(loaded, clock=None)
    runner = make_runner(loaded, store, by=by, observer=view,
                         lock_wait=duration(lock_wait, "--lock-wait"))
    view.clock = runner.clock
    poll_s = duration(poll, "--poll")
    if poll_s <= 0:
        raise InputError("--poll must be longer than zero")
    try:
        with term.live(view.render) as live:
            view.live = live
            result = runner.reconcile() if once else runner.run(poll=poll_s)
            view.live = None
    except KeyboardInterrupt:
        term.warn("stopped; the state is saved and `novactl run` continues where it left off")
        raise typer.Exit(130) from None
    finally:
        runner.adapters.close()
    if not term.interactive:
        for line in header_lines(loaded, result.state, runner.clock.now(), result.wait)[:4]:
            term.info(line)
    raise typer.Exit(int(result.exit_code))


def _restart(store: object) -> None:
    from novactl._errors import InputError

    with store.lock("novactl run --restart"):  # type: ignore[attr-defined]
        state = store.load()  # type: ignore[attr-defined]
        if state is None:
            return
        if not state.phase.terminal:
            raise InputError(f"rollout {state.rollout_id} is still {state.phase.value}; "
                             "--restart only starts over after a rollout ended "
                             "(roll back or let it complete first)")
        target = store.archive(state)  # type: ignore[attr-defined]
        term.info(f"previous rollout {state.rollout_id} ({state.phase.value}) kept in {target}")
