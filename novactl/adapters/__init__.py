"""Adapters: traffic shifters, metrics probes, workloads and notifiers.

The interfaces live in :mod:`novactl.adapters._base`; concrete adapters are
one module each and are loaded lazily through :mod:`novactl.adapters._registry`.
"""

from novactl.adapters._base import (
    Adapter,
    AdapterConfig,
    AdapterContext,
    BaseProbe,
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
    "BaseProbe",
    "Message",
    "MetricsProbe",
    "Notifier",
    "Readiness",
    "Secret",
    "TrafficShifter",
    "UnknownAdapter",
    "Workload",
    "create",
    "known_types",
    "load_class",
]
