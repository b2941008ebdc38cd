"""The pure state machine, driven without any I/O: plan + state + outcomes + clock."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from novactl._errors import InputError
from novactl.core import machine
from novactl.core.actions import Action, ActionKind, Event, Outcome, Wait
from novactl.core.observations import Observation, ObsStatus
from novactl.core.state import Phase, RolloutState
from novactl.plan import load_plan_text

PLAN = """\
apiVersion: novactl.dev/v1
kind: RolloutPlan
metadata: {name: machine}
spec:
  versions: {stable: v1, canary: v2}
  traffic: {type: fake, debug_header: {name: X-Canary-Debug, value: "1"}}
  workload: {type: fake, ready_timeout: 10m, ready_poll: 10s}
  probes: {m: {type: fake}}
  metrics:
    error_rate: {probe: m, kind: ratio, query: {numerator: a, denominator: b}}
    complaints: {probe: m, kind: count, scope: global, query: c}
  defaults: {interval: 1m}
  every_stage:
    rollback:
      - {name: error-rate-threshold, check: error_rate > 1% for 5m}
    pause:
      - {name: complaints, check: complaints > 10}
    alerts:
      - {name: errors high, check: error_rate > 0.5%, severity: critical}
  stages:
    - name: one
      weight: 10
      replicas: 1
      duration: 1h
      criteria: {mandatory: [error_rate < 0.1%]}
      approval: {roles: [sre]}
    - name: two
      weight: 50
      replicas: 3
      duration: 1h..2h
      sustain: 1h
      criteria: {mandatory: [error_rate < 0.1%]}
  promotion: {replicas: 5, retire_after: 1h, rollback_window: 2h, monitor: 3h,
              criteria_window: 30m}
  approvers: {sre: [alice, bob]}
  signals:
    security-incident: {action: rollback}
    flag-off: {action: notify}
  notifications:
    targets: {chat: {type: fake}}
    summaries: [{at: "09:00", to: [chat]}]
"""

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a Thursday


@pytest.fixture(scope="module")
def plan():
    return load_plan_text(PLAN, "machine.yaml")


@dataclass
class World:
    """What the outside world answers; tests change it between steps.

    The error rate is a timeline: a change made between two steps holds from the time of
    the earlier one, and a window's error rate is the time-weighted mean over it (1,000
    requests a minute), as Prometheus' increase() over a window would count it."""

    error_rate: float | None = 0.0002  # None: the probe returns no data
    probe_down: bool = False
    now: float = T0  # the driver's clock as of its last step
    timeline: list[tuple[float, float | None]] = field(default_factory=list)

    def __setattr__(self, name: str, value: object) -> None:
        if name == "error_rate" and "timeline" in self.__dict__:
            self.timeline.append((self.now, value))  # type: ignore[arg-type]
        super().__setattr__(name, value)

    def __post_init__(self) -> None:
        self.timeline.append((-float("inf"), self.error_rate))

    def mean_error_rate(self, start: float, end: float) -> float | None:
        points = self.timeline
        total = weight = 0.0
        for i, (since, rate) in enumerate(points):
            until = points[i + 1][0] if i + 1 < len(points) else float("inf")
            overlap = min(end, until) - max(start, since)
            if overlap > 0 and rate is not None:
                total += rate * overlap
                weight += overlap
        return total / weight if weight > 0 else None
    complaints: float = 0.0
    weight: float = 0.0
    stuck_weight: float | None = None
    ready: bool = True
    fail: set[str] = field(default_factory=set)
    log: list[Action] = field(default_factory=list)

    def outcome(self, action: Action, now: float) -> Outcome:
        self.log.append(action)
        if action.kind.value in self.fail:
            return Outcome(ok=False, error=f"{action.kind.value} refused")
        if action.kind is ActionKind.SET_WEIGHT:
            self.weight = action.weight or 0.0
        if action.kind is ActionKind.VERIFY_WEIGHT:
            return Outcome(ok=True, weight=self.stuck_weight if self.stuck_weight is not None
                           else self.weight)
        if action.kind is ActionKind.READY:
            return Outcome(ok=True, ready=self.ready, message="ok" if self.ready else "0/1")
        if action.kind is ActionKind.OBSERVE:
            return Outcome(ok=True, observations=[self.observe(r, now) for r in action.requests])
        return Outcome(ok=True)

    def observe(self, request, now: float) -> Observation:
        if self.probe_down:
            return Observation.error(request.metric, request.version, request.window, now,
                                     "connection refused")
        if request.metric == "complaints":
            return Observation(request.metric, None, ObsStatus.OK, value=self.complaints,
                                window=request.window, at=now)
        rate = self.mean_error_rate(now - request.window, now)
        if self.error_rate is None or rate is None:
            return Observation.no_data(request.metric, request.version, request.window, now,
                                       "no values found")
        trials = 1000.0 * request.window / 60
        return Observation(request.metric, request.version, ObsStatus.OK,
                           value=rate, events=rate * trials, trials=trials,
                           window=request.window, at=now)


