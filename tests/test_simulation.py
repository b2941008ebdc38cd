"""The whole NovaCron v3 seed plan on a fake clock: weeks of plan time in seconds.

The real plan file is loaded as it is; only its adapters are swapped for the
fakes shipped with novactl, and the metrics are scripted as functions of time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from conftest import SEED_PLAN

from novactl._clock import FakeClock
from novactl.adapters.fake import FakeProbe, FakeTrafficShifter, FakeWorkload, MemoryNotifier
from novactl.core import machine
from novactl.core.observations import ProbeQuery
from novactl.core.report import build_report
from novactl.core.state import Phase
from novactl.exitcodes import ExitCode
from novactl.plan import load_plan
from novactl.runner import AdapterSet, PassResult, Runner, context_for
from novactl.store import MemoryStore

DAY = 86400.0

HEALTHY = {
    "error_rate": 0.0003, "availability": 0.9997, "p95_latency": 0.070, "p99_latency": 0.150,
    "critical_errors": 0, "data_loss_events": 0, "db_query_p95": 0.020,
    "dwcp_migration_success": 0.995, "resource_utilization": 0.50, "memory_utilization": 0.55,
    "p50_latency": 0.030, "customer_feedback_trend": 0.5,
    "customer_satisfaction": 0.97, "customer_feedback_score": 40.0, "support_tickets": 100.0,
    "customer_complaints": 2, "security_incidents": 0, "high_severity_bugs": 0,
    "cost_per_hour": 100.0, "revenue_per_hour": 1000.0, "active_users": 5000.0,
    "vm_creation_rate": 50.0, "churn_rate": 0.02,
}


@dataclass
class Simulation:
    """The seed plan with fake adapters and a scripted world."""

    metrics: Callable[[ProbeQuery, float], float | None]
    approve: bool = True
    # Monday 2026-01-05 00:00 UTC: the plan's stages start on Mondays
    clock: FakeClock = field(default_factory=lambda: FakeClock(1_767_571_200.0))

    def __post_init__(self) -> None:
        self.plan = load_plan(SEED_PLAN)
        self.start = self.clock.now()
        context = context_for(self.plan, clock=self.clock)
        self.traffic = FakeTrafficShifter("traffic", context=context)
        # a deploy takes two minutes to be ready, as real ones do
        self.workload = FakeWorkload("workload", FakeWorkload.Config(ready_after=120), context)
        self.probe = FakeProbe("prometheus", FakeProbe.Config(rate=50), context,
                               script=lambda q: self.metrics(q, self.day))
        MemoryNotifier.sent.clear()
        self.notifiers = {n: MemoryNotifier(n) for n in self.plan.spec.notifications.targets}
        adapters = AdapterSet(self.plan, context, traffic=self.traffic, workload=self.workload,
                              probes={"prometheus": self.probe}, notifiers=self.notifiers)
        self.store = MemoryStore(keep_evaluations=0, copy="pickle")
        self.runner = Runner(self.plan, self.store, adapters, clock=self.clock, actor="sim")

    @property
    def day(self) -> float:
        return (self.clock.now() - self.start) / DAY

    def run(self, until_day: float | None = None) -> PassResult:
        def stop(result: PassResult) -> bool:
            state = result.state
            if self.approve and state.phase is Phase.STAGE:
                # the review meeting: Friday of the stage's week, before its 7 days end
                record = state.stages[-1]
                spec = self.plan.stages[state.stage_index].approval
                met = self.clock.now() - record.entered_at >= 4 * DAY
                if spec is not None and met and state.latest_decision(record.name,
                                                                      spec.roles[0]) is None:
                    for role in spec.roles:
                        person = self.plan.spec.approvers[role][0]
                        self.runner.command(machine.approve, record.name, role, person,
                                            actor=person, action="approve",
                                            reason="GO at the review meeting")
            return until_day is not None and self.day >= until_day

        started = time.monotonic()
        # bounded: 60 days of 5-minute passes at most; a wrong scenario fails, never hangs
        result = self.runner.run(poll=300, until=stop, max_passes=60 * 288)
        self.elapsed = time.monotonic() - started
        return result

    def events(self, name: str) -> list[dict]:
        return [e for e in self.store.audit if e["action"] == name]


def healthy(query: ProbeQuery, day: float) -> float | None:
    """Healthy values; counts are per day and grow with the window, as real counters do."""
    value = HEALTHY[query.metric]
    if query.kind == "count":
        return value * query.window / DAY
    return value


def test_all_healthy_is_promoted_retired_and_completed() -> None:
    sim = Simulation(healthy)
    result = sim.run()
    state = result.state
    assert state.phase is Phase.COMPLETED and result.exit_code == ExitCode.OK
    # five weeks of plan: 7 + 7 + 7 (of 7..14) + 1 days of stages, then 30 days of monitoring
    days = {r.name: ((r.entered_at - sim.start) / DAY, (r.left_at - sim.start) / DAY)
            for r in state.stages}
    assert [r.outcome for r in state.stages] == ["passed"] * 4
    assert days["canary"][1] == pytest.approx(7, abs=1 / 24)
    assert days["small"][1] == pytest.approx(14, abs=1 / 24)
    assert days["medium"][1] == pytest.approx(21, abs=1 / 24)
    assert days["full"][1] == pytest.approx(22, abs=1 / 24)
    assert (state.retired_at - state.promoted_at) == pytest.approx(DAY, abs=301)
    assert (state.completed_at - state.promoted_at) == pytest.approx(30 * DAY, abs=301)
    assert sim.elapsed < 60, f"the simulation took {sim.elapsed:.1f}s"
    # what the world ended with
    deployments = sim.workload.world.deployments
    assert deployments["stable"]["version"] == "v3.0.0" and deployments["stable"]["replicas"] == 10
    assert deployments["canary"]["replicas"] == 0
    assert sim.traffic.world.weight == 0.0
    assert sim.workload.world.data["retired"] == ["v2.9.0"]
    assert sim.traffic.world.data["header_routes"] == {"X-Canary-Debug": "1"}
    weights = [e for e in sim.traffic.world.log if e.startswith("set_weight")]
    assert weights == ["set_weight 1", "set_weight 10", "set_weight 50", "set_weight 100",
                       "set_weight 0"]
    # approvals with who and when; CTO signed off stage 3
    cto = [a for a in state.approvals if a.stage == "medium" and a.role == "cto"]
    assert cto and cto[0].by == "cto@novacron.io" and cto[0].at >= state.stages[2].entered_at
    # every external action has its intent before and its outcome after
    actions = [e["action"] for e in sim.store.audit]
    intents = [a for a in actions if a.startswith("intent.")]
    dones = [a for a in actions if a.startswith("done.")]
    assert len(intents) == len(dones) > 10
    # the communication plan: summaries twice a day, stage events to stakeholders
    slack = [m.event for m in sim.notifiers["slack"].messages]
    assert slack.count("summary") >= 2 * 50
    assert "stage.passed" in [m.event for m in sim.notifiers["stakeholders"].messages]
    assert "stage.announcement" in [m.event for m in sim.notifiers["marketing"].messages]
    # the report of success metrics per stage
    report = build_report(sim.plan, state, sim.clock.now())
    error_row = next(r for r in report["technical"] if r["metric"] == "error_rate")
    # 50 requests/s over 5-minute windows: 4 errors in 15,000 requests, pooled per stage
    assert [c["value"] for c in error_row["stages"]][:4] == [pytest.approx(4 / 15000)] * 4
    assert error_row["stages"][0]["samples"] == 15000 * 7 * 288
    assert all(c["met"] for c in error_row["stages"])
    revenue = next(b for b in report["business"] if b["metric"] == "revenue_per_hour")
    assert revenue["baseline"] == pytest.approx(1000.0) and revenue["change"] == 0.0
    # tickets: a 7-day baseline shown per day, like the daily count it is compared with
    tickets = next(b for b in report["business"] if b["metric"] == "support_tickets")
    assert tickets["baseline"] == pytest.approx(100.0) and tickets["after"] == pytest.approx(100)
    assert tickets["change"] == pytest.approx(0.0) and tickets["met"] is True


def test_error_spike_in_stage_two_rolls_back_naming_the_trigger() -> None:
    def spike(query: ProbeQuery, day: float) -> float | None:
        if query.metric == "error_rate" and query.version == "v3.0.0" and day >= 9.0:
            return 0.008  # above stage 2's 0.5% trigger, below stage 1's 1%
        return healthy(query, day)

    sim = Simulation(spike)
    result = sim.run(until_day=30)
    state = result.state
    assert state.phase is Phase.ROLLED_BACK and result.exit_code == ExitCode.ROLLED_BACK
    rollback = state.rollback
    assert rollback.stage == "small"
    assert rollback.reason.startswith("trigger error-rate-threshold: 0.8% > 0.5%")
    assert rollback.trigger == "rollback:error-rate-threshold"
    # detected within the 5-minute window after the spike began on day 9
    assert 9.0 <= (rollback.detected_at - sim.start) / DAY < 9.0 + 15 / 1440
    assert sim.traffic.world.weight == 0.0
    assert sim.workload.world.deployments["canary"]["replicas"] == 0
    assert [r.outcome for r in state.stages] == ["passed", "rolled_back"]
    assert sim.events("rollback.completed")
    assert "rollback.started" in [m.event for m in sim.notifiers["pagerduty"].messages]


def test_missing_approval_waits_and_never_advances() -> None:
    sim = Simulation(healthy, approve=False)
    result = sim.run(until_day=12)
    state = result.state
    assert state.phase is Phase.STAGE and state.stage_index == 0
    assert result.wait.human and "waiting for approval of stage canary" in result.wait.reason
    assert result.exit_code == ExitCode.WAITING
    assert len(sim.events("approval.needed")) == 1
    assert sim.traffic.world.weight == 1.0


def test_probe_outage_never_advances_then_recovers() -> None:
    def outage(query: ProbeQuery, day: float) -> float | None:
        if 3.0 <= day < 12.0:
            from novactl._errors import ProbeError

            raise ProbeError("connection refused")
        return healthy(query, day)

    sim = Simulation(outage)
    result = sim.run(until_day=11)
    state = result.state
    assert state.stage_index == 0 and state.phase is Phase.STAGE
    assert state.streak_since is None and "probe error" in state.streak_broken_by
    inconclusive = [r for r in state.last_results.values() if r["verdict"] == "inconclusive"]
    assert inconclusive and all("connection refused" in r["problem"] for r in inconclusive)
    assert not sim.events("approval.needed")
    # the probe comes back on day 12: its first window reaches back over the outage as far
    # as a pooled window goes (24 h), so the 7-day streak starts again on day 11
    result = sim.run(until_day=20)
    # ready on day 18, a Friday: it keeps baking, checks armed, until Monday
    assert result.state.stage_index == 0 and result.state.streak_since is not None
    assert (result.state.streak_since - sim.start) / DAY == pytest.approx(11.0, abs=0.01)
    assert "passed its gates; stage small starts at" in result.wait.reason
    result = sim.run(until_day=21.5)
    canary, small = result.state.stages[:2]
    assert canary.outcome == "passed"
    assert (canary.left_at - sim.start) / DAY == pytest.approx(21.0, abs=0.01)
    assert (small.entered_at - sim.start) / DAY == pytest.approx(21.0, abs=0.01)
