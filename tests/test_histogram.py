"""Cumulative histogram buckets: quantiles as Prometheus computes them, shares above a
value, the bound a latency check compares at, sums of windows."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from novactl.core import histogram

INF = math.inf
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0)


def _from_samples(samples: np.ndarray) -> histogram.Buckets:
    return histogram.normalise([*((b, float((samples <= b).sum())) for b in BOUNDS),
                                (INF, float(len(samples)))])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), q=st.floats(0.01, 0.99))
def test_the_quantile_lies_in_the_bucket_of_the_true_one(seed: int, q: float) -> None:
    samples = np.random.default_rng(seed).lognormal(math.log(0.03), 0.7, 2000)
    buckets = _from_samples(samples)
    true = float(np.quantile(samples, q))
    estimate = histogram.quantile(q, buckets)
    upper = next((b for b in BOUNDS if b >= true), BOUNDS[-1])
    lower = max([0.0, *(b for b in BOUNDS if b < true)])
    assert lower - 1e-12 <= estimate <= upper + 1e-12


def test_prometheus_rules() -> None:
    assert histogram.quantile(0.5, [(1.0, 10), (INF, 10)]) == 0.5
    assert histogram.quantile(0.5, [(-1.0, 10), (INF, 10)]) == -1.0
    assert math.isnan(histogram.quantile(0.5, [(1.0, 10), (2.0, 10)]))  # no +Inf
    assert histogram.quantile(0.99, [(1.0, 5), (INF, 10)]) == 1.0  # in +Inf: highest bound
    # counts that dip (rates extrapolated per bucket) are made monotonic, as Prometheus does
    assert histogram.normalise([(1.0, 5), (2.0, 4), (INF, 6)]) == ((1.0, 5), (2.0, 5), (INF, 6))


def test_share_above_interpolates_inside_a_bucket() -> None:
    buckets = ((0.1, 50.0), (0.2, 90.0), (INF, 100.0))
    assert histogram.fraction_above(buckets, 0.2) == pytest.approx(0.10)
    assert histogram.fraction_above(buckets, 0.15) == pytest.approx(0.30)
    assert histogram.fraction_above(buckets, 0.05) == pytest.approx(0.75)
    assert histogram.fraction_above(buckets, 5.0) == pytest.approx(0.10)  # past the last
    assert histogram.count_above(buckets, 0.1) == 50.0
    assert histogram.count_above(buckets, 0.15) is None


def test_the_bound_nearest_the_quantile_is_chosen() -> None:
    samples = np.random.default_rng(3).lognormal(math.log(0.03), 0.6, 30_000)
    buckets = _from_samples(samples)
    assert histogram.choose_bound(buckets, 0.95) == 0.075  # ~6% above it, ~2% above 0.1
    assert histogram.choose_bound(buckets, 0.5) == 0.025
    assert histogram.choose_bound(((1.0, 0.0), (INF, 0.0)), 0.5) is None


def test_windows_add_at_common_bounds_only() -> None:
    a = ((0.1, 5.0), (0.2, 8.0), (INF, 10.0))
    b = ((0.1, 1.0), (0.3, 2.0), (INF, 4.0))
    assert histogram.add(a, a) == ((0.1, 10.0), (0.2, 16.0), (INF, 20.0))
    assert histogram.add(a, b) == ((0.1, 6.0), (INF, 14.0))
    assert histogram.add((), a) == a


def test_the_smooth_share_is_exact_for_lognormal_latency() -> None:
    from scipy import stats

    dist = stats.lognorm(0.6, scale=0.030)
    buckets = histogram.normalise([*((b, 1e6 * dist.cdf(b)) for b in BOUNDS), (INF, 1e6)])
    for x in (0.06, 0.0682, 0.09, 0.3):
        assert histogram.fraction_above_smooth(buckets, x) == pytest.approx(dist.sf(x),
                                                                            rel=1e-6)
    # a straight line inside the bucket overstates the tail there by a fifth
    assert histogram.fraction_above(buckets, 0.0682) > 1.15 * dist.sf(0.0682)