@dataclass
class Driver:
    plan: object
    world: World = field(default_factory=World)
    now: float = T0
    state: RolloutState | None = None
    events: list[Event] = field(default_factory=list)
    wait: Wait | None = None

    def __post_init__(self) -> None:
        self.state = machine.new_state(self.plan, "r1", self.now)

    def step(self, max_actions: int = 100) -> Wait:
        """One reconcile pass: act until the machine waits."""
        for _ in range(max_actions):
            decision = machine.decide(self.plan, self.state, self.now)
            self.state = decision.state
            self.events += decision.events
            if decision.action is None:
                self.wait = decision.wait
                self.world.now = self.now  # changes made from here on hold from now
                return decision.wait
            outcome = self.world.outcome(decision.action, self.now)
            applied = machine.apply(self.plan, self.state, decision.action, outcome, self.now)
            self.state = applied.state
            self.events += applied.events
        raise AssertionError("too many actions in one pass")

    def run_until(self, done: Callable[[Driver], bool], limit: float = 10 * 86400) -> None:
        end = self.now + limit
        while not done(self):
            wait = self.step()
            if self.now >= end:
                raise AssertionError(f"not done after {limit}s: {wait}")
            self.now = wait.until if wait.until is not None and wait.until > self.now \
                else self.now + 60

    def command(self, fn, *args, **kwargs) -> None:
        result = fn(self.plan, self.state, *args, now=self.now, **kwargs)
        self.state = result.state
        self.events += result.events

    def names(self) -> list[str]:
        return [e.name for e in self.events]


def at_bake(d: Driver, stage: int = 0) -> bool:
    s = d.state
    return s.phase is Phase.STAGE and s.stage_index == stage and s.step == "bake"


def test_stage_entry_deploys_readies_routes_shifts_and_verifies(plan) -> None:
    d = Driver(plan)
    d.step()
    kinds = [a.describe() for a in d.world.log]
    assert kinds == [
        "deploy canary v2 × 1",
        "check canary is ready",
        "route X-Canary-Debug: 1 to canary",
        "set canary weight 10%",
        "verify canary weight 10%",
    ]
    assert at_bake(d) and d.state.weight_actual == 10.0
    assert d.wait is not None and d.wait.until == T0 + 60


def test_decide_and_apply_do_not_touch_their_input(plan) -> None:
    d = Driver(plan)
    d.step()
    before = copy.deepcopy(d.state)
    d.now += 60
    decision = machine.decide(plan, d.state, d.now)
    assert decision.action is not None and decision.action.kind is ActionKind.OBSERVE
    machine.apply(plan, d.state, decision.action,
                  d.world.outcome(decision.action, d.now), d.now)
    assert d.state == before


