"""novactl rollback PLAN --reason R

Rollback has to work when everything else is broken, so it is built to need
as little as possible:

1. Traffic first.  Before any lock, state or probe is touched, the router is
   told to send 0% to the canary and asked what it now has.  If the plan file
   no longer loads, the copy saved when the rollout started is used.
2. Then the record.  Under the lock, the rollback is requested through the
   state machine, which re-applies and verifies the weight, scales the canary
   down (or puts the old version back after a promotion) and writes the audit
   log.  If another novactl holds the lock, the request is queued in the
   state directory and that process carries it out before anything else.

It is idempotent: running it again re-verifies the weight and succeeds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from novactl.cli._common import (
    ByOpt,
    LockWaitOpt,
    PlanArg,
    StateDirOpt,
    VarOpt,
    actor,
    dry_run,
    duration,
    make_runner,
    open_store,
    parse_vars,
)
from novactl.cli._terminal import term


def command(
    plan: PlanArg,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded and notified).",
                                        show_default=False)],
    by: ByOpt = None,
    to_version: Annotated[str | None, typer.Option(
        "--to-version", help="The version to return to; must be the plan's stable version. "
        "Needs --yes.", show_default=False)] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm --to-version or --force.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Roll back even after the rollback "
                                        "window closed (needs --yes).")] = False,
    timeout: Annotated[str, typer.Option("--timeout", metavar="DURATION",
                                         help="Give up waiting for the rollback after this.")]
    = "5m",
    lock_wait: LockWaitOpt = "30s",
    state_dir: StateDirOpt = None,
    var: VarOpt = None,
) -> None:
    """Send all traffic back to the stable version now, verify it, then scale the canary
    down (after a promotion: put the old version back).  Works while `run` is running, with
    a broken plan file or a dead metrics server.  Exit 0 when traffic is verified on stable,
    6 when it could not be."""
    from novactl._errors import InputError

    if dry_run():
        raise InputError("rollback has no --dry-run: it only ever moves traffic back to stable "
                         "(see `novactl status` for what it would restore)")
    loaded, store = _load_for_rollback(plan, var, state_dir)
    who = actor(by)
    if to_version is not None:
        stable = loaded.spec.versions.stable
        if to_version != stable:
            raise InputError(f"--to-version {to_version}: this plan rolls back to its stable "
                             f"version {stable} only")
        if not yes:
            raise InputError(f"rolling back to {to_version} needs explicit confirmation: "
                             "add --yes")
    if force and not yes:
        raise InputError("--force needs --yes")
    carry_out(loaded, store, reason, who, force=force,
              lock_wait=duration(lock_wait, "--lock-wait"),
              timeout=duration(timeout, "--timeout"))


def carry_out(plan: Any, store: Any, reason: str, who: str, *, force: bool = False,
              lock_wait: float = 30.0, timeout: float = 300.0) -> None:
    """Traffic first, then the record; raises typer.Exit with the exit code.

    Success (exit 0) means the router was seen at 0% canary during this invocation.
    """
    from novactl._clock import SystemClock
    from novactl._errors import LockHeld, StateError
    from novactl.core import machine
    from novactl.core.state import Phase
    from novactl.exitcodes import ExitCode

    started = SystemClock().now()
    try:
        # fast: a silent cluster store must not hold traffic back (no retries, short timeout)
        quick = getattr(store, "load_quickly", None)
        state = quick() if callable(quick) else store.load()
    except StateError as exc:
        term.warn(f"{exc.message}; rolling traffic back anyway")
        state = None
    if state is not None:  # refuse now what the state machine would refuse later
        machine.request_rollback(plan, state, reason, who, started, force=force)
    stable = state.deployed.get("stable") if state is not None else None
    promoted = stable is not None and stable.version != plan.spec.versions.stable
    fast_ok = False if promoted else _traffic_first(plan, store, state, who, reason)
    runner = make_runner(plan, store, by=who, lock_wait=lock_wait)
    try:
        runner.command(machine.request_rollback, reason, who, actor=who, action="rollback",
                       reason=reason, force=force)
    except LockHeld as held:
        store.request_abort({"reason": reason, "by": who, "at": time.time(), "force": force})
        where = getattr(store, "abort_file", store)
        term.warn(f"{held.message}; the rollback request is queued in {where} and "
                  "that process carries it out before anything else")
        if not promoted:  # the holder may have shifted forward while we waited: look again
            fast_ok = _traffic_first(plan, store, state, who, reason, again=True)
        raise typer.Exit(int(ExitCode.OK if fast_ok else ExitCode.ACTION_FAILED)) from None
    deadline = time.monotonic() + timeout
    result = runner.run(poll=1.0, until=lambda r: time.monotonic() > deadline)
    runner.adapters.close()
    final = result.state
    verified = (final.weight_verified_at is not None and final.weight_verified_at >= started)
    if final.phase is Phase.ROLLED_BACK and final.rollback is not None and verified:
        rb = final.rollback
        took = rb.time_to_restore
        term.ok(f"rolled back to {final.stable_version}: {rb.reason}")
        if final.weight_actual is not None:
            term.info(f"router reports {final.weight_actual:g}% canary (verified now)")
        if took is not None:
            term.info(f"traffic restored {took:.2f}s after the request")
        raise typer.Exit(int(ExitCode.OK))
    wait = result.wait
    why = wait.reason if wait else final.step_error or final.phase.value
    term.error(f"rollback not complete after {timeout:g}s: {why}")
    raise typer.Exit(int(ExitCode.ACTION_FAILED))


def _traffic_first(plan: Any, store: Any, state: Any, who: str, reason: str, *,
                   again: bool = False) -> bool:
    """Set 0% canary and read it back, before anything else.  True when verified."""
    from novactl._clock import SystemClock, iso
    from novactl._errors import NovactlError
    from novactl.runner import AdapterSet, context_for

    adapters = AdapterSet(plan, context_for(plan, state_dir=getattr(store, "path", None)))
    started = time.monotonic()
    outcome = "verified"
    try:
        adapters.traffic.set_weight(0.0)
        weight = adapters.traffic.get_weight()
    except Exception as exc:  # a plugin's foreign exception must not stop a rollback
        text = exc.message if isinstance(exc, NovactlError) else f"{type(exc).__name__}: {exc}"
        term.error(f"could not move traffic to stable: {text}; retrying under the lock")
        weight, outcome = None, f"failed: {text}"
    finally:
        adapters.close()
    took = time.monotonic() - started
    if outcome == "verified":
        if weight is None:
            outcome = "requested (the router cannot report its weight)"
        elif abs(weight) > plan.spec.traffic.weight_tolerance + 1e-9:
            outcome = f"router still reports {weight:g}% canary"
    now = SystemClock().now()
    try:  # the record must never undo what traffic-first did: a broken store only warns
        store.append_audit({
            "time": iso(now), "ts": round(now, 3),
            "rollout": state.rollout_id if state is not None else None,
            "actor": who, "action": "rollback.traffic_first",
            "reason": f"{reason}: set 0% canary {'again ' if again else ''}before anything "
                      f"else: {outcome} ({took:.2f}s)",
        })
    except NovactlError as exc:
        term.warn(f"could not record the traffic-first step: {exc.message}")
    if outcome.startswith("failed"):
        return False
    if weight is None:
        term.info(f"traffic: 0% to canary requested ({took:.2f}s); the router cannot report "
                  "its weight")
        return True
    if outcome.startswith("router still"):
        term.error(f"{outcome} after setting 0%")
        return False
    term.ok(f"traffic: 0% to canary, router confirms ({took:.2f}s)")
    return True


def _load_for_rollback(plan_path: Path, variables: list[str] | None,
                       state_dir: Path | None) -> tuple[Any, Any]:
    """The plan, or — if it no longer loads — the copy saved at the start of the rollout."""
    from novactl._errors import InputError, PlanError
    from novactl.plan import load_plan, load_plan_text
    from novactl.store import LocalStore

    parsed = parse_vars(variables)
    try:
        plan = load_plan(plan_path, parsed)
        return plan, open_store(plan, state_dir)
    except (PlanError, InputError) as exc:
        import os

        snapshots: list[tuple[Any, str, Any]] = []  # (store, where, snapshot)
        if os.environ.get("NOVACTL_STORE") == "kubernetes":
            snapshots = _cluster_snapshots(plan_path)
        else:
            candidates = ([state_dir] if state_dir is not None
                          else sorted(p for p in (plan_path.parent / ".novactl").glob("*")
                                      if p.is_dir()))
            snapshots = [(LocalStore(d), f"{d}/plan.json", LocalStore(d).load_plan())
                         for d in candidates]
        usable = [(s, w, snap) for s, w, snap in snapshots if snap and snap.get("text")]
        named = [(s, w, snap) for s, w, snap in usable
                 if Path(str(snap.get("source", ""))).name == plan_path.name]
        chosen = named[0] if named else (usable[0] if len(usable) == 1 else None)
        if chosen is None:
            raise
        store, where, snapshot = chosen
        first = str(exc).splitlines()[0]
        term.warn(f"{first}; rolling back with the copy of the plan saved in {where}")
        saved_vars = {str(k): str(v) for k, v in (snapshot.get("variables") or {}).items()}
        plan = load_plan_text(str(snapshot["text"]), str(snapshot.get("source", plan_path)),
                              {**saved_vars, **parsed})
        return plan, store


def _cluster_snapshots(plan_path: Path) -> list[tuple[Any, str, Any]]:
    """Plan copies saved by the cluster store (ConfigMaps ``<name>-plan``) in the namespace
    the root options name: with --store kubernetes a rollback survives a broken plan too."""
    import json
    import os

    from novactl._errors import NovactlError
    from novactl.adapters._base import AdapterContext
    from novactl.adapters._kube import CONFIGMAP, KubeConfig, connect
    from novactl.store.kube import KIND_LABEL, ROLLOUT_LABEL, KubeStore

    try:
        kube = connect(KubeConfig(), AdapterContext(env={**os.environ, "NOVACTL_DRY_RUN": ""},
                                                    base_dir=plan_path.parent),
                       label="state store")
        kube.dry_run = False
        items = kube.list(CONFIGMAP, selector=f"{KIND_LABEL}=plan")
    except NovactlError as exc:
        term.warn(f"cannot look for a saved plan in the cluster: {exc.message}")
        return []
    found = []
    for item in items:
        name = ((item.get("metadata") or {}).get("labels") or {}).get(ROLLOUT_LABEL)
        try:
            snapshot = json.loads((item.get("data") or {}).get("plan.json") or "null")
        except ValueError:
            continue
        if name and isinstance(snapshot, dict):
            found.append((KubeStore(kube, name), f"ConfigMap {kube.namespace}/{name}-plan",
                          snapshot))
    return found
