"""The durable rollout state.  Plain dataclasses, serialised to JSON by the store."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from novactl.core._serde import from_jsonable, to_jsonable
from novactl.core.observations import Observation

__all__ = [
    "SCHEMA_VERSION",
    "AbortRequest",
    "Aggregate",
    "Approval",
    "CheckTally",
    "Deployed",
    "Paired",
    "Pause",
    "Phase",
    "RaisedSignal",
    "RefValue",
    "RollbackRecord",
    "RolloutState",
    "StageRecord",
    "TriggerState",
]

SCHEMA_VERSION = 1


class Phase(StrEnum):
    PENDING = "pending"  # nothing done yet
    BASELINE = "baseline"  # measuring the pre-rollout baseline
    STAGE = "stage"  # inside a stage (see RolloutState.step)
    PROMOTING = "promoting"  # making the canary the new stable
    PROMOTED = "promoted"  # promoted; grace period, rollback window, monitoring
    COMPLETED = "completed"  # done: monitoring over, rollback window closed
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"

    @property
    def terminal(self) -> bool:
        return self in (Phase.COMPLETED, Phase.ROLLED_BACK)


@dataclass
class Deployed:
    version: str
    replicas: int | None = None


@dataclass
class RefValue:
    """A recorded reference (baseline or stage aggregate) for relative checks."""

    value: float
    window: float = 0.0
    events: float | None = None
    trials: float | None = None
    at: float = 0.0
    source: str = ""


@dataclass
class Aggregate:
    """What one metric showed for one version during one stage."""

    n: int = 0  # usable observations
    no_data: int = 0
    errors: int = 0
    weighted_sum: float = 0.0  # Σ value × window (time-weighted mean)
    weight: float = 0.0  # Σ window
    min: float | None = None
    max: float | None = None
    last: float | None = None
    events: float = 0.0
    trials: float = 0.0
    samples: float = 0.0

    def add(self, obs: Observation) -> None:
        if not obs.usable:
            if obs.status.value == "error":
                self.errors += 1
            else:
                self.no_data += 1
            return
        value = float(obs.value)  # type: ignore[arg-type]
        span = obs.window if obs.window > 0 else 1.0
        self.n += 1
        self.weighted_sum += value * span
        self.weight += span
        self.min = value if self.min is None else min(self.min, value)
        self.max = value if self.max is None else max(self.max, value)
        self.last = value
        if obs.events is not None and obs.trials is not None:
            self.events += obs.events
            self.trials += obs.trials
        if obs.samples is not None:
            self.samples += obs.samples

    def value(self, kind: str) -> float | None:
        """The stage's value: pooled for ratios, time-weighted mean otherwise."""
        if kind == "ratio" and self.trials > 0:
            return self.events / self.trials
        if self.weight <= 0:
            return None
        return self.weighted_sum / self.weight

    def sample_size(self) -> float | None:
        if self.trials:
            return self.trials
        return self.samples or None


@dataclass
class Paired:
    """A sequential check's metric in one stage: canary and stable counts added up round
    by round, only over windows both versions answered (an unpaired round is measured
    again, with the next one, over the longer window)."""

    since: float | None = None  # start of the first window added
    until: float | None = None  # end of the last window added
    rounds: int = 0
    canary_events: float = 0.0  # ratio metrics: errors and requests
    canary_trials: float = 0.0
    stable_events: float = 0.0
    stable_trials: float = 0.0
    # histogram metrics: cumulative counts at each finite bound, and the total
    bounds: list[float] = field(default_factory=list)
    canary_counts: list[float] = field(default_factory=list)
    stable_counts: list[float] = field(default_factory=list)
    # the stable's first paired round, kept apart: it picks the bounds a latency check
    # compares at (and what a margin means there) before the counts it tests are seen
    calibration_bounds: list[float] = field(default_factory=list)
    calibration_counts: list[float] = field(default_factory=list)


@dataclass
class CheckTally:
    passed: int = 0
    failed: int = 0
    inconclusive: int = 0
    last_verdict: str = ""


@dataclass
class TriggerState:
    pending_since: float | None = None  # start of the evidence the condition held on
    firing: bool = False
    fired_at: float | None = None
    acknowledged: bool = False  # a human resumed past this signal; re-arms when it clears


@dataclass
class Approval:
    stage: str  # stage name, or "promotion"
    role: str
    by: str
    at: float
    decision: str = "go"  # go | no-go
    comment: str = ""


@dataclass
class Pause:
    reason: str
    by: str
    at: float
    kind: str = "manual"  # manual | signal | escalation | no-go | baseline | traffic