def test_healthy_stage_waits_for_approval_then_advances(plan) -> None:
    d = Driver(plan)
    d.run_until(lambda d: d.wait is not None and d.wait.human)
    assert "approval.needed" in d.names()
    assert d.now - T0 >= 3600 and d.state.stage_index == 0
    with pytest.raises(InputError, match="may not approve"):
        d.command(machine.approve, "one", "sre", "mallory")
    with pytest.raises(InputError, match="not asked to approve"):
        d.command(machine.approve, "one", "cto", "alice")
    d.command(machine.approve, "one", "sre", "alice")
    d.step()
    assert d.state.stage_index == 1 and d.state.stages[0].outcome == "passed"
    assert d.world.log[-1].describe() == "verify canary weight 50%"


def test_no_go_pauses(plan) -> None:
    d = Driver(plan)
    d.step()
    d.command(machine.approve, "one", "sre", "bob", decision="no-go", comment="latency")
    assert d.state.paused is not None and d.state.paused.kind == "no-go"


def test_a_for_window_pools_the_requests_of_the_whole_window(plan) -> None:
    d = Driver(plan)
    d.step()  # baking from T0, 0.02% errors before
    d.world.error_rate = 0.02
    for minutes in (1, 2):  # 5m pooled: 0.42%, then 0.81%: not above 1% yet
        d.now = T0 + 60 * minutes
        d.step()
        assert d.state.phase is Phase.STAGE
        assert d.state.triggers["rollback:error-rate-threshold"].pending_since is None
    d.now = T0 + 180  # 1.21% over the last 5 minutes, but 1% is inside its interval
    d.step()
    assert d.state.phase is Phase.STAGE
    assert "not decided yet: 1.21% vs > 1% over 5m, n=5,000: 99% interval 0.8698%–1.68%" in (
        d.state.last_results["rollback:error-rate-threshold"]["problem"])
    d.now = T0 + 240  # 1.6%: above 1% with confidence
    d.step()
    assert d.state.phase is Phase.ROLLED_BACK
    reason = d.state.rollback.reason
    assert "error-rate-threshold: 1.6% > 1% over 5m, n=5,000; 99% interval 1.21%–2.13%" in reason
    assert "held since 2025-12-31T23:59:00Z (5m)" in reason
    assert [a.describe() for a in d.world.log[-3:]] == [
        "set canary weight 0%", "verify canary weight 0%", "scale canary to 0"]
    assert d.world.weight == 0.0
    assert "alert.critical" in d.names()


def test_a_short_burst_does_not_lift_a_pooled_for_window(plan) -> None:
    d = Driver(plan)
    d.step()
    d.now = T0 + 240
    d.step()
    d.world.error_rate = 0.02  # one bad minute in five: 0.42% over the window
    d.now = T0 + 300
    d.step()
    d.world.error_rate = 0.0002
    d.run_until(lambda d: d.now >= T0 + 900, limit=1200)
    assert d.state.phase is Phase.STAGE
    assert "alert.critical" in d.names()  # the 1-minute alert did see it


def test_a_probe_outage_neither_fires_nor_clears_and_loses_no_errors(plan) -> None:
    d = Driver(plan)
    d.step()
    d.world.error_rate = 0.02
    d.now += 60
    d.step()
    alert = d.state.triggers["alert:errors high"]
    assert alert.firing and d.state.phase is Phase.STAGE
    d.world.probe_down = True
    for _ in range(6):
        d.now += 60
        d.step()
    assert d.state.phase is Phase.STAGE
    assert d.state.triggers["alert:errors high"].firing
    assert "alert.resolved" not in d.names()
    assert set(d.state.undecided) >= {"alert:errors high", "rollback:error-rate-threshold"}
    d.world.probe_down = False
    d.now += 60
    d.step()  # the next window reaches back over the outage: its errors count
    assert d.state.phase is Phase.ROLLED_BACK
    assert "over 11m" in d.state.rollback.reason


def test_probe_outage_never_advances(plan) -> None:
    d = Driver(plan)
    d.world.probe_down = True
    d.step()
    for _ in range(200):
        d.now += 60
        d.step()
    assert d.state.stage_index == 0 and d.state.streak_since is None
    assert "probe error" in d.state.streak_broken_by
    assert "approval.needed" not in d.names()


