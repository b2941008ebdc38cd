"""A weighted HTTP router: the sandbox's stand-in for an ingress with canary support.

:class:`WeightedRouter` proxies ``GET`` requests to a *stable* or a *canary*
backend.  The canary gets ``weight`` percent of requests, drawn per request
from a (seedable) :class:`random.Random`; a request carrying a configured
header route (``X-Canary-Debug: 1`` by default) always goes to the canary.
Answers keep their status, body and ``X-Version`` header and gain
``X-Routed-To: stable|canary``.  A missing or unreachable backend is a 502.

The admin API lives on the same port under ``/-/``::

    GET /-/weight           {"weight": w, "header_routes": {...}, "backends": {...}}
    PUT /-/weight           {"weight": w}                      (0..100, else 400)
    PUT /-/header-route     {"header": h, "value": v}          (value null removes it)
    GET /-/backends         {"stable": url|null, "canary": url|null}
    PUT /-/backends         {"stable": url|null, "canary": url|null}   (partial updates)
    GET /-/stats            per-role counts of proxied and failed requests
"""

from __future__ import annotations

import http.client
import math
import random
import threading
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from novactl.sandbox.app import _make_server, _QuietHandler, _Runner

__all__ = ["DEFAULT_HEADER_ROUTES", "ROLES", "WeightedRouter"]

ROLES: tuple[str, ...] = ("stable", "canary")
DEFAULT_HEADER_ROUTES: dict[str, str] = {"X-Canary-Debug": "1"}

# headers that belong to one connection and are never forwarded
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length",
})


def _check_weight(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"weight must be a number, got {value!r}")
    weight = float(value)
    if not math.isfinite(weight) or not 0.0 <= weight <= 100.0:
        raise ValueError(f"weight must be within 0..100, got {value!r}")
    return weight


def _check_url(role: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"backend {role} must be a URL or null, got {value!r}")
    parts = urlsplit(value)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"backend {role} must be an http:// URL, got {value!r}")
    try:
        parts.port  # noqa: B018 - validates the port number
    except ValueError as exc:
        raise ValueError(f"backend {role} has a bad port: {value!r}") from exc
    return value.rstrip("/")


class _Unreachable(Exception):
    """The chosen backend could not be reached."""


class _RouterHandler(_QuietHandler):
    def __init__(self, *args: Any, router: WeightedRouter, **kwargs: Any) -> None:
        self.router = router
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------ dispatch

    def do_GET(self) -> None:
        if self.path.startswith("/-/"):
            self._admin(self.command)
        else:
            self._proxy()

    def _other(self) -> None:
        if self.path.startswith("/-/"):
            self._admin(self.command)
        else:
            self.send_body(405, b"method not allowed: the router proxies GET only\n",
                           "text/plain; charset=utf-8", {"Allow": "GET"})

    do_PUT = _other
    do_POST = _other
    do_DELETE = _other

    # ------------------------------------------------------------ admin API

    def _admin(self, method: str) -> None:
        router = self.router
        path = self.path.split("?", 1)[0]
        routes: dict[str, dict[str, Any]] = {
            "/-/weight": {"GET": router.state, "PUT": self._put_weight},
            "/-/header-route": {"PUT": self._put_header_route},
            "/-/backends": {"GET": lambda: router.backends, "PUT": self._put_backends},
            "/-/stats": {"GET": router.stats},
        }
        if path not in routes:
            self.send_error_json(404, f"no such admin endpoint: {path}")
            return
        action = routes[path].get(method)
        if action is None:
            self.send_error_json(405, f"{method} not allowed on {path} "
                                 f"(use {', '.join(routes[path])})")
            return
        try:
            result = action()
        except ValueError as exc:
            self.send_error_json(400, str(exc))
            return
        self.send_json(200, result)

    def _body(self) -> dict[str, Any]:
        body = self.read_json()
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        return body

    def _put_weight(self) -> dict[str, Any]:
        body = self._body()
        if "weight" not in body:
            raise ValueError("missing field 'weight'")
        self.router.set_weight(body["weight"])
        return self.router.state()

    def _put_header_route(self) -> dict[str, Any]:
        body = self._body()
        header, value = body.get("header"), body.get("value")
        if not isinstance(header, str) or not header.strip():
            raise ValueError("field 'header' must be a non-empty string")
        if value is not None and not isinstance(value, str):
            raise ValueError("field 'value' must be a string (or null to remove the route)")
        self.router.set_header_route(header, value)
        return self.router.state()

    def _put_backends(self) -> dict[str, Any]:
        body = self._body()
        unknown = sorted(set(body) - set(ROLES))
        if unknown:
            raise ValueError(f"unknown role(s) {', '.join(unknown)} (known: stable, canary)")
        checked = {role: _check_url(role, url) for role, url in body.items()}
        for role, url in checked.items():
            self.router.set_backend(role, url)
        return self.router.state()

    # ------------------------------------------------------------ proxy

    def _proxy(self) -> None:
        router = self.router
        role = router.choose(self.headers)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        url = router.backend(role)
        for attempt in range(2):
            if url is None:
                router._count(role, failed=True)
                self._bad_gateway(role, f"no {role} backend is registered")
                return
            try:
                status, body, answer_headers = router._forward(url, self.path, headers)
                break
            except _Unreachable as exc:
                # the backend may have been switched while we connected: retry once
                newer = router.backend(role)
                if attempt == 0 and newer != url:
                    url = newer
                    continue
                router._count(role, failed=True)
                self._bad_gateway(role, f"{role} backend {url} is unreachable: {exc}")
                return
        router._count(role, failed=False)
        answer_headers["X-Routed-To"] = role
        content_type = answer_headers.pop("Content-Type", "application/octet-stream")
        self.send_body(status, body, content_type, answer_headers)

    def _bad_gateway(self, role: str, message: str) -> None:
        self.send_body(502, f"bad gateway: {message}\n".encode(), "text/plain; charset=utf-8",
                       {"X-Routed-To": role})


