"""Query any Prometheus-compatible HTTP API: Prometheus, Thanos, Mimir, VictoriaMetrics.

::

    probes:
      prom:
        type: prometheus
        config:
          url: https://prometheus.example.com      # Mimir: https://mimir/prometheus
          timeout: 10s
          token_env: PROM_TOKEN                    # bearer token, or:
          # username: novactl
          # password_env: PROM_PASSWORD            # basic auth
          verify_tls: true
          ca_file: certs/ca.pem                    # relative to the plan file
          headers: {X-Scope-OrgID: team-a}
          retries: 3

Queries
-------
Every query part is a PromQL expression evaluated as an instant query
(``GET {url}/api/v1/query?query=...&time=<ProbeQuery.at>``).  It must come
back as one number:

* a **vector** with exactly one sample: its value.  No sample is *no data*
  ("no values found for ..."); more than one is an *error* — aggregate it,
  e.g. ``sum(rate(http_requests_total{version="{{version}}"}[{{window}}]))``;
* a **scalar**: its value;
* ``NaN``, ``+Inf`` and ``-Inf`` are *no data* (a ratio over zero requests
  is ``NaN``: there was nothing to measure, which is not a pass).

Errors
------
Transport errors, HTTP 429 and HTTP 5xx are retried (``retries`` times,
backoff 0.2 s doubling up to 2 s, on the adapter's clock); other statuses are
not.  What still fails is a :class:`~novactl._errors.ProbeError` naming the
last status; an answer with ``status: error`` is one carrying Prometheus'
``errorType`` and ``error``.  Tokens and passwords are read from the
environment when first needed and never appear in messages or reprs.
"""

from __future__ import annotations

import math
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic import Field, field_validator, model_validator
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from novactl._errors import NoDataError, ProbeError
from novactl.adapters._base import AdapterConfig, AdapterContext, BaseProbe, Duration
from novactl.adapters._promtext import parse_value
from novactl.core.observations import ProbeQuery

__all__ = ["PrometheusProbe"]

BACKOFF_FIRST = 0.2  # seconds before the first retry; doubles each time ...
BACKOFF_MAX = 2.0  # ... up to this