def test_pause_blocks_forward_moves_but_not_rollback(plan) -> None:
    d = Driver(plan)
    d.step()
    d.command(machine.pause, "investigating", "alice")
    d.command(machine.approve, "one", "sre", "alice")
    d.run_until(lambda d: d.now - T0 > 2 * 3600, limit=3 * 3600)
    assert d.state.stage_index == 0 and d.wait.human
    d.world.error_rate = 0.05
    d.run_until(lambda d: d.state.phase is Phase.ROLLED_BACK, limit=3600)
    d.command(machine.request_rollback, "again", "bob")  # idempotent afterwards
    d.step()
    assert d.state.phase is Phase.ROLLED_BACK


def test_manual_rollback_signal_pauses_once_and_rearms(plan) -> None:
    d = Driver(plan)
    d.step()
    d.world.complaints = 14
    d.now += 60
    d.step()
    assert d.state.paused is not None and d.state.paused.kind == "signal"
    assert d.names().count("signal.fired") == 1
    d.command(machine.resume, "alice")
    d.now += 60
    d.step()
    assert d.state.paused is None  # acknowledged while it keeps firing
    d.world.complaints = 0
    d.now += 60
    d.step()
    d.world.complaints = 20
    d.now += 60
    d.step()
    assert d.state.paused is not None and d.names().count("signal.fired") == 2


def test_max_duration_escalates_to_a_human(plan) -> None:
    d = Driver(plan)
    d.step()
    d.command(machine.approve, "one", "sre", "alice")
    d.run_until(lambda d: at_bake(d, 1))
    d.world.error_rate = 0.003  # fails the criterion, below every trigger
    d.run_until(lambda d: d.state.paused is not None, limit=3 * 3600)
    assert d.state.paused.kind == "escalation"
    assert d.names().count("stage.escalated") == 1
    d.command(machine.resume, "alice")
    d.world.error_rate = 0.0001
    d.run_until(lambda d: d.state.phase is Phase.COMPLETED, limit=8 * 3600)
    assert d.names().count("stage.escalated") == 1


def test_readiness_timeout_rolls_back(plan) -> None:
    d = Driver(plan)
    d.world.ready = False
    d.run_until(lambda d: d.state.phase.terminal, limit=3600)
    assert d.state.phase is Phase.ROLLED_BACK
    assert "canary not ready after 10m" in d.state.rollback.reason


def test_weight_that_does_not_read_back_pauses(plan) -> None:
    d = Driver(plan)
    d.world.stuck_weight = 0.0
    d.run_until(lambda d: d.state.paused is not None, limit=600)
    assert d.state.paused.kind == "traffic"
    assert "router reports 0% canary, wanted 10%" in d.state.paused.reason
    assert d.state.rollback is None


def test_rollback_keeps_retrying_until_the_router_answers(plan) -> None:
    d = Driver(plan)
    d.step()
    d.world.fail = {"set_weight"}
    d.command(machine.request_rollback, "incident", "alice")
    wait = d.step()
    assert wait.failing and d.state.phase is Phase.ROLLING_BACK
    assert "rollback.failing" in d.names()
    d.now += 1
    d.world.fail = set()
    d.step()
    assert d.state.phase is Phase.ROLLED_BACK and d.world.weight == 0.0
    assert d.state.rollback.failures == 1


def test_full_run_promotes_retires_and_completes(plan) -> None:
    d = Driver(plan)
    d.step()
    d.command(machine.approve, "one", "sre", "alice")
    d.run_until(lambda d: d.state.phase.terminal, limit=8 * 3600)
    assert d.state.phase is Phase.COMPLETED
    kinds = [a.describe() for a in d.world.log if a.kind is not ActionKind.OBSERVE]
    assert "promote v2 to stable" in kinds and "retire v1" in kinds
    promoted = d.state.promoted_at
    assert d.state.retired_at == pytest.approx(promoted + 3600, abs=61)
    assert d.state.completed_at >= promoted + 7200
    assert d.state.deployed["stable"].version == "v2"
    assert d.state.deployed["canary"].replicas == 0