class WeightedRouter:
    """Proxies GETs to the stable or canary backend on ``127.0.0.1`` (port 0: a free port).

    ``weight`` is the percentage (0..100, a float) of requests sent to the
    canary.  All state is guarded by one lock; the per-request random draw
    uses ``random.Random(seed)`` so runs can be made reproducible.
    """

    def __init__(
        self,
        stable: str | None = None,
        canary: str | None = None,
        *,
        weight: float = 0.0,
        header_routes: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        backend_timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.backend_timeout = backend_timeout
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._weight = _check_weight(weight)
        self._header_routes = dict(DEFAULT_HEADER_ROUTES if header_routes is None
                                   else header_routes)
        self._backends: dict[str, str | None] = {
            "stable": _check_url("stable", stable),
            "canary": _check_url("canary", canary),
        }
        self._stats = {role: {"proxied": 0, "failed": 0} for role in ROLES}
        self._runner: _Runner | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> WeightedRouter:
        """Listen and serve in a background thread; returns self."""
        if self._runner is None:
            server = _make_server(self.host, self.port, partial(_RouterHandler, router=self))
            self._runner = _Runner(server, "weighted-router")
            self._runner.start()
        return self

    def stop(self) -> None:
        """Stop serving and join every thread; idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.stop()

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("the router is not running")
        return self._runner.url

    def __enter__(self) -> WeightedRouter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ state

    @property
    def weight(self) -> float:
        with self._lock:
            return self._weight

    def set_weight(self, weight: float) -> None:
        """Send ``weight`` percent of requests to the canary; ValueError outside 0..100."""
        checked = _check_weight(weight)
        with self._lock:
            self._weight = checked

    @property
    def header_routes(self) -> dict[str, str]:
        with self._lock:
            return dict(self._header_routes)

    def set_header_route(self, header: str, value: str | None) -> None:
        """Requests with ``header: value`` always go to the canary (``None`` removes the route)."""
        if not header.strip():
            raise ValueError("header must not be empty")
        with self._lock:
            # header names are case-insensitive: replace any spelling of this one
            for name in [n for n in self._header_routes if n.lower() == header.lower()]:
                del self._header_routes[name]
            if value is not None:
                self._header_routes[header] = value

    @property
    def backends(self) -> dict[str, str | None]:
        with self._lock:
            return dict(self._backends)

    def backend(self, role: str) -> str | None:
        with self._lock:
            return self._backends[role]

    def set_backend(self, role: str, url: str | None) -> None:
        """Register (or with ``None`` unregister) the backend URL of ``role``."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r} (known: stable, canary)")
        checked = _check_url(role, url)
        with self._lock:
            self._backends[role] = checked

    def state(self) -> dict[str, Any]:
        """What ``GET /-/weight`` answers."""
        with self._lock:
            return {
                "weight": self._weight,
                "header_routes": dict(self._header_routes),
                "backends": dict(self._backends),
            }

    def stats(self) -> dict[str, dict[str, int]]:
        """Requests proxied (answered by the backend) and failed (502), per role."""
        with self._lock:
            return {role: dict(counts) for role, counts in self._stats.items()}

    def reset_stats(self) -> None:
        with self._lock:
            for counts in self._stats.values():
                counts["proxied"] = counts["failed"] = 0

    # ------------------------------------------------------------ routing

    def choose(self, headers: Any) -> str:
        """The role one request goes to: a header route wins, else a weighted draw."""
        with self._lock:
            for name, value in self._header_routes.items():
                if headers.get(name) == value:
                    return "canary"
            weight = self._weight
            if weight <= 0.0:
                return "stable"
            return "canary" if self._rng.random() * 100.0 < weight else "stable"

    def _count(self, role: str, *, failed: bool) -> None:
        with self._lock:
            self._stats[role]["failed" if failed else "proxied"] += 1

    def _forward(self, base_url: str, path: str, headers: dict[str, str]
                 ) -> tuple[int, bytes, dict[str, str]]:
        parts = urlsplit(base_url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                          timeout=self.backend_timeout)
        try:
            try:
                conn.request("GET", parts.path.rstrip("/") + path, headers=headers)
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as exc:
                raise _Unreachable(_reason(exc)) from exc
            kept = {}
            for name in ("Content-Type", "X-Version"):
                value = response.getheader(name)
                if value is not None:
                    kept[name] = value
            return response.status, body, kept
        finally:
            conn.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