@dataclass
class RaisedSignal:
    name: str
    action: str
    by: str
    at: float
    reason: str = ""
    handled: bool = False


@dataclass
class AbortRequest:
    reason: str
    by: str
    at: float
    trigger: str | None = None  # the check id, for automatic rollbacks
    detected_at: float | None = None


@dataclass
class RollbackRecord:
    reason: str
    by: str
    requested_at: float
    trigger: str | None = None
    detected_at: float | None = None
    from_phase: str = ""
    stage: str | None = None
    traffic_restored_at: float | None = None
    completed_at: float | None = None
    failures: int = 0
    last_error: str = ""
    last_alert_at: float | None = None

    @property
    def time_to_restore(self) -> float | None:
        start = self.detected_at if self.detected_at is not None else self.requested_at
        if self.traffic_restored_at is None:
            return None
        return max(0.0, self.traffic_restored_at - start)


@dataclass
class StageRecord:
    name: str
    index: int
    weight: float
    entered_at: float
    bake_started_at: float | None = None
    left_at: float | None = None
    outcome: str = ""  # passed | rolled_back | skipped | promoted-early
    evaluations: int = 0
    longest_streak: float = 0.0
    escalated: bool = False
    approval_requested: bool = False
    metrics: dict[str, Aggregate] = field(default_factory=dict)  # "metric@version"
    tallies: dict[str, CheckTally] = field(default_factory=dict)  # check id
    refs: dict[str, RefValue] = field(default_factory=dict)  # what later stages compare with
    paired: dict[str, Paired] = field(default_factory=dict)  # sequential checks, by metric


@dataclass
class RolloutState:
    rollout_id: str
    plan_name: str
    plan_digest: str = ""
    schema: int = SCHEMA_VERSION
    phase: Phase = Phase.PENDING
    step: str = ""
    step_since: float | None = None
    stage_index: int = 0
    created_at: float = 0.0
    started_at: float | None = None
    updated_at: float = 0.0
    stable_version: str = ""
    canary_version: str = ""
    deployed: dict[str, Deployed] = field(default_factory=dict)  # role → what runs
    weight_desired: float | None = None
    weight_actual: float | None = None
    weight_verified_at: float | None = None
    header_route: str = ""  # "" unknown/not set, "set", "unsupported"
    step_failures: int = 0
    step_error: str = ""
    verify_mismatches: int = 0  # weight read back differently; survives re-shifting
    last_poll_at: float | None = None
    last_message: str = ""
    last_eval_at: float | None = None
    streak_since: float | None = None
    streak_broken_by: str = ""
    triggers: dict[str, TriggerState] = field(default_factory=dict)
    # check id → start of the time it has not been decided over (too few samples, no
    # data): its next window reaches back there, so short rounds are pooled
    undecided: dict[str, float] = field(default_factory=dict)
    # mandatory criterion id → start of the evidence it has passed on without a break
    passing: dict[str, float] = field(default_factory=dict)
    # criterion id → end of the round it last failed in: its window starts there again
    criteria_since: dict[str, float] = field(default_factory=dict)
    last_results: dict[str, dict[str, Any]] = field(default_factory=dict)
    stages: list[StageRecord] = field(default_factory=list)
    baseline: dict[str, RefValue] = field(default_factory=dict)
    baseline_started_at: float | None = None
    baseline_attempts: int = 0
    approvals: list[Approval] = field(default_factory=list)
    paused: Pause | None = None
    signals: list[RaisedSignal] = field(default_factory=list)
    abort: AbortRequest | None = None
    rollback: RollbackRecord | None = None
    promoted_at: float | None = None
    retired_at: float | None = None
    completed_at: float | None = None
    post_stage: StageRecord | None = None  # what was seen after promotion
    summaries_sent: dict[str, float] = field(default_factory=dict)
    pending: dict[str, Any] | None = None  # the action whose intent is recorded
    last_wait: dict[str, Any] | None = None  # what the last pass waited for (reason, human)
    outbox: list[dict[str, Any]] = field(default_factory=list)  # undelivered notifications
    adapter_state: dict[str, Any] = field(default_factory=dict)
    sequence: int = 0  # actions and events so far; ids are built from it

    # -- convenience
    @property
    def current_stage(self) -> StageRecord | None:
        if self.phase is Phase.STAGE and self.stages:
            return self.stages[-1]
        return None

    def clone(self) -> RolloutState:
        return pickle.loads(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL))

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolloutState:
        return from_jsonable(cls, data)

    def latest_decision(self, stage: str, role: str) -> Approval | None:
        found = None
        for approval in self.approvals:
            if approval.stage == stage and approval.role == role:
                found = approval
        return found

