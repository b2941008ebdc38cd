"""`novactl demo` end to end, as a new user runs it: healthy, then each fault."""

from __future__ import annotations

import time

import pytest
from conftest import run_novactl


@pytest.mark.slow
def test_demo_healthy_canary_is_promoted() -> None:
    started = time.monotonic()
    done = run_novactl("demo", "--seed", "1", timeout=120)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PROMOTED: v3.0.0 is stable; v2.9.0 retired" in done.stdout
    for stage in ("canary", "small", "medium", "full"):
        assert f"Stage {stage} passed" in done.stdout
    assert "demo: GO for medium as cto" in done.stdout
    assert took < 90


@pytest.mark.slow
@pytest.mark.parametrize(("fault", "trigger"), [
    ("errors", "trigger error-rate-threshold"),
    ("latency", "trigger p95-latency-threshold"),
    ("critical", "trigger critical error detected"),
])
def test_demo_faulty_canary_rolls_back_automatically(fault: str, trigger: str) -> None:
    started = time.monotonic()
    done = run_novactl("demo", "--fault", fault, "--seed", "1", timeout=120)
    took = time.monotonic() - started
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"ROLLED BACK to v2.9.0: {trigger}" in done.stdout
    assert "traffic was back on v2.9.0" in done.stdout
    assert took < 90
