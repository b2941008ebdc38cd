"""Webhook notifier: POST each message as JSON (plain, or shaped for Slack).

::

    notifications:
      targets:
        slack:
          type: webhook
          config: {url_env: SLACK_WEBHOOK_URL, format: slack}
        pager:
          type: webhook
          config: {url_env: PAGER_HOOK, token_env: PAGER_TOKEN, retries: 5}

Webhook URLs are secrets (whoever has a Slack hook URL can post to the
channel), so prefer ``url_env``: the URL is read from the environment when the
first message is sent.  Neither the URL, the bearer token (``token_env``)
nor header values ever appear in an error message.

``format: json`` sends ``message.to_dict()`` plus ``"source": "novactl"``;
``format: slack`` sends ``{"text": ..., "attachments": [{"color": ..., "blocks":
[...]}]}`` with a severity emoji and colour, the title and text, the rollout,
the stage and up to ten fields.  Every request carries ``Idempotency-Key:
<message.id>`` — the id is stable across retries, so receivers can drop
duplicates.

Transport errors, 429 and 5xx are retried ``retries`` times with exponential
backoff (``backoff``, doubling, each wait at most 10 s; a ``Retry-After`` in
seconds is honoured up to that bound).  Other 4xx and 3xx (redirects are not
followed) fail at once.  Waiting uses the context's clock, so tests and
simulations never sleep.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Self
from urllib.parse import urlsplit

import httpx
from pydantic import ConfigDict, Field, field_validator, model_validator
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from novactl._errors import AdapterError, NotifyError
from novactl.adapters._base import Adapter, AdapterConfig, AdapterContext, Duration, Message

__all__ = ["WebhookNotifier", "slack_payload"]

MAX_WAIT = 10.0  # seconds: the longest single wait between attempts
_SEVERITY = {  # emoji, colour
    "info": (":information_source:", "#439FE0"),
    "warning": (":warning:", "#ECB22E"),
    "critical": (":rotating_light:", "#E01E5A"),
}


class _Retryable(Exception):
    """One attempt failed in a way worth repeating."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_payload(message: Message) -> dict[str, Any]:
    """The Slack incoming-webhook body for ``message``."""
    emoji, colour = _SEVERITY.get(message.severity, _SEVERITY["info"])
    title = _slack_escape(message.title)
    body = f"{emoji} *{title}*"
    if message.text:
        body += "\n" + _slack_escape(message.text)
    where = f"rollout *{_slack_escape(message.rollout)}*"
    if message.stage:
        where += f" · stage *{_slack_escape(message.stage)}*"
    where += f" · `{_slack_escape(message.event)}` · {message.severity}"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(body, 3000)}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(where, 3000)}]},
    ]
    if message.fields:
        fields = []
        for key, value in list(message.fields.items())[:10]:
            shown = value if isinstance(value, str) else json.dumps(value, default=str)
            fields.append({"type": "mrkdwn",
                           "text": _clip(f"*{_slack_escape(str(key))}*\n{_slack_escape(shown)}",
                                         2000)})
        blocks.append({"type": "section", "fields": fields})
    fallback = f"{emoji} [{message.severity}] {message.title} ({message.rollout}"
    fallback += f", stage {message.stage})" if message.stage else ")"
    return {"text": fallback, "attachments": [{"color": colour, "blocks": blocks}]}