def test_rollback_after_promotion_puts_the_old_version_back(plan) -> None:
    d = Driver(plan)
    d.step()
    d.command(machine.approve, "one", "sre", "alice")
    d.run_until(lambda d: d.state.phase is Phase.PROMOTED)
    d.command(machine.request_rollback, "regression found", "alice")
    d.step()
    kinds = [a.describe() for a in d.world.log[-5:]]
    assert kinds[0] == "deploy stable v1 × 5"
    assert d.state.phase is Phase.ROLLED_BACK
    assert d.state.deployed["stable"].version == "v1"


def test_failing_criteria_after_promotion_alert_and_pause_inside_the_window(plan) -> None:
    d = Driver(plan)
    d.step()
    d.command(machine.approve, "one", "sre", "alice")
    d.run_until(lambda d: d.state.phase is Phase.PROMOTED)
    promoted = d.state.promoted_at
    d.world.error_rate = 0.004  # 0.4%: fails "< 0.1%", below every trigger
    d.run_until(lambda d: d.state.paused is not None, limit=1800)
    assert d.state.phase is Phase.PROMOTED and d.state.paused.kind == "criterion"
    assert "after promotion, criterion error_rate < 0.1% not met" in d.state.paused.reason
    failed = [e for e in d.events if e.name == "criterion.failed"]
    assert len(failed) == 1 and failed[0].severity == "critical"
    assert "pausing: decide novactl rollback or novactl resume" in failed[0].text
    # the old version is kept while a human decides: no retirement past the grace period
    d.run_until(lambda d: d.now >= promoted + 3600 + 600, limit=7200)
    assert d.state.retired_at is None and d.wait.human
    d.command(machine.resume, "alice", note="known, fixing forward")
    d.world.error_rate = 0.0001
    d.run_until(lambda d: any(e.name == "criterion.recovered" for e in d.events), limit=3600)
    assert d.state.paused is None
    # after the rollback window closes a failure only alerts
    d.run_until(lambda d: d.now >= promoted + 2 * 3600 + 60, limit=3 * 3600)
    d.world.error_rate = 0.004
    d.run_until(lambda d: len([e for e in d.events if e.name == "criterion.failed"]) == 2,
                limit=3600)
    assert d.state.paused is None


def test_rollback_window_closes(plan) -> None:
    d = Driver(plan)
    d.step()
    d.command(machine.approve, "one", "sre", "alice")
    d.run_until(lambda d: d.state.phase is Phase.COMPLETED, limit=8 * 3600)
    with pytest.raises(InputError, match="rollback window is closed"):
        d.command(machine.request_rollback, "late", "alice")
    d.command(machine.request_rollback, "late", "alice", force=True)
    d.step()
    assert d.state.phase is Phase.ROLLED_BACK


def test_signals(plan) -> None:
    d = Driver(plan)
    d.step()
    d.command(machine.signal, "flag-off", "alice", note="feature X disabled")
    d.step()
    assert d.state.phase is Phase.STAGE and "signal.noted" in d.names()
    with pytest.raises(InputError, match="unknown signal"):
        d.command(machine.signal, "nope", "alice")
    d.command(machine.signal, "security-incident", "alice", note="CVE")
    d.step()
    assert d.state.phase is Phase.ROLLED_BACK
    assert d.state.rollback.trigger == "signal:security-incident"


def test_jump_forward_needs_force_and_is_recorded(plan) -> None:
    d = Driver(plan)
    d.step()
    with pytest.raises(InputError, match="skips the gates of one"):
        d.command(machine.jump_to_stage, 1, "alice")
    d.command(machine.jump_to_stage, 1, "alice", force=True)
    assert "stage.gates_skipped" in d.names()
    d.step()
    assert at_bake(d, 1) and d.world.weight == 50
    d.command(machine.jump_to_stage, 0, "alice")  # stepping back is always allowed
    d.step()
    assert at_bake(d, 0) and d.world.weight == 10


