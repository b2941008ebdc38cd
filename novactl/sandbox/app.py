"""A sample service: one version of it, on a loopback port, with injectable faults.

:class:`SampleApp` plays one deployment of the service a rollout moves
traffic between.  ``GET /`` and ``GET /health`` answer a small JSON document
naming the version (and the ``X-Version`` header says it too); ``GET /metrics``
exposes what a real service would export to Prometheus, so probes have
something honest to measure.  Faults (an error fraction, extra latency,
critical errors, data-loss events) can be set at construction and changed
while it runs.

This module also holds the small HTTP plumbing the other sandbox servers
share (a quiet handler base, a threaded server that joins its handler threads
on close, a background runner).  Standard library only.
"""

from __future__ import annotations

import json
import math
import random
import socketserver
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "BUCKETS",
    "FAULT_NAMES",
    "MetricFamily",
    "SampleApp",
    "format_metrics",
]

#: Upper bounds of the request-duration histogram, in seconds (+Inf is implicit).
BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5,
)
#: The faults a SampleApp understands (all fractions 0..1 except ``latency``, in seconds).
FAULT_NAMES: tuple[str, ...] = ("errors", "latency", "critical", "data_loss")

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LOAD_WINDOW = 10.0  # seconds of requests behind the utilization gauge


# ---------------------------------------------------------------- shared HTTP plumbing


class _Server(ThreadingHTTPServer):
    """A threaded HTTP server that joins every handler thread on ``server_close``.

    Handler threads are not daemons, so ``server_close`` waits for requests in
    flight: stopping a server leaves no thread behind.  ``server_bind`` skips
    the reverse DNS lookup of :class:`http.server.HTTPServer` (slow in some
    sandboxes, useless on loopback).
    """

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True
    request_queue_size = 128

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client goes away mid-answer; report anything else."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        super().handle_error(request, client_address)


class _QuietHandler(BaseHTTPRequestHandler):
    """Base handler: HTTP/1.0 (one request per connection), no access log, JSON helpers."""

    protocol_version = "HTTP/1.0"
    server_version = "novactl-sandbox"
    sys_version = ""
    timeout = 10  # seconds a client may take to send its request

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log lines of BaseHTTPRequestHandler."""

    def send_body(self, status: int, body: bytes, content_type: str,
                  headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, payload: Any,
                  headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(payload).encode() + b"\n"
        self.send_body(status, body, "application/json", headers)

    def send_error_json(self, status: int, message: str) -> None:
        self.send_json(status, {"error": message})

    def read_json(self) -> Any:
        """The request body parsed as JSON; ValueError with a short reason if it is not."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as exc:
            raise ValueError("bad Content-Length") from exc
        if length <= 0:
            raise ValueError("expected a JSON body")
        raw = self.rfile.read(length)
        try:
            return json.loads(raw)
        except ValueError as exc:  # JSONDecodeError or UnicodeDecodeError
            raise ValueError(f"body is not valid JSON: {exc}") from exc


class _Runner:
    """Runs one server's ``serve_forever`` in a background thread."""

    def __init__(self, server: _Server, name: str) -> None:
        self.server = server
        self.name = name
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.server.server_name}:{self.server.server_port}"

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
            name=self.name, daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close the socket and join every thread of this server."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self.server.shutdown()
            thread.join()
        self.server.server_close()


def _make_server(host: str, port: int, handler: Callable[..., BaseHTTPRequestHandler]
                 ) -> _Server:
    try:
        return _Server((host, port), handler)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc


# ---------------------------------------------------------------- metrics exposition


@dataclass
class MetricFamily:
    """One metric family in Prometheus text format: HELP, TYPE and its sample lines."""

    name: str
    help: str
    type: str  # counter | gauge | histogram
    samples: list[str] = field(default_factory=list)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def _sample(name: str, labels: Mapping[str, str], value: float) -> str:
    return f"{name}{_labels(labels)} {_number(value)}"


def format_metrics(families: Iterable[MetricFamily]) -> str:
    """Render families as exposition format 0.0.4, merging families of the same name.

    Each family's ``# HELP`` and ``# TYPE`` appear once, before all its samples
    (in first-seen order), however many sources contributed samples.
    """
    merged: dict[str, MetricFamily] = {}
    for family in families:
        into = merged.get(family.name)
        if into is None:
            merged[family.name] = MetricFamily(family.name, family.help, family.type,
                                               list(family.samples))
        else:
            into.samples.extend(family.samples)
    lines: list[str] = []
    for family in merged.values():
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.type}")
        lines.extend(family.samples)
    return "\n".join(lines) + "\n" if lines else ""


