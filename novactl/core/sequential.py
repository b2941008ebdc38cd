"""Anytime-valid tests on event counts: is the canary's rate of events a given multiple of
the stable's, or more, or less?  Pure arithmetic; no plan types.

The model (Lindon & Malek, NeurIPS 2022): events (errors, or requests slower than a bound)
of each version arrive as Poisson processes.  Given that ``n`` events happened in all, the
number ``x`` that came from the canary is binomial with probability

    θ(ρ) = w·ρ / (w·ρ + 1 − w)

where ``w`` is the canary's share of the requests and ``ρ`` the ratio of the canary's event
rate to the stable's.  In log-odds, ``logit θ(ρ) = log ρ + logit w``: a ratio is a shift.

To test ``ρ ≤ ρ0`` ("not worse than ρ0") we bet on alternatives ``ρ0·g`` for a fixed set of
factors ``g > 1`` with fixed weights (a discrete mixture; Johari, Pekelis & Walsh, "Always
Valid Inference"): the mixture likelihood ratio against ``θ(ρ0)`` is a nonnegative
supermartingale in the sequence of events under every ``ρ ≤ ρ0``, so by Ville's inequality
the chance that it *ever* reaches ``1/α`` is at most ``α``, however often it is looked at.
The mirror test (factors ``g < 1``) rejects ``ρ ≥ ρ0`` ("worse than ρ0").  Each component's
log-ratio falls as ``ρ0`` rises, so the set of ratios neither test rejects is an interval —
the anytime-valid bounds shown to operators.

Where the mixture puts its weight decides how fast it decides: on the regressions a canary
check exists for (1.5× to 10× for errors; +10% to 3× in the share of slow requests for
latency), never on a flat prior over all shares, which at 1% traffic wastes nearly all its
mass on shares no regression produces.  The factors are fixed in advance, never fitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "ERRORS",
    "LATENCY",
    "Judgement",
    "Mixture",
    "Mixtures",
    "judge",
    "log_e_value",
    "ratio_bounds",
    "share_for_ratio",
]

_RHO_MIN, _RHO_MAX = 1e-3, 1e4  # bounds beyond these are shown as 0 and ∞
_BISECT = 24  # bisection steps in log ρ: ~0.1% relative precision on the bounds


@dataclass(frozen=True)
class Mixture:
    """Alternatives as factors of the null ratio, with their weights (normalised)."""

    factors: tuple[float, ...]
    log_weights: tuple[float, ...]

    @classmethod
    def of(cls, factors: tuple[float, ...], weights: tuple[float, ...] | None = None
           ) -> Mixture:
        weights = weights or tuple(1.0 for _ in factors)
        total = sum(weights)
        return cls(tuple(factors), tuple(math.log(w / total) for w in weights))

    def inverted(self) -> Mixture:
        return Mixture(tuple(1.0 / f for f in self.factors), self.log_weights)


@dataclass(frozen=True)
class Mixtures:
    """The bets of both one-sided tests: ``worse`` (factors > 1) and ``better`` (< 1)."""

    worse: Mixture
    better: Mixture


def _pair(*factors: float) -> Mixtures:
    worse = Mixture.of(tuple(factors))
    return Mixtures(worse, worse.inverted())


#: Error counts: regressions of 1.5× to 10× the null ratio, equal weights.
ERRORS = _pair(1.5, 2.0, 3.0, 5.0, 10.0)
#: Requests slower than a bound: a few percent slower already shows as 1.1×-1.5× more of
#: them above the stable's 95th percentile, so the bets sit closer to 1.
LATENCY = _pair(1.1, 1.25, 1.5, 2.0, 3.0)


def share_for_ratio(ratio: float, share: float) -> float:
    """θ(ρ): the canary's share of events when its rate is ``ratio`` × the stable's."""
    canary = share * ratio
    return canary / (canary + (1.0 - share))


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


def log_e_value(x: float, n: float, share: float, null_ratio: float, mixture: Mixture
                ) -> float:
    """log of the mixture likelihood ratio of ``x`` canary events out of ``n`` against
    "the ratio is ``null_ratio``"; ``share`` is the canary's share of requests (0 < w < 1)."""
    if n <= 0:
        return 0.0
    theta0 = share_for_ratio(null_ratio, share)
    rest = n - x
    terms = []
    for factor, log_w in zip(mixture.factors, mixture.log_weights, strict=True):
        theta = share_for_ratio(null_ratio * factor, share)
        term = log_w
        if x:
            term += x * math.log(theta / theta0)
        if rest:
            term += rest * (math.log1p(-theta) - math.log1p(-theta0))
        terms.append(term)
    return _logsumexp(terms)


