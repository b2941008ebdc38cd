"""Small, honest statistics used by verification commands."""

from __future__ import annotations

import math

__all__ = ["error_share_interval", "requests_for_tolerance", "share_for_ratio",
           "wilson_interval"]

_Z = {0.90: 1.6449, 0.95: 1.9600, 0.99: 2.5758}


def _z(confidence: float) -> float:
    if confidence in _Z:
        return _Z[confidence]
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95
                    ) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (well-behaved near 0% and 100%)."""
    if trials <= 0:
        return (0.0, 1.0)
    z = _z(confidence)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def requests_for_tolerance(expected: float, tolerance: float, confidence: float = 0.95,
                           *, minimum: int = 100, maximum: int = 20000) -> int:
    """Requests needed so the interval's half-width is about half the tolerance.

    ``expected`` and ``tolerance`` are fractions (0.10 and 0.02 for 10% ± 2 points).
    """
    z = _z(confidence)
    p = min(max(expected, 0.01), 0.99)
    half = max(tolerance / 2, 1e-4)
    needed = math.ceil(z * z * p * (1 - p) / (half * half))
    return max(minimum, min(maximum, needed))


# --------------------------------------------------------------------------- sequential


def _log_bf(theta: float, x: int, n: int, a: float, b: float) -> float:
    """log Bayes factor of the Beta(a, b)-mixture against "the share is theta"."""
    mixture = (math.lgamma(a + x) + math.lgamma(b + n - x) - math.lgamma(a + b + n)
               - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)))
    point = (x * math.log(theta) if x else 0.0) + ((n - x) * math.log1p(-theta)
                                                   if n - x else 0.0)
    return mixture - point


def error_share_interval(canary_errors: int, errors: int, alpha: float = 0.01
                         ) -> tuple[float, float]:
    """Anytime-valid (1 − alpha) confidence interval for the canary's share of errors.

    Each error comes from the canary with some probability θ; when both versions fail
    alike θ is the canary's share of the traffic (errors as Poisson processes; Lindon et
    al. 2022).  The interval holds the θ whose Bayes factor — a uniform Beta(1, 1)
    mixture against "the share is θ", a nonnegative martingale in the sequence of errors
    when θ is true — stays below 1/alpha.  By Ville's inequality it covers the true θ at
    every look at once with probability ≥ 1 − alpha, so it may be checked after every
    scrape without inflating false alarms.  The prior is fixed, never taken from the data.
    """
    if errors <= 0:
        return (0.0, 1.0)
    if not 0 <= canary_errors <= errors:
        raise ValueError("canary_errors must be within 0..errors")
    a = b = 1.0
    limit = math.log(1.0 / alpha)
    x, n = canary_errors, errors

    def inside(theta: float) -> bool:
        return _log_bf(theta, x, n, a, b) < limit

    # the mixture's peak (the observed share) is always inside; search each side of it
    peak = min(max(x / n, 1e-12), 1 - 1e-12)
    if not inside(peak):  # cannot happen for a proper prior, but never report nonsense
        return (peak, peak)

    def edge(outside: float, within: float) -> float:
        if inside(outside):
            return outside
        for _ in range(60):
            middle = (outside + within) / 2
            if inside(middle):
                within = middle
            else:
                outside = middle
        return within

    low = edge(1e-12, peak) if x > 0 else 0.0
    high = edge(1 - 1e-12, peak) if x < n else 1.0
    return (0.0 if low <= 1e-12 else low, 1.0 if high >= 1 - 1e-12 else high)


def share_for_ratio(ratio: float, traffic_share: float) -> float:
    """The canary's share of errors when its error rate is ``ratio`` × the stable's."""
    canary = traffic_share * ratio
    return canary / (canary + (1.0 - traffic_share))


def ratio_for_share(share: float, traffic_share: float) -> float:
    """Inverse of :func:`share_for_ratio` (inf when the canary has every error)."""
    if share >= 1.0:
        return math.inf
    return (share / (1.0 - share)) * ((1.0 - traffic_share) / traffic_share)
