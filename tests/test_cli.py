"""The command line as operators, CI steps and runbooks use it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, run_novactl, write_fake_plan

FAST = {"interval": "100ms", "duration": "300ms", "retire": "100ms", "window": "200ms",
        "hold": "200ms"}


def world(directory: Path) -> dict:
    return json.loads((directory / "world.json").read_text())


def status(cli, plan: Path) -> dict:
    _code, out, _ = cli("status", plan, "--output", "json")
    return json.loads(out)


def test_help_and_version(cli) -> None:
    code, out, _ = cli("--help")
    assert code == 0 and "rollback" in out and "verify-split" in out
    code, out, _ = cli("--version")
    assert code == 0 and out.startswith("novactl ")


def test_run_once_then_status(cli, tmp_path: Path) -> None:
    plan = write_fake_plan(tmp_path)
    code, out, err = cli("run", plan, "--once")
    assert code == 0, err
    assert "stage.started" in out
    data = status(cli, plan)
    assert data["phase"] == "stage" and data["stage"] == "one"
    assert data["weight"] == {"desired": 10.0, "actual": 10.0,
                              "verified_at": data["weight"]["verified_at"]}
    code, out, _ = cli("status", plan)
    assert code == 0 and "stage 1/2 one: weight 10% (router: 10%)" in out


def test_status_before_start(cli, tmp_path: Path) -> None:
    plan = write_fake_plan(tmp_path)
    code, out, _ = cli("status", plan)
    assert code == 0 and "not started" in out


def test_run_to_completion_and_report(cli, tmp_path: Path) -> None:
    plan = write_fake_plan(tmp_path, **FAST)
    code, out, err = cli("run", plan, "--poll", "50ms")
    assert code == 0, err
    assert "rollout.completed" in out
    assert world(tmp_path)["deployments"]["stable"]["version"] == "v2"
    code, out, _ = cli("report", plan, "--output", "json")
    report = json.loads(out)
    assert report["outcome"] == "promoted"
    assert [s["name"] for s in report["stages"]] == ["one", "two", "post-promotion"]
    code, out, _ = cli("report", plan, "--output", "markdown")
    assert out.startswith("# Rollout report: fake-plan") and "| MTTR |" in out
    code, out, _ = cli("history", plan, "--output", "json", "--limit", "0")
    entries = json.loads(out)
    assert {"time", "actor", "action", "reason"} <= set(entries[0])
    assert any(e["action"] == "done.promote" for e in entries)
    code, out, _ = cli("run", plan, "--once")  # a finished rollout stays finished
    assert code == 0


def test_approval_gate_waits_for_a_human(cli, tmp_path: Path) -> None:
    plan = write_fake_plan(tmp_path, approval=True, **FAST)
    for _ in range(100):
        code, _out, _err = cli("run", plan, "--once")
        if code == 4:
            break
        import time

        time.sleep(0.05)
    assert code == 4
    data = status(cli, plan)
    assert "waiting for approval of stage two by cto" in data["waiting"]["reason"]
    code, out, err = cli("approve", plan, "--stage", "two", "--role", "sre", "--by", "alice")
    assert code == 2 and "not asked to approve" in err
    code, out, _ = cli("approve", plan, "--stage", "two", "--role", "cto", "--by", "carol",
                       "-m", "looks good")
    assert code == 0 and "every required role said GO" in out
    code, _out, err = cli("run", plan, "--poll", "50ms")
    assert code == 0, err
    approvals = status(cli, plan)["approvals"]
    assert approvals[0]["by"] == "carol" and approvals[0]["comment"] == "looks good"


def test_pause_and_resume(cli, tmp_path: Path) -> None:
    plan = write_fake_plan(tmp_path)
    cli("run", plan, "--once")
    code, out, _ = cli("pause", plan, "--reason", "db migration", "--by", "alice")
    assert code == 0
    data = status(cli, plan)
    assert data["paused"]["reason"] == "db migration" and data["paused"]["by"] == "alice"
    code, out, _ = cli("status", plan)
    assert code == 4 and "PAUSED by alice" in out
    code, _out, err = cli("pause", plan, "--reason", "again")
    assert code == 2 and "already paused" in err
    code, _out, _ = cli("resume", plan, "--by", "bob")
    assert code == 0 and status(cli, plan)["paused"] is None


def test_lock_held_exits_5(cli, tmp_path: Path) -> None:
    plan = write_fake_plan(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from novactl.store import LocalStore
        with LocalStore({str(tmp_path / '.novactl' / 'fake-plan')!r}).lock("novactl run x"):
            print("locked", flush=True); time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _out, err = cli("run", plan, "--once")
        assert code == 5 and "locked by pid" in err and "novactl run x" in err
    finally:
        holder.kill()
        holder.wait()


def test_rollback_is_fast_verified_and_idempotent(cli, tmp_path: Path) -> None:
    plan = write_fake_plan(tmp_path)
    cli("run", plan, "--once")
    assert world(tmp_path)["weight"] == 10.0
    code, out, err = cli("rollback", plan, "--reason", "error-rate-threshold", "--by", "oncall")
    assert code == 0, err
    assert "traffic: 0% to canary, router confirms" in out
    assert "rolled back to v1: error-rate-threshold" in out
    assert world(tmp_path)["weight"] == 0.0
    assert world(tmp_path)["deployments"]["canary"]["replicas"] == 0
    code, out, _ = cli("status", plan)
    assert code == 3
    code, out, err = cli("rollback", plan, "--reason", "again")  # safe to repeat at 3 a.m.
    assert code == 0, err
    code, out, _ = cli("history", plan, "--action", "rollback", "--output", "json")
    actors = {e["actor"] for e in json.loads(out)}
    assert "oncall" in actors
    code, out, err = cli("run", plan, "--once")
    assert code == 3


def test_rollback_works_with_a_broken_plan_file(cli, tmp_path: Path) -> None:
    plan = write_fake_plan(tmp_path)
    cli("run", plan, "--once")
    plan.write_text(plan.read_text().replace("weight: 50", "weight: [oops"))
    code, _out, err = cli("rollback", plan, "--reason", "incident")
    assert code == 0, err
    assert "rolling back with the copy of the plan saved in" in err
    assert world(tmp_path)["weight"] == 0.0


def test_rollback_while_run_holds_the_lock(cli, tmp_path: Path) -> None:
    plan = write_fake_plan(tmp_path)
    cli("run", plan, "--once")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from novactl.store import LocalStore
        with LocalStore({str(tmp_path / '.novactl' / 'fake-plan')!r}).lock("novactl run"):
            print("locked", flush=True); time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, out, err = cli("rollback", plan, "--reason", "pager", "--lock-wait", "200ms")
        assert code == 0
        assert "traffic: 0% to canary, router confirms" in out
        assert "rollback request is queued" in err
        assert world(tmp_path)["weight"] == 0.0  # traffic moved before anything else
    finally:
        holder.kill()
        holder.wait()
    code, out, err = cli("run", plan, "--once")  # whoever runs next completes it
    assert code == 3
    assert status(cli, plan)["rollback"]["reason"] == "pager"


def test_rollback_to_version_needs_confirmation(cli, tmp_path: Path) -> None:
    plan = write_fake_plan(tmp_path)
    code, _out, err = cli("rollback", plan, "--reason", "x", "--to-version", "v0")
    assert code == 2 and "rolls back to its stable version v1 only" in err
    code, _out, err = cli("rollback", plan, "--reason", "x", "--to-version", "v1")
    assert code == 2 and "--yes" in err
    code, _out, err = cli("rollback", plan, "--reason", "x", "--to-version", "v1", "--yes")
    assert code == 0, err


def test_rollback_reports_a_router_it_cannot_reach(cli, tmp_path: Path) -> None:
    plan = write_fake_plan(tmp_path)
    text = plan.read_text().replace('config: {world:', 'config: {fail: true, world:', 1)
    plan.write_text(text)
    code, _out, err = cli("rollback", plan, "--reason", "x", "--timeout", "2s")
    assert code == 6
    assert "could not move traffic to stable" in err and "rollback not complete" in err


def test_deploy_like_canary_deploy_sh(cli, tmp_path: Path) -> None:
    plan = write_fake_plan(tmp_path)
    code, out, err = cli("deploy", plan, "--version", "v2", "--canary-weight", "10")
    assert code == 0, err
    assert "v2 at 10% (router reports 10%), 1 replicas ready" in out
    code, _out, err = cli("deploy", plan, "--version", "v2", "--canary-weight", "33")
    assert code == 2 and "stage weights: 10, 50" in err
    code, _out, err = cli("deploy", plan, "--version", "v9", "--canary-weight", "10")
    assert code == 2 and "the plan's canary is v2" in err
    code, _out, err = cli("deploy", plan, "--version", "v2", "--canary-weight", "50")
    assert code == 2 and "--yes" in err
    code, out, err = cli("deploy", plan, "--version", "v2", "--canary-weight", "50", "--yes")
    assert code == 0, err
    assert world(tmp_path)["weight"] == 50.0
    assert world(tmp_path)["deployments"]["canary"]["replicas"] == 2


def test_promote(cli, tmp_path: Path) -> None:
    plan = write_fake_plan(tmp_path)
    cli("run", plan, "--once")
    code, _out, err = cli("promote", plan)
    assert code == 2 and "--yes" in err
    code, out, err = cli("promote", plan, "--yes", "--by", "alice")
    assert code == 0, err
    assert "v2 is stable" in out
    assert world(tmp_path)["deployments"]["stable"] == {
        **world(tmp_path)["deployments"]["stable"], "version": "v2", "replicas": 3}


def test_signals(cli, tmp_path: Path) -> None:
    plan = write_fake_plan(tmp_path)
    cli("run", plan, "--once")
    code, out, _ = cli("signal", plan, "high-severity-bug", "--reason", "BUG-1")
    assert code == 0 and "pauses at its next pass" in out
    code, _out, _ = cli("run", plan, "--once")
    assert code == 4 and "high-severity-bug" in status(cli, plan)["paused"]["reason"]
    code, _out, err = cli("signal", plan, "security-incident", "--reason", "CVE-2026-1")
    assert code == 0, err
    data = status(cli, plan)
    assert data["phase"] == "rolled_back" and "CVE-2026-1" in data["rollback"]["reason"]
    code, _out, err = cli("signal", plan, "nope")
    assert code == 2


def test_json_output_is_only_json(tmp_path: Path) -> None:
    plan = write_fake_plan(tmp_path)
    run_novactl("run", plan, "--once")
    for args in (["status", plan], ["history", plan], ["validate", plan], ["report", plan]):
        done = run_novactl(*args, "--output", "json")
        json.loads(done.stdout)


def test_secrets_never_appear(tmp_path: Path) -> None:
    secret = "SECRET-TOKEN-5f3a9c"
    plan = write_fake_plan(tmp_path)
    plan.write_text(plan.read_text().replace(
        "  signals:", "  notifications:\n    targets:\n"
        "      hook: {type: webhook, config: {url_env: HOOK_URL, retries: 0, timeout: 1s}}\n"
        "    routes: [{events: ['*'], to: [hook]}]\n  signals:"))
    env = {"HOOK_URL": f"http://127.0.0.1:9/{secret}"}
    outputs = []
    for args in (["run", plan, "--once"], ["status", plan], ["validate", plan, "-o", "json"],
                 ["history", plan], ["rollback", plan, "--reason", "x"]):
        done = run_novactl(*args, env=env)
        outputs += [done.stdout, done.stderr]
    state_dir = tmp_path / ".novactl" / "fake-plan"
    files = [p.read_text() for p in state_dir.iterdir() if p.is_file()]
    assert any("notification.dropped" in text or "outbox" in text for text in files)
    for text in outputs + files:
        assert secret not in text


def test_no_traceback_on_bad_input(tmp_path: Path) -> None:
    for args in (["validate", tmp_path / "missing.yaml"], ["run", "--poll", "xyz", "p.yaml"],
                 ["status", tmp_path], ["approve", tmp_path / "p.yaml", "--stage", "a"]):
        done = run_novactl(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["rollback", "--help"]])
def test_help_runs_in_a_child(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "novactl", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=30)
    assert done.returncode == 0 and "Usage" in done.stdout


def test_deploy_starts_a_scheduled_first_stage_now(cli, tmp_path: Path) -> None:
    plan = write_fake_plan(tmp_path)
    text = plan.read_text().replace(
        "    - {name: one, weight: 10, replicas: 1,",
        "    - {name: one, weight: 10, replicas: 1, start: {days: [mon], at: '00:00'},")
    plan.write_text(text)
    import datetime

    if datetime.datetime.now(datetime.UTC).strftime("%a %H:%M") == "Mon 00:00":
        pytest.skip("it is Monday 00:00: the stage would start anyway")
    code, out, _ = cli("run", plan, "--once")
    assert code == 0 and "stage.scheduled" in out
    assert status(cli, plan)["step"] == "scheduled"
    code, _out, err = cli("deploy", plan, "--version", "v2", "--canary-weight", "10")
    assert code == 0, err
    assert world(tmp_path)["weight"] == 10.0


def test_a_repeated_rollback_against_a_broken_router_is_not_reported_verified(
        cli, tmp_path: Path) -> None:
    plan = write_fake_plan(tmp_path)
    cli("run", plan, "--once")
    code, _out, _err = cli("rollback", plan, "--reason", "first")
    assert code == 0
    text = plan.read_text().replace('config: {world:', 'config: {fail: true, world:', 1)
    plan.write_text(text)  # the router now refuses everything
    code, out, err = cli("rollback", plan, "--reason", "again", "--timeout", "2s")
    assert code == 6 and "(verified" not in out
    assert "rollback not complete" in err


def test_rollback_survives_a_foreign_exception_from_a_plugin(cli, tmp_path: Path,
                                                              monkeypatch) -> None:
    from novactl.adapters.fake import FakeTrafficShifter

    plan = write_fake_plan(tmp_path)
    cli("run", plan, "--once")

    def boom(self, weight):  # a third-party adapter that leaks a socket error
        raise ConnectionResetError("peer reset")

    monkeypatch.setattr(FakeTrafficShifter, "set_weight", boom)
    code, _out, err = cli("rollback", plan, "--reason", "x", "--timeout", "2s")
    assert code == 6
    assert "ConnectionResetError: peer reset" in err and "Traceback" not in err
    code, out, _ = cli("history", plan, "--action", "rollback.traffic_first", "-o", "json")
    assert "failed: ConnectionResetError" in out


def test_dry_run_wraps_adapters_that_cannot_do_it_themselves(cli, tmp_path: Path) -> None:
    plan = write_fake_plan(tmp_path)
    code, out, err = cli("--dry-run", "run", plan)  # implies one pass
    text = out + err
    assert code == 0, text
    assert "dry run: one pass; nothing is changed and no state is saved" in text
    assert "dry run: FakeTrafficShifter(t" in text and "would send 10% of traffic" in text
    assert "would deploy v2 as canary with 1 replicas" in text
    assert "would route X-Canary-Debug: 1 to the canary" in text
    # nothing reached the fake world, and no state was written
    assert not (tmp_path / "world.json").exists()
    assert not (tmp_path / ".novactl").exists()
    code, out, err = cli("--dry-run", "rollback", "--reason", "x", plan)
    assert code == 2 and "rollback has no --dry-run" in err
