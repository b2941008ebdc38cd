"""Adapter interfaces.  Each kind states intent in a handful of methods.

    TrafficShifter  set_weight · get_weight · set_header_route      (+ close)
    MetricsProbe    observe                                         (+ close)
    Workload        deploy · scale · ready · promote · retire       (+ close)
    Notifier        notify                                          (+ close)

Operations an adapter cannot support are explicit no-ops that say so (for
example ``set_header_route`` returns False), never silent lies.  Adapters
raise the matching :mod:`novactl._errors` class, translating foreign
exceptions at this boundary with ``raise ... from exc``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, BeforeValidator, ConfigDict

from novactl._clock import Clock, SystemClock
from novactl._errors import AdapterError, NoDataError, ProbeError
from novactl._units import parse_duration
from novactl.core import histogram
from novactl.core.observations import Observation, ObsStatus, ProbeQuery

__all__ = [
    "Adapter",
    "AdapterConfig",
    "AdapterContext",
    "BaseProbe",
    "Duration",
    "Message",
    "MetricsProbe",
    "Notifier",
    "Readiness",
    "Secret",
    "TrafficShifter",
    "Workload",
    "histogram_observation",
]


class AdapterConfig(BaseModel):
    """Base for adapter ``Config`` models: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# A duration in an adapter config: "30s", "5m" or a number of seconds.
Duration = Annotated[float, BeforeValidator(parse_duration)]


class Secret(str):
    """A string that never shows itself in reprs, logs or tables."""

    def __repr__(self) -> str:
        return "Secret('***')"


@dataclass
class AdapterContext:
    """What every adapter may know about the rollout it serves."""

    plan_name: str = "rollout"
    service: str = ""
    stable_version: str = ""
    canary_version: str = ""
    variables: Mapping[str, Any] = field(default_factory=dict)
    base_dir: Path = field(default_factory=Path.cwd)  # the plan file's directory
    state_dir: Path | None = None
    clock: Clock = field(default_factory=SystemClock)
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    log: Callable[[str], None] = lambda _msg: None
    # --dry-run: adapters that support it (``supports_dry_run = True``) show the writes
    # they would make through ``announce`` and make none; others are wrapped by the runner.
    dry_run: bool = False
    announce: Callable[[str], None] = lambda _msg: None

    def secret(self, env_name: str, *, adapter: str) -> Secret:
        """Read a secret from the environment; its value never appears in messages."""
        value = (self.env.get(env_name) or "").strip()
        if not value:
            raise AdapterError(f"environment variable {env_name} is not set", adapter=adapter)
        return Secret(value)

    def secret_file(self, path: str, *, adapter: str) -> Secret:
        """Read a secret from a file (relative to the plan file); only its path is ever
        shown.  Surrounding whitespace (a trailing newline) is dropped."""
        file = Path(path).expanduser()
        if not file.is_absolute():
            file = self.base_dir / file
        try:
            value = file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise AdapterError(f"cannot read secret file {file}: {exc.strerror or 'error'}",
                               adapter=adapter) from None
        if not value:
            raise AdapterError(f"secret file {file} is empty", adapter=adapter)
        return Secret(value)


class Adapter:
    """Optional base class: holds name, validated config and context."""

    Config: ClassVar[type[AdapterConfig] | None] = None

    def __init__(self, name: str, config: Any, context: AdapterContext) -> None:
        self.name = name
        self.config = config
        self.context = context

    @property
    def label(self) -> str:
        return f"{type(self).__name__}({self.name})"

    def close(self) -> None:
        """Release connections; the default has nothing to release."""


# ---------------------------------------------------------------- traffic


@runtime_checkable
class TrafficShifter(Protocol):
    name: str

    def set_weight(self, weight: float) -> None:
        """Send ``weight`` percent of traffic to the canary (0 = all stable)."""
        ...

    def get_weight(self) -> float | None:
        """The canary weight the router actually has (None: cannot be read back)."""
        ...

    def set_header_route(self, header: str, value: str) -> bool:
        """Route requests with ``header: value`` to the canary; False if unsupported."""
        ...

    def close(self) -> None: ...


# ---------------------------------------------------------------- workload


@dataclass(frozen=True)
class Readiness:
    ready: bool
    message: str = ""
    ready_replicas: int | None = None
    desired_replicas: int | None = None
    version: str | None = None


@runtime_checkable
class Workload(Protocol):
    name: str

    def deploy(self, role: str, version: str, replicas: int | None) -> None:
        """Make ``role`` (canary or stable) run ``version`` (with ``replicas``, if given)."""
        ...

    def scale(self, role: str, replicas: int) -> None:
        """Scale ``role`` to ``replicas`` without changing its version."""
        ...

    def ready(self, role: str) -> Readiness:
        """Whether ``role`` is serving with all its replicas ready."""
        ...

    def promote(self, version: str, replicas: int | None) -> None:
        """Make ``version`` the stable (at ``replicas``); the old version stays until retired."""
        ...

    def retire(self, version: str) -> None:
        """Remove ``version`` once its grace period is over."""
        ...

    def close(self) -> None: ...


# ---------------------------------------------------------------- probes


