"""Small, honest statistics used by verification commands (the sequential tests of the
gates are in :mod:`novactl.core.sequential`)."""

from __future__ import annotations

import math

__all__ = ["requests_for_tolerance", "wilson_interval"]

_Z = {0.90: 1.6449, 0.95: 1.9600, 0.99: 2.5758}


def _z(confidence: float) -> float:
    if confidence in _Z:
        return _Z[confidence]
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: float, trials: float, confidence: float = 0.95
                    ) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (well-behaved near 0% and 100%).
    Counts may be fractional (Prometheus extrapolates ``increase``)."""
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