class WebhookNotifier(Adapter):
    """Delivers messages to an HTTP endpoint (see the module docstring)."""

    class Config(AdapterConfig):
        # pydantic errors must not echo the URL or header values back
        model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

        url: str | None = Field(None, repr=False, description="The URL (prefer url_env).")
        url_env: str | None = Field(None, description="Environment variable holding the URL.")
        format: Literal["json", "slack"] = "json"
        headers: dict[str, str] = Field(default_factory=dict, repr=False)
        token_env: str | None = Field(
            None, description="Environment variable holding a bearer token.")
        timeout: Duration = Field(5.0, gt=0, description="Per request.")
        retries: int = Field(3, ge=0, le=10, description="Further attempts after the first.")
        backoff: Duration = Field(0.5, description="First wait between attempts; doubles.")

        @field_validator("url")
        @classmethod
        def _http_url(cls, value: str | None) -> str | None:
            if value is not None and urlsplit(value).scheme not in ("http", "https"):
                raise ValueError("url must start with http:// or https://")  # never echo it
            return value

        @field_validator("headers")
        @classmethod
        def _no_reserved_headers(cls, value: dict[str, str]) -> dict[str, str]:
            for name in value:
                if name.lower() in ("idempotency-key", "content-length", "host"):
                    raise ValueError(f"header {name!r} is set by novactl")
            return value

        @model_validator(mode="after")
        def _one_url(self) -> Self:
            if (self.url is None) == (self.url_env is None):
                raise ValueError("set exactly one of url and url_env "
                                 "(prefer url_env: webhook URLs are secrets)")
            if self.token_env and any(k.lower() == "authorization" for k in self.headers):
                raise ValueError("set either token_env or an Authorization header, not both")
            return self

    def __init__(self, name: str, config: Any, context: AdapterContext | None = None) -> None:
        if not isinstance(config, self.Config):
            config = self.Config.model_validate(config or {})
        super().__init__(name, config, context or AdapterContext())
        self._client: httpx.Client | None = None
        self._url: str | None = None
        self._token: str | None = None

    # -- secrets, read on first use
    def _secrets(self) -> tuple[str, str | None]:
        cfg = self.config
        if self._url is None:
            try:
                url = cfg.url if cfg.url is not None else str(
                    self.context.secret(cfg.url_env, adapter=self.label))
                token = (str(self.context.secret(cfg.token_env, adapter=self.label))
                         if cfg.token_env else None)
            except AdapterError as exc:
                raise NotifyError(exc.message.removeprefix(f"{self.label}: "),
                                  adapter=self.label) from None
            if urlsplit(url).scheme not in ("http", "https"):
                raise NotifyError(f"the URL in {cfg.url_env} is not an http(s) URL",
                                  adapter=self.label)
            self._url, self._token = url, token
        return self._url, self._token

    def _redact(self, text: str) -> str:
        secrets = [self._url, self._token, *self.config.headers.values()]
        if self._url:
            parts = urlsplit(self._url)
            secrets += [parts.path, parts.query]
        for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(timeout=self.config.timeout, follow_redirects=False)
        return self._client

    def payload(self, message: Message) -> dict[str, Any]:
        if self.config.format == "slack":
            return slack_payload(message)
        return {**message.to_dict(), "source": "novactl"}

    def notify(self, message: Message) -> None:
        url, token = self._secrets()
        body = json.dumps(self.payload(message), default=str, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "novactl",
                   **self.config.headers, "Idempotency-Key": message.id}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        attempts = self.config.retries + 1
        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Retryable),
            sleep=self.context.clock.sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    self._post(url, body, headers)
        except _Retryable as exc:
            tries = f"{attempts} attempts" if attempts > 1 else "1 attempt"
            raise NotifyError(f"{exc.reason} (gave up after {tries})",
                              adapter=self.label) from None

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        try:
            response = self.client.post(url, content=body, headers=headers)
        except httpx.TransportError as exc:
            detail = self._redact(str(exc)).strip()
            reason = f"transport error ({type(exc).__name__}" + (f": {detail})" if detail
                                                                   else ")")
            raise _Retryable(_clip(" ".join(reason.split()), 200)) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status}", _retry_after(response))
        if 300 <= status < 400:
            raise NotifyError(f"HTTP {status}: redirects are not followed; check the URL",
                              adapter=self.label)
        detail = ""
        try:
            detail = " ".join(response.text.split())
        except Exception:  # undecodable body: the status says enough
            detail = ""
        detail = _clip(self._redact(detail), 120)
        raise NotifyError(f"HTTP {status} (not retried)" + (f": {detail}" if detail else ""),
                          adapter=self.label)

    def _wait(self, state: RetryCallState) -> float:
        wait = self.config.backoff * 2 ** (state.attempt_number - 1)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            wait = max(wait, exc.retry_after)
        return min(wait, MAX_WAIT)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
    return seconds if seconds >= 0 else None
