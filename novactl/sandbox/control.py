"""The sandbox: a router, sample apps per role and a control API, all on loopback.

:class:`Sandbox` is a tiny, honest stand-in for a cluster with an ingress:

* a :class:`~novactl.sandbox.router.WeightedRouter` splits traffic between the
  *stable* and *canary* roles;
* each role runs one :class:`~novactl.sandbox.app.SampleApp` (the "replicas"
  are bookkeeping: one server plays them all) that becomes ready
  ``startup_delay`` seconds after it was (re)started or scaled up;
* :meth:`Sandbox.promote` keeps the old stable running as *previous* (not
  routed) until :meth:`Sandbox.retire` stops it, so a rollback has somewhere
  to go;
* a JSON control API mirrors the Python methods, so the ``local`` workload
  adapter (and a human with curl) can drive it::

    GET  /-/status
    POST /-/deploy   {"role": r, "version": v, "replicas": n|null}
    POST /-/scale    {"role": r, "replicas": n}
    GET  /-/ready?role=canary
    POST /-/promote  {"version": v, "replicas": n|null}
    POST /-/retire   {"version": v}
    POST /-/fault    {"version": v, "errors": f, "latency": s, "critical": f, "data_loss": f}
    GET  /metrics    every running instance's metrics, one HELP/TYPE per family

Errors come back as 4xx with ``{"error": "..."}``.  Standard library only.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

from novactl.sandbox.app import (
    FAULT_NAMES,
    METRICS_CONTENT_TYPE,
    MetricFamily,
    SampleApp,
    _fraction,
    _make_server,
    _QuietHandler,
    _Runner,
    _seconds,
    format_metrics,
)
from novactl.sandbox.load import LoadGenerator
from novactl.sandbox.router import ROLES, WeightedRouter

__all__ = ["Sandbox", "SandboxError"]


class SandboxError(ValueError):
    """An operation the sandbox refuses; ``status`` is the HTTP status the API answers."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _check_role(role: Any) -> str:
    if role not in ROLES:
        raise SandboxError(f"unknown role {role!r} (known: stable, canary)")
    return str(role)


def _check_version(version: Any) -> str:
    if not isinstance(version, str) or not version.strip():
        raise SandboxError(f"version must be a non-empty string, got {version!r}")
    return version


def _check_replicas(replicas: Any, *, minimum: int = 0, optional: bool = False) -> int | None:
    if replicas is None and optional:
        return None
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < minimum:
        raise SandboxError(f"replicas must be an integer ≥ {minimum}, got {replicas!r}")
    return replicas


def _check_faults(faults: dict[str, Any]) -> dict[str, float]:
    unknown = sorted(set(faults) - set(FAULT_NAMES))
    if unknown:
        raise SandboxError(f"unknown fault(s) {', '.join(unknown)} "
                           f"(known: {', '.join(FAULT_NAMES)})")
    checked: dict[str, float] = {}
    try:
        for name, value in faults.items():
            if value is None:
                continue
            checked[name] = _seconds(name, value) if name == "latency" else _fraction(name, value)
    except ValueError as exc:
        raise SandboxError(str(exc)) from exc
    return checked


@dataclass
class _Role:
    """What one role (stable or canary) runs, and since when it is starting up."""

    version: str
    desired: int
    ready_base: int  # replicas already ready when the role last changed
    changed_at: float
    app: SampleApp | None


