"""Options and helpers shared by the commands.  Only typer and the stdlib at import time."""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:  # pragma: no cover
    from novactl.plan import Plan
    from novactl.runner import Runner


class Output(StrEnum):
    text = "text"
    json = "json"


PlanArg = Annotated[Path, typer.Argument(metavar="PLAN", help="The rollout plan (YAML).",
                                         show_default=False)]
StateDirOpt = Annotated[
    Path | None,
    typer.Option("--state-dir", envvar="NOVACTL_STATE_DIR", show_default=False,
                 help="State directory (default: .novactl/<plan name> beside the plan)."),
]
VarOpt = Annotated[
    list[str] | None,
    typer.Option("--var", metavar="KEY=VALUE", show_default=False,
                 help="Set a plan variable (repeatable)."),
]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="Output format.")]
ByOpt = Annotated[
    str | None,
    typer.Option("--by", envvar="NOVACTL_ACTOR", show_default=False,
                 help="Who is acting (default: user@host); recorded in the audit log."),
]
LockWaitOpt = Annotated[
    str, typer.Option("--lock-wait", metavar="DURATION",
                      help="How long to wait for another novactl to release the lock.")
]


def parse_vars(pairs: list[str] | None) -> dict[str, str]:
    from novactl._errors import InputError

    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--var {pair!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def duration(text: str, option: str) -> float:
    from novactl._errors import InputError
    from novactl._units import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise InputError(f"{option}: {exc}") from None


def load(plan_path: Path, variables: list[str] | None = None) -> Plan:
    from novactl.plan import load_plan

    return load_plan(plan_path, parse_vars(variables))


def state_dir_for(plan: Plan, override: Path | None) -> Path:
    if override is not None:
        return override
    base = Path(plan.source).parent
    if plan.spec.state.path:
        return base / plan.spec.state.path
    return base / ".novactl" / plan.name


def store_type(plan: Plan) -> str:
    from novactl._errors import InputError

    kind = os.environ.get("NOVACTL_STORE") or plan.spec.state.type
    if kind not in ("local", "kubernetes"):
        raise InputError(f"--store {kind!r}: expected local or kubernetes")
    return kind


def dry_run() -> bool:
    return os.environ.get("NOVACTL_DRY_RUN", "").strip().lower() in ("1", "true", "yes", "on")


def open_store(plan: Plan, override: Path | None) -> Any:
    """The plan's store: a state directory (default) or the cluster (ConfigMaps + Lease)."""
    if store_type(plan) == "kubernetes":
        from novactl.store.kube import store_for_plan

        return store_for_plan(plan)
    from novactl.store import LocalStore

    return LocalStore(state_dir_for(plan, override))


def dry_run_store(store: Any) -> Any:
    """A throwaway copy of ``store`` for --dry-run: reads the real state, keeps every
    change in memory."""
    from novactl.store import MemoryStore

    copy = MemoryStore()
    state = store.load()
    if state is not None:
        copy.save(state)
    snapshot = store.load_plan()
    if snapshot is not None:
        copy.save_plan(snapshot)
    return copy


def actor(by: str | None) -> str:
    if by:
        return by
    try:
        user = getpass.getuser()
    except Exception:  # pragma: no cover - containers without a passwd entry
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


@dataclass
class Session:
    """What a command that changes a rollout works with."""

    plan: Plan
    store: Any
    who: str
    runner: Runner


def session(plan_path: Path, variables: list[str] | None, state_dir: Path | None,
            by: str | None, lock_wait: str) -> Session:
    """Load the plan, open its state, say who acts, build the runner."""
    plan = load(plan_path, variables)
    store = open_store(plan, state_dir)
    if dry_run():
        from novactl.cli._terminal import term

        term.warn(f"dry run: nothing is changed and no state is saved ({store})")
        store = dry_run_store(store)
    who = actor(by)
    runner = make_runner(plan, store, by=who, lock_wait=duration(lock_wait, "--lock-wait"))
    return Session(plan, store, who, runner)


def make_runner(plan: Plan, store: Any, *, by: str | None = None, observer: Any = None,
                lock_wait: float = 0.0, clock: Any = None) -> Runner:
    from novactl.cli._terminal import term
    from novactl.runner import AdapterSet, Runner, context_for

    def log(line: str) -> None:
        if term.debug:
            term.note(line)

    context = context_for(plan, clock=clock, state_dir=getattr(store, "path", None), log=log)
    if dry_run():
        context.dry_run = True
        context.announce = term.info
    adapters = AdapterSet(plan, context)
    return Runner(plan, store, adapters, clock=context.clock,
                  actor=f"novactl ({actor(by)})", observer=observer, parallel=8,
                  lock_wait=lock_wait)