class _Retryable(Exception):
    """A failure worth another attempt (transport error, HTTP 429 or 5xx)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _one_line(text: object, limit: int = 200) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _redacted(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except Exception:
        return _one_line(url, 120)
    if parsed.userinfo:
        parsed = parsed.copy_with(username=None, password=None)
    return str(parsed)


class PrometheusProbe(BaseProbe):
    """Runs each query part as a PromQL instant query."""

    class Config(AdapterConfig):
        url: str = Field(..., description="Base URL of the Prometheus-compatible API.")
        timeout: Duration = Field(10.0, description="Timeout of one request.")
        token_env: str | None = Field(None, description="Environment variable with a "
                                      "bearer token.")
        username: str | None = Field(None, description="Basic-auth user name.")
        password_env: str | None = Field(None, description="Environment variable with the "
                                         "basic-auth password.")
        verify_tls: bool = Field(True, description="Verify the server's certificate.")
        ca_file: str | None = Field(None, description="CA bundle (relative to the plan file).")
        headers: dict[str, str] = Field(default_factory=dict,
                                        description="Extra request headers.")
        retries: int = Field(3, ge=0, le=10, description="Retries on transport errors, "
                             "HTTP 429 and 5xx.")

        @field_validator("url")
        @classmethod
        def _check_url(cls, value: str) -> str:
            value = value.strip()
            if not value.startswith(("http://", "https://")):
                raise ValueError("url must start with http:// or https://")
            return value.rstrip("/")

        @model_validator(mode="after")
        def _check_auth(self) -> PrometheusProbe.Config:
            if (self.username is None) != (self.password_env is None):
                raise ValueError("basic auth needs both username and password_env")
            if self.token_env and self.username:
                raise ValueError("use token_env or username/password_env, not both")
            return self

    def __init__(self, name: str, config: Any, context: AdapterContext | None = None) -> None:
        if isinstance(config, dict):
            config = self.Config.model_validate(config)
        super().__init__(name, config, context or AdapterContext())
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()
        # How retries wait; the adapter's clock by default (a FakeClock does not block).
        self.sleep: Callable[[float], None] = self.context.clock.sleep

    def __repr__(self) -> str:
        return f"PrometheusProbe(name={self.name!r}, url={_redacted(self.config.url)!r})"

    @property
    def endpoint(self) -> str:
        return f"{self.config.url}/api/v1/query"

    # -- connection
    def _verify(self) -> ssl.SSLContext | bool:
        cfg = self.config
        if not cfg.verify_tls:
            return False
        if not cfg.ca_file:
            return True
        path = Path(cfg.ca_file).expanduser()
        if not path.is_absolute():
            path = Path(self.context.base_dir) / path
        try:
            return ssl.create_default_context(cafile=str(path))
        except (OSError, ssl.SSLError) as exc:
            raise ProbeError(f"cannot load ca_file {path}: {_one_line(exc)}",
                             adapter=self.label) from exc

    def _client(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                cfg = self.config
                headers = {"Accept": "application/json", "User-Agent": "novactl",
                           **cfg.headers}
                auth: httpx.Auth | None = None
                if cfg.token_env:
                    token = self.context.secret(cfg.token_env, adapter=self.label)
                    headers["Authorization"] = f"Bearer {token}"
                elif cfg.username is not None and cfg.password_env is not None:
                    password = self.context.secret(cfg.password_env, adapter=self.label)
                    auth = httpx.BasicAuth(cfg.username, str(password))
                self._http = httpx.Client(timeout=cfg.timeout, headers=headers, auth=auth,
                                          verify=self._verify(), follow_redirects=True)
            return self._http

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    # -- queries
    def fetch(self, query: str, request: ProbeQuery) -> float:
        return self.instant(query, at=request.at)

    def instant(self, query: str, at: float | None = None) -> float:
        """Evaluate ``query`` at ``at`` (epoch seconds; None: the server's now).

        Returns a finite number; raises NoDataError or ProbeError.
        """
        params = {"query": query}
        if at is not None and at > 0:
            params["time"] = f"{at:.3f}"
        response = self._get(params)
        payload = self._payload(response)
        return self._value(query, payload)

    def _get(self, params: dict[str, str]) -> httpx.Response:
        client = self._client()
        attempts = self.config.retries + 1
        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=BACKOFF_FIRST, max=BACKOFF_MAX),
            retry=retry_if_exception_type(_Retryable),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            return retrying(self._attempt, client, params)
        except _Retryable as exc:
            tries = f"after {attempts} attempts" if attempts > 1 else "(no retries)"
            raise ProbeError(f"query to {_redacted(self.config.url)} failed {tries}: "
                             f"last {exc.detail}", adapter=self.label) from exc

    def _attempt(self, client: httpx.Client, params: dict[str, str]) -> httpx.Response:
        try:
            response = client.get(self.endpoint, params=params)
        except httpx.TransportError as exc:
            raise _Retryable(f"error {type(exc).__name__}: {_one_line(exc) or 'no details'}"
                             ) from exc
        except httpx.HTTPError as exc:
            raise ProbeError(f"query to {_redacted(self.config.url)} failed: "
                             f"{type(exc).__name__}: {_one_line(exc)}",
                             adapter=self.label) from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(f"status HTTP {response.status_code}{self._error_detail(response)}")
        return response

    @staticmethod
    def _error_detail(response: httpx.Response) -> str:
        """``: errorType: error`` from a Prometheus error body, if it has one."""
        try:
            body = response.json()
        except ValueError:
            text = _one_line(response.text, 120)
            return f": {text}" if text else ""
        if isinstance(body, dict) and body.get("status") == "error":
            return f": {body.get('errorType', 'error')}: {_one_line(body.get('error', ''))}"
        return ""

    def _payload(self, response: httpx.Response) -> dict[str, Any]:
        where = _redacted(self.config.url)
        if not response.is_success:
            raise ProbeError(f"query to {where} failed: HTTP {response.status_code}"
                             f"{self._error_detail(response)}", adapter=self.label)
        try:
            payload = response.json()
        except ValueError as exc:
            raise ProbeError(f"{where} answered with invalid JSON "
                             f"(is url the Prometheus API?)", adapter=self.label) from exc
        if not isinstance(payload, dict):
            raise ProbeError(f"{where} answered with unexpected JSON", adapter=self.label)
        if payload.get("status") != "success":
            raise ProbeError(f"query failed: {payload.get('errorType', 'error')}: "
                             f"{_one_line(payload.get('error', 'no details'))}",
                             adapter=self.label)
        for warning in payload.get("warnings") or []:
            self.context.log(f"{self.label}: warning: {_one_line(warning)}")
        return payload

    def _value(self, query: str, payload: dict[str, Any]) -> float:
        shown = _one_line(query, 160)
        data = payload.get("data")
        if not isinstance(data, dict):
            raise ProbeError("answer has no data", adapter=self.label)
        result_type, result = data.get("resultType"), data.get("result")
        try:
            if result_type == "vector":
                if not result:
                    raise NoDataError(f"no values found for {shown}")
                if len(result) > 1:
                    raise ProbeError(f"query returned {len(result)} series; aggregate it, "
                                     f"e.g. sum(...): {shown}", adapter=self.label)
                sample = result[0]
                if "value" not in sample:
                    raise ProbeError(f"query returned a native histogram, not a number: "
                                     f"{shown}", adapter=self.label)
                raw = sample["value"][1]
            elif result_type == "scalar" and isinstance(result, list):
                raw = result[1]
            elif result_type == "matrix":
                raise ProbeError(f"query returned a range vector; use an instant expression, "
                                 f"e.g. rate(x[5m]) rather than x[5m]: {shown}",
                                 adapter=self.label)
            else:
                raise ProbeError(f"unexpected result type {result_type!r} for {shown}",
                                 adapter=self.label)
            value = parse_value(str(raw))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ProbeError(f"malformed answer for {shown}: {_one_line(exc)}",
                             adapter=self.label) from exc
        if not math.isfinite(value):
            raise NoDataError(f"query returned {raw} for {shown}")
        return value
