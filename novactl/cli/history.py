"""novactl history PLAN"""

from __future__ import annotations

from typing import Annotated

import typer

from novactl.cli._common import Output, OutputOpt, PlanArg, StateDirOpt, VarOpt, load, open_store
from novactl.cli._terminal import term


def command(
    plan: PlanArg,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0,
                                       help="Show the last N entries (0: all).")] = 50,
    all_rollouts: Annotated[bool, typer.Option("--all", help="Include earlier rollouts of "
                                               "this plan.")] = False,
    action: Annotated[str | None, typer.Option("--action", help="Only actions starting with "
                                               "this (e.g. rollback, approve, done.).",
                                               show_default=False)] = None,
    state_dir: StateDirOpt = None,
    var: VarOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """The audit log: every action and decision with time, actor, reason and the state
    before and after.  Append-only; kept across rollouts of the same plan."""
    term.output = output.value
    loaded = load(plan, var)
    store = open_store(loaded, state_dir)
    state = store.load()
    entries = list(store.read_audit())
    if not all_rollouts and state is not None:
        entries = [e for e in entries if e.get("rollout") == state.rollout_id]
    if action:
        entries = [e for e in entries if str(e.get("action", "")).startswith(action)]
    if limit:
        entries = entries[-limit:]
    if output is Output.json:
        term.json(entries)
        return
    if not entries:
        term.info(f"no audit entries in {getattr(store, 'audit_file', store)}")
        return
    term.table(["time", "actor", "action", "reason"],
               [[e.get("time", ""), e.get("actor", ""), e.get("action", ""),
                 _short(str(e.get("reason", "")))] for e in entries])


def _short(text: str, width: int = 140) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
