"""The command traffic shifter and workload: templates, argument safety, errors."""

from __future__ import annotations

import json
import re
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from novactl._errors import TrafficError, WorkloadError
from novactl.adapters._base import AdapterContext, Readiness
from novactl.adapters._registry import create
from novactl.adapters.command import CommandTrafficShifter, CommandWorkload, render_command

RECORDER = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["RECORD"], "a") as f:
    f.write(json.dumps({{
        "argv": sys.argv[1:],
        "cwd": os.getcwd(),
        "env": {{k: v for k, v in os.environ.items() if k.startswith(("NOVACTL_", "EXTRA"))}},
    }}) + "\\n")
print(os.environ.get("PRINT", ""))
"""


def script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture()
def base(tmp_path: Path) -> Path:
    script(tmp_path, "rec.py", RECORDER)
    return tmp_path


def ctx(base: Path, **env: str) -> AdapterContext:
    return AdapterContext(
        plan_name="novacron-v3", service="novacron-api", stable_version="v2.9.0",
        canary_version="v3.0.0", base_dir=base,
        env={"PATH": "/usr/bin:/bin", "RECORD": str(base / "record.jsonl"), **env},
    )


def calls(base: Path) -> list[dict[str, Any]]:
    path = base / "record.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def shifter(base: Path, context: AdapterContext | None = None,
            **config: Any) -> CommandTrafficShifter:
    config.setdefault("set_weight",
                      "./rec.py --version {{canary_version}} --canary-weight {{weight}}")
    return CommandTrafficShifter("traffic", config, context or ctx(base))


def workload(base: Path, context: AdapterContext | None = None, **config: Any
             ) -> CommandWorkload:
    config.setdefault("deploy", "./rec.py deploy {{role}} {{version}} {{replicas}}")
    return CommandWorkload("workload", config, context or ctx(base))


# ---------------------------------------------------------------- traffic


def test_set_weight_runs_the_template_with_values_and_environment(base: Path) -> None:
    traffic = shifter(base)
    traffic.set_weight(10.0)
    traffic.set_weight(12.5)
    first, second = calls(base)
    assert first["argv"] == ["--version", "v3.0.0", "--canary-weight", "10"]
    assert second["argv"][-1] == "12.5"
    assert Path(first["cwd"]).resolve() == base.resolve()
    env = first["env"]
    assert env["NOVACTL_WEIGHT"] == "10"
    assert env["NOVACTL_PLAN"] == "novacron-v3"
    assert env["NOVACTL_OPERATION"] == "set_weight"
    assert env["NOVACTL_CANARY_VERSION"] == "v3.0.0"


def test_registry_builds_the_command_adapters(base: Path) -> None:
    traffic = create("traffic", "command", "traffic",
                     {"set_weight": "./rec.py {{weight}}"}, ctx(base))
    assert isinstance(traffic, CommandTrafficShifter)
    traffic.set_weight(0)
    assert calls(base)[0]["argv"] == ["0"]
    assert isinstance(create("workload", "command", "workload", {"deploy": "./rec.py"},
                             ctx(base)), CommandWorkload)


def test_weight_outside_0_100_is_refused(base: Path) -> None:
    with pytest.raises(TrafficError, match="between 0 and 100"):
        shifter(base).set_weight(101)
    assert calls(base) == []


@pytest.mark.parametrize("value", ["v1; rm -rf /", "$(touch pwned)", "a b  c", "'\"`x`", ""])
def test_a_value_is_always_one_argument_without_shell(base: Path, value: str) -> None:
    context = ctx(base)
    context.canary_version = value
    shifter(base, context).set_weight(5)
    assert calls(base)[0]["argv"] == ["--version", value, "--canary-weight", "5"]
    assert not (base / "pwned").exists()


@pytest.mark.parametrize("value", ["v1; rm -rf /", "$(touch pwned)", "a b  c", "it's"])
def test_values_are_quoted_with_shell(base: Path, value: str) -> None:
    context = ctx(base)
    context.canary_version = value
    traffic = shifter(base, context, shell=True,
                      set_weight="./rec.py {{canary_version}} {{weight}} && echo ok | cat")
    traffic.set_weight(5)
    assert calls(base)[0]["argv"] == [value, "5"]
    assert not (base / "pwned").exists()


def test_render_command_splits_before_substituting() -> None:
    values = {"version": "v1; rm -rf /", "weight": "10"}
    assert render_command('deploy --v {{ version }} "--msg=at {{weight}}%"', values,
                          shell=False) == ["deploy", "--v", "v1; rm -rf /", "--msg=at 10%"]
    assert render_command("deploy {{version}}", values, shell=True) == [
        "/bin/sh", "-c", "deploy 'v1; rm -rf /'"]


def test_go_templates_are_left_alone(base: Path) -> None:
    traffic = shifter(base, set_weight="./rec.py -o go-template={{.spec.weight}} {{weight}}")
    traffic.set_weight(1)
    assert calls(base)[0]["argv"] == ["-o", "go-template={{.spec.weight}}", "1"]


def test_non_zero_exit_names_command_code_and_last_stderr_line(base: Path) -> None:
    script(base, "fail.sh", "#!/bin/sh\necho progress\necho 'warming up' >&2\n"
                            "echo 'error: quota exceeded' >&2\necho >&2\nexit 3\n")
    with pytest.raises(TrafficError) as err:
        shifter(base, set_weight="./fail.sh {{weight}}").set_weight(10)
    message = str(err.value)
    assert "./fail.sh" in message
    assert "exited with code 3" in message
    assert message.endswith("error: quota exceeded")
    assert "warming up" not in message and "\n" not in message


def test_failure_falls_back_to_stdout_and_is_truncated(base: Path) -> None:
    script(base, "fail.sh", "#!/bin/sh\necho " + "x" * 500 + "\nexit 1\n")
    with pytest.raises(TrafficError) as err:
        shifter(base, set_weight="./fail.sh").set_weight(10)
    tail = str(err.value).split(": ", 1)[1]
    assert len(tail) <= 200
    assert "exited with code 1: xxx" in tail


def test_env_values_reach_the_command_but_never_the_message(base: Path) -> None:
    script(base, "leak.sh", "#!/bin/sh\n./rec.py\necho \"token is $EXTRA_TOKEN\" >&2\nexit 2\n")
    traffic = shifter(base, set_weight="./leak.sh", env={"EXTRA_TOKEN": "s3cr3t-value"})
    with pytest.raises(TrafficError) as err:
        traffic.set_weight(10)
    assert calls(base)[0]["env"]["EXTRA_TOKEN"] == "s3cr3t-value"
    assert "s3cr3t-value" not in str(err.value)
    assert "token is ***" in str(err.value)


def test_timeout_kills_the_whole_process_group(base: Path) -> None:
    traffic = shifter(base, shell=True, timeout="300ms", set_weight="sleep 5; echo {{weight}}")
    started = time.monotonic()
    with pytest.raises(TrafficError, match=r"sleep timed out after 300ms"):
        traffic.set_weight(10)
    assert time.monotonic() - started < 3


def test_missing_and_non_executable_commands(base: Path) -> None:
    with pytest.raises(TrafficError, match=r"command not found: \./nope\.sh"):
        shifter(base, set_weight="./nope.sh {{weight}}").set_weight(1)
    (base / "plain.sh").write_text("#!/bin/sh\n")
    with pytest.raises(TrafficError, match="not executable"):
        shifter(base, set_weight="./plain.sh").set_weight(1)


def test_cwd_is_resolved_against_the_plan_directory(base: Path) -> None:
    scripts = base / "scripts"
    scripts.mkdir()
    script(scripts, "set.py", RECORDER)
    shifter(base, cwd="scripts", set_weight="./set.py {{weight}}").set_weight(3)
    assert Path(calls(base)[0]["cwd"]).resolve() == scripts.resolve()
    with pytest.raises(TrafficError, match=r"working directory .* does not exist"):
        shifter(base, cwd="nowhere").set_weight(3)


@pytest.mark.parametrize(("printed", "expected"), [
    ("10", 10.0), ("10%", 10.0), (" 25.5 % ", 25.5), ("reading router...\n0\n\n", 0.0),
])
def test_get_weight_parses_the_last_line(base: Path, printed: str, expected: float) -> None:
    traffic = shifter(base, ctx(base, PRINT=printed), get_weight="./rec.py")
    assert traffic.get_weight() == expected


@pytest.mark.parametrize("printed", ["abc", "150", ""])
def test_get_weight_rejects_nonsense(base: Path, printed: str) -> None:
    traffic = shifter(base, ctx(base, PRINT=printed), get_weight="./rec.py")
    with pytest.raises(TrafficError, match="get_weight"):
        traffic.get_weight()


def test_unconfigured_read_back_and_header_route_say_so(base: Path) -> None:
    traffic = shifter(base)
    assert traffic.get_weight() is None
    assert traffic.set_header_route("x-canary", "1") is False
    assert calls(base) == []


def test_header_route_runs_its_command(base: Path) -> None:
    traffic = shifter(base, set_header_route="./rec.py {{header}}={{value}}")
    assert traffic.set_header_route("x-canary", "always; reboot") is True
    call = calls(base)[0]
    assert call["argv"] == ["x-canary=always; reboot"]
    assert call["env"]["NOVACTL_HEADER"] == "x-canary"
    assert call["env"]["NOVACTL_HEADER_VALUE"] == "always; reboot"


# ---------------------------------------------------------------- workload

ROLES = {"canary": {"deployment": "novacron-api-canary"},
         "stable": {"deployment": "novacron-api"}}


def test_deploy_uses_role_placeholders_and_empty_replicas(base: Path) -> None:
    wl = workload(base, roles=ROLES,
                  deploy="./rec.py {{deployment}} {{version}} --replicas={{replicas}}")
    wl.deploy("canary", "v3.0.0", 2)
    wl.deploy("stable", "v2.9.0", None)
    first, second = calls(base)
    assert first["argv"] == ["novacron-api-canary", "v3.0.0", "--replicas=2"]
    assert first["env"]["NOVACTL_ROLE"] == "canary"
    assert first["env"]["NOVACTL_REPLICAS"] == "2"
    assert second["argv"] == ["novacron-api", "v2.9.0", "--replicas="]
    assert second["env"]["NOVACTL_REPLICAS"] == ""


def test_scale_promote_retire(base: Path) -> None:
    wl = workload(base, roles=ROLES,
                  scale="./rec.py scale deployment/{{deployment}} --replicas={{replicas}}",
                  promote="./rec.py promote {{canary_deployment}} {{deployment}} {{version}}",
                  retire="./rec.py retire {{role}} {{version}}")
    wl.scale("canary", 4)
    wl.promote("v3.0.0", 6)
    wl.retire("v2.9.0")
    assert [c["argv"] for c in calls(base)] == [
        ["scale", "deployment/novacron-api-canary", "--replicas=4"],
        ["promote", "novacron-api-canary", "novacron-api", "v3.0.0"],
        ["retire", "stable", "v2.9.0"],
    ]


def test_unconfigured_workload_operations(base: Path) -> None:
    wl = workload(base)
    with pytest.raises(WorkloadError, match="no scale command configured"):
        wl.scale("canary", 3)
    wl.retire("v2.9.0")
    with pytest.raises(WorkloadError, match="no promote command configured"):
        wl.promote("v3.0.0", None)
    assert calls(base) == []
    ready = wl.ready("canary")
    assert ready.ready is True and "no ready command" in ready.message


def test_ready_follows_the_exit_code(base: Path) -> None:
    script(base, "ready.sh", "#!/bin/sh\nif [ \"$1\" = novacron-api ]; then\n"
                             "  echo '3/3 ready'; exit 0\nfi\n"
                             "echo 'waiting for rollout'\necho '1/3 ready' >&2\nexit 1\n")
    wl = workload(base, roles=ROLES, ready="./ready.sh {{deployment}}")
    assert wl.ready("stable") == Readiness(True, "3/3 ready")
    assert wl.ready("canary") == Readiness(False, "1/3 ready")
    script(base, "quiet.sh", "#!/bin/sh\nexit 4\n")
    quiet = workload(base, ready="./quiet.sh")
    assert quiet.ready("canary") == Readiness(False, "canary: not ready (exit code 4)")


def test_workload_failures_are_workload_errors(base: Path) -> None:
    script(base, "boom.sh", "#!/bin/sh\necho 'image not found' >&2\nexit 9\n")
    with pytest.raises(WorkloadError, match=r"deploy: \./boom\.sh exited with code 9: image"):
        workload(base, deploy="./boom.sh {{version}}").deploy("canary", "v3", 1)


def test_undeclared_role_is_a_clear_error(base: Path) -> None:
    wl = workload(base, roles=ROLES, deploy="./rec.py {{deployment}}")
    with pytest.raises(WorkloadError, match="role 'preview' has no 'deployment'"):
        wl.deploy("preview", "v3", 1)


# ---------------------------------------------------------------- validation


def test_unknown_placeholder_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as err:
        CommandWorkload.Config.model_validate({"deploy": "./deploy.sh {{verison}}"})
    text = str(err.value)
    assert "unknown placeholder {{verison}}" in text
    assert "did you mean {{version}}" in text
    assert "allowed: canary_version, replicas, role, service, stable_version, version" in text
    assert err.value.errors()[0]["loc"] == ("deploy",)


def test_placeholders_are_checked_per_command() -> None:
    with pytest.raises(ValidationError, match=re.escape("unknown placeholder {{weight}}")):
        CommandTrafficShifter.Config.model_validate(
            {"set_weight": "./w.sh {{weight}}", "get_weight": "./w.sh {{weight}}"})
    with pytest.raises(ValidationError, match=re.escape("unknown placeholder {{version}}")):
        CommandWorkload.Config.model_validate({"deploy": "x", "scale": "x {{version}}"})


def test_plan_variables_come_through_the_validation_context(base: Path) -> None:
    data = {"set_weight": "./rec.py -n {{namespace}} {{weight}}"}
    with pytest.raises(ValidationError):
        CommandTrafficShifter.Config.model_validate(data)
    CommandTrafficShifter.Config.model_validate(data, context={"variables": {"namespace": 1}})
    context = ctx(base)
    context.variables = {"namespace": "prod"}
    CommandTrafficShifter("traffic", data, context).set_weight(7)
    assert calls(base)[0]["argv"] == ["-n", "prod", "7"]


def test_role_keys_are_validated() -> None:
    ok = CommandWorkload.Config.model_validate(
        {"deploy": "d {{deployment}} {{stable_deployment}}", "roles": ROLES})
    assert ok.roles == ROLES
    with pytest.raises(ValidationError, match="roles stable do not define 'deployment'"):
        CommandWorkload.Config.model_validate(
            {"deploy": "d {{deployment}}", "roles": {"canary": {"deployment": "a"},
                                                    "stable": {}}})
    with pytest.raises(ValidationError, match=re.escape("hide the built-in {{version}}")):
        CommandWorkload.Config.model_validate(
            {"deploy": "d", "roles": {"canary": {"version": "x"}}})
    with pytest.raises(ValidationError, match=re.escape("unknown placeholder {{deployment}}")):
        CommandWorkload.Config.model_validate({"deploy": "d {{deployment}}"})


@pytest.mark.parametrize(("config", "message"), [
    ({"set_weight": "  "}, "the command is empty"),
    ({"set_weight": "./w.sh 'unclosed {{weight}}"}, "cannot split"),
    ({"set_weight": "./w.sh '{{weight}}'", "shell": True}, "remove the quotes"),
    ({"set_weight": './w.sh "x{{weight}}"', "shell": True}, "remove the quotes"),
    ({"set_weight": "./w.sh", "timeout": 0}, "greater than 0"),
    ({"set_weight": "./w.sh", "env": {"A-B": "x"}}, "invalid environment variable"),
    ({"set_weight": "./w.sh", "retries": 2}, "Extra inputs"),
])
def test_bad_configs(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CommandTrafficShifter.Config.model_validate(config)


def test_quoted_placeholders_are_fine_without_shell() -> None:
    config = CommandTrafficShifter.Config.model_validate(
        {"set_weight": "./w.sh '{{weight}}' \"--at {{weight}}\""})
    assert render_command(config.set_weight, {"weight": "1 2"}, shell=False) == [
        "./w.sh", "1 2", "--at 1 2"]
