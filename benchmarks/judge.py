"""How right and how fast novactl's judges decide, side by side with the peers' methods.

    python benchmarks/judge.py [--runs 500] [--workers 2] [--seed 1]

Every rollout is a 2-hour stage of 30-second rounds on a fake clock, driven through
novactl's real path — the plan is loaded, the runner asks the fake probe, the probe answers
from seeded synthetic request streams (1,000 req/s split by the router's weight; stable
0.1% errors, log-normal latency with a 30 ms median), the machine evaluates the gates.
The plan's checks are alerts and desirable criteria, so one rollout measures every judge
without one ending the others:

  errors       error_rate > stable sequential         (the default form: any increase)
  errors+50%   error_rate > +50% stable sequential    (what a margin costs)
  p95          p95_latency > stable sequential
  errors≤2x    error_rate <= 2x stable sequential     (a healthy canary passes)
  p95≤+10%     p95_latency <= +10% stable sequential
  p95≤2x       p95_latency <= 2x stable sequential

The peers are computed on the very same request streams, round by round:

  Flagger      a failed-check counter: a round whose canary error rate is above 0.5% (or
               whose p95 is above 1.1x the stable's p95) counts; 5 counts roll back
  Kayenta      Mann-Whitney U on per-round values, canary higher at 98% confidence
               (one-sided 1%): judged once at the end, and re-judged every round (peeked)
  SPRT         Wald's sequential probability ratio test that knows the true effect
               (α = β = 1%), on the same conditional counts novactl uses

Cells: canary at 1% and 10% of the traffic, healthy / errors 5x / errors 2x, and at 1% a
p95 10% slower (every request 10% slower).  Prints false alarms of a healthy canary,
canary requests to rollback (median/p90/p99), detection within the stage, minutes to a
decision.  Needs the test extras (scipy).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROUND = 30.0
ROUNDS = 240  # a 2-hour stage
STABLE_ERRORS = 0.001

PLAN = """
apiVersion: novactl.dev/v1
kind: RolloutPlan
metadata: {{name: judge}}
spec:
  versions: {{stable: v1, canary: v2}}
  traffic: {{type: fake}}
  workload: {{type: fake}}
  probes: {{m: {{type: fake}}}}
  metrics:
    error_rate: {{probe: m, kind: ratio, query: {{numerator: e, denominator: t}}}}
    p95_latency: {{probe: m, kind: histogram, quantile: 0.95, unit: s, query: h}}
  defaults: {{interval: 30s}}
  stages:
    - name: canary
      weight: {weight}
      duration: 2h
      criteria:
        desirable:
          - {{name: "errors≤2x", check: error_rate <= 2x stable sequential}}
          - {{name: "p95≤+10%", check: p95_latency <= +10% stable sequential}}
          - {{name: "p95≤2x", check: p95_latency <= 2x stable sequential}}
      alerts:
        - {{name: errors, check: error_rate > stable sequential}}
        - {{name: "errors+50%", check: error_rate > +50% stable sequential}}
        - {{name: p95, check: p95_latency > stable sequential}}
