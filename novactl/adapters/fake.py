"""Fake adapters, shipped in the package (as httpx ships MockTransport).

Use them in tests, simulations and dry runs of a plan::

    spec:
      traffic:  {type: fake, config: {world: /tmp/world.json}}
      workload: {type: fake, config: {world: /tmp/world.json, ready_after: 5s}}
      probes:
        metrics: {type: fake, config: {values: {error_rate: 0.0004, p95_latency: 0.08}}}

A :class:`FakeWorld` holds what a real router and cluster would: the weight,
the header routes, what runs in each role.  Given a ``world`` path it is kept
in a JSON file so several processes (and a crash test) share it.  ``crash``
kills the process (SIGKILL) before or after the n-th call of an operation —
the fault injection the crash-consistency tests use.

From Python, :class:`FakeProbe` also takes a function ``(query) -> value``
to script what the metrics show over (fake) time.
"""

from __future__ import annotations

import json
import math
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from novactl._errors import NoDataError, NotifyError, ProbeError, TrafficError, WorkloadError
from novactl.adapters._base import (
    Adapter,
    AdapterConfig,
    AdapterContext,
    BaseProbe,
    Duration,
    Message,
    Readiness,
    histogram_observation,
)
from novactl.core.observations import Observation, ObsStatus, ProbeQuery

__all__ = [
    "FakeProbe",
    "FakeTrafficShifter",
    "FakeWorkload",
    "FakeWorld",
    "MemoryNotifier",
]


class CrashSpec(AdapterConfig):
    op: str
    nth: int = 1
    when: Literal["before", "after"] = "after"


