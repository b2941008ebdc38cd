"""The live view of `run` and the tables of `status`, rendered as a terminal shows them."""

from __future__ import annotations

import io

from conftest import write_fake_plan
from rich.console import Console

from novactl._clock import FakeClock
from novactl.cli._views import RunView, check_rows
from novactl.plan import load_plan
from novactl.runner import AdapterSet, Runner, context_for
from novactl.store import MemoryStore


def test_live_view_shows_stage_weight_checks_and_events(tmp_path) -> None:
    plan = load_plan(write_fake_plan(tmp_path, error_rate=0.2, hold="2s over 1s"))
    clock = FakeClock()
    view = RunView(plan, clock)
    runner = Runner(plan, MemoryStore(), AdapterSet(plan, context_for(plan, clock=clock)),
                    clock=clock, observer=view)
    runner.reconcile()
    clock.advance(1)
    runner.reconcile()
    console = Console(file=io.StringIO(), width=160, force_terminal=True, color_system=None)
    console.print(view.render())
    text = console.file.getvalue()
    assert "fake-plan: v1 → v2" in text
    assert "error-rate-threshold" in text and "pending" in text
    assert "20% ≥ 1%" in text  # the reason beside the verdict
    assert "stage.started" in text
    clock.advance(1)
    runner.reconcile()  # the trigger fires: rolled back
    rows = check_rows(plan, view.state, styled=False)
    verdicts = {row[1]: row[5] for row in rows}
    assert verdicts["error-rate-threshold"] == "✖ firing"