class Sandbox:
    """A router plus sample apps per role, driven from Python or over a JSON control API.

    ``faults`` maps a version to its faults (``errors``, ``latency``,
    ``critical``, ``data_loss``); they apply to every instance of that version,
    now and later.  ``seed`` makes the router's split and the apps' faults
    reproducible.  Servers listen on ``127.0.0.1``; ports 0 mean free ports.
    """

    def __init__(
        self,
        stable_version: str = "v2.9.0",
        stable_replicas: int = 2,
        startup_delay: float = 0.5,
        faults: dict[str, dict[str, float]] | None = None,
        seed: int | None = None,
        *,
        router_port: int = 0,
        control_port: int = 0,
        base_latency: tuple[float, float] = (0.002, 0.015),
    ) -> None:
        self.stable_version = _check_version(stable_version)
        self.stable_replicas = _check_replicas(stable_replicas, minimum=1) or 1
        if startup_delay < 0:
            raise SandboxError(f"startup_delay must be ≥ 0, got {startup_delay!r}")
        self.startup_delay = float(startup_delay)
        self.seed = seed
        self.router_port = router_port
        self.control_port = control_port
        self.base_latency = base_latency
        self._faults: dict[str, dict[str, float]] = {
            _check_version(v): _check_faults(f) for v, f in (faults or {}).items()
        }
        self._seeds = random.Random(seed)
        self._lock = threading.RLock()
        self._running = False
        self._router: WeightedRouter | None = None
        self._control: _Runner | None = None
        self._roles: dict[str, _Role] = {}
        self._previous: list[SampleApp] = []
        self._loads: list[LoadGenerator] = []

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Sandbox:
        """Start the router, the stable version (ready at once) and the control API."""
        with self._lock:
            if self._running:
                return self
            try:
                self._router = WeightedRouter(port=self.router_port, seed=self._new_seed())
                self._router.start()
                app = self._start_app(self.stable_version, "stable", self.stable_replicas)
                self._router.set_backend("stable", app.url)
                self._roles = {"stable": _Role(self.stable_version, self.stable_replicas,
                                               self.stable_replicas, time.monotonic(), app)}
                self._previous = []
                server = _make_server("127.0.0.1", self.control_port,
                                      partial(_ControlHandler, sandbox=self))
                self._control = _Runner(server, "sandbox-control")
                self._control.start()
                self._running = True
            except BaseException:
                self._running = True  # so that stop() tears down what did start
                self.stop()
                raise
        return self

    def stop(self) -> None:
        """Stop load generators, the control API, the router and every app; idempotent."""
        with self._lock:
            if not self._running:
                return
            self._running = False
            loads, self._loads = self._loads, []
            control, self._control = self._control, None
            router, self._router = self._router, None
            apps = [r.app for r in self._roles.values() if r.app is not None] + self._previous
            self._roles, self._previous = {}, []
        # outside the lock: control handlers may be waiting for it
        for load in loads:
            load.stop()
        if control is not None:
            control.stop()
        if router is not None:
            router.stop()
        for app in apps:
            app.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._running

    @property
    def router(self) -> WeightedRouter:
        if self._router is None:
            raise SandboxError("the sandbox is not running", 409)
        return self._router

    @property
    def router_url(self) -> str:
        return self.router.url

    @property
    def control_url(self) -> str:
        if self._control is None:
            raise SandboxError("the sandbox is not running", 409)
        return self._control.url

    def start_load(self, rps: float, **kwargs: Any) -> LoadGenerator:
        """Start a :class:`LoadGenerator` aimed at the router; stopped with the sandbox."""
        load = LoadGenerator(self.router_url, rps, **kwargs)
        with self._lock:
            self._require_running()
            self._loads = [g for g in self._loads if g.running]
            self._loads.append(load)
        return load.start()

    # ------------------------------------------------------------ operations

    def deploy(self, role: str, version: str, replicas: int | None = None) -> dict[str, Any]:
        """Make ``role`` run ``version``; a new version starts not-ready for ``startup_delay``.

        The router switches to the new instance before the old one is stopped.
        Deploying the version a role already runs only scales it.
        """
        role = _check_role(role)
        version = _check_version(version)
        checked = _check_replicas(replicas, optional=True)
        with self._lock:
            self._require_running()
            current = self._roles.get(role)
            if checked is None:
                checked = current.desired if current is not None and current.desired > 0 else 1
            if current is not None and current.version == version:
                self._scale_locked(role, checked)
                return self._ready_locked(role)
            old_app = current.app if current is not None else None
            app = self._start_app(version, role, checked) if checked > 0 else None
            self.router.set_backend(role, app.url if app is not None else None)
            self._roles[role] = _Role(version, checked, 0, time.monotonic(), app)
            if old_app is not None:
                old_app.stop()
            return self._ready_locked(role)

    def scale(self, role: str, replicas: int) -> dict[str, Any]:
        """Scale ``role`` without changing its version; 0 stops it and unregisters it."""
        role = _check_role(role)
        checked = _check_replicas(replicas)
        assert checked is not None
        with self._lock:
            self._require_running()
            self._scale_locked(role, checked)
            return self._ready_locked(role)

    def ready(self, role: str) -> dict[str, Any]:
        """``{"ready", "message", "ready_replicas", "desired_replicas", "version"}`` of ``role``."""
        role = _check_role(role)
        with self._lock:
            self._require_running()
            return self._ready_locked(role)

    def promote(self, version: str, replicas: int | None = None) -> dict[str, Any]:
        """Make ``version`` the routed stable; the old stable keeps running as *previous*.

        A *previous* instance of ``version`` (a promotion being undone) is
        reused; otherwise a new instance starts, not-ready for ``startup_delay``.
        """
        version = _check_version(version)
        checked = _check_replicas(replicas, minimum=1, optional=True)
        with self._lock:
            self._require_running()
            old = self._roles.get("stable")
            if checked is None:
                checked = old.desired if old is not None and old.desired > 0 else 1
            if old is not None and old.version == version and old.app is not None:
                self._scale_locked("stable", checked)
                return self._ready_locked("stable")
            reused = next((a for a in self._previous if a.version == version), None)
            if reused is not None:
                self._previous.remove(reused)
                ready_base = min(reused.replicas, checked)
                reused.role, reused.replicas = "stable", checked
                app = reused
            else:
                app = self._start_app(version, "stable", checked)
                ready_base = 0
            self.router.set_backend("stable", app.url)
            if old is not None and old.app is not None:
                old.app.role = "previous"
                self._previous.append(old.app)
            self._roles["stable"] = _Role(version, checked, ready_base, time.monotonic(), app)
            return self._ready_locked("stable")

    def retire(self, version: str) -> dict[str, Any]:
        """Stop every non-routed instance running ``version`` (none is fine)."""
        version = _check_version(version)
        with self._lock:
            self._require_running()
            victims = [a for a in self._previous if a.version == version]
            self._previous = [a for a in self._previous if a.version != version]
            for app in victims:
                app.stop()
        return {"version": version, "retired": len(victims)}

    def set_fault(self, version: str, errors: float | None = None,
                  latency: float | None = None, critical: float | None = None,
                  data_loss: float | None = None) -> dict[str, float]:
        """Set faults of ``version`` (None: unchanged) for running and future instances."""
        version = _check_version(version)
        checked = _check_faults({"errors": errors, "latency": latency, "critical": critical,
                                 "data_loss": data_loss})
        with self._lock:
            merged = {**self._faults.get(version, {}), **checked}
            self._faults[version] = merged
            for app in self._apps_locked():
                if app.version == version:
                    app.set_fault(**checked)
            return dict(merged)

    # ------------------------------------------------------------ views

    def status(self) -> dict[str, Any]:
        """Everything at a glance: URLs, router state, roles, previous instances, faults."""
        with self._lock:
            running = self._running
            roles: dict[str, Any] = {}
            for role in self._roles:
                app = self._roles[role].app
                roles[role] = {**self._ready_locked(role),
                               "url": app.url if app is not None and app.running else None}
            previous = [{"version": a.version, "replicas": a.replicas, "url": a.url}
                        for a in self._previous if a.running]
            router = self._router.state() if self._router is not None and running else None
            return {
                "running": running,
                "router_url": self.router_url if running else None,
                "control_url": self.control_url if running else None,
                "router": router,
                "roles": roles,
                "previous": previous,
                "faults": {v: dict(f) for v, f in self._faults.items()},
                "startup_delay": self.startup_delay,
            }

    def instances(self) -> list[SampleApp]:
        """Every running app: the routed roles first, then previous stables."""
        with self._lock:
            return self._apps_locked()

    def metrics_text(self) -> str:
        """All running instances' metrics, each family's HELP/TYPE once before its samples."""
        families: list[MetricFamily] = []
        for app in self.instances():
            families.extend(app.metric_families())
        return format_metrics(families)

    # ------------------------------------------------------------ internals (lock held)

    def _new_seed(self) -> int | None:
        return None if self.seed is None else self._seeds.randrange(2**32)

    def _require_running(self) -> None:
        if not self._running:
            raise SandboxError("the sandbox is not running", 409)

    def _apps_locked(self) -> list[SampleApp]:
        apps = [r.app for r in self._roles.values() if r.app is not None and r.app.running]
        return apps + [a for a in self._previous if a.running]

    def _start_app(self, version: str, role: str, replicas: int) -> SampleApp:
        app = SampleApp(version, role, replicas=replicas, base_latency=self.base_latency,
                        seed=self._new_seed())
        app.set_fault(**self._faults.get(version, {}))
        return app.start()

    def _scale_locked(self, role: str, replicas: int) -> None:
        state = self._roles.get(role)
        if state is None:
            raise SandboxError(f"{role} is not deployed: deploy a version first", 409)
        now = time.monotonic()
        if replicas == state.desired and (state.app is not None or replicas == 0):
            return
        if replicas == 0:
            self.router.set_backend(role, None)
            if state.app is not None:
                state.app.stop()
            state.app, state.desired, state.ready_base, state.changed_at = None, 0, 0, now
            return
        if state.app is None:
            state.app = self._start_app(state.version, role, replicas)
            self.router.set_backend(role, state.app.url)
            state.ready_base = 0
        else:
            state.ready_base = min(self._ready_replicas(state, now), replicas)
            state.app.replicas = replicas
        state.desired, state.changed_at = replicas, now

    def _ready_replicas(self, state: _Role, now: float) -> int:
        if state.desired == 0 or state.app is None:
            return 0
        if now - state.changed_at >= self.startup_delay:
            return state.desired
        return min(state.ready_base, state.desired)

    def _ready_locked(self, role: str) -> dict[str, Any]:
        state = self._roles.get(role)
        if state is None:
            return {"ready": False, "message": f"{role} is not deployed",
                    "ready_replicas": 0, "desired_replicas": 0, "version": None}
        ready_replicas = self._ready_replicas(state, time.monotonic())
        desired = state.desired
        if desired == 0:
            ready, message = True, f"{role} ({state.version}) is scaled to 0"
        else:
            ready = ready_replicas >= desired
            message = f"{role} {state.version}: {ready_replicas}/{desired} replicas ready"
            if not ready:
                message += " (starting)"
        return {"ready": ready, "message": message, "ready_replicas": ready_replicas,
                "desired_replicas": desired, "version": state.version}


