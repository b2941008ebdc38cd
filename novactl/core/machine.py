"""The rollout state machine.  Pure: (plan, state, now[, action, outcome]) → decision.

    decide(plan, state, now)                  → what to do next (an action, or wait)
    apply(plan, state, action, outcome, now)  → fold an action's outcome into the state

plus the human commands (approve, pause, resume, rollback, signal, jump to a
stage, promote), each a pure function returning a new state and the events
to record.  Nothing here performs I/O or reads the clock; the runner does.

Lifecycle::

    pending → baseline → stage[0] … stage[n-1] → promoting → promoted → completed
                  ╰───────────────┴── any trigger or request ──→ rolling_back → rolled_back

Inside a stage the steps are: deploy (or scale) the canary → wait until ready
→ set the debug header route (first stage) → shift the weight → verify it
reads back → bake, evaluating every interval, until the minimum duration has
passed, the mandatory criteria have held for ``sustain`` without a break and
every required role has said GO.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from novactl._errors import InputError
from novactl._units import format_duration, format_value
from novactl.core import rounds
from novactl.core.actions import Action, ActionKind, Decision, Event, ObsRequest, Outcome, Wait
from novactl.core.gates import CheckResult, References, Verdict, evaluate
from novactl.core.observations import Observation, ObsKey
from novactl.core.state import (
    AbortRequest,
    Aggregate,
    Approval,
    CheckTally,
    Deployed,
    Pause,
    Phase,
    RaisedSignal,
    RefValue,
    RollbackRecord,
    RolloutState,
    StageRecord,
    TriggerState,
)
from novactl.plan._expr import RefKind
from novactl.plan._model import Check, CheckRole, MetricKind, Plan, StageSpec, StageStart

__all__ = [
    "MAX_EVAL_WINDOW",
    "apply",
    "approve",
    "decide",
    "jump_to_stage",
    "new_state",
    "pause",
    "request_promotion",
    "request_rollback",
    "resume",
    "signal",
    "status_line",
]

MAX_EVAL_WINDOW = 86400.0  # an evaluation never looks back further than a day
TRAFFIC_RETRIES = 3  # set/verify weight mismatches before asking a human
ROLLBACK_RETRY = 1.0  # seconds between attempts while rolling back
SCALE_DOWN_ATTEMPTS = 3
PROMOTION = "promotion"  # the approval key for the promotion step
UNKNOWN_VERSION = "unknown"  # what a role runs after an action on it failed half-way
ROLLBACK_ALERT_EVERY = 300.0  # while a rollback keeps failing, say so this often


# --------------------------------------------------------------------------- context


@dataclass
class _Ctx:
    plan: Plan
    s: RolloutState
    now: float
    events: list[Event] = field(default_factory=list)
    results: list[CheckResult] = field(default_factory=list)

    @property
    def stage(self) -> StageSpec:
        return self.plan.spec.stages[self.s.stage_index]

    @property
    def record(self) -> StageRecord:
        return self.s.stages[-1]

    def emit(self, name: str, severity: str, title: str, text: str = "", *,
             actor: str = "novactl", stage: str | None = None, notify: bool = True,
             targets: Iterable[str] = (), **fields: object) -> None:
        if stage is None and self.s.phase is Phase.STAGE and self.s.stages:
            stage = self.s.stages[-1].name
        self.events.append(Event(name, severity, title, text, stage, actor, dict(fields),
                                 tuple(targets), notify))


def new_state(plan: Plan, rollout_id: str, now: float) -> RolloutState:
    return RolloutState(
        rollout_id=rollout_id,
        plan_name=plan.name,
        plan_digest=plan.digest,
        created_at=now,
        updated_at=now,
        stable_version=plan.spec.versions.stable,
        canary_version=plan.spec.versions.canary,
    )


# --------------------------------------------------------------------------- decide


def decide(plan: Plan, state: RolloutState, now: float, *, copy: bool = True) -> Decision:
    """What should happen next.  Pure transitions (advancing a stage, noticing a
    timeout) are applied to the returned state and reported as events.

    The input state is never modified.  ``copy=False`` lets a caller that hands
    over its state for good (the runner) skip the defensive copy."""
    ctx = _Ctx(plan, state.clone() if copy else state, now)
    for _ in range(50):  # bounded: each pass either acts, waits or changes phase
        outcome = _step(ctx)
        if isinstance(outcome, Action):
            ctx.s.updated_at = now
            return Decision(ctx.s, outcome, None, ctx.events)
        if isinstance(outcome, Wait):
            _summaries(ctx)
            ctx.s.updated_at = now
            return Decision(ctx.s, None, outcome, ctx.events)
    raise RuntimeError("state machine did not settle; this is a bug")  # pragma: no cover


def _step(ctx: _Ctx) -> Action | Wait | None:
    s = ctx.s
    if s.phase.terminal:
        if s.phase is Phase.ROLLED_BACK and s.abort is not None:
            # asked again: set and read the weight once more, never trust the record alone
            req = s.abort
            s.abort = None
            s.phase = Phase.ROLLING_BACK
            _next_step(ctx, "shift")
            ctx.emit("rollback.reverify", "info", "Rollback requested again: re-verifying",
                     req.reason, actor=req.by, notify=False)
            return None
        return Wait(None, _terminal_text(s))
    if s.abort is not None and s.phase is not Phase.ROLLING_BACK:
        req = s.abort
        s.abort = None
        _start_rollback(ctx, req.reason, req.by, req.trigger, req.detected_at)
        return None
    if _handle_signals(ctx):
        return None
    if s.phase is Phase.PENDING:
        s.started_at = ctx.now
        ctx.emit("rollout.started", "info", f"Rollout {ctx.plan.name} started",
                 f"{s.stable_version} → {s.canary_version} in {len(ctx.plan.stages)} stages")
        if _baseline_needed(ctx.plan, s):
            s.phase = Phase.BASELINE
            s.baseline_started_at = ctx.now
            s.step = "measure"
        else:
            _enter_stage(ctx, 0)
        return None
    if s.phase is Phase.BASELINE:
        return _step_baseline(ctx)
    if s.phase is Phase.STAGE:
        return _step_stage(ctx)
    if s.phase is Phase.PROMOTING:
        return _step_promoting(ctx)
    if s.phase is Phase.PROMOTED:
        return _step_promoted(ctx)
    if s.phase is Phase.ROLLING_BACK:
        return _step_rollback(ctx)
    raise AssertionError(f"unknown phase {s.phase}")  # pragma: no cover


def _terminal_text(s: RolloutState) -> str:
    if s.phase is Phase.COMPLETED:
        return f"completed: {s.canary_version} is stable"
    reason = s.rollback.reason if s.rollback else "rolled back"
    return f"rolled back to {s.stable_version}: {reason}"


# --------------------------------------------------------------------------- baseline


def _baseline_metrics(plan: Plan) -> tuple[set[str], set[str]]:
    """(metrics relative checks need, metrics only the report wants)."""
    needed: set[str] = set()
    for stage in plan.stages:
        for check in stage.checks:
            ref = check.condition.threshold.reference
            if ref is not None and ref.kind is RefKind.BASELINE:
                needed.add(check.condition.metric)
    wanted = {item.metric for item in plan.spec.report.business}
    return needed, wanted - needed


def _baseline_needed(plan: Plan, s: RolloutState) -> bool:
    needed, wanted = _baseline_metrics(plan)
    return bool((needed | wanted) - set(plan.spec.baseline.values))


def _step_baseline(ctx: _Ctx) -> Action | Wait | None:
    plan, s, now = ctx.plan, ctx.s, ctx.now
    for name, raw in plan.spec.baseline.values.items():
        if name not in s.baseline:
            s.baseline[name] = RefValue(_static_value(plan, name, raw), plan.spec.baseline.window,
                                        at=now, source="plan")
    needed, wanted = _baseline_metrics(plan)
    missing_needed = sorted(needed - set(s.baseline))
    missing_wanted = sorted(wanted - set(s.baseline))
    if not missing_needed and (not missing_wanted or s.baseline_attempts > 0):
        ctx.emit("baseline.recorded", "info", "Baseline recorded",
                 ", ".join(f"{k}={format_value(v.value, plan.metric(k).dimension)}"
                           for k, v in sorted(s.baseline.items())), notify=False)
        _enter_stage(ctx, 0)
        return None
    interval = plan.interval(plan.stages[0])
    started = s.baseline_started_at or now
    if s.last_poll_at is not None and now - s.last_poll_at < interval:
        if now - started > plan.spec.baseline.timeout and missing_needed and s.paused is None:
            _pause(ctx, f"no baseline for {', '.join(missing_needed)} after "
                   f"{format_duration(now - started)}: {s.last_message or 'no data'}; "
                   "fix the probe or set spec.baseline.values, then resume", "novactl",
                   "baseline")
        if s.paused is not None:
            return Wait(None, f"paused: {s.paused.reason}", human=True)
        return Wait(s.last_poll_at + interval,
                    f"measuring the baseline of {', '.join(missing_needed + missing_wanted)} "
                    f"(attempt {s.baseline_attempts})")
    # Counts and ratios pool over the baseline window ("normal" is the week before; counts
    # are scaled to each check's window when compared).  A value metric with a window of
    # its own (an average or a peak over a day) keeps it, so like is compared with like.
    requests = []
    for name in missing_needed + missing_wanted:
        metric = plan.metric(name)
        window = plan.spec.baseline.window
        if metric.kind is MetricKind.VALUE and metric.window is not None:
            window = metric.window
        if metric.scope == "global":
            requests.append(ObsRequest(name, None, None, window))
        else:
            requests.append(ObsRequest(name, s.stable_version, "stable", window))
    return Action(ActionKind.OBSERVE, "baseline", "measure the pre-rollout baseline",
                  requests=tuple(requests))


def _static_value(plan: Plan, name: str, raw: float | str) -> float:
    metric = plan.metric(name)
    if isinstance(raw, int | float):
        return float(raw) * metric.scale
    from novactl.plan._expr import parse_target

    target = parse_target(raw, "==")
    return target.value if target.dimension is not None else target.value * metric.scale


# --------------------------------------------------------------------------- stages


def _enter_stage(ctx: _Ctx, index: int, *, now_or_schedule: bool = False) -> None:
    """Begin stage ``index``: at once, or at its scheduled start (``start:``) if it has one."""
    s = ctx.s
    stage = ctx.plan.stages[index]
    s.phase = Phase.STAGE
    s.stage_index = index
    s.step_since = ctx.now
    s.step = "deploy"
    if stage.start is not None and not now_or_schedule:
        when = _start_time(ctx.now, stage.start)
        if when > ctx.now:
            s.step = "scheduled"
            s.stages.append(StageRecord(stage.name, index, stage.weight, when))
            s.triggers = {}
            s.last_results = {}
            ctx.emit("stage.scheduled", "info",
                     f"Stage {index + 1}/{len(ctx.plan.stages)} {stage.name} starts at "
                     f"{_iso(when)}", f"{stage.weight:g}% canary from then on",
                     stage=stage.name, starts_at=when)
            return
    _begin_stage(ctx, index)


def _begin_stage(ctx: _Ctx, index: int) -> None:
    s = ctx.s
    stage = ctx.plan.stages[index]
    s.step = "deploy"
    s.step_since = ctx.now
    s.step_failures = 0
    s.step_error = ""
    s.verify_mismatches = 0
    s.last_poll_at = None
    s.last_eval_at = None
    s.streak_since = None
    s.streak_broken_by = ""
    s.triggers = {}
    s.undecided = {}
    s.passing = {}
    s.criteria_since = {}
    s.last_results = {}
    if s.stages and s.stages[-1].name == stage.name and s.stages[-1].left_at is None:
        s.stages[-1].entered_at = ctx.now  # it was scheduled; it starts now
    else:
        s.stages.append(StageRecord(stage.name, index, stage.weight, ctx.now))
    replicas = f", {stage.replicas} replicas" if stage.replicas is not None else ""
    ctx.emit("stage.started", "info",
             f"Stage {index + 1}/{len(ctx.plan.stages)} {stage.name}: {stage.weight:g}% canary",
             f"{s.canary_version} at {stage.weight:g}%{replicas}, for {stage.duration}",
             stage=stage.name, weight=stage.weight, replicas=stage.replicas)
    for announcement in stage.announce:
        ctx.emit("stage.announcement", "info", f"{stage.name}: announcement",
                 announcement.message, stage=stage.name, targets=announcement.to)


def _step_stage(ctx: _Ctx) -> Action | Wait | None:
    s, plan = ctx.s, ctx.plan
    stage = ctx.stage
    workload = plan.spec.workload
    if s.step == "scheduled":
        rec = ctx.record
        if s.paused is not None:
            return Wait(None, f"paused before stage {stage.name}: {s.paused.reason}", human=True)
        if ctx.now < rec.entered_at:
            return Wait(rec.entered_at, f"stage {stage.name} starts at {_iso(rec.entered_at)}")
        _begin_stage(ctx, s.stage_index)
        return None
    if s.step == "deploy":
        current = s.deployed.get("canary")
        if current is None or current.version != s.canary_version:
            held = _retrying(ctx, workload.ready_timeout, workload.ready_poll)
            if held is not False:
                return held
            return Action(ActionKind.DEPLOY, "stage", f"stage {stage.name}: deploy the canary",
                          role="canary", version=s.canary_version, replicas=stage.replicas)
        if stage.replicas is not None and current.replicas != stage.replicas:
            held = _retrying(ctx, workload.ready_timeout, workload.ready_poll)
            if held is not False:
                return held
            return Action(ActionKind.SCALE, "stage", f"stage {stage.name}: scale the canary",
                          role="canary", replicas=stage.replicas)
        _next_step(ctx, "ready")
        return None
    if s.step == "ready":
        return _poll_ready(ctx, "canary", "stage", workload.ready_timeout, workload.ready_poll)
    if s.step == "header":
        header = plan.spec.traffic.debug_header
        if header is None or s.header_route:
            _next_step(ctx, "shift")
            return None
        return Action(ActionKind.HEADER_ROUTE, "stage",
                      f"route {header.name}: {header.value} to the canary",
                      header=header.name, header_value=header.value)
    if s.step == "shift":
        verified = s.weight_actual if s.weight_verified_at is not None else 0.0
        if s.paused is not None and (verified or 0.0) < stage.weight:
            return Wait(None, f"paused before shifting to {stage.weight:g}%: {s.paused.reason}",
                        human=True)
        held = _retrying(ctx, workload.ready_timeout, workload.ready_poll)
        if held is not False:
            return held
        return Action(ActionKind.SET_WEIGHT, "stage",
                      f"stage {stage.name}: shift {stage.weight:g}% to the canary",
                      weight=stage.weight)
    if s.step == "verify":
        if (held := _after_mismatch(ctx, workload.ready_poll)) is not None:
            return held
        return Action(ActionKind.VERIFY_WEIGHT, "stage",
                      f"stage {stage.name}: read the weight back", weight=stage.weight)
    if s.step == "bake":
        return _step_bake(ctx)
    raise AssertionError(f"unknown stage step {s.step!r}")  # pragma: no cover


def _next_step(ctx: _Ctx, step: str) -> None:
    ctx.s.step = step
    ctx.s.step_since = ctx.now
    ctx.s.step_failures = 0
    ctx.s.step_error = ""
    ctx.s.last_poll_at = None


def _after_mismatch(ctx: _Ctx, poll: float) -> Wait | None:
    """Routers apply weights asynchronously: after a mismatch, look again a poll later."""
    s = ctx.s
    if s.verify_mismatches and s.last_poll_at is not None and ctx.now - s.last_poll_at < poll:
        return Wait(s.last_poll_at + poll, f"weight not applied yet: {s.step_error}")
    return None


def _retrying(ctx: _Ctx, timeout: float, poll: float, *, give_up: bool = True
              ) -> Wait | Literal[False] | None:
    """After a failed attempt, what to do instead of trying again right now:
    a Wait until the next try; None if it gave up (a rollback has started, the
    caller returns None); False to go ahead and try now."""
    s = ctx.s
    if s.step_failures == 0 or s.last_poll_at is None:
        return False
    if give_up and ctx.now - (s.step_since or ctx.now) > timeout:
        _start_rollback(ctx, f"{s.step} kept failing for {format_duration(timeout)}: "
                        f"{s.step_error}", "novactl")
        return None
    if ctx.now - s.last_poll_at < poll:
        return Wait(s.last_poll_at + poll, f"retrying {s.step} after: {s.step_error}",
                    failing=True)
    return False


def _poll_ready(ctx: _Ctx, role: str, purpose: str, timeout: float, poll: float
                ) -> Action | Wait | None:
    s = ctx.s
    if s.last_poll_at is not None and ctx.now - s.last_poll_at < poll:
        return Wait(s.last_poll_at + poll, f"waiting for {role} to be ready: {s.last_message}")
    if s.last_poll_at is not None and ctx.now - (s.step_since or ctx.now) > timeout:
        reason = (f"{role} not ready after {format_duration(timeout)}: "
                  f"{s.last_message or 'no readiness reported'}")
        if purpose == "rollback":
            ctx.emit("rollback.stuck", "critical", "Rollback: stable not ready", reason)
            s.step_since = ctx.now  # keep trying; tell people every timeout
        else:
            _start_rollback(ctx, reason, "novactl")
            return None
    return Action(ActionKind.READY, purpose, f"check that the {role} is ready", role=role)


def _step_bake(ctx: _Ctx) -> Action | Wait | None:
    s, plan, now = ctx.s, ctx.plan, ctx.now
    stage = ctx.stage
    rec = ctx.record
    start = rec.bake_started_at or now
    interval = plan.interval(stage)
    last = s.last_eval_at or start
    due = last + interval
    if now >= due:
        window = _eval_window(now, last, interval)
        return Action(ActionKind.OBSERVE, "stage", f"evaluate stage {stage.name}",
                      requests=_requests(ctx, rec, stage.checks, window, now, start),
                      window=window, at=now)
    moved = _try_advance(ctx)
    if moved is True:
        return None
    if isinstance(moved, Wait):  # evaluations go on whatever it waits for
        until = due if moved.until is None else min(due, moved.until)
        return Wait(until, moved.reason, human=moved.human)
    return Wait(due, _bake_text(ctx))


def _eval_window(now: float, last: float, interval: float) -> float:
    return min(max(now - last, interval), MAX_EVAL_WINDOW)


def _requests(ctx: _Ctx, rec: StageRecord, checks: tuple[Check, ...], eval_window: float,
              now: float, start: float) -> tuple[ObsRequest, ...]:
    refs = _references(ctx)
    windows = rounds.check_windows(checks, ctx.s, rec, refs, eval_window, now, start,
                                   stage=ctx.s.phase is Phase.STAGE)
    return rounds.observation_requests(ctx.s, checks, windows, refs, eval_window,
                                       promoted=ctx.s.phase is Phase.PROMOTED)


def _record_refs(ctx: _Ctx, rec: StageRecord) -> None:
    """Freeze what the canary showed in a finished stage, for ``stage:NAME`` references."""
    s = ctx.s
    for key, agg in rec.metrics.items():
        metric, _, version = key.partition("@")
        if version != s.canary_version or metric not in ctx.plan.spec.metrics:
            continue
        value = agg.value(ctx.plan.metric(metric).kind.value)
        if value is not None:
            rec.refs[metric] = RefValue(value, agg.weight, agg.events or None, agg.trials or None,
                                        rec.left_at or ctx.now, f"stage {rec.name}")


def _references(ctx: _Ctx) -> References:
    s = ctx.s
    # what the canary showed in each stage it has left (the latest visit counts); a stage
    # cut short by a rollback is no reference
    stages = {rec.name: rec.refs for rec in s.stages
              if rec.left_at is not None and rec.outcome != "rolled_back"}
    return References(
        stable_version=s.stable_version,
        canary_version=s.canary_version,
        baseline=s.baseline,
        stages=stages,
        stable_available=s.phase is not Phase.PROMOTED,
    )


def _gates_held(ctx: _Ctx) -> bool:
    """The stage has baked its minimum and its mandatory criteria held for ``sustain``."""
    s, now = ctx.s, ctx.now
    if s.phase is not Phase.STAGE or s.step != "bake":
        return False
    stage = ctx.stage
    start = ctx.record.bake_started_at or now
    baked = now - start >= stage.duration.min
    mandatory = any(c.role is CheckRole.MANDATORY for c in stage.checks)
    sustained = (not mandatory and baked) or (
        s.streak_since is not None and now - s.streak_since >= stage.sustain_for
        and not rounds.undecided_criteria(ctx.stage, ctx.s)
    )
    return baked and sustained


def _try_advance(ctx: _Ctx) -> bool | Wait | None:
    """True if the stage advanced; a Wait when a human must act; None to keep baking."""
    s, now = ctx.s, ctx.now
    stage = ctx.stage
    rec = ctx.record
    start = rec.bake_started_at or now
    if not _gates_held(ctx):
        limit = stage.duration.max
        if limit is not None and now - start >= limit and not rec.escalated:
            rec.escalated = True
            text = (f"stage {stage.name} has run {format_duration(now - start)} (maximum "
                    f"{format_duration(limit)}) without its mandatory criteria holding for "
                    f"{format_duration(stage.sustain_for)}")
            undecided = rounds.undecided_criteria(ctx.stage, ctx.s)
            if undecided:
                text += f"; still undecided: {', '.join(undecided)}"
            ctx.emit("stage.escalated", "warning", f"Stage {stage.name} needs a decision", text)
            _pause(ctx, text + "; decide: novactl resume (keep baking) or novactl rollback",
                   "novactl", "escalation")
        if s.paused is not None:
            return Wait(None, f"paused: {s.paused.reason}", human=True)
        return None
    if s.paused is not None:
        return Wait(None, f"stage {stage.name} is ready to advance but paused: "
                    f"{s.paused.reason}", human=True)
    missing = _missing_approvals(ctx, stage.name, stage.approval.roles if stage.approval else [])
    if missing:
        if not rec.approval_requested:
            rec.approval_requested = True
            note = f" ({stage.approval.note})" if stage.approval and stage.approval.note else ""
            ctx.emit("approval.needed", "warning",
                     f"Stage {stage.name} passed its gates: GO/NO-GO needed",
                     f"waiting for {', '.join(missing)}{note}: novactl approve "
                     f"--stage {stage.name} --role ROLE --by NAME",
                     roles=missing)
        return Wait(None, f"waiting for approval of stage {stage.name} by {', '.join(missing)}",
                    human=True)
    stages = ctx.plan.stages
    following = stages[s.stage_index + 1] if s.stage_index + 1 < len(stages) else None
    if following is not None and following.start is not None:
        when = _start_time(now, following.start)
        if when > now:  # keep baking, triggers armed, until the next stage may start
            return Wait(when, f"stage {stage.name} passed its gates; stage "
                        f"{following.name} starts at {_iso(when)}")
    _advance(ctx)
    return True


def _missing_approvals(ctx: _Ctx, stage: str, roles: Iterable[str]) -> list[str]:
    missing = []
    for role in roles:
        latest = ctx.s.latest_decision(stage, role)
        if latest is None or latest.decision != "go":
            missing.append(role)
    return missing


def _advance(ctx: _Ctx, *, start_now: bool = False) -> None:
    s, plan, now = ctx.s, ctx.plan, ctx.now
    rec = ctx.record
    rec.left_at = now
    rec.outcome = rec.outcome or "passed"
    _record_refs(ctx, rec)
    stage = ctx.stage
    ctx.emit("stage.passed", "info", f"Stage {stage.name} passed",
             f"criteria held for {format_duration(s.streak_since and now - s.streak_since)}; "
             f"{rec.evaluations} evaluations", stage=stage.name)
    if s.stage_index + 1 < len(plan.stages):
        _enter_stage(ctx, s.stage_index + 1, now_or_schedule=start_now)
    else:
        _start_promotion(ctx)


def _bake_text(ctx: _Ctx) -> str:
    s, now = ctx.s, ctx.now
    stage = ctx.stage
    rec = ctx.record
    start = rec.bake_started_at or now
    parts = [f"baking {stage.name} at {stage.weight:g}%: {format_duration(now - start)} of "
             f"{stage.duration}"]
    if any(c.role is CheckRole.MANDATORY for c in stage.checks):
        held = now - s.streak_since if s.streak_since is not None else 0.0
        parts.append(f"criteria held {format_duration(held)} of "
                     f"{format_duration(stage.sustain_for)}")
        if s.streak_since is None and s.streak_broken_by:
            parts.append(f"not holding: {s.streak_broken_by}")
        undecided = rounds.undecided_criteria(ctx.stage, ctx.s)
        if undecided and s.last_results:
            parts.append(f"undecided yet: {', '.join(undecided)}")
    return "; ".join(parts)


# --------------------------------------------------------------------------- promotion


def _start_promotion(ctx: _Ctx) -> None:
    s = ctx.s
    s.phase = Phase.PROMOTING
    _next_step(ctx, "approve")
    s.triggers = {}
    ctx.emit("promotion.started", "info", f"Promoting {s.canary_version} to stable")


def _step_promoting(ctx: _Ctx) -> Action | Wait | None:
    s, plan = ctx.s, ctx.plan
    promo = plan.spec.promotion
    workload = plan.spec.workload
    if s.step == "approve":
        missing = _missing_approvals(ctx, PROMOTION, promo.approval.roles if promo.approval else [])
        if missing:
            return Wait(None, f"waiting for approval of the promotion by {', '.join(missing)}",
                        human=True)
        if s.paused is not None:
            return Wait(None, f"paused before promotion: {s.paused.reason}", human=True)
        _next_step(ctx, "promote")
        return None
    if s.step == "promote":
        held = _retrying(ctx, workload.ready_timeout, workload.ready_poll)
        if held is not False:
            return held
        return Action(ActionKind.PROMOTE, "promotion",
                      f"make {s.canary_version} the stable version",
                      version=s.canary_version, replicas=promo.replicas)
    if s.step == "ready":
        return _poll_ready(ctx, "stable", "promotion", workload.ready_timeout, workload.ready_poll)
    if s.step == "shift":
        held = _retrying(ctx, workload.ready_timeout, workload.ready_poll)
        if held is not False:
            return held
        return Action(ActionKind.SET_WEIGHT, "promotion", "all traffic to the new stable",
                      weight=0.0)
    if s.step == "verify":
        if (held := _after_mismatch(ctx, workload.ready_poll)) is not None:
            return held
        return Action(ActionKind.VERIFY_WEIGHT, "promotion", "read the weight back", weight=0.0)
    if s.step == "scale_down":
        return Action(ActionKind.SCALE, "promotion", "the canary is no longer needed",
                      role="canary", replicas=0)
    raise AssertionError(f"unknown promotion step {s.step!r}")  # pragma: no cover


def _post_checks(ctx: _Ctx) -> tuple[Check, ...]:
    """What is watched after promotion: the last stage's checks, but no sequential one (no
    stable is left to compare with); criteria are measured over ``criteria_window``."""
    window = ctx.plan.spec.promotion.criteria_window
    out = []
    for check in ctx.plan.stages[-1].checks:
        if check.condition.sequential:
            continue
        if (window is not None and not check.trigger and check.condition.over is None
                and check.metric.window is None):
            check = dataclasses.replace(
                check, condition=dataclasses.replace(check.condition, over=window))
        out.append(check)
    return tuple(out)


def _post_criteria(ctx: _Ctx, checks: dict[str, Check], results: list[CheckResult],
                   window_open: bool) -> None:
    """After promotion the criteria keep being judged: a failure alerts (and its recovery
    too); while the rollback window is open, a failing mandatory criterion does what
    ``promotion.on_criteria_failure`` says."""
    s = ctx.s
    action = ctx.plan.spec.promotion.on_criteria_failure
    for result in results:
        check = checks[result.check_id]
        if check.trigger:
            continue
        ts = s.triggers.setdefault(check.id, TriggerState())
        if result.verdict is Verdict.PASS and ts.firing:
            ts.firing, ts.fired_at, ts.acknowledged = False, None, False
            ctx.emit("criterion.recovered", "info", f"After promotion: {check.name} met again",
                     result.reason, check=check.id)
            continue
        if result.verdict is not Verdict.FAIL:
            continue
        acts = check.role is CheckRole.MANDATORY and window_open and action != "alert"
        if not ts.firing:
            ts.firing, ts.fired_at = True, ctx.now
            then = {"pause": "pausing: decide novactl rollback or novactl resume",
                    "rollback": "rolling back"}.get(action, "") if acts else ""
            severity = "critical" if check.role is CheckRole.MANDATORY else "warning"
            ctx.emit("criterion.failed", severity, f"After promotion: {check.name} not met",
                     result.reason + (f"; {then}" if then else ""), check=check.id)
        if not acts or ts.acknowledged:
            continue
        reason = f"after promotion, criterion {check.name} not met: {result.reason}"
        if action == "rollback":
            _start_rollback(ctx, reason, "novactl", trigger=check.id, detected_at=ctx.now)
            return
        if s.paused is None:
            _pause(ctx, reason + "; the old version is kept until you decide: novactl "
                   "rollback or novactl resume", "novactl", "criterion")


def _finish_promotion(ctx: _Ctx) -> None:
    s, now = ctx.s, ctx.now
    s.phase = Phase.PROMOTED
    s.step = "monitor"
    s.step_since = now
    s.promoted_at = now
    s.last_eval_at = None
    s.triggers = {}
    s.undecided = {}
    s.post_stage = StageRecord("post-promotion", len(ctx.plan.stages), 100.0, now,
                               bake_started_at=now)
    promo = ctx.plan.spec.promotion
    ctx.emit("promoted", "info", f"{s.canary_version} is now stable",
             f"{s.stable_version} retires in {format_duration(promo.retire_after)}; rollback "
             f"window {format_duration(promo.rollback_window)}; monitoring "
             f"{format_duration(promo.monitor_for)}")


def _step_promoted(ctx: _Ctx) -> Action | Wait | None:
    s, plan, now = ctx.s, ctx.plan, ctx.now
    promo = plan.spec.promotion
    promoted_at = s.promoted_at or now
    retire_at = promoted_at + promo.retire_after
    end_at = promoted_at + promo.monitor_for
    stage = plan.stages[-1]
    interval = plan.interval(stage)
    last = s.last_eval_at or promoted_at
    due = last + interval
    if now >= due and stage.checks:
        window = _eval_window(now, last, interval)
        assert s.post_stage is not None
        started = s.post_stage.bake_started_at or promoted_at
        return Action(ActionKind.OBSERVE, "post", "post-promotion monitoring",
                      requests=_requests(ctx, s.post_stage, _post_checks(ctx), window, now,
                                         started),
                      window=window, at=now)
    next_eval = due if stage.checks else end_at
    if s.paused is not None:
        return Wait(next_eval if next_eval > now else None, f"paused: {s.paused.reason}",
                    human=True)
    if s.retired_at is None and now >= retire_at:
        held = _retrying(ctx, 0.0, plan.spec.workload.ready_poll, give_up=False)
        if held is not False:
            return held
        return Action(ActionKind.RETIRE, "post", f"grace period over: retire {s.stable_version}",
                      version=s.stable_version)
    if now >= end_at and s.retired_at is not None:
        s.phase = Phase.COMPLETED
        s.completed_at = now
        s.step = ""
        if s.post_stage is not None:
            s.post_stage.left_at = now
        ctx.emit("rollout.completed", "info", f"Rollout {plan.name} completed",
                 f"{s.canary_version} is stable; the rollback window is closed")
        return Wait(None, _terminal_text(s))
    future = [t for t in (next_eval, end_at, retire_at if s.retired_at is None else end_at)
              if t > now]
    wake = min(future) if future else now + interval
    window_left = promoted_at + promo.rollback_window - now
    text = f"promoted; monitoring for {format_duration(max(0.0, end_at - now))} more"
    if window_left > 0:
        text += f"; rollback window open {format_duration(window_left)} more"
    if s.retired_at is None:
        text += f"; {s.stable_version} retires in {format_duration(max(0.0, retire_at - now))}"
    return Wait(wake, text)


# --------------------------------------------------------------------------- rollback


def _start_rollback(ctx: _Ctx, reason: str, by: str, trigger: str | None = None,
                    detected_at: float | None = None) -> None:
    s, now = ctx.s, ctx.now
    stage = s.stages[-1].name if s.phase is Phase.STAGE and s.stages else None
    if s.phase is Phase.STAGE and s.stages:
        s.stages[-1].outcome = "rolled_back"
        s.stages[-1].left_at = now
    s.rollback = RollbackRecord(
        reason=reason, by=by, requested_at=now, trigger=trigger,
        detected_at=detected_at if detected_at is not None else now,
        from_phase=s.phase.value, stage=stage,
    )
    s.phase = Phase.ROLLING_BACK
    s.paused = None
    stable = s.deployed.get("stable")
    first = "redeploy" if stable is not None and stable.version != s.stable_version else "shift"
    _next_step(ctx, first)
    ctx.emit("rollback.started", "critical", f"Rolling back {ctx.plan.name} to {s.stable_version}",
             reason, actor=by, stage=stage, trigger=trigger)


def _step_rollback(ctx: _Ctx) -> Action | Wait | None:
    s, plan = ctx.s, ctx.plan
    rb = s.rollback
    assert rb is not None
    workload = plan.spec.workload
    if s.step_failures and s.last_poll_at is not None and ctx.now - s.last_poll_at < ROLLBACK_RETRY:
        return Wait(s.last_poll_at + ROLLBACK_RETRY, f"rollback: retrying {s.step} after: "
                    f"{s.step_error}", failing=True)
    if s.step == "redeploy":
        stable = s.deployed.get("stable")
        replicas = (stable.replicas if stable else None) or plan.spec.promotion.replicas
        return Action(ActionKind.DEPLOY, "rollback", f"put {s.stable_version} back as stable",
                      role="stable", version=s.stable_version, replicas=replicas)
    if s.step == "ready":
        return _poll_ready(ctx, "stable", "rollback", workload.ready_timeout, workload.ready_poll)
    if s.step == "shift":
        return Action(ActionKind.SET_WEIGHT, "rollback", "all traffic back to stable", weight=0.0)
    if s.step == "verify":
        return Action(ActionKind.VERIFY_WEIGHT, "rollback", "confirm no traffic reaches the canary",
                      weight=0.0)
    if s.step == "scale_down":
        return Action(ActionKind.SCALE, "rollback", "scale the canary down", role="canary",
                      replicas=0)
    raise AssertionError(f"unknown rollback step {s.step!r}")  # pragma: no cover


def _finish_rollback(ctx: _Ctx, note: str = "") -> None:
    s, now = ctx.s, ctx.now
    rb = s.rollback
    assert rb is not None
    again = rb.completed_at is not None
    rb.completed_at = rb.completed_at or now
    s.phase = Phase.ROLLED_BACK
    s.step = ""
    s.completed_at = now
    took = rb.time_to_restore
    text = f"{rb.reason}; traffic back on {s.stable_version}"
    if took is not None:
        text += f" {format_duration(took)} after detection"
    if note:
        text += f"; {note}"
    if again:
        ctx.emit("rollback.reverified", "info", "Rollback re-verified",
                 f"router reports {s.weight_actual if s.weight_actual is not None else '?'}% "
                 "canary", notify=False)
        return
    ctx.emit("rollback.completed", "critical", f"Rolled back to {s.stable_version}", text,
             stage=rb.stage, time_to_restore=took)


# --------------------------------------------------------------------------- apply


def apply(plan: Plan, state: RolloutState, action: Action, outcome: Outcome,
          now: float, *, copy: bool = True) -> Decision:
    """Fold the outcome of ``action`` into the state.  Pure (see ``decide`` for ``copy``)."""
    ctx = _Ctx(plan, state.clone() if copy else state, now)
    s = ctx.s
    s.sequence += 1
    s.updated_at = now
    kind = action.kind
    if kind is ActionKind.OBSERVE:
        if action.purpose == "baseline":
            _apply_baseline(ctx, outcome.observations)
        elif s.phase is Phase.STAGE and s.step == "bake" and action.purpose == "stage":
            _apply_round(ctx, ctx.stage.checks, outcome.observations, action, post=False)
        elif s.phase is Phase.PROMOTED and action.purpose == "post":
            _apply_round(ctx, _post_checks(ctx), outcome.observations, action, post=True)
        return Decision(s, events=ctx.events, results=ctx.results)
    if not outcome.ok:
        _apply_failure(ctx, action, outcome)
        return Decision(s, events=ctx.events)
    if kind is ActionKind.DEPLOY:
        s.deployed[action.role or "canary"] = Deployed(action.version or "", action.replicas)
        _after_change(ctx, action)
    elif kind is ActionKind.SCALE:
        current = s.deployed.get(action.role or "canary")
        version = current.version if current else (
            s.canary_version if action.role == "canary" else s.stable_version)
        s.deployed[action.role or "canary"] = Deployed(version, action.replicas)
        _after_change(ctx, action)
    elif kind is ActionKind.READY:
        _apply_ready(ctx, action, outcome)
    elif kind is ActionKind.HEADER_ROUTE:
        s.header_route = "set" if outcome.supported else "unsupported"
        if not outcome.supported:
            ctx.emit("traffic.header_route_unsupported", "warning",
                     "The traffic shifter cannot route by header",
                     f"{action.header}: {action.header_value} will not reach the canary",
                     notify=False)
        _next_step(ctx, "shift")
    elif kind is ActionKind.SET_WEIGHT:
        s.weight_desired = action.weight
        _next_step(ctx, "verify")
        if s.verify_mismatches:
            s.last_poll_at = now  # give the router a poll's time before checking again
    elif kind is ActionKind.VERIFY_WEIGHT:
        _apply_verify(ctx, action, outcome)
    elif kind is ActionKind.PROMOTE:
        s.deployed["stable"] = Deployed(action.version or s.canary_version, action.replicas)
        _next_step(ctx, "ready")
    elif kind is ActionKind.RETIRE:
        s.retired_at = now
        s.step_failures = 0
        s.last_poll_at = None
        ctx.emit("version.retired", "info", f"{action.version} retired",
                 f"grace period of {format_duration(plan.spec.promotion.retire_after)} over")
    return Decision(s, events=ctx.events)


def _after_change(ctx: _Ctx, action: Action) -> None:
    s = ctx.s
    if s.phase is Phase.STAGE and s.step == "deploy":
        _step_stage_deploy_done(ctx)
    elif s.phase is Phase.ROLLING_BACK:
        if s.step == "redeploy":
            _next_step(ctx, "ready")
        elif s.step == "scale_down":
            _finish_rollback(ctx)
    elif s.phase is Phase.PROMOTING and s.step == "scale_down":
        _finish_promotion(ctx)


def _step_stage_deploy_done(ctx: _Ctx) -> None:
    s = ctx.s
    stage = ctx.stage
    current = s.deployed.get("canary")
    if current is not None and current.version == s.canary_version and (
        stage.replicas is None or current.replicas == stage.replicas
    ):
        _next_step(ctx, "ready")
    else:
        s.step_failures = 0  # deployed the version; scaling comes next pass


def _apply_ready(ctx: _Ctx, action: Action, outcome: Outcome) -> None:
    s = ctx.s
    s.last_poll_at = ctx.now
    s.last_message = outcome.message
    if not outcome.ready:
        return
    if s.phase is Phase.STAGE:
        header = ctx.plan.spec.traffic.debug_header
        _next_step(ctx, "header" if header is not None and not s.header_route else "shift")
    elif s.phase is Phase.PROMOTING or s.phase is Phase.ROLLING_BACK:
        _next_step(ctx, "shift")


def _apply_verify(ctx: _Ctx, action: Action, outcome: Outcome) -> None:
    s, plan, now = ctx.s, ctx.plan, ctx.now
    wanted = action.weight or 0.0
    tolerance = plan.spec.traffic.weight_tolerance
    actual = outcome.weight
    if actual is None:
        ctx.emit("traffic.unverified", "warning", "The traffic shifter cannot read the weight back",
                 f"assuming {wanted:g}% was applied", notify=False)
        ok = True
    else:
        ok = abs(actual - wanted) <= tolerance + 1e-9
    if ok:
        s.weight_actual = actual if actual is not None else s.weight_actual
        s.weight_verified_at = now
        s.verify_mismatches = 0
        if s.phase is Phase.STAGE:
            _next_step(ctx, "bake")
            rec = ctx.record
            rec.bake_started_at = now
        elif s.phase is Phase.PROMOTING:
            _next_step(ctx, "scale_down")
        elif s.phase is Phase.ROLLING_BACK:
            rb = s.rollback
            assert rb is not None
            rb.traffic_restored_at = rb.traffic_restored_at or now  # the first time counts
            ctx.emit("rollback.traffic_restored", "critical",
                     f"No traffic reaches {s.canary_version} any more",
                     f"{format_duration(rb.time_to_restore)} after detection", notify=False)
            _next_step(ctx, "scale_down")
        return
    s.weight_actual = actual
    message = f"router reports {actual:g}% canary, wanted {wanted:g}%"
    if s.phase is Phase.ROLLING_BACK:
        _rollback_failure(ctx, message)
        s.step = "shift"
        return
    s.verify_mismatches += 1
    s.step_error = message
    s.last_poll_at = now
    if s.verify_mismatches >= TRAFFIC_RETRIES:
        s.step = "shift"
        s.verify_mismatches = 0
        _pause(ctx, f"{message} after {TRAFFIC_RETRIES} checks; check the router, then "
               "novactl resume", "novactl", "traffic")
    elif s.verify_mismatches == TRAFFIC_RETRIES - 1:
        s.step = "shift"  # apply the weight once more before the last check


def _apply_failure(ctx: _Ctx, action: Action, outcome: Outcome) -> None:
    s = ctx.s
    error = outcome.error or "failed"
    if s.phase is Phase.ROLLING_BACK:
        if action.kind is ActionKind.SCALE and s.step == "scale_down":
            s.step_failures += 1
            s.step_error = error
            s.last_poll_at = ctx.now
            if s.step_failures >= SCALE_DOWN_ATTEMPTS:
                ctx.emit("rollback.scale_down_failed", "warning",
                         "Could not scale the canary down", error)
                _finish_rollback(ctx, f"canary not scaled down: {error}")
            return
        _rollback_failure(ctx, error)
        return
    if action.kind is ActionKind.RETIRE:
        s.step_failures += 1
        s.step_error = error
        s.last_poll_at = ctx.now
        if s.step_failures == 1:
            ctx.emit("version.retire_failed", "warning", f"Could not retire {action.version}",
                     error)
        return
    if action.kind is ActionKind.PROMOTE:
        # a promote that failed may have changed the stable half-way: a rollback must
        # put the old version back, not trust that it is still there
        s.deployed["stable"] = Deployed(UNKNOWN_VERSION, s.deployed.get("stable", Deployed(
            UNKNOWN_VERSION)).replicas)
    if action.kind is ActionKind.SCALE and s.phase is Phase.PROMOTING and s.step == "scale_down":
        ctx.emit("promotion.scale_down_failed", "warning", "Could not scale the canary down",
                 error)
        _finish_promotion(ctx)
        return
    if action.kind is ActionKind.READY:
        s.last_poll_at = ctx.now
        s.last_message = error
        return
    if action.kind is ActionKind.HEADER_ROUTE:
        s.header_route = "failed"
        ctx.emit("traffic.header_route_failed", "warning", "Could not set the debug header route",
                 error)
        _next_step(ctx, "shift")
        return
    s.step_failures += 1
    s.step_error = f"{action.describe()}: {error}"
    s.last_poll_at = ctx.now
    if s.step_failures == 1:
        ctx.emit("action.failed", "warning", f"{action.describe()} failed; retrying", error)


def _rollback_failure(ctx: _Ctx, error: str) -> None:
    s = ctx.s
    rb = s.rollback
    assert rb is not None
    rb.failures += 1
    rb.last_error = error
    s.step_failures += 1
    s.step_error = error
    s.last_poll_at = ctx.now
    if rb.last_alert_at is None or ctx.now - rb.last_alert_at >= ROLLBACK_ALERT_EVERY:
        rb.last_alert_at = ctx.now
        ctx.emit("rollback.failing", "critical", "Rollback is failing; retrying",
                 f"{s.step}: {error} (attempt {rb.failures})")


# --------------------------------------------------------------------------- evaluation


def _apply_baseline(ctx: _Ctx, observations: list[Observation]) -> None:
    s = ctx.s
    s.baseline_attempts += 1
    s.last_poll_at = ctx.now
    problems = []
    for obs in observations:
        if obs.usable:
            s.baseline[obs.metric] = RefValue(float(obs.value), obs.window,  # type: ignore[arg-type]
                                              obs.events, obs.trials, obs.at, obs.source)
        else:
            problems.append(f"{obs.metric}: {obs.reason or obs.status.value}")
    s.last_message = "; ".join(problems)


def _apply_round(ctx: _Ctx, checks: tuple[Check, ...], observations: list[Observation],
                 action: Action, *, post: bool) -> None:
    s, plan = ctx.s, ctx.plan
    rec = s.post_stage if post else ctx.record
    assert rec is not None
    # The round covers the window decided when the measurement was asked for, ending
    # then, however long the probes took to answer; the next round starts where it ended.
    now = action.at if action.at is not None else ctx.now
    start = rec.bake_started_at or now
    last = s.last_eval_at or start
    stage = plan.stages[-1] if post else ctx.stage
    eval_window = (action.window if action.window is not None
                   else _eval_window(now, last, plan.interval(stage)))
    by_key: dict[ObsKey, Observation] = {obs.key: obs for obs in observations}
    refs = _references(ctx)
    # the windows as _requests asked for them, before this round changes what they depend on
    windows = rounds.check_windows(checks, s, rec, refs, eval_window, now, start, stage=not post)
    rounds.pair_round(plan, rec, checks, windows, by_key, refs, now)
    s.last_eval_at = now
    rec.evaluations += 1
    results = [evaluate(check, by_key, refs, eval_window, now, window=windows[check.id],
                        paired=rec.paired.get(check.condition.metric)) for check in checks]
    checks_by_id = {c.id: c for c in checks}
    rounds.note_round(s, checks_by_id, results, now, eval_window)

    # aggregates: the rolling window and each metric's own fixed window
    for obs in observations:
        metric = plan.spec.metrics.get(obs.metric)
        natural = metric.window if metric and metric.window is not None else eval_window
        if round(obs.window) != round(natural):
            continue
        key = f"{obs.metric}@{obs.version or '*'}"
        rec.metrics.setdefault(key, Aggregate()).add(obs)
    for result in results:
        tally = rec.tallies.setdefault(result.check_id, CheckTally())
        if result.verdict is Verdict.PASS:
            tally.passed += 1
        elif result.verdict is Verdict.FAIL:
            tally.failed += 1
        else:
            tally.inconclusive += 1
        tally.last_verdict = result.verdict

    rollback_window_open = True
    if post:
        promo = plan.spec.promotion
        rollback_window_open = now < (s.promoted_at or now) + promo.rollback_window

    # triggers: rollback first, then pause signals, then alerts
    fired_rollback: tuple[Check, CheckResult, float] | None = None
    for i, result in enumerate(results):
        check = checks_by_id[result.check_id]
        if not check.trigger:
            continue
        ts = s.triggers.setdefault(check.id, TriggerState())
        was_firing = ts.firing
        if result.holds is True:
            if ts.pending_since is None:
                ts.pending_since = now - result.window
            hold = check.condition.for_ or 0.0
            if now - ts.pending_since >= hold - 1e-9:
                ts.firing = True
                ts.fired_at = ts.fired_at or now
            if check.condition.for_ is not None:
                result = results[i] = _noted(result, f"held since {_iso(ts.pending_since)} "
                                             f"({format_duration(now - ts.pending_since)})")
        elif result.holds is False:
            if was_firing and check.role is CheckRole.ALERT:
                ctx.emit("alert.resolved", "info", f"Resolved: {check.name}", result.reason,
                         check=check.id)
            ts.pending_since = None
            ts.firing = False
            ts.fired_at = None
            ts.acknowledged = False
        # inconclusive: keep the pending state as it is; no data never fires nor clears
        if not ts.firing:
            continue
        if check.role is CheckRole.ROLLBACK:
            if fired_rollback is None:
                fired_rollback = (check, result, ts.fired_at or now)
        elif check.role is CheckRole.PAUSE:
            if not ts.acknowledged and not was_firing:
                ctx.emit("signal.fired", "warning", f"Manual rollback signal: {check.name}",
                         f"{result.reason}; decide: novactl rollback or novactl resume",
                         check=check.id)
            if not ts.acknowledged and s.paused is None:
                _pause(ctx, f"manual rollback signal {check.name}: {result.reason}", "novactl",
                       "signal")
        elif check.role is CheckRole.ALERT and not was_firing:
            ctx.emit(f"alert.{check.severity or 'warning'}", check.severity or "warning",
                     f"Alert: {check.name}", result.reason, check=check.id)
    ctx.results = results
    s.last_results = {r.check_id: r.brief() for r in results}

    if fired_rollback is not None:
        check, result, _fired_at = fired_rollback
        if rollback_window_open:
            _start_rollback(ctx, f"trigger {check.name}: {result.reason}", "novactl",
                            trigger=check.id, detected_at=ctx.now)
            return
        if not s.triggers[check.id].acknowledged:
            s.triggers[check.id].acknowledged = True
            ctx.emit("alert.critical", "critical",
                     f"Rollback trigger after the window: {check.name}",
                     f"{result.reason}; the rollback window is closed: act by hand",
                     check=check.id)

    if post:
        _post_criteria(ctx, checks_by_id, results, rollback_window_open)
        return
    rounds.update_streak(s, rec, checks_by_id, results, now, start)
    for result in results:
        if result.role is CheckRole.DESIRABLE and result.verdict is Verdict.FAIL:
            tally = rec.tallies[result.check_id]
            if tally.failed == 1:
                ctx.emit("criterion.desirable_failed", "warning",
                         f"Desirable criterion not met: {result.name}", result.reason,
                         notify=True, check=result.check_id)
    _try_advance(ctx)


def _noted(result: CheckResult, note: str) -> CheckResult:
    return dataclasses.replace(result, note=f"{result.note}; {note}" if result.note else note)


def _handle_signals(ctx: _Ctx) -> bool:
    s = ctx.s
    for raised in s.signals:
        if raised.handled:
            continue
        raised.handled = True
        text = f"signal {raised.name} raised by {raised.by}" + (
            f": {raised.reason}" if raised.reason else "")
        if raised.action == "rollback":
            if s.phase is Phase.ROLLING_BACK:
                continue
            _start_rollback(ctx, text, raised.by, trigger=f"signal:{raised.name}")
            return True
        if raised.action == "pause":
            ctx.emit("signal.fired", "warning", f"Signal {raised.name}", text, actor=raised.by)
            if s.paused is None:
                _pause(ctx, text, raised.by, "signal")
        else:
            ctx.emit("signal.noted", "info", f"Signal {raised.name}", text, actor=raised.by)
    return False


def _pause(ctx: _Ctx, reason: str, by: str, kind: str) -> None:
    ctx.s.paused = Pause(reason, by, ctx.now, kind)
    ctx.emit("rollout.paused", "warning", f"Rollout {ctx.plan.name} paused", reason, actor=by,
             kind=kind)


# --------------------------------------------------------------------------- summaries


def _summaries(ctx: _Ctx) -> None:
    s, plan, now = ctx.s, ctx.plan, ctx.now
    if s.started_at is None or s.phase.terminal:
        return
    for i, summary in enumerate(plan.spec.notifications.summaries):
        due = _last_occurrence(now, summary.minute_of_day, summary.days)
        if due is None or due < s.started_at:
            continue
        sent = s.summaries_sent.get(str(i), s.started_at)
        if due <= sent:
            continue
        s.summaries_sent[str(i)] = due
        ctx.emit("summary", "info", summary.title, status_line(plan, s, now),
                 targets=summary.to, notify=True)


def _start_time(now: float, start: StageStart) -> float:
    """``now`` if it lies in a start window, else the beginning of the next one."""
    last = _last_occurrence(now, start.minute_of_day, start.days)
    if last is not None and now < last + start.window:
        return now
    return _next_occurrence(now, start.minute_of_day, start.days)


def _next_occurrence(after: float, minute: int, days: Sequence[str]) -> float:
    """The first moment at or after ``after`` that is ``minute`` past midnight UTC on one
    of ``days``."""
    names = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    first = math.floor(after / 86400)
    for ahead in range(8):
        day = first + ahead
        when = day * 86400 + minute * 60
        if when >= after and names[(day + 3) % 7] in days:
            return float(when)
    return after  # pragma: no cover - days is never empty


def _iso(epoch: float) -> str:
    from novactl._clock import iso

    return iso(epoch)


def _last_occurrence(now: float, minute: int, days: Sequence[str]) -> float | None:
    names = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    today = math.floor(now / 86400)
    for back in range(8):
        day = today - back
        when = day * 86400 + minute * 60
        if when <= now and names[(day + 3) % 7] in days:
            return float(when)
    return None


def status_line(plan: Plan, s: RolloutState, now: float) -> str:
    """One line saying where the rollout is; used by summaries and `status`."""
    if s.phase is Phase.PENDING:
        return "not started"
    if s.phase is Phase.BASELINE:
        return "measuring the pre-rollout baseline"
    if s.phase is Phase.STAGE and s.stages:
        stage = plan.stages[s.stage_index]
        text = (f"stage {s.stage_index + 1}/{len(plan.stages)} {stage.name} "
                f"({stage.weight:g}%), step {s.step}")
        if s.step == "bake":
            ctx = _Ctx(plan, s, now)
            text = _bake_text(ctx)
        counts: dict[str, int] = {}
        for result in s.last_results.values():
            counts[result["verdict"]] = counts.get(result["verdict"], 0) + 1
        if counts:
            text += "; checks " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        if s.paused:
            text += f"; PAUSED: {s.paused.reason}"
        return text
    if s.phase is Phase.PROMOTING:
        return f"promoting {s.canary_version}: step {s.step}"
    if s.phase is Phase.PROMOTED:
        return f"promoted {format_duration(now - (s.promoted_at or now))} ago"
    if s.phase is Phase.ROLLING_BACK:
        rb = s.rollback
        return f"rolling back ({s.step}): {rb.reason if rb else ''}"
    return _terminal_text(s)


# --------------------------------------------------------------------------- commands


@dataclass
class CommandResult:
    state: RolloutState
    events: list[Event]


def _command(plan: Plan, state: RolloutState, now: float) -> _Ctx:
    return _Ctx(plan, state.clone(), now)


def request_rollback(plan: Plan, state: RolloutState, reason: str, by: str, now: float,
                     *, force: bool = False) -> CommandResult:
    """Ask for a rollback; the next reconcile pass carries it out (traffic first)."""
    ctx = _command(plan, state, now)
    s = ctx.s
    if s.phase is Phase.COMPLETED and not force:
        raise InputError(
            f"rollout completed {format_duration(now - (s.completed_at or now))} ago and its "
            "rollback window is closed; use --force to roll back anyway"
        )
    if s.phase is Phase.PROMOTED and not force:
        promo = plan.spec.promotion
        closes = (s.promoted_at or now) + promo.rollback_window
        if now > closes:
            raise InputError("the rollback window closed "
                             f"{format_duration(now - closes)} ago; use --force to roll back "
                             "anyway")
    if s.phase is Phase.COMPLETED:
        s.phase = Phase.PROMOTED  # forced: let the rollback machinery run
    if s.phase is Phase.ROLLED_BACK:
        ctx.emit("rollback.requested", "info", "Rollback requested again",
                 f"{reason} (already rolled back: traffic is re-verified)", actor=by)
        s.abort = AbortRequest(reason, by, now)
        return CommandResult(s, ctx.events)
    if s.phase is Phase.ROLLING_BACK:
        ctx.emit("rollback.requested", "info", "Rollback requested (already in progress)",
                 reason, actor=by)
        return CommandResult(s, ctx.events)
    s.abort = AbortRequest(reason, by, now)
    ctx.emit("rollback.requested", "critical", "Rollback requested", reason, actor=by)
    return CommandResult(s, ctx.events)


def approve(plan: Plan, state: RolloutState, stage_name: str, role: str, by: str, now: float,
            *, decision: str = "go", comment: str = "") -> CommandResult:
    ctx = _command(plan, state, now)
    s = ctx.s
    if s.phase.terminal:
        raise InputError(f"the rollout has ended ({s.phase.value}); nothing to approve")
    if stage_name == PROMOTION:
        spec = plan.spec.promotion.approval
        passed = s.phase in (Phase.PROMOTED,)
    else:
        try:
            index = plan.stage_index(stage_name)
        except KeyError:
            names = ", ".join(st.name for st in plan.stages)
            raise InputError(f"unknown stage {stage_name!r} (stages: {names}, promotion)") from None
        spec = plan.stages[index].approval
        passed = any(r.name == stage_name and r.outcome == "passed" for r in s.stages) or (
            s.phase in (Phase.PROMOTING, Phase.PROMOTED))
    if spec is None:
        raise InputError(f"{stage_name} needs no approval in this plan")
    if role not in spec.roles:
        raise InputError(f"role {role!r} is not asked to approve {stage_name} "
                         f"(required: {', '.join(spec.roles)})")
    allowed = plan.spec.approvers.get(role)
    if allowed and by not in allowed:
        raise InputError(f"{by!r} may not approve as {role} (approvers: {', '.join(allowed)})")
    if passed:
        raise InputError(f"{stage_name} has already passed; approvals are for what lies ahead")
    if decision not in ("go", "no-go"):
        raise InputError("decision must be go or no-go")
    s.approvals.append(Approval(stage_name, role, by, now, decision, comment))
    if decision == "go":
        ctx.emit("approval.recorded", "info", f"GO for {stage_name} from {role}",
                 f"{by}{': ' + comment if comment else ''}", actor=by, stage=stage_name,
                 role=role)
    else:
        ctx.emit("approval.rejected", "warning", f"NO-GO for {stage_name} from {role}",
                 f"{by}{': ' + comment if comment else ''}", actor=by, stage=stage_name,
                 role=role)
        if s.paused is None:
            s.paused = Pause(f"NO-GO for {stage_name} from {role} ({by})"
                             + (f": {comment}" if comment else ""), by, now, "no-go")
    return CommandResult(s, ctx.events)


def pause(plan: Plan, state: RolloutState, reason: str, by: str, now: float) -> CommandResult:
    ctx = _command(plan, state, now)
    if ctx.s.phase.terminal or ctx.s.phase is Phase.ROLLING_BACK:
        raise InputError(f"cannot pause: the rollout is {ctx.s.phase.value}")
    if ctx.s.paused is not None:
        raise InputError(f"already paused by {ctx.s.paused.by}: {ctx.s.paused.reason}")
    _pause(ctx, reason, by, "manual")
    return CommandResult(ctx.s, ctx.events)


def resume(plan: Plan, state: RolloutState, by: str, now: float, note: str = ""
           ) -> CommandResult:
    ctx = _command(plan, state, now)
    s = ctx.s
    if s.paused is None:
        raise InputError("the rollout is not paused")
    was = s.paused
    s.paused = None
    for ts in s.triggers.values():
        if ts.firing:
            ts.acknowledged = True  # firing signals do not pause again until they clear
    if was.kind == "baseline":
        s.baseline_started_at = now
    ctx.emit("rollout.resumed", "info", f"Rollout {plan.name} resumed",
             f"{by}{': ' + note if note else ''} (was paused: {was.reason})", actor=by)
    return CommandResult(s, ctx.events)


def signal(plan: Plan, state: RolloutState, name: str, by: str, now: float, note: str = ""
           ) -> CommandResult:
    ctx = _command(plan, state, now)
    spec = plan.spec.signals.get(name)
    if spec is None:
        known = ", ".join(sorted(plan.spec.signals)) or "none defined"
        raise InputError(f"unknown signal {name!r} (plan signals: {known})")
    if ctx.s.phase.terminal:
        raise InputError(f"the rollout has ended ({ctx.s.phase.value})")
    ctx.s.signals.append(RaisedSignal(name, spec.action, by, now, note))
    ctx.emit("signal.raised", "warning" if spec.action != "notify" else "info",
             f"Signal {name} raised ({spec.action})", note, actor=by, signal=name,
             notify=False)
    return CommandResult(ctx.s, ctx.events)


def jump_to_stage(plan: Plan, state: RolloutState, index: int, by: str, now: float,
                  *, force: bool = False) -> CommandResult:
    """Move the rollout to stage ``index`` (the `deploy` command).  Forward jumps past
    stages whose gates have not passed need ``force``."""
    ctx = _command(plan, state, now)
    s = ctx.s
    if s.phase.terminal or s.phase in (Phase.ROLLING_BACK, Phase.PROMOTING, Phase.PROMOTED):
        raise InputError(f"cannot deploy a stage: the rollout is {s.phase.value}"
                         + ("; start a new one with: novactl run PLAN --restart"
                            if s.phase.terminal else ""))
    target = plan.stages[index]
    current = s.stage_index if s.phase is Phase.STAGE else -1
    if index == current:
        if s.step == "scheduled":  # `deploy` means now, not at the scheduled start
            _begin_stage(ctx, index)
            return CommandResult(s, ctx.events)
        ctx.emit("stage.reapplied", "info", f"Stage {target.name} re-applied", actor=by,
                 notify=False)
        _next_step(ctx, "deploy")
        return CommandResult(s, ctx.events)
    passed_waiting = (index == current + 1 and _gates_held(ctx) and s.paused is None
                      and not _missing_approvals(ctx, ctx.stage.name,
                                                 ctx.stage.approval.roles
                                                 if ctx.stage.approval else []))
    if passed_waiting:  # its gates and GOs are there; it only waited for the next start
        _advance(ctx, start_now=True)
        return CommandResult(s, ctx.events)
    if index > current + 1 or (index == current + 1 and s.phase is Phase.STAGE):
        if not force:
            skipping = plan.stages[max(current, 0):index]
            names = ", ".join(st.name for st in skipping) or plan.stages[0].name
            raise InputError(f"moving to {target.name} skips the gates of {names}; "
                             "pass --yes to do it anyway (recorded in the audit log)")
        ctx.emit("stage.gates_skipped", "warning", f"Gates skipped by {by}",
                 f"jumping to stage {target.name}", actor=by)
    if s.started_at is None:
        s.started_at = now
    if s.phase is Phase.STAGE and s.stages:
        rec = s.stages[-1]
        rec.left_at = now
        rec.outcome = "skipped" if index > current else "stepped-back"
        _record_refs(ctx, rec)  # what it showed so far is still what it showed
    _enter_stage(ctx, index, now_or_schedule=True)  # `deploy` means now
    return CommandResult(s, ctx.events)


def request_promotion(plan: Plan, state: RolloutState, by: str, now: float,
                      *, force: bool = False) -> CommandResult:
    ctx = _command(plan, state, now)
    s = ctx.s
    if s.phase in (Phase.PROMOTING, Phase.PROMOTED, Phase.COMPLETED):
        raise InputError(f"already {s.phase.value}")
    if s.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK):
        raise InputError(f"the rollout is {s.phase.value}; start again with --restart")
    last = len(plan.stages) - 1
    at_last = s.phase is Phase.STAGE and s.stage_index == last and s.step == "bake"
    if not force:
        if not at_last:
            raise InputError("promotion skips the remaining stages' gates; pass --yes to "
                             "promote now anyway (recorded in the audit log)")
        ready = _try_advance(ctx)  # ctx holds a copy: trying leaves the input as it was
        if ready is not True:
            why = ready.reason if isinstance(ready, Wait) else _bake_text(ctx)
            raise InputError(f"the last stage has not passed its gates ({why}); pass --yes to "
                             "promote anyway")
        return CommandResult(ctx.s, ctx.events)
    ctx.emit("promotion.forced", "warning", f"Promotion forced by {by}", actor=by)
    if s.phase is Phase.STAGE and s.stages:
        s.stages[-1].left_at = now
        s.stages[-1].outcome = "promoted-early"
    if s.started_at is None:
        s.started_at = now
    _start_promotion(ctx)
    return CommandResult(s, ctx.events)
