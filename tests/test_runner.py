"""The runner: intent before acting, outcome after, resumable, one writer at a time."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_fake_plan

from novactl._clock import FakeClock
from novactl._errors import LockHeld
from novactl.adapters.fake import FakeProbe, FakeTrafficShifter, FakeWorkload, MemoryNotifier
from novactl.core import machine
from novactl.core.state import Phase
from novactl.plan import load_plan, load_plan_text
from novactl.runner import AdapterSet, Runner, context_for
from novactl.store import LocalStore, MemoryStore


class Boom(BaseException):
    """Stands for the process dying: nothing in novactl may catch it."""


def make(plan, store, clock, *, traffic=None, workload=None, probe=None, notifiers=None):
    context = context_for(plan, clock=clock)
    traffic = traffic or FakeTrafficShifter("t", context=context)
    adapters = AdapterSet(plan, context, traffic=traffic,
                          workload=workload or FakeWorkload("w", context=context),
                          probes={"m": probe} if probe else None, notifiers=notifiers)
    return Runner(plan, store, adapters, clock=clock, actor="test")


def crash_after_first_shift(plan, store, clock, context) -> FakeTrafficShifter:
    """Run a pass whose first weight shift happens and then the process "dies"."""
    traffic = FakeTrafficShifter("t", context=context)
    original = traffic.set_weight

    def dies_after_acting(weight: float) -> None:
        original(weight)
        raise Boom()

    traffic.set_weight = dies_after_acting  # type: ignore[method-assign]
    with pytest.raises(Boom):
        make(plan, store, clock, traffic=traffic).reconcile()
    return traffic


def test_intent_is_recorded_before_acting_and_the_outcome_after(tmp_path: Path) -> None:
    plan = load_plan(write_fake_plan(tmp_path))
    store = LocalStore(tmp_path / "state")
    runner = make(plan, store, FakeClock())
    runner.reconcile()
    actions = [e["action"] for e in store.read_audit()]
    i = actions.index("intent.set_weight")
    assert actions[i + 1] == "done.set_weight"
    entry = next(e for e in store.read_audit() if e["action"] == "done.set_weight")
    assert entry["before"]["step"] == "shift" and entry["after"]["step"] == "verify"
    assert entry["actor"] == "test" and entry["time"].endswith("Z")


def test_an_interrupted_action_is_run_again_on_resume(tmp_path: Path) -> None:
    plan = load_plan(write_fake_plan(tmp_path))
    store = LocalStore(tmp_path / "state")
    clock = FakeClock()
    context = context_for(plan, clock=clock)
    traffic = crash_after_first_shift(plan, store, clock, context)
    state = store.load()
    assert state.pending is not None and state.pending["kind"] == "set_weight"
    fresh = make(plan, store, clock, traffic=FakeTrafficShifter("t", context=context,
                                                                world=traffic.world))
    result = fresh.reconcile()
    assert result.state.pending is None and result.state.step == "bake"
    actions = [e["action"] for e in store.read_audit()]
    assert actions.count("intent.set_weight") == 1
    assert "resume.set_weight" in actions and actions.count("done.set_weight") == 1
    assert traffic.world.weight == 10.0


def test_a_queued_rollback_request_comes_first(tmp_path: Path) -> None:
    plan = load_plan(write_fake_plan(tmp_path))
    store = LocalStore(tmp_path / "state")
    clock = FakeClock()
    runner = make(plan, store, clock)
    runner.reconcile()
    store.request_abort({"reason": "pager went off", "by": "alice"})
    clock.advance(1)
    result = runner.reconcile()
    assert result.state.phase is Phase.ROLLED_BACK
    assert result.state.rollback.reason == "pager went off" and result.state.rollback.by == "alice"
    assert store.peek_abort() is None


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    plan = load_plan(write_fake_plan(tmp_path))
    store = LocalStore(tmp_path / "state")
    runner = make(plan, store, FakeClock())
    with store.lock("someone else"):
        pass
    import subprocess
    import sys
    import textwrap

    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from novactl.store import LocalStore
        with LocalStore({str(tmp_path / 'state')!r}).lock("novactl approve"):
            print("locked", flush=True); time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockHeld, match="novactl approve"):
            runner.reconcile()
    finally:
        holder.kill()
        holder.wait()
    runner.reconcile()


def test_notifications_are_retried_then_dropped_with_a_record(tmp_path: Path) -> None:
    text = write_fake_plan(tmp_path).read_text().replace(
        "  signals:", "  notifications:\n    targets: {chat: {type: fake}}\n"
        "    routes: [{events: ['*'], to: [chat]}]\n  signals:")
    plan = load_plan_text(text, str(tmp_path / "p.yaml"))
    MemoryNotifier.sent.clear()
    broken = MemoryNotifier("chat", MemoryNotifier.Config(fail=True))
    store = MemoryStore()
    clock = FakeClock()
    runner = make(plan, store, clock, notifiers={"chat": broken})
    runner.reconcile()
    waiting = [item["message"]["event"] for item in store.load().outbox]
    assert "rollout.started" in waiting and "stage.started" in waiting
    for _ in range(5):
        clock.advance(0.1)
        runner.reconcile()
    dropped = [e for e in store.audit if e["action"] == "notification.dropped"]
    assert dropped and "gave up after 5 attempts" in dropped[0]["reason"]
    assert store.load().outbox == []
    broken.fail = False  # delivery works again
    runner.command(machine.pause, "looking at a graph", "alice", actor="alice", action="pause",
                   reason="looking at a graph")
    clock.advance(0.1)
    runner.reconcile()
    delivered = [m for m in broken.messages if m.event == "rollout.paused"]
    assert len(delivered) == 1 and delivered[0].id.startswith(store.load().rollout_id)


def test_a_probe_that_raises_becomes_an_error_observation(tmp_path: Path) -> None:
    plan = load_plan(write_fake_plan(tmp_path))
    clock = FakeClock()

    def explode(query):
        raise RuntimeError("bug in a third-party probe")

    runner = make(plan, MemoryStore(), clock, probe=FakeProbe("m", script=explode))
    runner.reconcile()
    clock.advance(1)
    result = runner.reconcile()
    problems = {r.get("problem", "") for r in result.state.last_results.values()}
    assert any("RuntimeError: bug in a third-party probe" in p for p in problems)
    assert result.state.phase is Phase.STAGE


def test_a_changed_plan_is_recorded(tmp_path: Path) -> None:
    path = write_fake_plan(tmp_path)
    store = LocalStore(tmp_path / "state")
    clock = FakeClock()
    make(load_plan(path), store, clock).reconcile()
    path.write_text(path.read_text().replace("duration: 2s", "duration: 3s", 1))
    make(load_plan(path), store, clock).reconcile()
    changed = [e for e in store.read_audit() if e["action"] == "plan.changed"]
    assert len(changed) == 1 and "the new plan applies from now" in changed[0]["reason"]


def test_another_plans_state_directory_is_refused(tmp_path: Path) -> None:
    path = write_fake_plan(tmp_path)
    store = LocalStore(tmp_path / "state")
    make(load_plan(path), store, FakeClock()).reconcile()
    other = load_plan_text(path.read_text().replace("name: fake-plan", "name: other"), "o.yaml")
    from novactl._errors import StateError

    with pytest.raises(StateError, match="holds rollout 'fake-plan'"):
        make(other, store, FakeClock()).reconcile()


def test_the_plan_snapshot_is_kept_for_rollback(tmp_path: Path) -> None:
    path = write_fake_plan(tmp_path)
    store = LocalStore(tmp_path / "state")
    make(load_plan(path), store, FakeClock()).reconcile()
    snapshot = store.load_plan()
    assert snapshot["text"] == path.read_text() and snapshot["source"] == str(path)


# ---- regressions found in review -------------------------------------------------------


def test_a_slow_probe_cannot_disarm_rollback_triggers(tmp_path: Path) -> None:
    plan = load_plan(write_fake_plan(tmp_path, hold="2s"))
    clock = FakeClock()

    def slow(query):
        clock.advance(0.3)  # every query takes 0.3 s of clock time
        return (50, 100) if query.kind == "ratio" else 0.05

    runner = make(plan, MemoryStore(), clock, probe=FakeProbe("m", script=slow))
    result = runner.run(poll=1.0, max_passes=20)
    assert result.state.phase is Phase.ROLLED_BACK
    assert "error-rate-threshold" in result.state.rollback.reason


def test_a_queued_rollback_stops_any_forward_action(tmp_path: Path) -> None:
    plan = load_plan(write_fake_plan(tmp_path))
    store = MemoryStore()
    clock = FakeClock()
    runner = make(plan, store, clock)
    runner.reconcile()
    clock.advance(2.5)  # stage one is ready to advance to 50%
    store.request_abort({"reason": "stop", "by": "alice"})
    result = runner.reconcile()
    world = runner.adapters.traffic.world
    assert result.state.phase is Phase.ROLLED_BACK
    assert "set_weight 50" not in world.log and world.weight == 0.0


def test_a_refused_queued_rollback_does_not_wedge_the_runner(tmp_path: Path) -> None:
    plan = load_plan(write_fake_plan(tmp_path, duration="1s", retire="1s", window="1s"))
    store = MemoryStore()
    clock = FakeClock()
    runner = make(plan, store, clock)
    result = runner.run(poll=0.5, max_passes=200)
    assert result.state.phase is Phase.COMPLETED
    store.request_abort({"reason": "too late", "by": "bob"})
    runner.reconcile()  # no exception
    assert store.peek_abort() is None
    refused = [e for e in store.audit if e["action"] == "rollback.refused"]
    assert refused and "rollback window is closed" in refused[0]["reason"]


def test_an_interrupted_action_the_rollout_moved_past_is_dropped(tmp_path: Path) -> None:
    plan = load_plan(write_fake_plan(tmp_path))
    store = LocalStore(tmp_path / "state")
    clock = FakeClock()
    context = context_for(plan, clock=clock)
    traffic = crash_after_first_shift(plan, store, clock, context)
    assert store.load().pending["kind"] == "set_weight"
    fresh = make(plan, store, clock, traffic=FakeTrafficShifter("t", context=context,
                                                                world=traffic.world))
    fresh.command(machine.request_promotion, "alice", actor="alice", action="promote",
                  reason="now", force=True)
    result = fresh.reconcile()
    actions = [e["action"] for e in store.read_audit()]
    assert "resume.dropped.set_weight" in actions and "resume.set_weight" not in actions
    assert result.state.phase in (Phase.PROMOTED, Phase.COMPLETED)
    assert any(entry.startswith("promote") for entry in fresh.adapters.workload.world.log)


def test_a_plan_edit_that_removes_the_current_stage_is_refused_but_rollback_works(
        tmp_path: Path) -> None:
    from novactl._errors import StateError

    path = write_fake_plan(tmp_path)
    store = LocalStore(tmp_path / "state")
    clock = FakeClock()
    make(load_plan(path), store, clock).reconcile()
    path.write_text(path.read_text().replace("name: one,", "name: uno,"))
    edited = make(load_plan(path), store, clock)
    with pytest.raises(StateError, match="no longer has"):
        edited.reconcile()
    edited.command(machine.request_rollback, "plan changed", "alice", actor="alice",
                   action="rollback", reason="plan changed")
    assert edited.reconcile().state.phase is Phase.ROLLED_BACK
