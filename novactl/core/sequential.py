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

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "ERRORS",
    "LATENCY",
    "Judgement",
    "Mixture",
    "Mixtures",
    "interval_text",
    "judge",
    "log_e_value",
    "ratio_bounds",
    "share_for_ratio",
]

_RHO_MIN, _RHO_MAX = 1e-3, 1e4  # bounds beyond these are shown as 0 and ∞
_STEPS = 40  # at most this many steps to find an interval's end


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


@functools.lru_cache(maxsize=256)
def ratio_bounds(x: float, n: float, share: float, alpha: float, mixtures: Mixtures,
                 *, alpha_worse: float | None = None) -> tuple[float, float]:
    """The anytime-valid interval for the ratio: the ratios neither test rejects (the low
    end at ``alpha_worse``, default ``alpha``; the high end at ``alpha``).  0 and ``inf``
    when nothing is excluded on that side.  (Cached: checks sharing a metric share it.)"""
    limit_worse = math.log(1.0 / (alpha if alpha_worse is None else alpha_worse))
    limit_better = math.log(1.0 / alpha)

    def rejects_worse(rho: float) -> float:  # ≥ 0: evidence the ratio is above rho
        return log_e_value(x, n, share, rho, mixtures.worse) - limit_worse

    def rejects_better(rho: float) -> float:  # ≥ 0: evidence the ratio is below rho
        return log_e_value(x, n, share, rho, mixtures.better) - limit_better

    # a point no side rejects: the observed ratio (clamped into the searched range)
    point = _observed_ratio(x, n, share)
    point = min(max(point, _RHO_MIN * 2), _RHO_MAX / 2)
    at_min = rejects_worse(_RHO_MIN)
    low = 0.0 if at_min < 0 else _crossing(point, _RHO_MIN, at_min, rejects_worse)
    at_max = rejects_better(_RHO_MAX)
    high = math.inf if at_max < 0 else _crossing(point, _RHO_MAX, at_max, rejects_better)
    return low, max(low, high)


def _crossing(inside: float, outside: float, f_outside: float,
              margin: Callable[[float], float]) -> float:
    """Where ``margin`` (monotone in log ρ, < 0 at ``inside``, ≥ 0 at ``outside``) crosses
    zero: regula falsi with the Illinois step, kept inside its bracket; ~0.3% precision."""
    a, b = math.log(inside), math.log(outside)
    fa, fb = margin(inside), f_outside
    if fa >= 0:
        return inside
    side = 0
    for _ in range(_STEPS):
        if abs(b - a) < 3e-3:
            break
        c = b - fb * (b - a) / (fb - fa) if fb != fa else (a + b) / 2
        if not min(a, b) < c < max(a, b):
            c = (a + b) / 2
        fc = margin(math.exp(c))
        if fc >= 0:  # rejected: the crossing lies between a and c
            b, fb = c, fc
            if side == 1:
                fa /= 2
            side = 1
        else:
            a, fa = c, fc
            if side == -1:
                fb /= 2
            side = -1
    return math.exp(b)


def _observed_ratio(x: float, n: float, share: float) -> float:
    if n <= 0 or x <= 0:
        return _RHO_MIN
    if x >= n:
        return _RHO_MAX
    return (x / (n - x)) * ((1.0 - share) / share)


@dataclass(frozen=True)
class Judgement:
    """One sequential comparison: canary vs stable counts against a null ratio.  The
    decisions are made at once; the interval is found (a root search) only when read."""

    worse: bool  # evidence that the ratio is above the null
    better: bool  # evidence that it is below
    x: int  # canary events
    n: int  # events of both versions
    share: float  # the canary's share of the requests
    alpha: float
    alpha_worse: float
    mixtures: Mixtures
    log_e_worse: float  # the evidence for "worse" (its log e-value)

    @property
    def decided(self) -> bool:
        return self.worse or self.better

    @property
    def ratio(self) -> float:
        """The observed ratio of rates (canary / stable)."""
        if self.n <= 0 or self.x <= 0:
            return 0.0
        if self.x >= self.n:
            return math.inf
        return _observed_ratio(self.x, self.n, self.share)

    @property
    def bounds(self) -> tuple[float, float]:
        return ratio_bounds(self.x, self.n, self.share, self.alpha, self.mixtures,
                            alpha_worse=self.alpha_worse)


def judge(canary_events: float, canary_trials: float, stable_events: float,
          stable_trials: float, null_ratio: float, alpha: float, mixtures: Mixtures,
          *, alpha_worse: float | None = None) -> Judgement:
    """Test ``ratio > null_ratio`` and ``ratio < null_ratio`` on accumulated counts.

    ``alpha_worse`` (default ``alpha``) lets a caller that tests several bounds at once
    split the false-alarm budget of the "worse" side (Bonferroni)."""
    x, n = round(canary_events), round(canary_events) + round(stable_events)
    share = canary_trials / (canary_trials + stable_trials)
    a_worse = alpha if alpha_worse is None else alpha_worse
    log_worse = log_e_value(x, n, share, null_ratio, mixtures.worse)
    worse = log_worse >= math.log(1.0 / a_worse)
    better = log_e_value(x, n, share, null_ratio, mixtures.better) >= math.log(1.0 / alpha)
    return Judgement(worse, better, x, n, share, alpha, a_worse, mixtures, log_worse)


MIXTURES = {"errors": ERRORS, "latency": LATENCY}


def interval_text(x: int, n: int, share: float, alpha: float, alpha_worse: float,
                  family: str, null: str) -> str:
    """``ratio 5.2, anytime-valid [1.8, 11] vs 1 (α=1%)``, from the counts (the shape
    sequential results keep in the state, so the interval is found only when shown)."""
    j = Judgement(False, False, x, n, share, alpha, alpha_worse, MIXTURES[family], 0.0)
    low, high = j.bounds

    def num(v: float) -> str:
        return "∞" if math.isinf(v) else f"{v:.3g}"

    return (f"ratio {num(j.ratio)}, anytime-valid [{num(low)}, {num(high)}] vs {null} "
            f"(α={alpha:.2%})".replace(".00%", "%"))
