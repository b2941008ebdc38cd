"""novactl: progressive delivery from the command line.

The public API is small and loaded lazily (``novactl --help`` must stay fast)::

    from novactl import load_plan, Runner, AdapterSet, LocalStore
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "AdapterSet",
    "FakeClock",
    "LocalStore",
    "MemoryStore",
    "NovactlError",
    "Plan",
    "Runner",
    "SystemClock",
    "__version__",
    "load_plan",
]

_LAZY = {
    "AdapterSet": "novactl.runner",
    "Runner": "novactl.runner",
    "LocalStore": "novactl.store",
    "MemoryStore": "novactl.store",
    "Plan": "novactl.plan",
    "load_plan": "novactl.plan",
    "NovactlError": "novactl._errors",
    "FakeClock": "novactl._clock",
    "SystemClock": "novactl._clock",
}

if TYPE_CHECKING:  # pragma: no cover
    from novactl._clock import FakeClock, SystemClock
    from novactl._errors import NovactlError
    from novactl.plan import Plan, load_plan
    from novactl.runner import AdapterSet, Runner
    from novactl.store import LocalStore, MemoryStore


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'novactl' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
