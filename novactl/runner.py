"""The runner: the only place where the core meets the outside world.

One reconcile pass, under the rollout lock:

1. load the state (or create it), pick up a rollback requested while the
   lock was busy, and re-run an action whose intent was recorded but whose
   outcome was not (a crash between the two);
2. ask the pure state machine what to do next; before a mutating action,
   record the intent (audit log + ``state.pending``, fsync'd), execute it,
   then record the outcome and the new state;
3. repeat until the machine says wait; deliver queued notifications.

Every action an adapter performs is idempotent by intent ("weight = 10",
"canary runs v3 with 3 replicas"), so re-running an interrupted one converges.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from novactl._clock import Clock, SystemClock, iso
from novactl._errors import NovactlError
from novactl._units import prom_duration
from novactl.adapters._base import AdapterContext, Message
from novactl.core import machine
from novactl.core.actions import Action, ActionKind, Decision, Event, ObsRequest, Outcome, Wait
from novactl.core.gates import CheckResult
from novactl.core.observations import Observation, ProbeQuery
from novactl.core.state import Deployed, Phase, RolloutState
from novactl.exitcodes import ExitCode
from novactl.plan._load import render_vars
from novactl.plan._model import Plan

__all__ = ["AdapterSet", "Executor", "PassResult", "Runner", "exit_code_for"]

MAX_ACTIONS_PER_PASS = 500
NOTIFY_ATTEMPTS = 5
NOTIFY_BUDGET = 5.0  # seconds of notification delivery per pass, at most


# --------------------------------------------------------------------------- adapters


class AdapterSet:
    """The adapters a plan names, built on first use (a rollback never builds probes)."""

    def __init__(self, plan: Plan, context: AdapterContext, *,
                 traffic: Any = None, workload: Any = None,
                 probes: Mapping[str, Any] | None = None,
                 notifiers: Mapping[str, Any] | None = None) -> None:
        self.plan = plan
        self.context = context
        self._traffic = traffic
        self._workload = workload
        self._probes: dict[str, Any] = dict(probes or {})
        self._notifiers: dict[str, Any] = dict(notifiers or {})
        self._building = threading.Lock()  # probes are observed from several threads

    def _create(self, kind: str, spec: Any, name: str) -> Any:
        from novactl.adapters._registry import create

        adapter = create(kind, spec.type, name, spec.config, self.context)
        if self.context.dry_run and not getattr(adapter, "supports_dry_run", False):
            if kind == "traffic":
                return DryRunShifter(adapter, self.context.announce)
            if kind == "workload":
                return DryRunWorkload(adapter, self.context.announce)
            if kind == "notifier":
                return DryRunNotifier(adapter, self.context.announce)
        return adapter

    @property
    def traffic(self) -> Any:
        if self._traffic is None:
            self._traffic = self._create("traffic", self.plan.spec.traffic, "traffic")
        return self._traffic

    @property
    def workload(self) -> Any:
        if self._workload is None:
            self._workload = self._create("workload", self.plan.spec.workload, "workload")
        return self._workload

    def probe(self, name: str) -> Any:
        with self._building:
            if name not in self._probes:
                spec = self.plan.spec.probes[name]
                self._probes[name] = self._create("probe", spec, name)
            return self._probes[name]

    def notifier(self, name: str) -> Any:
        if name not in self._notifiers:
            spec = self.plan.spec.notifications.targets[name]
            self._notifiers[name] = self._create("notifier", spec, name)
        return self._notifiers[name]

    def close(self) -> None:
        for adapter in [self._traffic, self._workload, *self._probes.values(),
                        *self._notifiers.values()]:
            if adapter is not None and hasattr(adapter, "close"):
                try:
                    adapter.close()
                except Exception:
                    pass


class _DryRun:
    """--dry-run for an adapter that cannot do it itself: say what it would do; only
    reads reach the adapter.  Reads after a write answer what was written."""

    def __init__(self, adapter: Any, announce: Callable[[str], None]) -> None:
        self.adapter = adapter
        self.name = getattr(adapter, "name", "?")
        self.announce = announce
        self.label = getattr(adapter, "label", self.name)

    def say(self, text: str) -> None:
        self.announce(f"dry run: {self.label}: would {text}")

    def close(self) -> None:
        closer = getattr(self.adapter, "close", None)
        if callable(closer):
            closer()


class DryRunShifter(_DryRun):
    _weight: float | None = None

    def set_weight(self, weight: float) -> None:
        self.say(f"send {weight:g}% of traffic to the canary")
        self._weight = weight

    def get_weight(self) -> float | None:
        if self._weight is not None:
            return self._weight
        weight = self.adapter.get_weight()
        return None if weight is None else float(weight)

    def set_header_route(self, header: str, value: str) -> bool:
        self.say(f"route {header}: {value} to the canary")
        return True


class DryRunWorkload(_DryRun):
    def deploy(self, role: str, version: str, replicas: int | None) -> None:
        self.say(f"deploy {version} as {role}" + (f" with {replicas} replicas"
                                                  if replicas is not None else ""))

    def scale(self, role: str, replicas: int) -> None:
        self.say(f"scale {role} to {replicas} replicas")

    def ready(self, role: str) -> Any:
        from novactl.adapters._base import Readiness

        return Readiness(True, "dry run: readiness not checked")

    def promote(self, version: str, replicas: int | None) -> None:
        self.say(f"promote {version} to stable")

    def retire(self, version: str) -> None:
        self.say(f"retire {version}")


class DryRunNotifier(_DryRun):
    def notify(self, message: Message) -> None:
        self.say(f"notify [{message.event}] {message.title}")


# --------------------------------------------------------------------------- executor


class Executor:
    """Carries out one action through the adapters; every failure becomes data."""

    def __init__(self, plan: Plan, adapters: AdapterSet, clock: Clock,
                 *, parallel: int = 1) -> None:
        self.plan = plan
        self.adapters = adapters
        self.clock = clock
        self.parallel = parallel
        self._rendered: dict[tuple[Any, ...], dict[str, str]] = {}

    def execute(self, action: Action, stage: str | None = None) -> Outcome:
        try:
            return self._execute(action, stage)
        except NovactlError as exc:
            return Outcome(ok=False, error=exc.message)
        except Exception as exc:  # an adapter bug must not stop a rollback
            return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}")

    def _execute(self, action: Action, stage: str | None) -> Outcome:
        kind = action.kind
        if kind is ActionKind.OBSERVE:
            return Outcome(ok=True, observations=self.observe(action.requests, stage))
        if kind is ActionKind.SET_WEIGHT:
            self.adapters.traffic.set_weight(float(action.weight or 0.0))
            return Outcome(ok=True)
        if kind is ActionKind.VERIFY_WEIGHT:
            weight = self.adapters.traffic.get_weight()
            return Outcome(ok=True, weight=None if weight is None else float(weight))
        if kind is ActionKind.HEADER_ROUTE:
            supported = self.adapters.traffic.set_header_route(action.header or "",
                                                               action.header_value or "")
            return Outcome(ok=True, supported=bool(supported))
        workload = self.adapters.workload
        if kind is ActionKind.DEPLOY:
            workload.deploy(action.role or "canary", action.version or "", action.replicas)
        elif kind is ActionKind.SCALE:
            workload.scale(action.role or "canary", int(action.replicas or 0))
        elif kind is ActionKind.READY:
            readiness = workload.ready(action.role or "canary")
            return Outcome(ok=True, ready=bool(readiness.ready), message=readiness.message)
        elif kind is ActionKind.PROMOTE:
            workload.promote(action.version or "", action.replicas)
        elif kind is ActionKind.RETIRE:
            workload.retire(action.version or "")
        return Outcome(ok=True)

    # -- observations
    def query_for(self, request: ObsRequest, stage: str | None) -> ProbeQuery:
        plan = self.plan
        metric = plan.metric(request.metric)
        key = (request.metric, request.version, request.role, request.window, stage)
        parts = self._rendered.get(key)
        if parts is None:
            values: dict[str, Any] = dict(plan.spec.variables)
            values.update({
                "version": request.version or "",
                "role": request.role or "",
                "window": prom_duration(request.window),
                "window_seconds": math.ceil(request.window),
                "stage": stage or "",
                "service": plan.spec.service,
            })
            parts = {part: render_vars(text, values) for part, text in metric.queries().items()}
            if len(self._rendered) > 4096:
                self._rendered.clear()
            self._rendered[key] = parts
        return ProbeQuery(
            metric=request.metric,
            kind=metric.kind.value,
            parts=parts,
            version=request.version,
            role=request.role,
            window=request.window,
            at=self.clock.now(),
            scale=metric.scale,
            quantile=metric.quantile,
        )

    def observe(self, requests: Iterable[ObsRequest], stage: str | None) -> list[Observation]:
        requests = list(requests)

        def one(request: ObsRequest) -> Observation:
            query = self.query_for(request, stage)
            source = self.plan.metric(request.metric).probe
            try:
                probe = self.adapters.probe(source)
                obs = probe.observe(query)
            except NovactlError as exc:
                return Observation.error(request.metric, request.version, request.window,
                                         query.at, exc.message, source)
            except Exception as exc:
                return Observation.error(request.metric, request.version, request.window,
                                         query.at, f"{type(exc).__name__}: {exc}", source)
            if (obs.metric, obs.version, round(obs.window)) != (
                    request.metric, request.version, round(request.window)):
                # a probe must answer the question asked; keep the key consistent
                obs = dataclasses.replace(obs, metric=request.metric,
                                          version=request.version, window=request.window)
            return obs

        if self.parallel > 1 and len(requests) > 1:
            with ThreadPoolExecutor(max_workers=min(self.parallel, len(requests))) as pool:
                return list(pool.map(one, requests))
        return [one(r) for r in requests]


# --------------------------------------------------------------------------- runner


@dataclass
class PassResult:
    state: RolloutState
    wait: Wait | None
    actions: int = 0
    events: list[Event] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        return exit_code_for(self.state, self.wait)


def exit_code_for(state: RolloutState, wait: Wait | None) -> ExitCode:
    if state.phase is Phase.ROLLED_BACK:
        return ExitCode.ROLLED_BACK
    if state.phase is Phase.COMPLETED:
        return ExitCode.OK
    if state.phase is Phase.ROLLING_BACK and wait is not None and wait.failing:
        return ExitCode.ACTION_FAILED
    if wait is not None and wait.human:
        return ExitCode.WAITING
    return ExitCode.OK


class Observer:
    """Hooks for a live view; every method is optional."""

    def on_event(self, event: Event, state: RolloutState) -> None: ...
    def on_action(self, action: Action, outcome: Outcome | None, state: RolloutState) -> None: ...
    def on_results(self, results: list[CheckResult], state: RolloutState) -> None: ...
    def on_wait(self, wait: Wait, state: RolloutState) -> None: ...


class Runner:
    def __init__(
        self,
        plan: Plan,
        store: Any,
        adapters: AdapterSet,
        *,
        clock: Clock | None = None,
        actor: str = "novactl",
        observer: Observer | None = None,
        parallel: int = 1,
        lock_wait: float = 0.0,
    ) -> None:
        self.plan = plan
        self.store = store
        self.adapters = adapters
        self.clock = clock or SystemClock()
        self.actor = actor
        self.observer = observer or Observer()
        self.executor = Executor(plan, adapters, self.clock, parallel=parallel)
        self.lock_wait = lock_wait
        self._dirty = False  # events recorded that the saved state does not reflect yet

    def _save(self, state: RolloutState) -> None:
        self.store.save(state)
        self._dirty = False

    # -- public
    def reconcile(self, *, max_actions: int = MAX_ACTIONS_PER_PASS) -> PassResult:
        """One pass under the lock: act until the machine says wait."""
        with self.store.lock(f"novactl run {self.plan.name}", wait=self.lock_wait):
            state = self.load_or_create()
            return self._pass(state, max_actions)

    def run(self, *, poll: float = 5.0, max_passes: int | None = None,
            until: Callable[[PassResult], bool] | None = None) -> PassResult:
        """Reconcile until the rollout ends (or ``until`` says stop).

        Between passes the lock is released, so `approve`, `pause` or
        `rollback` from another terminal get in within ``poll`` seconds.
        """
        passes = 0
        while True:
            result = self.reconcile()
            passes += 1
            if result.state.phase.terminal or (until is not None and until(result)):
                return result
            if max_passes is not None and passes >= max_passes:
                return result
            now = self.clock.now()
            wake = result.wait.until if result.wait and result.wait.until is not None else None
            # nothing was due now (else the pass would have acted): a wake-up time in the
            # past means "nothing scheduled", never a busy loop
            delay = poll if wake is None or wake <= now else min(wake - now, poll)
            self.clock.sleep(delay)

    def load_or_create(self) -> RolloutState:
        state = self.store.load()
        now = self.clock.now()
        if state is None:
            state = machine.new_state(self.plan, uuid.uuid4().hex[:12], now)
            self.store.save_plan(self.plan.snapshot())
            self.store.save(state)
            self._audit(state, "rollout.created", f"plan {self.plan.source} "
                        f"(digest {self.plan.digest})", actor=self.actor, before=None)
        elif state.plan_name != self.plan.name:
            from novactl._errors import StateError

            raise StateError(f"the state directory holds rollout {state.plan_name!r}, not "
                             f"{self.plan.name!r}; use another --state-dir")
        elif state.plan_digest != self.plan.digest:
            before = state.plan_digest
            state.plan_digest = self.plan.digest
            self.store.save_plan(self.plan.snapshot())
            self.store.save(state)
            self._audit(state, "plan.changed", f"plan {self.plan.source} changed "
                        f"({before} → {self.plan.digest}); the new plan applies from now",
                        actor=self.actor)
        return state

    def command(self, fn: Callable[..., machine.CommandResult], *args: Any,
                actor: str, action: str, reason: str, **kwargs: Any) -> RolloutState:
        """Apply a human command (approve, pause, ...) under the lock and record it."""
        with self.store.lock(f"novactl {action}", wait=self.lock_wait):
            state = self.load_or_create()
            before = _summary(state)
            result = fn(self.plan, state, *args, now=self.clock.now(), **kwargs)
            self._record_events(result.state, result.events)
            self._save(result.state)
            self._audit(result.state, action, reason, actor=actor, before=before)
            return result.state

    # -- internals
    def _pass(self, state: RolloutState, max_actions: int) -> PassResult:
        events: list[Event] = []
        state = self._take_abort(state, events)
        self._check_plan_fits(state)
        actions = 0
        if state.pending is not None:
            state, ran = self._settle_pending(state, events)
            actions += ran
        wait: Wait | None = None
        while actions < max_actions:
            # a rollback queued by another process wins over whatever comes next
            state = self._take_abort(state, events)
            decision = machine.decide(self.plan, state, self.clock.now(), copy=False)
            state = decision.state
            self._record_events(state, decision.events, events)
            if decision.action is None:
                wait = decision.wait
                break
            state = self._execute(state, decision.action, events)
            actions += 1
        if wait is not None:
            seen = state.last_wait or {}
            if (seen.get("reason"), seen.get("human")) != (wait.reason, wait.human):
                state.last_wait = {"reason": wait.reason, "human": wait.human,
                                   "until": wait.until}
                self._dirty = True
        if self._dirty:
            self._save(state)
        self._deliver(state)
        if wait is not None:
            self.observer.on_wait(wait, state)
        return PassResult(state, wait, actions, events)

    def _settle_pending(self, state: RolloutState, events: list[Event]
                        ) -> tuple[RolloutState, int]:
        """An action whose intent was recorded but not its outcome (a crash in between).

        Actions are idempotent by intent, so it is run again — if the state machine
        still wants it.  If the rollout has moved on meanwhile (a rollback or another
        command came in), it is dropped, and a promote that may have half happened
        leaves the stable marked unknown so a rollback puts the old version back.
        """
        assert state.pending is not None
        action = Action.from_dict(state.pending)
        recorded = state.pending.get("_in")
        moved_on = recorded != _where(state) or (
            state.abort is not None and action.purpose != "rollback")
        if not moved_on:
            self._audit(state, f"resume.{action.kind.value}",
                        f"re-running an interrupted action: {action.describe()}",
                        actor=self.actor)
            return self._execute(state, action, events, resumed=True), 1
        state.pending = None
        if action.kind is ActionKind.PROMOTE:
            replicas = state.deployed["stable"].replicas if "stable" in state.deployed else None
            state.deployed["stable"] = Deployed(machine.UNKNOWN_VERSION, replicas)
        self._audit(state, f"resume.dropped.{action.kind.value}",
                    f"an interrupted action is no longer wanted (the rollout moved on): "
                    f"{action.describe()}", actor=self.actor)
        self._save(state)
        return state, 0

    def _check_plan_fits(self, state: RolloutState) -> None:
        """A plan edited mid-rollout must still have the stage the rollout is in."""
        if state.phase is not Phase.STAGE or state.abort is not None or not state.stages:
            return  # rolling back needs no stage
        stages = self.plan.stages
        here = state.stages[-1].name
        if state.stage_index >= len(stages) or stages[state.stage_index].name != here:
            from novactl._errors import StateError

            raise StateError(f"the rollout is in stage {here!r} (number "
                             f"{state.stage_index + 1}), which the changed plan "
                             f"{self.plan.source} no longer has there; restore the plan, or "
                             "roll back (rollback works with either plan)")

    def _take_abort(self, state: RolloutState, events: list[Event]) -> RolloutState:
        request = self.store.peek_abort()
        if request is None:
            return state
        reason = str(request.get("reason", "rollback requested"))
        by = str(request.get("by", "unknown"))
        try:
            result = machine.request_rollback(self.plan, state, reason, by, self.clock.now(),
                                              force=bool(request.get("force")))
        except NovactlError as exc:  # refused (e.g. the rollback window closed): say so
            self._audit(state, "rollback.refused", f"{reason}: {exc.message}", actor=by)
            self.store.clear_abort()
            return state
        state = result.state
        self._record_events(state, result.events, events)
        self._save(state)
        self.store.clear_abort()
        return state

    def _execute(self, state: RolloutState, action: Action, events: list[Event], *,
                 resumed: bool = False) -> RolloutState:
        mutating = action.kind.mutating
        stage = state.stages[-1].name if state.phase is Phase.STAGE and state.stages else None
        if mutating and not resumed:
            state.pending = {**action.to_dict(), "_in": _where(state)}
            self._save(state)
            self._audit(state, f"intent.{action.kind.value}", action.reason,
                        actor=self.actor, details=action.to_dict())
        self.observer.on_action(action, None, state)
        outcome = self.executor.execute(action, stage)
        before = _summary(state)
        decision: Decision = machine.apply(self.plan, state, action, outcome, self.clock.now(),
                                           copy=False)
        new = decision.state
        new.pending = None
        if decision.results and getattr(self.store, "records_evaluations", True):
            self.store.append_evaluation({
                "time": iso(self.clock.now()),
                "ts": self.clock.now(),
                "rollout": new.rollout_id,
                "phase": new.phase.value,
                "stage": stage,
                "results": [r.to_dict() for r in decision.results],
                "observations": [o.to_dict() for o in outcome.observations],
            })
        if decision.results:  # a live view sees every round, recorded or not
            self.observer.on_results(decision.results, new)
        if mutating:  # the outcome reaches the audit log before the state that clears the intent
            verb = "done" if outcome.ok else "failed"
            self._audit(new, f"{verb}.{action.kind.value}",
                        action.reason if outcome.ok else f"{action.reason}: {outcome.error}",
                        actor=self.actor, before=before, details=outcome.to_dict())
        self._record_events(new, decision.events, events)
        self._save(new)  # every outcome changes the state (a step, a poll time, results)
        self.observer.on_action(action, outcome, new)
        return new

    def _record_events(self, state: RolloutState, new_events: list[Event],
                       sink: list[Event] | None = None) -> None:
        for event in new_events:
            self._dirty = True
            state.sequence += 1
            self._audit(state, event.name, f"{event.title}" + (f": {event.text}"
                        if event.text else ""), actor=event.actor,
                        details={"severity": event.severity, **event.fields} if event.fields
                        else {"severity": event.severity})
            if event.notify:
                for target in self._targets_for(event):
                    message = Message(
                        id=f"{state.rollout_id}-{state.sequence}-{target}",
                        event=event.name, severity=event.severity, title=event.title,
                        text=event.text, rollout=self.plan.name, at=self.clock.now(),
                        stage=event.stage, fields=_jsonable(event.fields))
                    state.outbox.append({"target": target, "message": message.to_dict(),
                                         "attempts": 0})
            self.observer.on_event(event, state)
            if sink is not None:
                sink.append(event)

    def _targets_for(self, event: Event) -> list[str]:
        notifications = self.plan.spec.notifications
        if event.targets:
            return [t for t in event.targets if t in notifications.targets]
        targets: list[str] = []
        for route in notifications.routes:
            if any(fnmatch.fnmatchcase(event.name, pattern) for pattern in route.events):
                targets.extend(t for t in route.to if t not in targets)
        if event.stage and targets:
            for stage in self.plan.stages:
                if stage.name == event.stage:
                    targets.extend(t for t in stage.notify if t not in targets)
        return targets

    def _deliver(self, state: RolloutState) -> None:
        """Send queued notifications, within a time budget (the lock is held): what is left
        waits for the next pass.  A failure stays queued (at least once), up to a bound."""
        if not state.outbox:
            return
        deadline = time.monotonic() + NOTIFY_BUDGET
        remaining = []
        for item in state.outbox:
            if time.monotonic() > deadline:
                remaining.append(item)
                continue
            message = Message(**item["message"])
            try:
                self.adapters.notifier(item["target"]).notify(message)
            except Exception as exc:
                attempts = int(item.get("attempts", 0)) + 1
                error = exc.message if isinstance(exc, NovactlError) else f"{exc}"
                if attempts >= NOTIFY_ATTEMPTS:
                    self._audit(state, "notification.dropped",
                                f"{item['target']}: {message.event}: gave up after "
                                f"{attempts} attempts: {error}", actor=self.actor)
                else:
                    remaining.append({**item, "attempts": attempts, "error": error})
        state.outbox = remaining
        self._save(state)

    def _audit(self, state: RolloutState, action: str, reason: str, *, actor: str,
               before: dict[str, Any] | bool | None = False,
               details: dict[str, Any] | None = None) -> None:
        now = self.clock.now()
        record: dict[str, Any] = {
            "time": iso(now),
            "ts": round(now, 3),
            "rollout": state.rollout_id,
            "actor": actor,
            "action": action,
            "reason": reason,
        }
        if before is not False:
            record["before"] = before
            record["after"] = _summary(state)
        if details:
            record["details"] = _jsonable(details)
        self.store.append_audit(record)


def _where(state: RolloutState) -> list[Any]:
    """Where the rollout is: an interrupted action is re-run only if it still is there."""
    return [state.phase.value, state.step, state.stage_index, state.rollout_id]


def _summary(state: RolloutState) -> dict[str, Any]:
    return {
        "phase": state.phase.value,
        "stage": state.stages[-1].name if state.stages and state.phase is Phase.STAGE else None,
        "step": state.step,
        "weight": state.weight_desired,
        "paused": bool(state.paused),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def context_for(plan: Plan, *, clock: Clock | None = None, state_dir: Path | None = None,
                log: Callable[[str], None] | None = None) -> AdapterContext:
    source = Path(plan.source)
    return AdapterContext(
        plan_name=plan.name,
        service=plan.spec.service,
        stable_version=plan.spec.versions.stable,
        canary_version=plan.spec.versions.canary,
        variables=dict(plan.spec.variables),
        base_dir=source.parent if source.name != "<plan>" else Path.cwd(),
        state_dir=state_dir,
        clock=clock or SystemClock(),
        log=log or (lambda _m: None),
    )