# ---------------------------------------------------------------- the sample app


def _fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a fraction within 0..1, got {value!r}")
    return float(value)


def _seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds ≥ 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class _Decision:
    """What one request will experience, drawn up front from the app's RNG."""

    delay: float
    status: int
    critical: bool
    data_loss: bool


class _AppHandler(_QuietHandler):
    def __init__(self, *args: Any, app: SampleApp, **kwargs: Any) -> None:
        self.app = app
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body = self.app.metrics_text().encode()
            self.send_body(200, body, METRICS_CONTENT_TYPE)
        elif path in ("/", "/health"):
            self._serve()
        else:
            self.send_error_json(404, f"no such path: {path}")

    def _serve(self) -> None:
        app = self.app
        started = time.perf_counter()
        decision = app._decide()
        if decision.delay > 0:
            time.sleep(decision.delay)
        version, role = app.version, app.role
        if decision.status == 200:
            payload: dict[str, Any] = {"version": version, "role": role}
        else:
            payload = {"version": version, "role": role, "error": "injected fault"}
        # record before answering, so a client that has its answer also sees it counted
        app._record(decision, time.perf_counter() - started)
        self.send_json(decision.status, payload, {"X-Version": version})


class SampleApp:
    """One version of the sample service on ``127.0.0.1`` (port 0: a free port).

    Faults: ``errors`` is the fraction of requests answered 500, ``latency``
    seconds are added to every request, ``critical`` is the fraction of those
    500s that also count as critical errors, ``data_loss`` the fraction of
    requests that record a data-loss event.  Every request also sleeps a base
    latency drawn uniformly from ``base_latency`` (2–15 ms by default).
    """

    def __init__(
        self,
        version: str,
        role: str = "stable",
        *,
        replicas: int = 1,
        errors: float = 0.0,
        latency: float = 0.0,
        critical: float = 0.0,
        data_loss: float = 0.0,
        base_latency: tuple[float, float] = (0.002, 0.015),
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
    ) -> None:
        if not version:
            raise ValueError("version must not be empty")
        low, high = base_latency
        if not 0 <= low <= high:
            raise ValueError(f"base_latency must be (low, high) with 0 ≤ low ≤ high, "
                             f"got {base_latency!r}")
        self.version = version
        self.role = role
        self.replicas = replicas
        self.base_latency = (float(low), float(high))
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._errors = _fraction("errors", errors)
        self._latency = _seconds("latency", latency)
        self._critical = _fraction("critical", critical)
        self._data_loss = _fraction("data_loss", data_loss)
        # metrics: plain numbers under self._lock
        self._requests: dict[str, int] = {"200": 0, "500": 0}
        self._buckets = [0] * len(BUCKETS)  # per bucket, not cumulative
        self._duration_sum = 0.0
        self._duration_count = 0
        self._critical_total = 0
        self._data_loss_total = 0
        self._recent: deque[float] = deque()
        self._runner: _Runner | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> SampleApp:
        """Listen and serve in a background thread; returns self."""
        if self._runner is None:
            server = _make_server(self.host, self.port, partial(_AppHandler, app=self))
            self._runner = _Runner(server, f"sample-app-{self.version}")
            self._runner.start()
        return self

    def stop(self) -> None:
        """Stop serving and join every thread; idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.stop()

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError(f"SampleApp {self.version} is not running")
        return self._runner.url

    def __enter__(self) -> SampleApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self._runner.url if self._runner else "stopped"
        return f"SampleApp({self.version!r}, role={self.role!r}, {where})"

    # ------------------------------------------------------------ faults

    @property
    def errors(self) -> float:
        return self._errors

    @errors.setter
    def errors(self, value: float) -> None:
        self._errors = _fraction("errors", value)

    @property
    def latency(self) -> float:
        return self._latency

    @latency.setter
    def latency(self, value: float) -> None:
        self._latency = _seconds("latency", value)

    @property
    def critical(self) -> float:
        return self._critical

    @critical.setter
    def critical(self, value: float) -> None:
        self._critical = _fraction("critical", value)

    @property
    def data_loss(self) -> float:
        return self._data_loss

    @data_loss.setter
    def data_loss(self, value: float) -> None:
        self._data_loss = _fraction("data_loss", value)

    @property
    def faults(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in FAULT_NAMES}

    def set_fault(self, errors: float | None = None, latency: float | None = None,
                  critical: float | None = None, data_loss: float | None = None) -> None:
        """Change some faults (None leaves one as it is); validates all before applying any."""
        new = {
            "errors": None if errors is None else _fraction("errors", errors),
            "latency": None if latency is None else _seconds("latency", latency),
            "critical": None if critical is None else _fraction("critical", critical),
            "data_loss": None if data_loss is None else _fraction("data_loss", data_loss),
        }
        for name, value in new.items():
            if value is not None:
                setattr(self, name, value)

    # ------------------------------------------------------------ requests

    def _decide(self) -> _Decision:
        with self._lock:
            rng = self._rng
            low, high = self.base_latency
            base = rng.uniform(low, high) if high > 0 else 0.0
            failed = self._errors > 0 and rng.random() < self._errors
            critical = failed and self._critical > 0 and rng.random() < self._critical
            lost = self._data_loss > 0 and rng.random() < self._data_loss
        return _Decision(base + self._latency, 500 if failed else 200, critical, lost)

    def _record(self, decision: _Decision, duration: float) -> None:
        code = str(decision.status)
        now = time.monotonic()
        with self._lock:
            self._requests[code] = self._requests.get(code, 0) + 1
            for i, bound in enumerate(BUCKETS):
                if duration <= bound:
                    self._buckets[i] += 1
                    break
            self._duration_sum += duration
            self._duration_count += 1
            if decision.critical:
                self._critical_total += 1
            if decision.data_loss:
                self._data_loss_total += 1
            self._recent.append(now)
            self._prune(now)

    def _prune(self, now: float) -> None:
        recent = self._recent
        while recent and recent[0] < now - _LOAD_WINDOW:
            recent.popleft()

    def request_counts(self) -> dict[str, int]:
        """Requests served so far, by status code."""
        with self._lock:
            return dict(self._requests)

    def utilization(self) -> float:
        """A plausible resource-utilization ratio: 0.3 plus 0.1 per 10 req/s per replica."""
        with self._lock:
            self._prune(time.monotonic())
            rate = len(self._recent) / _LOAD_WINDOW
        load = rate / (10.0 * max(1, self.replicas))
        return min(0.95, 0.3 + 0.1 * load)

    # ------------------------------------------------------------ metrics

    def metric_families(self) -> list[MetricFamily]:
        """This instance's metrics; every series carries ``version`` and ``role`` labels."""
        base = {"version": self.version, "role": self.role}
        utilization = self.utilization()
        with self._lock:
            requests = dict(self._requests)
            buckets = list(self._buckets)
            duration_sum, duration_count = self._duration_sum, self._duration_count
            critical, data_loss = self._critical_total, self._data_loss_total
        requests_family = MetricFamily(
            "http_requests_total", "HTTP requests served, by status code.", "counter",
            [_sample("http_requests_total", {**base, "code": code}, n)
             for code, n in sorted(requests.items())],
        )
        histogram = MetricFamily(
            "http_request_duration_seconds", "Time taken to answer a request.", "histogram")
        cumulative = 0
        for bound, n in zip(BUCKETS, buckets, strict=True):
            cumulative += n
            histogram.samples.append(_sample("http_request_duration_seconds_bucket",
                                             {**base, "le": _number(bound)}, cumulative))
        histogram.samples += [
            _sample("http_request_duration_seconds_bucket", {**base, "le": "+Inf"},
                    duration_count),
            _sample("http_request_duration_seconds_sum", base, float(duration_sum)),
            _sample("http_request_duration_seconds_count", base, duration_count),
        ]
        return [
            requests_family,
            histogram,
            MetricFamily("app_critical_errors_total", "Critical errors (a subset of the 500s).",
                         "counter", [_sample("app_critical_errors_total", base, critical)]),
            MetricFamily("app_data_loss_events_total", "Data-loss events detected.", "counter",
                         [_sample("app_data_loss_events_total", base, data_loss)]),
            MetricFamily("app_resource_utilization_ratio",
                         "Resources used / resources requested.", "gauge",
                         [_sample("app_resource_utilization_ratio", base, round(utilization, 4))]),
            MetricFamily("app_replicas", "Replicas of this version in this role.", "gauge",
                         [_sample("app_replicas", base, int(self.replicas))]),
        ]

    def metrics_text(self) -> str:
        """The ``/metrics`` document (exposition format 0.0.4)."""
        return format_metrics(self.metric_families())