# ---------------------------------------------------------------- control API


def _field(body: dict[str, Any], name: str, *, required: bool = True) -> Any:
    if name not in body:
        if required:
            raise SandboxError(f"missing field {name!r}")
        return None
    return body[name]


class _ControlHandler(_QuietHandler):
    def __init__(self, *args: Any, sandbox: Sandbox, **kwargs: Any) -> None:
        self.sandbox = sandbox
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    do_PUT = do_POST
    do_DELETE = do_POST

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        path, method = parts.path, self.command
        sandbox = self.sandbox
        if path == "/metrics" and method == "GET":
            self.send_body(200, sandbox.metrics_text().encode(), METRICS_CONTENT_TYPE)
            return
        routes: dict[str, tuple[str, Any]] = {
            "/-/status": ("GET", lambda: sandbox.status()),
            "/-/ready": ("GET", lambda: sandbox.ready(self._query_role(parts.query))),
            "/-/deploy": ("POST", self._deploy),
            "/-/scale": ("POST", self._scale),
            "/-/promote": ("POST", self._promote),
            "/-/retire": ("POST", self._retire),
            "/-/fault": ("POST", self._fault),
            "/metrics": ("GET", None),
        }
        if path not in routes:
            self.send_error_json(404, f"no such endpoint: {path}")
            return
        allowed, action = routes[path]
        if method != allowed:
            self.send_error_json(405, f"{method} not allowed on {path} (use {allowed})")
            return
        try:
            result = action()
        except SandboxError as exc:
            self.send_error_json(exc.status, str(exc))
        except ValueError as exc:
            self.send_error_json(400, str(exc))
        except Exception as exc:  # a bug or an OS failure: still answer JSON
            self.send_error_json(500, f"internal error: {type(exc).__name__}: {exc}")
        else:
            self.send_json(200, result)

    @staticmethod
    def _query_role(query: str) -> str:
        roles = parse_qs(query).get("role")
        if not roles:
            raise SandboxError("missing query parameter 'role'")
        return roles[0]

    def _body(self) -> dict[str, Any]:
        body = self.read_json()
        if not isinstance(body, dict):
            raise SandboxError("expected a JSON object")
        return body

    def _deploy(self) -> dict[str, Any]:
        body = self._body()
        return self.sandbox.deploy(_field(body, "role"), _field(body, "version"),
                                   _field(body, "replicas", required=False))

    def _scale(self) -> dict[str, Any]:
        body = self._body()
        return self.sandbox.scale(_field(body, "role"), _field(body, "replicas"))

    def _promote(self) -> dict[str, Any]:
        body = self._body()
        return self.sandbox.promote(_field(body, "version"),
                                    _field(body, "replicas", required=False))

    def _retire(self) -> dict[str, Any]:
        body = self._body()
        return self.sandbox.retire(_field(body, "version"))

    def _fault(self) -> dict[str, Any]:
        body = self._body()
        unknown = sorted(set(body) - {"version", *FAULT_NAMES})
        if unknown:
            raise SandboxError(f"unknown field(s) {', '.join(unknown)}")
        faults = {name: body.get(name) for name in FAULT_NAMES}
        version = _field(body, "version")
        return {"version": version, "faults": self.sandbox.set_fault(version, **faults)}
