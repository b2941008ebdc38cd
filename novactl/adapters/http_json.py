"""Read numbers from JSON HTTP APIs: survey scores, ticket counts, complaints.

::

    probes:
      business:
        type: http-json
        config:
          base_url: https://analytics.example.com/api   # relative query URLs go here
          timeout: 10s
          token_env: ANALYTICS_TOKEN                    # bearer token, or:
          # username: novactl
          # password_env: ANALYTICS_PASSWORD            # basic auth
          headers: {X-Team: checkout}
          verify_tls: true
          ca_file: certs/ca.pem                         # relative to the plan file
          retries: 3

One probe serves any number of metrics: the probe holds where and how to
connect, each metric's query says what to read.

Queries
-------
A query part is ``URL | JSON-PATH``::

    /surveys/summary?version={{version}}&window={{window_seconds}} | data.satisfaction
    /tickets?since=-{{window_seconds}}s | meta.total
    https://analytics.example.com/api/nps | results[0].score

* ``URL`` is appended to ``base_url`` (``/surveys`` under
  ``https://x/api`` is ``https://x/api/surveys``), or a full ``http(s)://``
  URL.  With a ``base_url``, full URLs must be on the same scheme, host and
  port, so credentials never go to another server.  The runner fills
  ``{{version}}``, ``{{window}}``, ``{{window_seconds}}``, ``{{role}}``,
  ``{{stage}}``, ``{{service}}`` and the plan's variables in beforehand.
* ``JSON-PATH`` picks the number out of the answer: dotted keys and
  ``[index]`` (negative counts from the end), ``["odd.key"]`` for keys with
  dots or spaces, an optional leading ``$``.  ``$`` alone (or no ``| path`` at
  all) is the whole answer.  Nothing is evaluated.

The URL is requested with ``GET`` and the answer must be JSON.  All parts of
one observation (numerator and denominator, value and samples) that name the
same URL share one request.

Results
-------
* a number, or a string holding one (``"4.5"``): its value;
* a missing key, an index past the end, ``null``, an empty answer (HTTP 204),
  ``NaN`` or ``±Infinity``: *no data*;
* ``true``/``false``, other strings, objects and lists: *error* (not a
  number), as is a path that indexes an object or takes a key of a list.

Errors
------
As for the ``prometheus`` probe (they share :class:`~.prometheus.HttpProbe`):
transport errors, HTTP 429 and 5xx are retried ``retries`` times with
backoff 0.2 s doubling up to 2 s; any other non-2xx status is an error at
once, naming the status and the error the body gives.  Messages show URLs
without user information and without their query string; secrets come from
the environment only and never appear in messages.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import Field, field_validator

from novactl._errors import NoDataError, ProbeError
from novactl.adapters._base import AdapterContext
from novactl.adapters._http import (
    HttpConfig,
    HttpProbe,
    error_detail,
    http_url,
    one_line,
    redacted,
)
from novactl.core.observations import Observation, ProbeQuery

__all__ = ["HttpJsonProbe", "JsonQuery", "extract", "parse_path", "parse_query"]

Step = str | int

_KEY = re.compile(r"[^.\[\]\s\"']+")
_INDEX = re.compile(r"-?\d+")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


# --------------------------------------------------------------------------- syntax


@dataclass(frozen=True)
class JsonQuery:
    """A parsed query part: where to GET, and the path to the number."""

    url: str
    path: tuple[Step, ...]

    @property
    def path_text(self) -> str:
        return format_path(self.path)


def format_path(steps: tuple[Step, ...]) -> str:
    """``("data", "items", 0, "value")`` → ``$.data.items[0].value``."""
    out = "$"
    for step in steps:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _KEY.fullmatch(step):
            out += f".{step}"
        else:
            out += f"[{json.dumps(step)}]"
    return out


@functools.lru_cache(maxsize=256)
def parse_path(text: str) -> tuple[Step, ...]:
    """Parse ``data.items[0].value`` (optionally ``$.``-prefixed); ValueError if malformed."""
    text = text.strip()
    steps: list[Step] = []
    pos = 0
    if text.startswith("$"):
        pos = 1
    elif text and text[0] not in ".[":
        match = _KEY.match(text)
        if match is None:
            raise ValueError(f"JSON path {text!r}: expected a key at column 1")
        steps.append(match.group())
        pos = match.end()
    while pos < len(text):
        char = text[pos]
        if char == ".":
            match = _KEY.match(text, pos + 1)
            if match is None:
                raise ValueError(f"JSON path {text!r}: expected a key after '.' at column "
                                 f"{pos + 1}")
            steps.append(match.group())
            pos = match.end()
        elif char == "[":
            step, pos = _bracket(text, pos)
            steps.append(step)
        else:
            raise ValueError(f"JSON path {text!r}: unexpected {char!r} at column {pos + 1} "
                             "(use .key, [index] or [\"key\"])")
    return tuple(steps)


def _bracket(text: str, pos: int) -> tuple[Step, int]:
    inner = pos + 1
    if inner < len(text) and text[inner] in "\"'":
        quote = text[inner]
        end = inner + 1
        chars: list[str] = []
        while end < len(text) and text[end] != quote:
            if text[end] == "\\" and end + 1 < len(text):
                end += 1
            chars.append(text[end])
            end += 1
        if end >= len(text):
            raise ValueError(f"JSON path {text!r}: unterminated string at column {inner + 1}")
        if end + 1 >= len(text) or text[end + 1] != "]":
            raise ValueError(f"JSON path {text!r}: expected ']' at column {end + 2}")
        return "".join(chars), end + 2
    match = _INDEX.match(text, inner)
    if match is None or match.end() >= len(text) or text[match.end()] != "]":
        raise ValueError(f"JSON path {text!r}: expected [index] or [\"key\"] at column "
                         f"{pos + 1}")
    return int(match.group()), match.end() + 1


@functools.lru_cache(maxsize=256)
def parse_query(text: str) -> JsonQuery:
    """Parse ``URL | JSON-PATH``; raises ValueError with a message fit for an operator."""
    url, sep, path_text = text.rpartition("|")
    if not sep:
        url, path_text = text, "$"
    url = url.strip()
    if not url:
        raise ValueError("empty query: expected URL | JSON-PATH, e.g. "
                         "/api/surveys?window={{window_seconds}} | data.satisfaction")
    if sep and not path_text.strip():
        raise ValueError(f"nothing after '|' in {one_line(text, 80)!r}: give a JSON path "
                         "(or $ for the whole answer)")
    if any(ch.isspace() for ch in url):
        raise ValueError(f"the URL {one_line(url.split('?', 1)[0], 80)!r} contains spaces "
                         "(encode them as %20)")
    scheme = _SCHEME.match(url)
    if scheme and not url.lower().startswith(("http://", "https://")):
        raise ValueError(f"the URL {one_line(url, 80)!r} is not http:// or https://")
    return JsonQuery(url, parse_path(path_text))


# --------------------------------------------------------------------------- values


def _kind(node: Any) -> str:
    if isinstance(node, bool):
        return "a boolean"
    if isinstance(node, dict):
        return "an object"
    if isinstance(node, list):
        return "a list"
    if isinstance(node, str):
        return "a string"
    return "a number"


def extract(document: Any, steps: tuple[Step, ...]) -> float:
    """The number at ``steps`` in ``document``; NoDataError / ValueError as documented."""
    node = document
    for i, step in enumerate(steps):
        where = format_path(steps[:i])
        if node is None:
            raise NoDataError(f"{where} is null")
        if isinstance(node, list) and isinstance(step, str) and step.lstrip("-").isdigit():
            step = int(step)  # items.0 works like items[0]
        if isinstance(step, int):
            if not isinstance(node, list):
                raise ValueError(f"{where} is {_kind(node)}, not a list: cannot take [{step}]")
            if not -len(node) <= step < len(node):
                raise NoDataError(f"{where} has {len(node)} items: there is no [{step}]")
            node = node[step]
        else:
            if not isinstance(node, dict):
                raise ValueError(f"{where} is {_kind(node)}, not an object: cannot take "
                                 f"{format_path((step,))[1:]}")
            if step not in node:
                raise NoDataError(f"{where} has no key {step!r}")
            node = node[step]
    where = format_path(steps)
    if node is None:
        raise NoDataError(f"{where} is null")
    if isinstance(node, bool) or not isinstance(node, int | float | str):
        raise ValueError(f"{where} is {_kind(node)}, not a number")
    if isinstance(node, str):
        text = node.strip()
        try:
            if not text or "_" in text:
                raise ValueError(text)
            return float(text)
        except (ValueError, OverflowError):
            raise ValueError(f"{where} is the string {one_line(node, 40)!r}, not a number"
                             ) from None
    try:
        return float(node)
    except OverflowError:
        raise ValueError(f"{where} is too large a number") from None


# --------------------------------------------------------------------------- the probe


class HttpJsonProbe(HttpProbe):
    """Answers each query part with one number read from a JSON document."""

    class Config(HttpConfig):
        base_url: str | None = Field(None, description="Base URL that relative query URLs "
                                     "are appended to (and full URLs must share).")

        @field_validator("base_url")
        @classmethod
        def _check_base_url(cls, value: str | None) -> str | None:
            return None if value is None else http_url(value)

    def __init__(self, name: str, config: Any, context: AdapterContext | None = None) -> None:
        super().__init__(name, config, context)
        self._local = threading.local()

    def __repr__(self) -> str:
        base = self.config.base_url
        where = _shown(base) if base else "no base_url"
        return f"HttpJsonProbe(name={self.name!r}, base_url={where!r})"

    @staticmethod
    def check_query(text: str) -> str | None:
        """Used by `novactl validate`: a message if ``text`` is not ``URL | JSON-PATH``."""
        try:
            parse_query(text)
        except ValueError as exc:
            return str(exc)
        return None

    def url_for(self, url: str) -> str:
        """The absolute URL a query's URL part stands for."""
        base = self.config.base_url
        if url.lower().startswith(("http://", "https://")):
            try:
                other = base is not None and _origin(url) != _origin(base)
            except ProbeError as exc:
                raise ProbeError(exc.message, adapter=self.label) from None
            if other:
                raise ProbeError(f"{_shown(url)} is not on {_shown(base)} (base_url); "
                                 "use another probe for another server", adapter=self.label)
            return url
        if base is None:
            raise ProbeError(f"{_shown(url)!r} is a relative URL but the probe has no base_url",
                             adapter=self.label)
        if url.startswith(("?", "/")):
            return base + url
        return f"{base}/{url}"

    def observe(self, query: ProbeQuery) -> Observation:
        self._local.documents = {}  # the parts of one observation share each URL's answer
        try:
            return super().observe(query)
        finally:
            self._local.documents = None

    def fetch(self, query: str, request: ProbeQuery) -> float:
        try:
            parsed = parse_query(query.strip())
        except ValueError as exc:
            raise ProbeError(one_line(exc, 300), adapter=self.label) from exc
        document = self.document(self.url_for(parsed.url))
        try:
            return extract(document, parsed.path)
        except NoDataError as exc:
            raise NoDataError(f"{exc.message} in the answer of {_shown(parsed.url)}") from exc
        except ValueError as exc:
            raise ProbeError(f"{one_line(exc)} in the answer of {_shown(parsed.url)}",
                             adapter=self.label) from exc

    def document(self, url: str) -> Any:
        """GET ``url`` and parse its JSON (shared within one observation)."""
        cache: dict[str, Any] | None = getattr(self._local, "documents", None)
        if cache is not None and url in cache:
            return cache[url]
        subject = f"GET {_shown(url)}"
        response = self.get(url, subject=subject)
        if response.status_code == 204 or (response.is_success and not response.content):
            raise NoDataError(f"{subject}: empty answer (HTTP {response.status_code})")
        if not response.is_success:
            raise ProbeError(f"{subject} failed: HTTP {response.status_code}"
                             f"{error_detail(response)}", adapter=self.label)
        try:
            document = response.json()
        except ValueError as exc:
            kind = response.headers.get("content-type", "no content type")
            raise ProbeError(f"{subject} answered with invalid JSON ({one_line(kind, 60)})",
                             adapter=self.label) from exc
        if cache is not None:
            cache[url] = document
        return document


def _origin(url: str) -> tuple[str, str, int | None]:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ProbeError(f"invalid URL {_shown(url)!r}: {one_line(exc, 80)}") from None
    port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)
    return parsed.scheme, parsed.host, port


def _shown(url: str) -> str:
    """A URL for messages: no user information, no query string."""
    try:
        parsed = httpx.URL(url)
    except Exception:
        return one_line(redacted(url).split("?", 1)[0], 120)
    if parsed.userinfo:
        parsed = parsed.copy_with(username=None, password=None)
    if parsed.query:
        return str(parsed.copy_with(query=None)) + "?…"
    return str(parsed)
