"""Cumulative histogram buckets, the way Prometheus keeps them: pure arithmetic.

A histogram is a tuple of ``(upper bound, cumulative count)`` pairs, ascending, the last
bound ``+Inf`` (its count is the number of observations).  :func:`normalise` turns what a
probe read into that form: identical bounds merged, counts made non-decreasing (a rate
extrapolated per bucket can dip; Prometheus smooths it the same way).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

__all__ = [
    "Buckets",
    "add",
    "choose_bound",
    "count_above",
    "fraction_above",
    "fraction_above_smooth",
    "normalise",
    "quantile",
    "total",
]

Buckets = tuple[tuple[float, float], ...]


def normalise(pairs: Iterable[tuple[float, float]]) -> Buckets:
    """Sorted, identical bounds merged, cumulative counts never going down."""
    pairs = tuple((float(b), float(c)) for b, c in pairs)
    if all(a[0] < b[0] and a[1] <= b[1] for a, b in itertools.pairwise(pairs)) and (
            not pairs or pairs[0][1] >= 0):
        return pairs  # already in shape (the common case)
    merged: dict[float, float] = {}
    for bound, count in pairs:
        merged[float(bound)] = merged.get(float(bound), 0.0) + float(count)
    out: list[tuple[float, float]] = []
    peak = 0.0
    for bound in sorted(merged):
        peak = max(peak, merged[bound])
        out.append((bound, peak))
    return tuple(out)


def total(buckets: Buckets) -> float:
    """Observations in all (the ``+Inf`` bucket); 0 without one."""
    if not buckets or not math.isinf(buckets[-1][0]):
        return 0.0
    return buckets[-1][1]


def add(a: Buckets, b: Buckets) -> Buckets:
    """Bucket-wise sum of two histograms (two windows of one series).  Only the bounds both
    have are kept: a cumulative count at a bound one of them lacks is unknown."""
    if not a:
        return b
    if not b:
        return a
    theirs = dict(b)
    return normalise((bound, count + theirs[bound]) for bound, count in a if bound in theirs)


def quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """φ-quantile from cumulative buckets, as Prometheus' ``histogram_quantile`` computes it:
    linear inside the bucket it falls in, the lowest bucket starting at 0 (or being its own
    bound when that is ≤ 0), a quantile in the ``+Inf`` bucket the highest finite bound.

    NaN when there are no observations or fewer than two buckets, or when the highest
    bucket is not ``+Inf``."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = normalise(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return math.nan
    observations = ordered[-1][1]
    if observations == 0 or math.isnan(observations):
        return math.nan
    rank = q * observations
    b = next((i for i in range(len(ordered) - 1) if ordered[i][1] >= rank), len(ordered) - 1)
    if b == len(ordered) - 1:
        return ordered[-2][0]
    if b == 0 and ordered[0][0] <= 0:
        return ordered[0][0]
    start = 0.0
    end, count = ordered[b]
    if b > 0:
        start = ordered[b - 1][0]
        count -= ordered[b - 1][1]
        rank -= ordered[b - 1][1]
    return start + (end - start) * (rank / count)


def count_above(buckets: Buckets, bound: float) -> float | None:
    """Observations above ``bound``, which must be one of the bounds (None if it is not)."""
    for upper, count in buckets:
        if upper == bound:
            return total(buckets) - count
    return None


def _bucket_of(buckets: Buckets, value: float
               ) -> tuple[float, float, float, float, float] | None:
    """(lower bound, count up to it, upper bound, count up to it, total) of the bucket
    ``value`` falls in (the lowest starts at 0); None past the last bound or when empty."""
    n = total(buckets)
    if n <= 0:
        return None
    below_bound, below_count = 0.0, 0.0
    for upper, count in buckets:
        if value <= upper:
            return below_bound, below_count, upper, count, n
        below_bound, below_count = upper, count
    return None


def fraction_above(buckets: Buckets, value: float) -> float:
    """Share of observations above ``value``, interpolated linearly inside its bucket (the
    assumption ``histogram_quantile`` makes: observations spread evenly in a bucket)."""
    found = _bucket_of(buckets, value)
    if found is None:
        return math.nan if total(buckets) <= 0 else 0.0
    lower, below, upper, count, n = found
    if math.isinf(upper):  # above the highest finite bound: nothing to interpolate
        return (n - below) / n
    if upper <= lower:
        return (n - count) / n
    share = (value - lower) / (upper - lower) if value > lower else 0.0
    return (n - (below + share * (count - below))) / n


def fraction_above_smooth(buckets: Buckets, value: float) -> float:
    """Share of observations above ``value``, assuming log-latency is locally normal: the
    probit of the share is interpolated linearly in log(value) between the bucket's bounds
    (exact for log-normal latencies, where a straight line inside a 50%-wide bucket — what
    :func:`fraction_above` assumes — is off by tens of percent in the tail).  Falls back to
    :func:`fraction_above` where that cannot be done (an empty side, a bound at 0)."""
    from statistics import NormalDist

    found = _bucket_of(buckets, value)
    if found is None:
        return fraction_above(buckets, value)
    lower, below, upper, count, n = found
    lo_share, hi_share = below / n, count / n  # the CDF at the bucket's bounds
    if (math.isinf(upper) or lower <= 0 or value <= lower or not 0 < lo_share < 1
            or not 0 < hi_share < 1 or hi_share <= lo_share):
        return fraction_above(buckets, value)
    normal = NormalDist()
    z_lo, z_hi = normal.inv_cdf(lo_share), normal.inv_cdf(hi_share)
    where = math.log(value / lower) / math.log(upper / lower)
    return 1.0 - normal.cdf(z_lo + (z_hi - z_lo) * where)


def choose_bound(buckets: Buckets, q: float) -> float | None:
    """The finite bound whose share of observations above it is closest to ``1 − q`` (in
    ratio terms), with observations on both sides of it; None when no bound has."""
    n = total(buckets)
    if n <= 0:
        return None
    target = 1.0 - q
    best: tuple[float, float] | None = None
    for upper, count in buckets:
        if math.isinf(upper) or count <= 0 or count >= n:
            continue
        distance = abs(math.log(((n - count) / n) / target))
        if best is None or distance < best[0]:
            best = (distance, upper)
    return None if best is None else best[1]
