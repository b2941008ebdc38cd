"""Adapters for the local sandbox (:mod:`novactl.sandbox`), over loopback HTTP.

Used by ``novactl demo`` and by plans that rehearse a rollout without any
real infrastructure::

    spec:
      traffic:  {type: local, config: {url: "http://127.0.0.1:8001"}}   # the router
      workload: {type: local, config: {url: "http://127.0.0.1:8002"}}   # the control API

Every transport failure and every non-2xx answer becomes a
:class:`~novactl._errors.TrafficError` or :class:`~novactl._errors.WorkloadError`
with a one-line message; the httpx exception stays in the chain.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
from pydantic import Field

from novactl._errors import AdapterError, TrafficError, WorkloadError
from novactl.adapters._base import Adapter, AdapterConfig, AdapterContext, Duration, Readiness

__all__ = ["LocalTrafficShifter", "LocalWorkload"]

_ERRNO = re.compile(r"^\[Errno -?\d+\]\s*")


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _transport_reason(exc: httpx.HTTPError, timeout: float) -> str:
    """A short, lower-case reason for a transport failure ("connection refused")."""
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {timeout:g}s"
    text = _ERRNO.sub("", _one_line(str(exc))) or type(exc).__name__
    return text[:1].lower() + text[1:]


class _LocalClient(Adapter):
    """Shared plumbing: one httpx client, JSON in and out, errors translated."""

    _what = "sandbox"
    _error: type[AdapterError] = AdapterError

    def __init__(self, name: str, config: Any, context: AdapterContext | None = None) -> None:
        super().__init__(name, config, context or AdapterContext())
        self.url = str(config.url).rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=config.timeout)

    def close(self) -> None:
        self._client.close()

    def _request(self, method: str, path: str, *, json: Any = None,
                 params: dict[str, str] | None = None) -> Any:
        try:
            response = self._client.request(method, path, json=json, params=params)
        except httpx.HTTPError as exc:
            reason = _transport_reason(exc, self.config.timeout)
            raise self._error(f"cannot reach {self._what} at {self.url}: {reason}",
                              adapter=self.label) from exc
        if not response.is_success:
            detail = ""
            try:
                body = response.json()
                if isinstance(body, dict) and body.get("error"):
                    detail = f": {body['error']}"
            except ValueError:
                detail = f": {response.text}" if response.text.strip() else ""
            raise self._error(
                _one_line(f"{self._what} at {self.url} refused {method} {path} "
                          f"(HTTP {response.status_code}){detail}"),
                adapter=self.label)
        try:
            return response.json()
        except ValueError as exc:
            raise self._error(f"{self._what} at {self.url} sent an answer that is not JSON "
                              f"({method} {path})", adapter=self.label) from exc

    def _expect_dict(self, payload: Any, what: str) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise self._error(f"{self._what} at {self.url} sent an unexpected {what} answer",
                              adapter=self.label)
        return payload


class LocalTrafficShifter(_LocalClient):
    """Sets the sandbox router's canary weight and header routes."""

    class Config(AdapterConfig):
        url: str = Field(description="The sandbox router's URL, e.g. http://127.0.0.1:8001.")
        timeout: Duration = Field(5.0, description="Timeout of each call to the router.")

    _what = "router"
    _error = TrafficError

    def set_weight(self, weight: float) -> None:
        self._request("PUT", "/-/weight", json={"weight": float(weight)})

    def get_weight(self) -> float | None:
        state = self._expect_dict(self._request("GET", "/-/weight"), "weight")
        try:
            return float(state["weight"])
        except (KeyError, TypeError, ValueError) as exc:
            raise TrafficError(f"router at {self.url} answered without a usable weight",
                               adapter=self.label) from exc

    def set_header_route(self, header: str, value: str) -> bool:
        self._request("PUT", "/-/header-route", json={"header": header, "value": value})
        return True


class LocalWorkload(_LocalClient):
    """Deploys, scales, checks, promotes and retires versions through the sandbox control API."""

    class Config(AdapterConfig):
        url: str = Field(description="The sandbox control API's URL, e.g. http://127.0.0.1:8002.")
        timeout: Duration = Field(5.0, description="Timeout of each call to the control API.")

    _what = "sandbox control"
    _error = WorkloadError

    def deploy(self, role: str, version: str, replicas: int | None) -> None:
        self._request("POST", "/-/deploy",
                      json={"role": role, "version": version, "replicas": replicas})

    def scale(self, role: str, replicas: int) -> None:
        self._request("POST", "/-/scale", json={"role": role, "replicas": replicas})

    def ready(self, role: str) -> Readiness:
        state = self._expect_dict(self._request("GET", "/-/ready", params={"role": role}),
                                  "readiness")
        try:
            return Readiness(
                ready=bool(state["ready"]),
                message=str(state.get("message", "")),
                ready_replicas=_optional_int(state.get("ready_replicas")),
                desired_replicas=_optional_int(state.get("desired_replicas")),
                version=state.get("version"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WorkloadError(f"sandbox control at {self.url} sent an unexpected readiness "
                                "answer", adapter=self.label) from exc

    def promote(self, version: str, replicas: int | None) -> None:
        self._request("POST", "/-/promote", json={"version": version, "replicas": replicas})

    def retire(self, version: str) -> None:
        self._request("POST", "/-/retire", json={"version": version})


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
