"""HTTP plumbing shared by the probes that ask an HTTP API (Prometheus, HTTP-JSON).

One pooled httpx client per probe with auth (bearer token or basic, secrets from the
environment), TLS options and headers; retries with tenacity on transport errors, HTTP
429 and 5xx only, with exponential backoff and a bound; error messages that never carry
credentials.
"""

from __future__ import annotations

import re
import ssl
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from pydantic import Field, model_validator
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from novactl._errors import ProbeError
from novactl.adapters._base import AdapterConfig, AdapterContext, BaseProbe, Duration

__all__ = ["HttpConfig", "HttpProbe", "error_detail", "http_url", "one_line", "redacted"]

BACKOFF_FIRST = 0.2  # seconds before the first retry; doubles each time ...
BACKOFF_MAX = 2.0  # ... up to this


class _Retryable(Exception):
    """A failure worth another attempt (transport error, HTTP 429 or 5xx)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def one_line(text: object, limit: int = 200) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


_USERINFO = re.compile(r"://[^/?#]*@")


def redacted(url: str) -> str:
    """The URL without user information (which may hold a password)."""
    try:
        parsed = httpx.URL(url)
    except Exception:
        return one_line(_USERINFO.sub("://", url), 120)
    if parsed.userinfo:
        parsed = parsed.copy_with(username=None, password=None)
    return str(parsed)


def error_detail(response: httpx.Response) -> str:
    """``: errorType: error`` (or ``: error``/``: message``) from an error body; else its text."""
    try:
        body = response.json()
    except ValueError:
        text = one_line(response.text, 120)
        return f": {text}" if text else ""
    if isinstance(body, dict):
        if body.get("status") == "error":
            return f": {body.get('errorType', 'error')}: {one_line(body.get('error', ''))}"
        for key in ("error", "message", "detail"):
            if isinstance(body.get(key), str | int | float) and str(body[key]).strip():
                return f": {one_line(body[key], 160)}"
    return ""


class HttpConfig(AdapterConfig):
    """Settings every HTTP probe shares: timeout, auth, TLS, headers, retries."""

    timeout: Duration = Field(10.0, description="Timeout of one request.")
    token_env: str | None = Field(None, description="Environment variable with a "
                                  "bearer token.")
    token_file: str | None = Field(None, description="File with a bearer token (e.g. a "
                                   "service-account token), relative to the plan file.")
    username: str | None = Field(None, description="Basic-auth user name.")
    password_env: str | None = Field(None, description="Environment variable with the "
                                     "basic-auth password.")
    password_file: str | None = Field(None, description="File with the basic-auth "
                                      "password, relative to the plan file.")
    verify_tls: bool = Field(True, description="Verify the server's certificate.")
    ca_file: str | None = Field(None, description="CA bundle (relative to the plan file).")
    headers: dict[str, str] = Field(default_factory=dict,
                                    description="Extra request headers.")
    retries: int = Field(3, ge=0, le=10, description="Retries on transport errors, "
                         "HTTP 429 and 5xx.")

    @model_validator(mode="after")
    def _check_auth(self) -> HttpConfig:
        if self.token_env and self.token_file:
            raise ValueError("use token_env or token_file, not both")
        if self.password_env and self.password_file:
            raise ValueError("use password_env or password_file, not both")
        password = self.password_env or self.password_file
        if (self.username is None) != (password is None):
            raise ValueError("basic auth needs both username and password_env")
        if (self.token_env or self.token_file) and self.username:
            raise ValueError("use token_env or username/password_env, not both")
        return self


def http_url(value: str) -> str:
    value = value.strip()
    if not value.startswith(("http://", "https://")):
        raise ValueError("url must start with http:// or https://")
    try:
        parsed = httpx.URL(value)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ValueError(f"invalid url {redacted(value)!r}: {exc}") from None
    if not parsed.host:
        raise ValueError(f"invalid url {redacted(value)!r}: no host")
    return value.rstrip("/")


class HttpProbe(BaseProbe):
    """A probe that asks an HTTP API: one pooled client with auth, TLS and retries.

    Subclasses set a ``Config`` derived from :class:`HttpConfig`, implement
    :meth:`fetch` and call :meth:`get`.
    """

    def __init__(self, name: str, config: Any, context: AdapterContext | None = None) -> None:
        if isinstance(config, dict) and self.Config is not None:
            config = self.Config.model_validate(config)
        super().__init__(name, config, context or AdapterContext())
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()
        # How retries wait; the adapter's clock by default (a FakeClock does not block).
        self.sleep: Callable[[float], None] = self.context.clock.sleep

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
            raise ProbeError(f"cannot load ca_file {path}: {one_line(exc)}",
                             adapter=self.label) from exc

    def _client(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                cfg = self.config
                headers = {"Accept": "application/json", "User-Agent": "novactl",
                           **cfg.headers}
                auth: httpx.Auth | None = None
                if cfg.token_env or cfg.token_file:
                    token = (self.context.secret(cfg.token_env, adapter=self.label)
                             if cfg.token_env else
                             self.context.secret_file(cfg.token_file or "", adapter=self.label))
                    source = cfg.token_env or cfg.token_file
                    if not token.isascii() or not token.isprintable() or " " in token:
                        raise ProbeError(f"the token in {source} holds characters a bearer "
                                         "token cannot (spaces, control or non-ASCII)",
                                         adapter=self.label)
                    headers["Authorization"] = f"Bearer {token}"
                elif cfg.username is not None:
                    password = (self.context.secret(cfg.password_env, adapter=self.label)
                                if cfg.password_env else
                                self.context.secret_file(cfg.password_file or "",
                                                         adapter=self.label))
                    auth = httpx.BasicAuth(cfg.username, str(password))
                for key, value in headers.items():
                    if key != "Authorization" and not (value.isascii() and value.isprintable()):
                        raise ProbeError(f"header {key}: only printable ASCII is allowed",
                                         adapter=self.label)
                self._http = httpx.Client(timeout=cfg.timeout, headers=headers, auth=auth,
                                          verify=self._verify(), follow_redirects=True)
            return self._http

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    # -- requests
    def get(self, url: str, params: Mapping[str, str] | None = None, *,
            subject: str = "") -> httpx.Response:
        """GET ``url``, retrying transport errors, 429 and 5xx; any other answer is returned.

        ``subject`` starts the error message ("query to https://prom"); the default
        is ``request to <url without user information>``.
        """
        client = self._client()
        subject = subject or f"request to {redacted(url)}"
        attempts = self.config.retries + 1
        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=BACKOFF_FIRST, max=BACKOFF_MAX),
            retry=retry_if_exception_type(_Retryable),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            return retrying(self._attempt, client, url, dict(params or {}), subject)
        except _Retryable as exc:
            tries = f"after {attempts} attempts" if attempts > 1 else "(no retries)"
            raise ProbeError(f"{subject} failed {tries}: last {exc.detail}",
                             adapter=self.label) from exc

    def _attempt(self, client: httpx.Client, url: str, params: dict[str, str],
                 subject: str) -> httpx.Response:
        try:
            response = client.get(url, params=params or None)
        except (httpx.LocalProtocolError, httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            # our request is malformed: permanent, and its text may quote a header value
            raise ProbeError(f"{subject} failed: {type(exc).__name__} (the URL, a header or "
                             "the credentials are malformed)", adapter=self.label) from None
        except httpx.TransportError as exc:
            raise _Retryable(f"error {type(exc).__name__}: {one_line(exc) or 'no details'}"
                             ) from exc
        except httpx.HTTPError as exc:
            raise ProbeError(f"{subject} failed: {type(exc).__name__}: {one_line(exc)}",
                             adapter=self.label) from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(f"status HTTP {response.status_code}{error_detail(response)}")
        return response
