"""Loading plans: the seed plan in full, and every kind of mistake named precisely."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DEMO_PLAN, SEED_PLAN, run_novactl

from novactl._errors import PlanError
from novactl.plan import CheckRole, load_plan, load_plan_text
from novactl.plan._normal import normalized


@pytest.fixture(scope="module")
def seed():
    return load_plan(SEED_PLAN)


def _checks(plan, stage: str, role: CheckRole) -> dict[str, str]:
    found = plan.stages[plan.stage_index(stage)].checks
    return {c.name: c.describe() for c in found if c.role is role}


def test_seed_plan_stages(seed) -> None:
    assert (seed.spec.versions.stable, seed.spec.versions.canary) == ("v2.9.0", "v3.0.0")
    assert [s.weight for s in seed.stages] == [1, 10, 50, 100]
    assert [s.replicas for s in seed.stages] == [1, 3, 8, 10]
    medium = seed.stages[2]
    assert (medium.duration.min, medium.duration.max) == (7 * 86400, 14 * 86400)
    assert all(s.sustain_for == 7 * 86400 for s in seed.stages[:3])
    promo = seed.spec.promotion
    assert (promo.replicas, promo.retire_after, promo.rollback_window, promo.monitor_for) == (
        10, 86400, 7 * 86400, 30 * 86400)


def test_seed_plan_rollback_triggers_tighten_per_stage(seed) -> None:
    assert _checks(seed, "canary", CheckRole.ROLLBACK)["error-rate-threshold"] == \
        "error_rate > 1% for 5m"
    assert _checks(seed, "small", CheckRole.ROLLBACK)["error-rate-threshold"] == \
        "error_rate > 0.5% for 5m"
    assert _checks(seed, "medium", CheckRole.ROLLBACK)["error-rate-threshold"] == \
        "error_rate > 0.3% for 5m"
    assert _checks(seed, "canary", CheckRole.ROLLBACK)["p95-latency-threshold"] == \
        "p95_latency > 200ms for 10m"
    assert _checks(seed, "medium", CheckRole.ROLLBACK)["performance regression above 10%"] == \
        "p95_latency > +10% stable sequential"
    for stage in ("canary", "small", "medium"):  # what a 1% threshold cannot see at 1%
        assert _checks(seed, stage, CheckRole.ROLLBACK)["error regression vs production"] == \
            "error_rate > stable sequential"
    assert all(not c.condition.sequential for c in seed.stages[3].checks)  # 100%: no stable
    assert all(s.duration.max is not None for s in seed.stages)  # undecided → escalated
    for stage in ("canary", "small", "medium", "full"):
        events = _checks(seed, stage, CheckRole.ROLLBACK)
        assert {"critical error detected", "data loss event", "security incident"} <= set(events)


def test_seed_plan_criteria_targets_signals_and_approvals(seed) -> None:
    canary = seed.stages[0]
    error = next(c for c in canary.checks if c.name == "error rate")
    assert error.target is not None and error.target.value == pytest.approx(0.0005)
    mandatory = _checks(seed, "canary", CheckRole.MANDATORY)
    assert len(mandatory) == 10  # the seed's 8, and the canary-vs-production comparison
    assert mandatory["errors no worse than production"] == "error_rate <= 2x stable sequential"
    assert mandatory["p95 no slower than production"] == "p95_latency <= +10% stable sequential"
    assert "support ticket rate unchanged" in _checks(seed, "canary", CheckRole.DESIRABLE)
    pause = _checks(seed, "canary", CheckRole.PAUSE)
    assert pause["customer complaints"] == "customer_complaints > 10 over 1d"
    assert pause["support ticket spike"] == "support_tickets > 2x baseline"
    assert _checks(seed, "small", CheckRole.MANDATORY)[
        "no performance regression vs. stage 1"] == "p95_latency <= +5% stage:canary"
    assert _checks(seed, "medium", CheckRole.MANDATORY)[
        "no cost increase above 10%"] == "cost_per_hour <= +10% baseline"
    assert seed.stages[2].approval is not None and "cto" in seed.stages[2].approval.roles
    alerts = {c.name: c.severity for c in seed.stages[0].checks if c.role is CheckRole.ALERT}
    assert alerts["error rate above 0.5%"] == "critical"
    assert alerts["p95 latency above 150ms"] == "warning"
    assert seed.spec.signals["security-incident"].action == "rollback"
    assert len(seed.spec.notifications.summaries) == 5


def test_validate_json_prints_the_normalised_plan() -> None:
    done = run_novactl("validate", SEED_PLAN, "--output", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    stages = data["stages"]
    assert [(s["name"], s["weight"], s["replicas"]) for s in stages] == [
        ("canary", 1, 1), ("small", 10, 3), ("medium", 50, 8), ("full", 100, 10)]
    assert stages[2]["min_duration_seconds"] == 604800
    assert stages[2]["max_duration_seconds"] == 1209600
    trigger = next(c for c in stages[0]["checks"] if c["name"] == "error-rate-threshold")
    assert trigger["for_seconds"] == 300 and trigger["threshold"]["value"] == pytest.approx(0.01)
    # adapter configs are summarised by keys: URLs and such stay out of the output
    assert "url" not in json.dumps(data["notifications"])


def test_demo_plan_is_valid() -> None:
    assert load_plan(DEMO_PLAN).name == "demo"


BASE = DEMO_PLAN.read_text()


@pytest.mark.parametrize(("name", "old", "new", "where", "message"), [
    ("malformed", "  versions: {stable: v2.9.0, canary: v3.0.0}",
     "  versions: {stable: v2.9.0, canary: v3.0.0", ":17:", "invalid YAML"),
    ("wrong type", "      weight: 20\n", "      weight: twenty\n",
     "spec.stages[1].weight", "valid number"),
    ("weights down", "      weight: 50\n", "      weight: 10\n",
     "spec.stages[2].weight", "weights must not go down"),
    ("unknown metric", "check: error_rate < 5%, target: < 0.5%}",
     "check: eror_rate < 5%, target: < 0.5%}", "criteria.mandatory[0].check",
     "unknown metric 'eror_rate' (did you mean 'error_rate'?)"),
    ("for longer than stage", "check: error_rate > 5% for 4s}", "check: error_rate > 5% for 1h}",
     "spec.stages[0].rollback[0].check", "longer than stage 'canary'"),
    ("bad expression", "check: p95_latency < 100ms, target", "check: p95_latency <> 1, target",
     "criteria.mandatory[1].check", "invalid expression"),
    ("typo", "    retire_after: 2s\n", "    retire_afterr: 2s\n",
     "spec.promotion.retire_afterr", "did you mean 'retire_after'"),
    ("unit mismatch", "check: p95_latency < 100ms, target", "check: p95_latency < 1%, target",
     "criteria.mandatory[1].check", "measures a time but the threshold is a fraction"),
    ("duplicate key", "  defaults:\n    interval: 2s\n",
     "  defaults:\n    interval: 2s\n    interval: 3s\n", ":66:", "duplicate key 'interval'"),
    ("unknown adapter", "    type: local\n    debug_header", "    type: nginx2\n    debug_header",
     "spec.traffic.type", "unknown traffic type 'nginx2'"),
    ("missing field", "  versions: {stable: v2.9.0, canary: v3.0.0}\n", "",
     "spec.versions", "required field 'versions' is missing"),
    ("unknown stage ref", "p95_latency <= 2x stage:canary", "p95_latency <= 2x stage:canery",
     "criteria.mandatory[2].check", "unknown stage 'canery'"),
    ("later stage ref", "p95_latency <= 2x stage:canary", "p95_latency <= 2x stage:full",
     "criteria.mandatory[2].check", "does not come before"),
    ("criteria with for", "check: availability > 99%}", "check: availability > 99% for 2s}",
     "check", "'for' belongs to triggers"),
    ("adapter config", "config: {url: \"{{router}}\"}", "config: {url: \"{{router}}\", tls: 1}",
     "spec.traffic.config.tls", "unknown field 'tls'"),
])
def test_mistakes_are_named_with_file_line_and_field(
        tmp_path: Path, name: str, old: str, new: str, where: str, message: str) -> None:
    assert old in BASE, name
    path = tmp_path / "plan.yaml"
    path.write_text(BASE.replace(old, new, 1))
    with pytest.raises(PlanError) as info:
        load_plan(path)
    first = info.value.issues[0]
    line = str(first)
    assert line.startswith(f"{path}:"), line
    assert first.line is not None and first.column is not None
    assert where in line and message in line, line
    done = run_novactl("validate", path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr.startswith(f"novactl: error: {path}:"), done.stderr


def test_expression_errors_point_at_the_column(tmp_path: Path) -> None:
    text = BASE.replace("check: error_rate < 5%, target: < 0.5%}", "check: error_rate < 1qq}")
    with pytest.raises(PlanError) as info:
        load_plan_text(text, "p.yaml")
    issue = info.value.issues[0]
    line_text = text.splitlines()[issue.line - 1]
    assert line_text[issue.column - 1:].startswith("qq")


def test_several_issues_are_reported_together(tmp_path: Path) -> None:
    text = BASE.replace("      weight: 50\n", "      weight: 10\n").replace(
        "check: error_rate < 5%, target: < 0.5%}", "check: eror_rate < 1%}")
    with pytest.raises(PlanError) as info:
        load_plan_text(text, "p.yaml")
    assert len(info.value.issues) == 2


def test_variables_fill_adapter_configs_not_command_arguments(tmp_path: Path) -> None:
    plan = load_plan(DEMO_PLAN, {"router": "http://127.0.0.1:9"})
    assert plan.spec.traffic.config["url"] == "http://127.0.0.1:9"
    seed = load_plan(SEED_PLAN, {"namespace": "x; rm -rf /"})
    # the command adapter fills {{namespace}} in per argument, at run time
    assert "{{namespace}}" in seed.spec.workload.config["scale"]


def test_unknown_variable_in_a_query_is_an_error() -> None:
    text = BASE.replace('app_critical_errors_total{version="{{version}}"}',
                        'app_critical_errors_total{version="{{versoin}}"}')
    with pytest.raises(PlanError, match=r"unknown variable \{\{versoin\}\}"):
        load_plan_text(text, "p.yaml")


def test_schema_is_json_schema() -> None:
    done = run_novactl("schema")
    assert done.returncode == 0
    schema = json.loads(done.stdout)
    assert schema["title"] == "novactl RolloutPlan"
    assert {"apiVersion", "kind", "metadata", "spec"} <= set(schema["properties"])


def test_normalized_has_every_stage_check(seed) -> None:
    data = normalized(seed)
    assert sum(len(s["checks"]) for s in data["stages"]) == sum(len(s.checks)
                                                                for s in seed.stages)