def ratio_bounds(x: float, n: float, share: float, alpha: float, mixtures: Mixtures,
                 *, alpha_worse: float | None = None) -> tuple[float, float]:
    """The anytime-valid interval for the ratio: the ratios neither test rejects (the low
    end at ``alpha_worse``, default ``alpha``; the high end at ``alpha``).  0 and ``inf``
    when nothing is excluded on that side."""
    limit_worse = math.log(1.0 / (alpha if alpha_worse is None else alpha_worse))
    limit_better = math.log(1.0 / alpha)

    def rejects_worse(rho: float) -> bool:  # evidence the ratio is above rho
        return log_e_value(x, n, share, rho, mixtures.worse) >= limit_worse

    def rejects_better(rho: float) -> bool:  # evidence the ratio is below rho
        return log_e_value(x, n, share, rho, mixtures.better) >= limit_better

    def edge(inside: float, outside: float, rejected: object) -> float:
        lo, hi = math.log(inside), math.log(outside)
        for _ in range(_BISECT):
            mid = (lo + hi) / 2
            if rejected(math.exp(mid)):  # type: ignore[operator]
                hi = mid
            else:
                lo = mid
        return math.exp((lo + hi) / 2)

    # a point no side rejects: the observed ratio (clamped into the searched range)
    point = _observed_ratio(x, n, share)
    point = min(max(point, _RHO_MIN * 2), _RHO_MAX / 2)
    low = 0.0 if not rejects_worse(_RHO_MIN) else edge(point, _RHO_MIN, rejects_worse)
    high = math.inf if not rejects_better(_RHO_MAX) else edge(point, _RHO_MAX, rejects_better)
    return low, max(low, high)


def _observed_ratio(x: float, n: float, share: float) -> float:
    if n <= 0 or x <= 0:
        return _RHO_MIN
    if x >= n:
        return _RHO_MAX
    return (x / (n - x)) * ((1.0 - share) / share)


@dataclass(frozen=True)
class Judgement:
    """One sequential comparison: canary vs stable counts against a null ratio."""

    worse: bool  # evidence that the ratio is above the null
    better: bool  # evidence that it is below
    ratio: float  # the observed ratio of rates (canary / stable)
    low: float  # anytime-valid interval for the ratio
    high: float
    events: float  # events of both versions behind it
    alpha: float

    @property
    def decided(self) -> bool:
        return self.worse or self.better


def judge(canary_events: float, canary_trials: float, stable_events: float,
          stable_trials: float, null_ratio: float, alpha: float, mixtures: Mixtures,
          *, alpha_worse: float | None = None) -> Judgement:
    """Test ``ratio > null_ratio`` and ``ratio < null_ratio`` on accumulated counts.

    ``alpha_worse`` (default ``alpha``) lets a caller that tests several bounds at once
    split the false-alarm budget of the "worse" side (Bonferroni)."""
    x, n = round(canary_events), round(canary_events) + round(stable_events)
    share = canary_trials / (canary_trials + stable_trials)
    a_worse = alpha if alpha_worse is None else alpha_worse
    worse = log_e_value(x, n, share, null_ratio, mixtures.worse) >= math.log(1.0 / a_worse)
    better = log_e_value(x, n, share, null_ratio, mixtures.better) >= math.log(1.0 / alpha)
    low, high = ratio_bounds(x, n, share, alpha, mixtures, alpha_worse=a_worse)
    ratio = _observed_ratio(x, n, share) if n > 0 and x > 0 else 0.0
    if x >= n > 0:
        ratio = math.inf
    return Judgement(worse, better, ratio, low, high, float(n), alpha)
