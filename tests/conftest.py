"""Shared fixtures: fake clocks, plans written to temp dirs, CLI invocation."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLANS = ROOT / "plans"
SEED_PLAN = PLANS / "novacron-v3.yaml"
DEMO_PLAN = PLANS / "demo.yaml"


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Call novactl in-process: returns (exit code, stdout, stderr)."""
    from novactl.cli import main
    from novactl.cli._terminal import term

    def run(*args: str) -> tuple[int, str, str]:
        term.output = "text"
        saved = dict(os.environ)  # root options (--store, --dry-run, -n...) export variables
        try:
            code = main([str(a) for a in args])
        finally:
            os.environ.clear()
            os.environ.update(saved)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def run_novactl(*args: str, timeout: float = 120, env: dict[str, str] | None = None,
                cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """novactl in a child process, as an operator or CI step runs it."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("NOVACTL_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "novactl", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=cwd or ROOT)


FAKE_PLAN = """\
apiVersion: novactl.dev/v1
kind: RolloutPlan
metadata:
  name: fake-plan
spec:
  versions: {{stable: v1, canary: v2}}
  traffic: {{type: fake, debug_header: {{name: X-Canary-Debug, value: "1"}},
            config: {{world: "{world}"}}}}
  workload: {{type: fake, config: {{world: "{world}"}}}}
  probes:
    m: {{type: fake, config: {{values: {values}, rate: 100000}}}}
  metrics:
    error_rate: {{probe: m, kind: ratio, query: {{numerator: e, denominator: t}}}}
    p95: {{probe: m, unit: s, query: q}}
  defaults: {{interval: {interval}}}
  every_stage:
    rollback:
      - {{name: error-rate-threshold, check: error_rate > 5% for {hold}}}
  stages:
    - {{name: one, weight: 10, replicas: 1, duration: {duration},
        criteria: {{mandatory: [error_rate < 1%, p95 < 100ms]}}}}
    - {{name: two, weight: 50, replicas: 2, duration: {duration},
        criteria: {{mandatory: [error_rate < 1%]}}{approval}}}
  promotion: {{replicas: 3, retire_after: {retire}, rollback_window: {window}}}
  signals:
    security-incident: {{action: rollback}}
    high-severity-bug: {{action: pause}}
"""


@pytest.fixture
def fake_plan(tmp_path: Path) -> Iterator[Path]:
    """A small plan on fake adapters whose world lives in a JSON file beside it."""
    yield write_fake_plan(tmp_path)


def write_fake_plan(directory: Path, *, error_rate: float = 0.0001, approval: bool = False,
                    name: str = "plan.yaml", interval: str = "1s", duration: str = "2s",
                    retire: str = "1s", window: str = "2s", hold: str = "1s") -> Path:
    world = directory / "world.json"
    values = f"{{error_rate: {error_rate}, p95: 0.05}}"
    text = FAKE_PLAN.format(world=world, values=values,
                            approval=", approval: {roles: [cto]}" if approval else "",
                            interval=interval, duration=duration, retire=retire, window=window,
                            hold=hold)
    path = directory / name
    path.write_text(text)
    return path
