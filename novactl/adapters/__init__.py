"""Adapters: traffic shifters, metrics probes, workloads and notifiers.

Everything a third-party adapter needs is importable from here: the
interfaces and base classes, the config base class and ``Duration`` type,
and the error classes to raise.  Concrete adapters are one module each and
are loaded lazily through :mod:`novactl.adapters._registry`.
"""

from novactl._errors import (
    AdapterError,
    NoDataError,
    NotifyError,
    ProbeError,
    TrafficError,
    WorkloadError,
)
from novactl.adapters._base import (
    Adapter,
    AdapterConfig,
    AdapterContext,
    BaseProbe,
    Duration,
    Message,
    MetricsProbe,
    Notifier,
    Readiness,
    Secret,
    TrafficShifter,
    Workload,
)
from novactl.adapters._registry import KINDS, UnknownAdapter, create, known_types, load_class

__all__ = [
    "KINDS",
    "Adapter",
    "AdapterConfig",
    "AdapterContext",
    "AdapterError",
    "BaseProbe",
    "Duration",
    "Message",
    "MetricsProbe",
    "NoDataError",
    "Notifier",
    "NotifyError",
    "ProbeError",
    "Readiness",
    "Secret",
    "TrafficError",
    "TrafficShifter",
    "UnknownAdapter",
    "Workload",
    "WorkloadError",
    "create",
    "known_types",
    "load_class",
]