def test_daily_summary(plan) -> None:
    d = Driver(plan)
    d.step()
    d.run_until(lambda d: d.now >= T0 + 86400 + 9 * 3600 + 120, limit=2 * 86400)
    summaries = [e for e in d.events if e.name == "summary"]
    assert len(summaries) == 2 and summaries[0].targets == ("chat",)


SCHEDULED = PLAN.replace("      criteria: {mandatory: [error_rate < 0.1%]}\n  promotion",
                         "      criteria: {mandatory: [error_rate < 0.1%]}\n"
                         "      start: {days: [mon], at: \"00:00\"}\n  promotion")


def test_a_passed_stage_keeps_baking_until_the_next_one_may_start() -> None:
    plan = load_plan_text(SCHEDULED, "scheduled.yaml")
    d = Driver(plan)  # starts on a Thursday
    d.step()
    d.command(machine.approve, "one", "sre", "alice")
    d.run_until(lambda d: d.now >= T0 + 2 * 3600)
    assert d.state.stage_index == 0 and "stage two starts at 2026-01-05T00:00:00Z" in d.wait.reason
    assert not d.wait.human
    d.run_until(lambda d: d.state.stage_index == 1)
    monday = T0 + 4 * 86400  # 2026-01-05T00:00:00Z
    one, two = d.state.stages
    assert one.left_at == monday and two.entered_at == monday
    assert one.evaluations >= 4 * 24 * 60 - 5  # evaluated every minute while it waited
    assert d.world.weight == 50


def test_checks_stay_armed_while_waiting_for_a_start() -> None:
    plan = load_plan_text(SCHEDULED, "scheduled.yaml")
    d = Driver(plan)
    d.step()
    d.command(machine.approve, "one", "sre", "alice")
    d.run_until(lambda d: d.now >= T0 + 86400)  # passed, waiting for Monday
    d.world.error_rate = 0.05
    d.run_until(lambda d: d.state.phase.terminal, limit=3600)
    assert d.state.phase is Phase.ROLLED_BACK and d.state.rollback.stage == "one"


def test_a_start_window_absorbs_deploy_time() -> None:
    plan = load_plan_text(SCHEDULED, "scheduled.yaml")
    d = Driver(plan)
    d.now = T0 + 4 * 86400 - 3600 + 180  # Sunday 23:03: a 1h stage is ready Monday 00:03
    d.state = machine.new_state(plan, "r1", d.now)
    d.step()
    d.command(machine.approve, "one", "sre", "alice")
    d.run_until(lambda d: d.state.stage_index == 1)
    assert d.state.stages[1].entered_at == pytest.approx(T0 + 4 * 86400 + 180, abs=61)


def test_deploy_starts_a_scheduled_stage_now() -> None:
    plan = load_plan_text(SCHEDULED, "scheduled.yaml")
    d = Driver(plan)
    d.step()
    d.command(machine.jump_to_stage, 1, "alice", force=True)
    d.step()
    assert at_bake(d, 1) and d.state.stages[-1].entered_at == T0  # a Thursday


def test_deploy_of_the_next_stage_after_its_predecessor_passed_is_a_normal_advance() -> None:
    plan = load_plan_text(SCHEDULED, "scheduled.yaml")
    d = Driver(plan)
    d.step()
    d.command(machine.approve, "one", "sre", "alice")
    d.run_until(lambda d: d.now >= T0 + 2 * 3600)  # passed, waiting for Monday
    d.command(machine.jump_to_stage, 1, "alice")  # no --yes needed: nothing is skipped
    d.step()
    assert at_bake(d, 1) and d.state.stages[0].outcome == "passed"
    assert "stage.gates_skipped" not in d.names()
    assert d.state.stages[0].refs["error_rate"].value == pytest.approx(0.0002)


# ---- regressions found in review -------------------------------------------------------