class FakeWorld:
    """The state of a fake router and cluster; optionally persisted to a JSON file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None
        self.data: dict[str, Any] = {
            "weight": 0.0,
            "header_routes": {},
            "deployments": {},
            "retired": [],
            "calls": {},
            "log": [],
        }
        if self.path is not None and self.path.exists():
            self.data.update(json.loads(self.path.read_text() or "{}"))

    # convenient views
    @property
    def weight(self) -> float:
        return float(self.data["weight"])

    @property
    def deployments(self) -> dict[str, dict[str, Any]]:
        return self.data["deployments"]

    @property
    def log(self) -> list[str]:
        return self.data["log"]

    def reload(self) -> None:
        if self.path is not None and self.path.exists():
            self.data = json.loads(self.path.read_text())

    def save(self) -> None:
        if self.path is None:
            return
        from novactl.store.local import atomic_write

        atomic_write(self.path, json.dumps(self.data).encode())

    def count(self, op: str) -> int:
        calls = self.data["calls"]
        calls[op] = calls.get(op, 0) + 1
        return int(calls[op])

    def record(self, entry: str) -> None:
        self.data["log"].append(entry)


def _crash_from_env() -> CrashSpec | None:
    """``NOVACTL_FAKE_CRASH=op:nth:when`` (e.g. ``set_weight:2:after``), for crash tests
    that must run the very same plan before and after the crash."""
    raw = os.environ.get("NOVACTL_FAKE_CRASH", "")
    if not raw:
        return None
    op, nth, when = [*raw.split(":"), "1", "after"][:3]
    return CrashSpec.model_validate({"op": op, "nth": int(nth), "when": when})


def _maybe_crash(world: FakeWorld, crash: CrashSpec | None, op: str, when: str, n: int) -> None:
    crash = crash or _crash_from_env()
    if crash is None or crash.op != op or crash.when != when or crash.nth != n:
        return
    world.save()
    os.kill(os.getpid(), signal.SIGKILL)


class _WorldAdapter(Adapter):
    """Holds a FakeWorld: in memory, or in the JSON file its config names (shared by
    every adapter and process pointing at that file)."""

    def __init__(self, name: str, config: Any, context: AdapterContext,
                 world: FakeWorld | None = None) -> None:
        super().__init__(name, config, context)
        if world is None:
            key = str(getattr(config, "world", None) or f"memory:{id(self)}")
            world = FakeWorld() if key.startswith("memory:") else FakeWorld(key)
        self.world = world

    def _call(self, op: str, action: Callable[[], Any]) -> Any:
        world = self.world
        world.reload()
        crash = getattr(self.config, "crash", None)
        n = world.count(op)
        _maybe_crash(world, crash, op, "before", n)
        result = action()
        world.save()
        _maybe_crash(world, crash, op, "after", n)
        return result


class FakeTrafficShifter(_WorldAdapter):
    class Config(AdapterConfig):
        world: str | None = Field(None, description="JSON file shared between processes.")
        header_routes: bool = Field(True, description="False: header routing unsupported.")
        readable: bool = Field(True, description="False: get_weight cannot read back.")
        fail: bool = Field(False, description="Every call fails (router down).")
        stuck_at: float | None = Field(None, description="The router ignores set_weight.")
        crash: CrashSpec | None = None

    def __init__(self, name: str, config: Any = None, context: AdapterContext | None = None,
                 world: FakeWorld | None = None) -> None:
        super().__init__(name, config or self.Config(), context or AdapterContext(), world)
        self.fail = self.config.fail

    def set_weight(self, weight: float) -> None:
        if self.fail:
            raise TrafficError("connection refused", adapter=self.label)

        def act() -> None:
            if self.config.stuck_at is None:
                self.world.data["weight"] = float(weight)
            self.world.record(f"set_weight {weight:g}")

        self._call("set_weight", act)

    def get_weight(self) -> float | None:
        if self.fail:
            raise TrafficError("connection refused", adapter=self.label)
        self.world.reload()
        if not self.config.readable:
            return None
        if self.config.stuck_at is not None:
            return float(self.config.stuck_at)
        return self.world.weight

    def set_header_route(self, header: str, value: str) -> bool:
        if self.fail:
            raise TrafficError("connection refused", adapter=self.label)
        if not self.config.header_routes:
            return False

        def act() -> None:
            self.world.data["header_routes"][header] = value
            self.world.record(f"header_route {header}={value}")

        self._call("set_header_route", act)
        return True


class FakeWorkload(_WorldAdapter):
    class Config(AdapterConfig):
        world: str | None = None
        ready_after: Duration = Field(0.0, description="Time (on the clock) until ready.")
        fail: list[str] = Field(default_factory=list, description="Operations that fail.")
        never_ready: list[str] = Field(default_factory=list, description="Roles never ready.")
        crash: CrashSpec | None = None

    def __init__(self, name: str, config: Any = None, context: AdapterContext | None = None,
                 world: FakeWorld | None = None) -> None:
        super().__init__(name, config or self.Config(), context or AdapterContext(), world)

    def _check(self, op: str) -> None:
        if op in self.config.fail:
            raise WorkloadError(f"{op} refused (fake failure)", adapter=self.label)

    def deploy(self, role: str, version: str, replicas: int | None) -> None:
        self._check("deploy")

        def act() -> None:
            current = self.world.deployments.get(role, {})
            self.world.deployments[role] = {
                "version": version,
                "replicas": replicas if replicas is not None else current.get("replicas", 1),
                "since": self.context.clock.now(),
            }
            self.world.record(f"deploy {role} {version} x{replicas}")

        self._call("deploy", act)

    def scale(self, role: str, replicas: int) -> None:
        self._check("scale")

        def act() -> None:
            current = self.world.deployments.setdefault(role, {"version": "?", "since": 0.0})
            current["replicas"] = replicas
            current["since"] = self.context.clock.now()
            self.world.record(f"scale {role} x{replicas}")

        self._call("scale", act)

    def ready(self, role: str) -> Readiness:
        self._check("ready")
        self.world.reload()
        current = self.world.deployments.get(role)
        if current is None:
            return Readiness(False, f"{role} is not deployed")
        if role in self.config.never_ready:
            return Readiness(False, f"{role}: 0/{current.get('replicas')} ready "
                             "(CrashLoopBackOff)", 0, current.get("replicas"))
        age = self.context.clock.now() - float(current.get("since", 0.0))
        replicas = current.get("replicas")
        if age < self.config.ready_after:
            return Readiness(False, f"{role}: starting ({age:.0f}s)", 0, replicas,
                             current.get("version"))
        return Readiness(True, f"{role}: {replicas}/{replicas} ready", replicas, replicas,
                         current.get("version"))

    def promote(self, version: str, replicas: int | None) -> None:
        self._check("promote")

        def act() -> None:
            old = self.world.deployments.get("stable", {})
            if old:
                self.world.data.setdefault("previous", old)
            self.world.deployments["stable"] = {
                "version": version,
                "replicas": replicas if replicas is not None else old.get("replicas", 1),
                "since": self.context.clock.now(),
            }
            self.world.record(f"promote {version} x{replicas}")

        self._call("promote", act)

    def retire(self, version: str) -> None:
        self._check("retire")

        def act() -> None:
            if version not in self.world.data["retired"]:  # idempotent, as a real retire is
                self.world.data["retired"].append(version)
            self.world.record(f"retire {version}")

        self._call("retire", act)


ValueSource = float | dict[str, float] | None


class FakeProbe(BaseProbe):
    """Answers from configured values or from a Python function.

    ``values`` maps a metric to a number or to ``{canary: n, stable: n}``
    (``default`` for the rest); ratio metrics are given as the ratio and turned
    into counts using ``rate`` requests per second of window; histogram metrics
    as their value (every observation at it).  A script may also return
    ``(events, trials)`` for a ratio, ``[(le, cumulative count), ...]`` for a
    histogram, or an :class:`Observation`.
    """

    class Config(AdapterConfig):
        values: dict[str, float | dict[str, float]] = Field(default_factory=dict)
        rate: float = Field(10.0, ge=0, description="Requests/s behind ratio metrics.")
        errors: list[str] = Field(default_factory=list, description="Metrics whose query fails.")
        no_data: list[str] = Field(default_factory=list, description="Metrics with no data.")

    histograms = True

    def __init__(self, name: str, config: Any = None, context: AdapterContext | None = None,
                 *, script: Callable[[ProbeQuery], Any] | None = None) -> None:
        super().__init__(name, config or self.Config(), context or AdapterContext())
        self.script = script
        self.calls = 0
        self.down = False  # flip to simulate an outage

    def observe(self, query: ProbeQuery) -> Observation:
        self.calls += 1
        source = f"FakeProbe({self.name})"
        if self.down:
            return Observation.error(query.metric, query.version, query.window, query.at,
                                     "connection refused (probe down)", source)
        if self.script is not None:
            return self._scripted(query, source)
        cfg = self.config
        if query.metric in cfg.errors:
            return Observation.error(query.metric, query.version, query.window, query.at,
                                     "fake probe error", source)
        if query.metric in cfg.no_data or query.metric not in cfg.values:
            return Observation.no_data(query.metric, query.version, query.window, query.at,
                                       "no values found", source)
        raw = cfg.values[query.metric]
        if isinstance(raw, dict):
            value = raw.get(query.role or "", raw.get(query.version or "", raw.get("default")))
            if value is None:
                return Observation.no_data(query.metric, query.version, query.window, query.at,
                                           f"no value for {query.role or 'global'}", source)
        else:
            value = raw
        return self._build(query, float(value), source)

    def _scripted(self, query: ProbeQuery, source: str) -> Observation:
        assert self.script is not None
        try:
            result = self.script(query)
        except NoDataError as exc:
            return Observation.no_data(query.metric, query.version, query.window, query.at,
                                       exc.message, source)
        except ProbeError as exc:
            return Observation.error(query.metric, query.version, query.window, query.at,
                                     exc.message, source)
        if isinstance(result, Observation):
            return result
        if result is None:
            return Observation.no_data(query.metric, query.version, query.window, query.at,
                                       "no values found", source)
        if isinstance(result, list):  # [(upper bound, cumulative count), ...] for histograms
            return histogram_observation(query, result, source)
        if isinstance(result, tuple):  # (events, trials) for ratios
            events, trials = result
            if trials <= 0:
                return Observation.no_data(query.metric, query.version, query.window, query.at,
                                           "no requests", source)
            return Observation(query.metric, query.version, ObsStatus.OK,
                               value=events / trials * query.scale, events=events, trials=trials,
                               window=query.window, at=query.at, source=source)
        return self._build(query, float(result), source)

    def _build(self, query: ProbeQuery, value: float, source: str) -> Observation:
        if query.kind == "histogram":  # every observation at the value: its quantile is it
            count = round(self.config.rate * query.window)
            return histogram_observation(
                query, [(value * (1 - 1e-9), 0.0), (value, count), (math.inf, count)], source)
        if query.kind == "ratio":
            trials = round(self.config.rate * query.window)
            if trials <= 0:
                return Observation.no_data(query.metric, query.version, query.window, query.at,
                                           "no requests", source)
            events = round(value * trials)
            return Observation(query.metric, query.version, ObsStatus.OK,
                               value=events / trials * query.scale, events=events, trials=trials,
                               window=query.window, at=query.at, source=source)
        samples = round(self.config.rate * query.window) if query.kind == "value" else None
        return Observation(query.metric, query.version, ObsStatus.OK, value=value * query.scale,
                           samples=samples, window=query.window, at=query.at, source=source)


class MemoryNotifier(Adapter):
    """Keeps every message in ``messages`` (shared per name within a process)."""

    class Config(AdapterConfig):
        fail: bool = False

    sent: dict[str, list[Message]] = {}

    def __init__(self, name: str, config: Any = None, context: AdapterContext | None = None
                 ) -> None:
        super().__init__(name, config or self.Config(), context or AdapterContext())
        self.messages = MemoryNotifier.sent.setdefault(name, [])
        self.fail = self.config.fail

    def notify(self, message: Message) -> None:
        if self.fail:
            raise NotifyError("fake delivery failure", adapter=self.label)
        self.messages.append(message)
