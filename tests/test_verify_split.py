"""verify-split through the sandbox's real weighted router."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DEMO_PLAN

from novactl.core.stats import requests_for_tolerance, wilson_interval
from novactl.sandbox import Sandbox


@pytest.fixture
def sandbox():
    box = Sandbox(stable_version="v2.9.0", startup_delay=0.0, seed=7,
                  base_latency=(0.0, 0.001))
    box.start()
    box.deploy("canary", "v3.0.0", 1)
    try:
        yield box
    finally:
        box.stop()


def test_wilson_interval() -> None:
    low, high = wilson_interval(100, 1000)
    assert low < 0.1 < high and high - low < 0.04
    assert wilson_interval(0, 50)[0] == 0.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert requests_for_tolerance(0.10, 0.02) == 3458
    assert requests_for_tolerance(0.5, 0.5) == 100  # never fewer than the minimum


def test_split_matches(cli, sandbox) -> None:
    sandbox.router.set_weight(20)
    code, out, err = cli("verify-split", DEMO_PLAN, "--var", f"router={sandbox.router_url}",
                         "--var", f"control={sandbox.control_url}",
                         "--expected-canary-percent", "20", "--requests", "600",
                         "--output", "json")
    result = json.loads(out)
    assert code == 0, err
    assert result["verdict"] == "pass"
    assert result["counts"]["canary"] + result["counts"]["stable"] == 600
    assert result["debug_header"]["all_canary"] is True
    low, high = result["interval95"]
    assert low <= 0.20 <= high or abs(result["canary_share"] - 0.2) < 0.05


def test_split_mismatch_exits_7(cli, sandbox) -> None:
    sandbox.router.set_weight(20)
    code, _out, err = cli("verify-split", DEMO_PLAN, "--var", f"router={sandbox.router_url}",
                         "--var", f"control={sandbox.control_url}",
                         "--expected-canary-percent", "50", "--requests", "400",
                         "--tolerance", "5")
    assert code == 7
    assert "the split does not match" in err


def test_unreachable_router_exits_6(cli, tmp_path: Path) -> None:
    code, _out, err = cli("verify-split", DEMO_PLAN, "--url", "http://127.0.0.1:9/",
                         "--expected-canary-percent", "10", "--requests", "5",
                         "--header-probes", "0")
    assert code == 6 and "no request was answered" in err
