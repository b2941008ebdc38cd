"""Synthetic request streams of a stable and a canary version, on a fake clock.

:class:`SyntheticService` plays the traffic a rollout would see — requests arriving as
Poisson processes split between the versions by the router's weight, each failing with
its version's error rate and taking a log-normally distributed time — and answers the
plan's metric queries from it: ratio metrics as (errors, requests), histogram metrics as
cumulative bucket counts, with real sampling noise from a seeded generator.

Time is cut into ticks (30 s by default).  Each tick's counts are drawn once, the first
time a query reaches it, and kept as running totals: overlapping windows (a pooled ``for``
window, a criterion's sliding day) see the same requests, as a real Prometheus would, and
any window costs two lookups.  A partial tick counts pro rata.  Behaviour may change over
time: pass a function of the time since the service was created.

Used by the simulation tests and ``benchmarks/judge.py``; standard library only.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from novactl.core.observations import Observation, ProbeQuery

__all__ = ["BUCKETS", "Behaviour", "SyntheticService", "poisson"]

#: Upper bounds of the latency histogram, seconds (+Inf implied); the sandbox's layout.
BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5,
)


@dataclass(frozen=True)
class Behaviour:
    """How one version answers: its error rate and its latency distribution (log-normal:
    the median and the spread σ of log-latency)."""

    error_rate: float = 0.001
    latency_median: float = 0.030
    latency_sigma: float = 0.6

    def slower(self, factor: float) -> Behaviour:
        """Every request ``factor`` times slower (the quantiles scale with it)."""
        return Behaviour(self.error_rate, self.latency_median * factor, self.latency_sigma)

    def bin_shares(self, bounds: tuple[float, ...]) -> tuple[float, ...]:
        """Share of requests in each bucket (``(prev, bound]``, then above the last)."""
        cdf = [_lognormal_cdf(b, self.latency_median, self.latency_sigma) for b in bounds]
        edges = [0.0, *cdf, 1.0]
        return tuple(max(0.0, edges[i + 1] - edges[i]) for i in range(len(edges) - 1))


def _lognormal_cdf(x: float, median: float, sigma: float) -> float:
    if x <= 0:
        return 0.0
    return 0.5 * math.erfc(-(math.log(x) - math.log(median)) / (sigma * math.sqrt(2.0)))


BehaviourFn = Callable[[float], Behaviour]


def poisson(rng: random.Random, lam: float) -> int:
    """One Poisson(λ) draw: multiplication for small λ, Hörmann's PTRS rejection above."""
    if lam <= 0:
        return 0
    if lam < 10:
        limit, k, product = math.exp(-lam), 0, rng.random()
        while product > limit:
            k += 1
            product *= rng.random()
        return k
    slam, loglam = math.sqrt(lam), math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2)
    while True:
        u = rng.random() - 0.5
        v = rng.random()
        us = 0.5 - abs(u)
        k = math.floor((2 * a / us + b) * u + lam + 0.43)
        if us >= 0.07 and v <= v_r:
            return k
        if k < 0 or (us < 0.013 and v > us):
            continue
        if (math.log(v) + math.log(inv_alpha) - math.log(a / (us * us) + b)
                <= -lam + k * loglam - math.lgamma(k + 1)):
            return k


@dataclass
class _Stream:
    """One version's ticks as running totals: a window's counts are two lookups."""

    requests: list[float]  # requests[i]: requests in ticks 0..i-1
    errors: list[float]
    bins: list[list[float]]  # bins[i][k]: requests in bucket k in ticks 0..i-1

    def at(self, position: float) -> tuple[float, float, list[float]]:
        """Totals up to ``position`` ticks (a fraction of the next tick pro rata)."""
        whole = min(int(position), len(self.requests) - 1)
        part = position - whole
        if part <= 1e-9 or whole + 1 >= len(self.requests):
            return self.requests[whole], self.errors[whole], self.bins[whole]
        nxt = whole + 1

        def mix(a: float, b: float) -> float:
            return a + (b - a) * part

        return (mix(self.requests[whole], self.requests[nxt]),
                mix(self.errors[whole], self.errors[nxt]),
                [mix(a, b) for a, b in zip(self.bins[whole], self.bins[nxt], strict=True)])


