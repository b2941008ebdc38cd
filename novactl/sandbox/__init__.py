"""A pure-Python local sandbox for ``novactl demo``: everything on loopback, stdlib only.

* :class:`SampleApp` — one version of a sample service, with injectable faults
  and Prometheus metrics;
* :class:`WeightedRouter` — splits GET traffic between a stable and a canary
  backend by weight and by header, with a small admin API under ``/-/``;
* :class:`LoadGenerator` — steady background traffic, counted by version;
* :class:`Sandbox` — a router, apps per role and a JSON control API that the
  ``local`` traffic and workload adapters drive.
"""

from novactl.sandbox.app import MetricFamily, SampleApp, format_metrics
from novactl.sandbox.control import Sandbox, SandboxError
from novactl.sandbox.load import LoadGenerator
from novactl.sandbox.router import WeightedRouter

__all__ = [
    "LoadGenerator",
    "MetricFamily",
    "SampleApp",
    "Sandbox",
    "SandboxError",
    "WeightedRouter",
    "format_metrics",
]
