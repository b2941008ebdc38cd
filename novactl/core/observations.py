"""What probes report: observations, with raw counts and honest failure states."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["ObsKey", "ObsStatus", "Observation", "ProbeQuery"]


class ObsStatus(StrEnum):
    OK = "ok"
    NO_DATA = "no_data"  # the query answered with nothing: empty, NaN, Inf, zero trials
    ERROR = "error"  # the probe failed: transport, auth, bad query, ambiguous answer


# (metric, version or None for global metrics, window in whole seconds)
ObsKey = tuple[str, str | None, int]


@dataclass(frozen=True, slots=True)
class Observation:
    """One measurement of one metric for one version over one window.

    ``value`` is in canonical units (fractions, seconds, counts).  Ratio
    metrics also carry ``events`` (the numerator, e.g. errors) and ``trials``
    (the denominator, e.g. requests) so a statistical judge can work from raw
    counts; value metrics may carry ``samples`` (requests behind a quantile).
    """

    metric: str
    version: str | None
    status: ObsStatus
    value: float | None = None
    events: float | None = None
    trials: float | None = None
    samples: float | None = None
    window: float = 0.0
    at: float = 0.0
    reason: str = ""
    source: str = ""
    buckets: tuple[tuple[float, float], ...] | None = None

    @property
    def key(self) -> ObsKey:
        return (self.metric, self.version, round(self.window))

    @property
    def sample_size(self) -> float | None:
        return self.trials if self.trials is not None else self.samples

    @property
    def usable(self) -> bool:
        return (
            self.status is ObsStatus.OK
            and self.value is not None
            and math.isfinite(self.value)
        )

    @classmethod
    def no_data(cls, metric: str, version: str | None, window: float, at: float,
                reason: str, source: str = "") -> Observation:
        return cls(metric, version, ObsStatus.NO_DATA, window=window, at=at, reason=reason,
                   source=source)

    @classmethod
    def error(cls, metric: str, version: str | None, window: float, at: float,
              reason: str, source: str = "") -> Observation:
        return cls(metric, version, ObsStatus.ERROR, window=window, at=at, reason=reason,
                   source=source)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "metric": self.metric,
            "version": self.version,
            "status": self.status.value,
            "window": self.window,
            "at": self.at,
        }
        for name in ("value", "events", "trials", "samples"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value if math.isfinite(value) else str(value)
        if self.reason:
            out["reason"] = self.reason
        if self.source:
            out["source"] = self.source
        if self.buckets is not None:
            out["buckets"] = [[_bound(b), c] for b, c in self.buckets]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Observation:
        def num(name: str) -> float | None:
            raw = data.get(name)
            return None if raw is None else float(raw)  # type: ignore[arg-type]

        return cls(
            metric=str(data["metric"]),
            version=None if data.get("version") is None else str(data["version"]),
            status=ObsStatus(str(data.get("status", "ok"))),
            value=num("value"),
            events=num("events"),
            trials=num("trials"),
            samples=num("samples"),
            window=float(data.get("window", 0.0)),  # type: ignore[arg-type]
            at=float(data.get("at", 0.0)),  # type: ignore[arg-type]
            reason=str(data.get("reason", "")),
            source=str(data.get("source", "")),
            buckets=_buckets(data.get("buckets")),
        )


def _bound(bound: float) -> float | str:
    return bound if math.isfinite(bound) else "+Inf"


def _buckets(raw: object) -> tuple[tuple[float, float], ...] | None:
    if raw is None:
        return None
    return tuple((float(b), float(c)) for b, c in raw)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ProbeQuery:
    """What the runner asks a probe: one metric, one version, one window, queries rendered."""

    metric: str
    kind: str  # ratio | value | count | histogram
    parts: dict[str, str]  # numerator/denominator, value/samples or buckets, filled in
    version: str | None
    role: str | None  # canary | stable | None (global)
    window: float
    at: float
    scale: float = 1.0  # multiply raw values by this for canonical units
    labels: dict[str, str] = field(default_factory=dict)
    quantile: float | None = None  # histogram metrics: the quantile that is the value

    @property
    def key(self) -> ObsKey:
        return (self.metric, self.version, round(self.window))
