"""The synthetic request streams the simulations and benchmarks run on."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import stats

from novactl.core import histogram
from novactl.core.observations import ProbeQuery
from novactl.sandbox.synthetic import BUCKETS, Behaviour, SyntheticService, poisson


@pytest.mark.parametrize("lam", [0.3, 4.0, 25.0, 900.0])
def test_poisson_draws_match_the_distribution(lam: float) -> None:
    rng = random.Random(int(lam * 10))
    draws = np.array([poisson(rng, lam) for _ in range(20_000)])
    assert draws.mean() == pytest.approx(lam, rel=0.03, abs=0.02)
    assert draws.var() == pytest.approx(lam, rel=0.06, abs=0.03)
    # and the shape, not only the moments
    low, high = stats.poisson.ppf([0.05, 0.95], lam)
    assert ((draws >= low) & (draws <= high)).mean() == pytest.approx(
        stats.poisson.cdf(high, lam) - stats.poisson.cdf(low - 1, lam), abs=0.01)


def _service(weight: float = 1.0, **kw) -> SyntheticService:
    return SyntheticService(weight=lambda: weight, start=0.0, seed=3, **kw)


def test_the_weight_splits_the_requests() -> None:
    svc = _service(weight=10.0)
    canary, _, _ = svc.counts("canary", 0, 3600)
    stable, _, _ = svc.counts("stable", 0, 3600)
    assert canary == pytest.approx(100 * 3600, rel=0.01)
    assert stable == pytest.approx(900 * 3600, rel=0.01)


def test_overlapping_windows_see_the_same_requests() -> None:
    svc = _service()
    whole = svc.counts("canary", 0, 600)
    halves = [svc.counts("canary", 0, 300), svc.counts("canary", 300, 600)]
    assert whole[0] == pytest.approx(halves[0][0] + halves[1][0])
    assert whole[1] == pytest.approx(halves[0][1] + halves[1][1])
    assert svc.counts("canary", 0, 600) == whole  # drawn once, kept


def test_latency_buckets_follow_the_behaviour() -> None:
    svc = _service(canary=Behaviour(latency_median=0.05, latency_sigma=0.5))
    buckets = svc.answer(ProbeQuery("p95", "histogram", {}, "v2", "canary", 3600.0, 3600.0))
    assert isinstance(buckets, list) and math.isinf(buckets[-1][0])
    p95 = histogram.quantile(0.95, buckets)
    true = 0.05 * math.exp(0.5 * stats.norm.ppf(0.95))
    upper = next(b for b in BUCKETS if b >= true)
    lower = max(b for b in BUCKETS if b < true)
    assert lower <= p95 <= upper
    errors, requests = svc.answer(ProbeQuery("e", "ratio", {}, "v2", "canary", 3600.0, 3600.0))
    assert requests == pytest.approx(36_000, rel=0.02) and errors <= 60


def test_behaviour_may_change_over_time() -> None:
    svc = _service(weight=50.0, canary=lambda t: Behaviour(error_rate=0.02 if t >= 600 else 0))
    _, before, _ = svc.counts("canary", 0, 600)
    _, after, _ = svc.counts("canary", 600, 1200)
    assert before == 0 and after == pytest.approx(0.02 * 500 * 600, rel=0.15)