class SyntheticService:
    """Seeded request streams; answers :class:`ProbeQuery` for ratio and histogram metrics.

    ``weight`` reads the router's canary weight (percent) when ticks are drawn; ``rps`` is
    the whole service's request rate (a number or a function of time)."""

    def __init__(self, *, weight: Callable[[], float], start: float,
                 rps: float | Callable[[float], float] = 1000.0,
                 stable: Behaviour | BehaviourFn = Behaviour(),
                 canary: Behaviour | BehaviourFn = Behaviour(), seed: int = 0,
                 tick: float = 30.0, bounds: tuple[float, ...] = BUCKETS) -> None:
        self.weight = weight
        self.start = start
        self.rps = rps
        self.behaviour = {"stable": stable, "canary": canary}
        self.tick = tick
        self.bounds = bounds
        self._rng = random.Random(seed)
        empty = [0.0] * (len(bounds) + 1)
        self._streams = {role: _Stream([0.0], [0.0], [empty]) for role in ("stable", "canary")}
        self._shares: dict[Behaviour, tuple[float, ...]] = {}

    # -- drawing
    def _behaviour(self, role: str, t: float) -> Behaviour:
        b = self.behaviour[role]
        return b(t - self.start) if callable(b) else b

    def _draw_until(self, end: float) -> None:
        wanted = math.ceil((end - self.start) / self.tick - 1e-9)
        stable = self._streams["stable"]
        while len(stable.requests) - 1 < wanted:
            t = self.start + (len(stable.requests) - 1) * self.tick
            rps = self.rps(t - self.start) if callable(self.rps) else self.rps
            share = min(max(self.weight() / 100.0, 0.0), 1.0)
            for role, part in (("canary", share), ("stable", 1.0 - share)):
                behaviour = self._behaviour(role, t)
                shares = self._shares.get(behaviour)
                if shares is None:
                    shares = self._shares[behaviour] = behaviour.bin_shares(self.bounds)
                lam = rps * part * self.tick
                bins = [float(poisson(self._rng, lam * p)) for p in shares]
                requests = math.fsum(bins)
                errors = float(min(requests, poisson(self._rng, lam * behaviour.error_rate)))
                stream = self._streams[role]
                stream.requests.append(stream.requests[-1] + requests)
                stream.errors.append(stream.errors[-1] + errors)
                stream.bins.append([a + b for a, b in zip(stream.bins[-1], bins, strict=True)])

    def counts(self, role: str, start: float, end: float) -> tuple[float, float, list[float]]:
        """(requests, errors, requests per bucket) of ``role`` over ``[start, end]``."""
        self._draw_until(end)
        stream = self._streams[role]
        first = max(0.0, (start - self.start) / self.tick)
        last = max(0.0, (end - self.start) / self.tick)
        r0, e0, b0 = stream.at(first)
        r1, e1, b1 = stream.at(last)
        return r1 - r0, e1 - e0, [b - a for a, b in zip(b0, b1, strict=True)]

    # -- answering the plan's queries (FakeProbe's script)
    def answer(self, query: ProbeQuery) -> Observation | tuple[float, float] | list[
            tuple[float, float]] | None:
        """Ratio metrics: (errors, requests); histogram metrics: cumulative buckets; None
        (no data) for anything else or a window without requests."""
        role = query.role or ""
        if role not in self.behaviour:
            return None
        requests, errors, bins = self.counts(role, query.at - query.window, query.at)
        if requests <= 0:
            return None
        if query.kind == "ratio":
            return (round(errors), round(requests))
        if query.kind == "histogram":
            cumulative, running = [], 0.0
            for bound, count in zip((*self.bounds, math.inf), bins, strict=True):
                running += count
                cumulative.append((bound / query.scale, float(round(running))))
            return cumulative
        return None