@runtime_checkable
class MetricsProbe(Protocol):
    name: str

    def observe(self, query: ProbeQuery) -> Observation:
        """Measure one metric.  Failures come back as data (status error/no_data)."""
        ...

    def close(self) -> None: ...


class BaseProbe(Adapter):
    """A probe that only needs to answer one query string with one number.

    Subclasses implement :meth:`fetch`; this class combines the parts of a
    metric (numerator/denominator, value/samples), scales to canonical units
    and turns every failure into an observation marked no-data or error.
    """

    #: Whether :meth:`fetch_buckets` is implemented (histogram metrics); validate checks it.
    histograms: ClassVar[bool] = False

    def fetch(self, query: str, request: ProbeQuery) -> float:
        """Run one query; return a finite number or raise NoDataError/ProbeError."""
        raise NotImplementedError

    def fetch_buckets(self, query: str, request: ProbeQuery) -> list[tuple[float, float]]:
        """Run a histogram query: cumulative ``(upper bound, count)`` pairs over the window,
        ``+Inf`` among them; or raise NoDataError/ProbeError."""
        raise ProbeError(f"the {type(self).__name__} cannot answer histogram metrics",
                         adapter=self.label)

    def observe(self, query: ProbeQuery) -> Observation:
        metric, version, window, at = query.metric, query.version, query.window, query.at
        source = f"{type(self).__name__}({self.name})"
        try:
            if query.kind == "histogram":
                return self._histogram(query, source)
            raw = {part: self._finite(self.fetch(text, query), part) for part, text in
                   query.parts.items()}
        except NoDataError as exc:
            return Observation.no_data(metric, version, window, at, str(exc.message), source)
        except ProbeError as exc:
            return Observation.error(metric, version, window, at, str(exc.message), source)
        except AdapterError as exc:
            return Observation.error(metric, version, window, at, str(exc.message), source)
        if query.kind == "ratio":
            numerator, denominator = raw["numerator"], raw["denominator"]
            if denominator <= 0:
                return Observation.no_data(metric, version, window, at,
                                           "denominator is 0: nothing to measure", source)
            if numerator < 0 or numerator > denominator * (1 + 1e-9):
                return Observation.error(
                    metric, version, window, at,
                    f"numerator {numerator:g} outside [0, denominator {denominator:g}]", source)
            ratio = min(1.0, numerator / denominator)
            return Observation(metric, version, ObsStatus.OK, value=ratio * query.scale,
                               events=numerator, trials=denominator, window=window, at=at,
                               source=source)
        value = raw["value"] * query.scale
        samples = raw.get("samples")
        if samples is not None and samples <= 0:
            return Observation.no_data(metric, version, window, at,
                                       "no samples in the window", source)
        return Observation(metric, version, ObsStatus.OK, value=value, samples=samples,
                           window=window, at=at, source=source)

    def _histogram(self, query: ProbeQuery, source: str) -> Observation:
        pairs = self.fetch_buckets(query.parts["buckets"], query)
        return histogram_observation(query, pairs, source)

    @staticmethod
    def _finite(value: float, part: str) -> float:
        if value is None or math.isnan(value) or math.isinf(value):
            raise NoDataError(f"{part}: query returned {value!r}")
        return float(value)


def histogram_observation(query: ProbeQuery, pairs: list[tuple[float, float]], source: str
                          ) -> Observation:
    """An observation from a histogram's bucket counts: bounds scaled to canonical units,
    the value its quantile (the median by default), the samples its ``+Inf`` count."""
    metric, version, window, at = query.metric, query.version, query.window, query.at
    if any(not math.isfinite(count) or count < 0 for _, count in pairs):
        return Observation.no_data(metric, version, window, at,
                                   "bucket counts are not finite numbers", source)
    buckets = histogram.normalise((bound * query.scale, count) for bound, count in pairs)
    if not buckets or not math.isinf(buckets[-1][0]):
        return Observation.error(metric, version, window, at,
                                 'the histogram has no le="+Inf" bucket', source)
    if len(buckets) < 2:
        return Observation.error(metric, version, window, at,
                                 "the histogram needs at least two buckets", source)
    samples = histogram.total(buckets)
    if samples <= 0:
        return Observation.no_data(metric, version, window, at,
                                   "no observations in the window", source)
    value = histogram.quantile(query.quantile if query.quantile is not None else 0.5, buckets)
    return Observation(metric, version, ObsStatus.OK, value=value, samples=samples,
                       window=window, at=at, source=source, buckets=buckets)


# ---------------------------------------------------------------- notifications


@dataclass(frozen=True)
class Message:
    """A notification.  ``id`` is stable across retries so receivers can de-duplicate."""

    id: str
    event: str  # e.g. stage.started, rollback.completed, alert.firing
    severity: str  # info | warning | critical
    title: str
    text: str
    rollout: str
    at: float
    stage: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event": self.event,
            "severity": self.severity,
            "title": self.title,
            "text": self.text,
            "rollout": self.rollout,
            "stage": self.stage,
            "at": self.at,
            "fields": self.fields,
        }


@runtime_checkable
class Notifier(Protocol):
    name: str

    def notify(self, message: Message) -> None:
        """Deliver one message; raise NotifyError when it could not be delivered."""
        ...

    def close(self) -> None: ...