def test_a_slow_probe_still_finds_its_measurements(plan) -> None:
    """The round uses the window decided when measuring, however long probes take."""
    d = Driver(plan)
    d.step()
    d.world.error_rate = 0.05
    for _ in range(6):
        d.now += 60
        decision = machine.decide(plan, d.state, d.now)
        assert decision.action is not None and decision.action.kind is ActionKind.OBSERVE
        outcome = d.world.outcome(decision.action, d.now)
        slow = d.now + 0.7  # the probes answered 0.7 s later
        d.state = machine.apply(plan, decision.state, decision.action, outcome, slow).state
        if d.state.phase is not Phase.STAGE:
            break
    assert d.state.phase is Phase.ROLLING_BACK
    assert all(r["verdict"] != "inconclusive" for r in d.state.last_results.values())


def test_a_repeated_rollback_sets_and_reads_the_weight_again(plan) -> None:
    d = Driver(plan)
    d.step()
    d.command(machine.request_rollback, "first", "alice")
    d.step()
    assert d.state.phase is Phase.ROLLED_BACK
    d.world.weight = 30.0  # someone put traffic back on the canary by hand
    d.command(machine.request_rollback, "again", "bob")
    d.step()
    assert d.world.weight == 0.0 and d.state.phase is Phase.ROLLED_BACK
    assert [a.describe() for a in d.world.log[-3:]] == [
        "set canary weight 0%", "verify canary weight 0%", "scale canary to 0"]
    assert d.names().count("rollback.completed") == 1 and "rollback.reverified" in d.names()


def test_a_failed_promote_is_rolled_back_by_redeploying_the_stable(plan) -> None:
    d = Driver(plan)
    d.step()
    d.command(machine.approve, "one", "sre", "alice")
    d.world.fail = {"promote"}
    d.run_until(lambda d: d.state.phase is Phase.PROMOTING and d.state.step_failures > 0)
    assert d.state.deployed["stable"].version == machine.UNKNOWN_VERSION
    d.world.fail = set()
    d.command(machine.request_rollback, "promote broke", "alice")
    d.step()
    kinds = [a.describe() for a in d.world.log if a.kind is not ActionKind.OBSERVE]
    assert kinds[-5:] == ["deploy stable v1 × 5", "check stable is ready",
                          "set canary weight 0%", "verify canary weight 0%", "scale canary to 0"]
    assert d.state.phase is Phase.ROLLED_BACK


def test_a_traffic_pause_holds(plan) -> None:
    d = Driver(plan)
    d.world.stuck_weight = 3.0
    d.run_until(lambda d: d.state.paused is not None, limit=600)
    shifts = sum(1 for a in d.world.log if a.kind is ActionKind.SET_WEIGHT)
    d.now += 600
    d.step()
    d.now += 600
    wait = d.step()
    assert wait.human and sum(1 for a in d.world.log if a.kind is ActionKind.SET_WEIGHT) == shifts
    assert d.names().count("rollout.paused") == 1


def test_a_failing_rollback_does_not_flood_the_pager(plan) -> None:
    d = Driver(plan)
    d.step()
    d.world.fail = {"set_weight"}
    d.command(machine.request_rollback, "incident", "alice")
    for _ in range(600):  # ten minutes of one-second retries
        d.step()
        d.now += 1
    assert 2 <= d.names().count("rollback.failing") <= 3
    assert d.state.rollback.failures >= 500


def test_no_summaries_after_the_end(plan) -> None:
    d = Driver(plan)
    d.step()
    d.command(machine.request_rollback, "stop", "alice")
    d.step()
    before = d.names().count("summary")
    for _ in range(5):
        d.now += 86400
        d.step()
    assert d.names().count("summary") == before


def test_promote_at_the_last_stage_once_its_gates_hold(plan) -> None:
    d = Driver(plan)
    d.step()
    d.command(machine.approve, "one", "sre", "alice")
    d.run_until(lambda d: at_bake(d, 1))
    with pytest.raises(InputError, match="has not passed its gates"):
        d.command(machine.request_promotion, "alice")
    d.run_until(lambda d: d.now - d.state.stages[-1].bake_started_at >= 3600)
    d.command(machine.request_promotion, "alice")
    assert d.state.phase is Phase.PROMOTING and d.state.stages[-1].outcome == "passed"
