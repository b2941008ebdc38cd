"""How long the whole NovaCron v3 seed plan takes on a fake clock.

    python benchmarks/simulation.py

Runs plans/novacron-v3.yaml with the fake adapters (all metrics healthy,
approvals given at each review meeting) from start to completion: 22 days of
stages, promotion, retirement and 30 days of monitoring, evaluated every
5 minutes.  Prints wall time, evaluation rounds and time per round.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    from test_simulation import Simulation, healthy  # the same harness the tests use

    sim = Simulation(healthy)
    started = time.perf_counter()
    result = sim.run()
    took = time.perf_counter() - started
    rounds = sum(r.evaluations for r in result.state.stages)
    if result.state.post_stage is not None:
        rounds += result.state.post_stage.evaluations
    plan_days = (sim.clock.now() - sim.start) / 86400
    print(f"outcome: {result.state.phase.value} after {plan_days:.1f} days of plan time")
    print(f"wall time: {took:.2f}s for {rounds:,} evaluation rounds "
          f"({took / rounds * 1e6:.0f}µs per round, {sim.probe.calls:,} metric queries)")


if __name__ == "__main__":
    main()