"""

ALERTS = ("errors", "errors+50%", "p95")
CRITERIA = ("errors≤2x", "p95≤+10%", "p95≤2x")


@dataclass(frozen=True)
class Cell:
    name: str
    weight: float
    error_ratio: float = 1.0
    slower: float = 1.0


CELLS = (
    Cell("healthy, 1%", 1.0),
    Cell("errors 5x, 1%", 1.0, error_ratio=5.0),
    Cell("errors 2x, 1%", 1.0, error_ratio=2.0),
    Cell("p95 +10%, 1%", 1.0, slower=1.1),
    Cell("healthy, 10%", 10.0),
    Cell("errors 5x, 10%", 10.0, error_ratio=5.0),
    Cell("errors 2x, 10%", 10.0, error_ratio=2.0),
)


@dataclass
class Outcome:
    """When (round, canary requests so far) each judge first decided; None: never."""

    decided: dict[str, tuple[int, float] | None] = field(default_factory=dict)


# --------------------------------------------------------------------------- one rollout


def rollout(args: tuple[Cell, int]) -> Outcome:
    cell, seed = args
    from novactl._clock import FakeClock
    from novactl.adapters.fake import FakeProbe, FakeTrafficShifter, FakeWorkload
    from novactl.core.gates import Verdict
    from novactl.runner import AdapterSet, Observer, Runner, context_for
    from novactl.sandbox.synthetic import Behaviour, SyntheticService
    from novactl.store import MemoryStore

    plan = _plan(cell.weight)
    clock = FakeClock(1_767_571_200.0)
    context = context_for(plan, clock=clock)
    traffic = FakeTrafficShifter("t", context=context)
    stable = Behaviour(error_rate=STABLE_ERRORS)
    canary = Behaviour(error_rate=STABLE_ERRORS * cell.error_ratio).slower(cell.slower)
    service = SyntheticService(weight=lambda: traffic.world.weight, start=clock.now(),
                               stable=stable, canary=canary, seed=seed, tick=ROUND)
    probe = FakeProbe("m", context=context, script=service.answer)
    adapters = AdapterSet(plan, context, traffic=traffic,
                          workload=FakeWorkload("w", context=context), probes={"m": probe})
    outcome = Outcome()
    wanted = set(ALERTS) | set(CRITERIA)  # a healthy canary: every judge, the whole stage
    if cell.error_ratio != 1.0:  # a regression: until the error judges have caught it
        wanted = {"errors", "errors+50%"}
    elif cell.slower != 1.0:
        wanted = {"p95", "p95≤+10%", "p95≤2x"}

    class Watch(Observer):
        def on_results(self, results, state) -> None:  # type: ignore[no-untyped-def]
            index = state.stages[-1].evaluations
            for r in results:
                if r.name not in wanted or r.name in outcome.decided:
                    continue
                fired = r.verdict is Verdict.FAIL if r.name in ALERTS else (
                    r.verdict is Verdict.PASS)
                if fired:
                    outcome.decided[r.name] = (index, float(r.sample_size or 0.0))

    runner = Runner(plan, MemoryStore(keep_evaluations=0, copy="pickle"), adapters,
                    clock=clock, actor="bench", observer=Watch())
    runner.run(poll=ROUND, max_passes=ROUNDS + 10,
               until=lambda result: result.state.stages and (
                   result.state.stages[-1].evaluations >= ROUNDS
                   or wanted <= set(outcome.decided)))
    for name in (*ALERTS, *CRITERIA):
        outcome.decided.setdefault(name, None)
    _peers(cell, service, outcome)
    return outcome


_PLANS: dict[float, object] = {}


def _plan(weight: float):  # type: ignore[no-untyped-def]
    from novactl.plan import load_plan_text

    if weight not in _PLANS:
        _PLANS[weight] = load_plan_text(PLAN.format(weight=weight), "judge.yaml")
    return _PLANS[weight]


# --------------------------------------------------------------------------- the peers


def _rounds(service, role: str) -> list[tuple[float, float, list[float]]]:  # type: ignore[no-untyped-def]
    start = service.start
    return [service.counts(role, start + k * ROUND, start + (k + 1) * ROUND)
            for k in range(ROUNDS)]


def _p95(bins: list[float], bounds: tuple[float, ...]) -> float:
    from novactl.core import histogram

    cumulative, running = [], 0.0
    for bound, count in zip((*bounds, math.inf), bins, strict=True):
        running += count
        cumulative.append((bound, running))
    return histogram.quantile(0.95, cumulative)


def _peers(cell: Cell, service, outcome: Outcome) -> None:  # type: ignore[no-untyped-def]
    from novactl.core import histogram
    from novactl.core.sequential import share_for_ratio

    canary, stable = _rounds(service, "canary"), _rounds(service, "stable")
    bounds = service.bounds
    c_rate = [e / r if r else 0.0 for r, e, _ in canary]
    s_rate = [e / r if r else 0.0 for r, e, _ in stable]
    c_p95 = [_p95(b, bounds) for _, _, b in canary]
    s_p95 = [_p95(b, bounds) for _, _, b in stable]
    requests = list(_running(r for r, _, _ in canary))

    def first(flags) -> tuple[int, float] | None:  # type: ignore[no-untyped-def]
        for k, flag in enumerate(flags):
            if flag:
                return (k + 1, requests[k])
        return None

    # Flagger: a cumulative failed-check counter, 5 failures roll back
    def counter(fails: list[bool]) -> tuple[int, float] | None:
        count = 0
        for k, failed in enumerate(fails):
            count += failed
            if count >= 5:
                return (k + 1, requests[k])
        return None

    outcome.decided["flagger errors"] = counter([rate > 0.005 for rate in c_rate])
    outcome.decided["flagger p95"] = counter(
        [not math.isnan(c) and c > 1.1 * s for c, s in zip(c_p95, s_p95, strict=True)])

    # Kayenta: Mann-Whitney, canary higher at 98% (one-sided 1%)
    def higher(a: list[float], b: list[float]) -> bool:
        a = [x for x in a if not math.isnan(x)]
        b = [x for x in b if not math.isnan(x)]
        if len(a) < 3 or len(b) < 3 or len(set(a) | set(b)) < 2:
            return False
        return mann_whitney_greater(a, b) < 0.01

    for metric, c, s in (("errors", c_rate, s_rate), ("p95", c_p95, s_p95)):
        outcome.decided[f"kayenta {metric} once"] = (
            (ROUNDS, requests[-1]) if higher(c, s) else None)
        peeked = None
        for k in range(2, ROUNDS):
            if higher(c[:k + 1], s[:k + 1]):
                peeked = (k + 1, requests[k])
                break
        outcome.decided[f"kayenta {metric} peeked"] = peeked

    # Wald's SPRT with the true effect known, on the conditional counts
    limit_up, limit_down = math.log(0.99 / 0.01), math.log(0.01 / 0.99)

    def sprt(events_c, trials_c, events_s, trials_s, ratio: float):  # type: ignore[no-untyped-def]
        x = n = tc = ts = 0.0
        for k in range(ROUNDS):
            x += events_c[k]
            n += events_c[k] + events_s[k]
            tc += trials_c[k]
            ts += trials_s[k]
            share = tc / (tc + ts)
            t0, t1 = share_for_ratio(1.0, share), share_for_ratio(ratio, share)
            llr = x * math.log(t1 / t0) + (n - x) * math.log((1 - t1) / (1 - t0))
            if llr >= limit_up:
                return (k + 1, requests[k])
            if llr <= limit_down:
                return None  # accepted "no regression": no rollback
        return None

    trials_c = [r for r, _, _ in canary]
    trials_s = [r for r, _, _ in stable]
    ratio = cell.error_ratio if cell.error_ratio != 1.0 else 5.0  # healthy: tuned for 5x
    outcome.decided["sprt errors"] = sprt([e for _, e, _ in canary], trials_c,
                                          [e for _, e, _ in stable], trials_s, ratio)
    # latency: the share of requests above the stable's p95 bound, effect read off the truth
    calibration = tuple(zip((*bounds, math.inf), _running(stable[0][2]), strict=True))
    bound = histogram.choose_bound(calibration, 0.95) or bounds[-1]
    index = bounds.index(bound)
    slow_c = [sum(b[index + 1:]) for _, _, b in canary]
    slow_s = [sum(b[index + 1:]) for _, _, b in stable]
    truth_s = 1 - _lognormal_cdf(bound, 0.030, 0.6)
    truth_c = 1 - _lognormal_cdf(bound / (cell.slower if cell.slower != 1.0 else 1.1), 0.030,
                                 0.6)
    outcome.decided["sprt p95"] = sprt(slow_c, trials_c, slow_s, trials_s, truth_c / truth_s)


def mann_whitney_greater(a: list[float], b: list[float]) -> float:
    """One-sided p-value that ``a`` tends to be larger than ``b``: the normal approximation
    with tie and continuity corrections (scipy's ``method="asymptotic"``; checked against
    scipy when the benchmark starts)."""
    pooled = sorted([(x, 0) for x in a] + [(x, 1) for x in b])
    n = len(pooled)
    rank_a, ties, i = 0.0, 0.0, 0
    while i < n:
        j = i
        while j + 1 < n and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        rank = (i + j) / 2 + 1
        rank_a += rank * sum(1 for k in range(i, j + 1) if pooled[k][1] == 0)
        t = j - i + 1
        ties += t ** 3 - t
        i = j + 1
    na, nb = len(a), len(b)
    u = rank_a - na * (na + 1) / 2
    mean = na * nb / 2
    var = na * nb / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return 1.0
    z = (u - mean - 0.5) / math.sqrt(var)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _check_against_scipy() -> None:
    import random

    from scipy.stats import mannwhitneyu

    rng = random.Random(0)
    for _ in range(50):
        a = [rng.choice((0.0, 0.001, 0.002, rng.random())) for _ in range(rng.randint(3, 60))]
        b = [rng.choice((0.0, 0.001, rng.random())) for _ in range(rng.randint(3, 60))]
        if len(set(a) | set(b)) < 2:
            continue
        mine = mann_whitney_greater(a, b)
        theirs = mannwhitneyu(a, b, alternative="greater", method="asymptotic").pvalue
        assert abs(mine - theirs) < 1e-9, (mine, theirs)


def _lognormal_cdf(x: float, median: float, sigma: float) -> float:
    return 0.5 * math.erfc(-(math.log(x) - math.log(median)) / (sigma * math.sqrt(2.0)))


def _running(values):  # type: ignore[no-untyped-def]
    total = 0.0
    for v in values:
        total += v
        yield total


# --------------------------------------------------------------------------- report


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _summary(name: str, decided: list[tuple[int, float] | None], *, healthy: bool,
             runs: int) -> str:
    hits = [d for d in decided if d is not None]
    share = len(hits) / runs
    if healthy:
        return f"  {name:<22} false alarms {len(hits):>4}/{runs} ({share:.1%})"
    if not hits:
        return f"  {name:<22} caught {0:>4}/{runs}"
    reqs = [r for _, r in hits]
    minutes = [k * ROUND / 60 for k, _ in hits]
    return (f"  {name:<22} caught {len(hits):>4}/{runs} ({share:.1%}) · canary requests "
            f"median {statistics.median(reqs):>7,.0f} p90 {_quantile(reqs, 0.9):>7,.0f} "
            f"p99 {_quantile(reqs, 0.99):>7,.0f} · minutes median "
            f"{statistics.median(minutes):.1f} p99 {_quantile(minutes, 0.99):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--workers", type=int, default=min(2, multiprocessing.cpu_count()))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cells", default="", help="run only cells whose name contains one "
                        "of these ';'-separated words, e.g. 'healthy;5x'")
    options = parser.parse_args()
    _check_against_scipy()
    words = [w.strip() for w in options.cells.split(";") if w.strip()]
    cells = [c for c in CELLS if not words or any(w in c.name for w in words)]
    print(f"{options.runs} rollouts per cell, 2 h stages of 30 s rounds, 1,000 req/s, "
          f"stable {STABLE_ERRORS:.1%} errors; seeds {options.seed}..."
          f"{options.seed + options.runs - 1}")
    started = time.perf_counter()
    with multiprocessing.Pool(options.workers) as pool:
        for cell in cells:
            jobs = [(cell, options.seed + i) for i in range(options.runs)]
            outcomes = pool.map(rollout, jobs, chunksize=8)
            healthy = cell.error_ratio == 1.0 and cell.slower == 1.0
            print(f"\n{cell.name} (canary {cell.weight * 10:.0f} req/s)")
            names = list(outcomes[0].decided)
            if cell.slower != 1.0:
                names = [n for n in names if "p95" in n]
            elif not healthy:
                names = [n for n in names if "p95" not in n]
            for name in names:
                decided = [o.decided[name] for o in outcomes]
                is_criterion = name in CRITERIA
                if is_criterion:
                    print(_summary(f"{name} (pass)", decided, healthy=False, runs=options.runs))
                else:
                    print(_summary(name, decided, healthy=healthy, runs=options.runs))
            sys.stdout.flush()
    print(f"\nwall time {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
