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

Range queries
-------------
A query part may start with a ``range(...)`` prefix, which no PromQL
expression can start with::

    range(reduce=max, step=30s): sum(rate(http_requests_total{version="{{version}}"}[1m]))

It is evaluated as a range query (``GET {url}/api/v1/query_range``) over
``[at - window, at]`` with that ``step`` (default: the window / 60, whole
seconds, at least 1s), and the points of the one series that comes back are
reduced to one number with ``reduce``: ``max``, ``min``, ``avg`` or
``last``.  The same rules as for instant queries apply: no series is *no
data*, several series are an *error*; points that are ``NaN`` or ``±Inf``
(nothing measured at that step) are skipped, and a series with no finite
point left is *no data*.  :meth:`PrometheusProbe.check_query` (run by
``novactl validate``) checks the prefix and rejects empty queries and
unbalanced brackets or quotes; it does not parse PromQL.

Errors
------
Transport errors, HTTP 429 and HTTP 5xx are retried (``retries`` times,
backoff 0.2 s doubling up to 2 s, on the adapter's clock); other statuses are
not.  What still fails is a :class:`~novactl._errors.ProbeError` naming the
last status; an answer with ``status: error`` is one carrying Prometheus'
``errorType`` and ``error``.  Tokens and passwords are read from the
environment when first needed and never appear in messages or reprs.

The HTTP plumbing (auth, TLS, headers, retries) lives in :class:`HttpProbe`
and its :class:`HttpConfig`, which the ``http-json`` probe shares.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any, Literal, cast

import httpx
from pydantic import Field, field_validator

from novactl._errors import NoDataError, ProbeError
from novactl._units import format_duration, parse_duration
from novactl.adapters._http import (
    HttpConfig,
    HttpProbe,
    error_detail,
    http_url,
    one_line,
    redacted,
)
from novactl.adapters._promtext import parse_value
from novactl.core.observations import ProbeQuery

__all__ = [
    "REDUCERS",
    "HttpConfig",
    "HttpProbe",
    "PromQuery",
    "PrometheusProbe",
    "RangeSpec",
    "check_promql",
    "parse_query",
]

MAX_POINTS = 11_000  # Prometheus refuses range queries with more points per series
RANGE_POINTS = 60  # the default step makes about this many points

Reducer = Literal["max", "min", "avg", "last"]
REDUCERS: tuple[str, ...] = ("max", "min", "avg", "last")


# --------------------------------------------------------------------------- query syntax


@dataclass(frozen=True)
class RangeSpec:
    """The ``range(...)`` prefix: evaluate over the window and reduce the points."""

    reduce: Reducer
    step: float | None = None  # seconds; None: window / RANGE_POINTS

    def step_for(self, window: float) -> float:
        if self.step is not None:
            return self.step
        return float(max(1, math.ceil(window / RANGE_POINTS)))

    def __str__(self) -> str:
        step = "" if self.step is None else f", step={format_duration(self.step)}"
        return f"range(reduce={self.reduce}{step})"


@dataclass(frozen=True)
class PromQuery:
    """A query part: a PromQL expression, and how to evaluate it (instant or range)."""

    expr: str
    range: RangeSpec | None = None


_PREFIX = re.compile(r"\s*range\s*\(")
_OPTION = re.compile(r"\s*([A-Za-z_]+)\s*=\s*([^,=\s]*)\s*")
_PAIRS = {"(": ")", "[": "]", "{": "}"}


@functools.lru_cache(maxsize=256)
def parse_query(text: str) -> PromQuery:
    """Split a query part into its optional ``range(...)`` prefix and the PromQL.

    Raises ValueError with a message fit for an operator.  The PromQL itself is
    only checked for emptiness (:func:`check_promql` adds brackets and quotes).
    """
    spec: RangeSpec | None = None
    expr = text
    prefix = _PREFIX.match(text)
    if prefix:
        close = text.find(")", prefix.end())
        if close < 0:
            raise ValueError("range(...): missing ')'")
        spec = _range_options(text[prefix.end():close])
        rest = text[close + 1:].lstrip()
        if not rest.startswith(":"):
            raise ValueError("range(...): expected ':' and the PromQL expression after ')', "
                             "e.g. range(reduce=max, step=30s): sum(rate(x[1m]))")
        expr = rest[1:]
    expr = expr.strip()
    if not expr:
        raise ValueError("range(...): no PromQL expression after ':'" if spec
                         else "empty query")
    return PromQuery(expr, spec)


def _range_options(text: str) -> RangeSpec:
    options: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            if text.strip():
                raise ValueError(f"range({text}): empty option between commas")
            continue
        match = _OPTION.fullmatch(item)
        if match is None:
            raise ValueError(f"range({text}): expected key=value options "
                             f"(reduce=max|min|avg|last, step=DURATION), got {item.strip()!r}")
        key, value = match.group(1), match.group(2)
        if key not in ("reduce", "step"):
            raise ValueError(f"range(...): unknown option {key!r} (known: reduce, step)")
        if key in options:
            raise ValueError(f"range(...): {key} is given twice")
        options[key] = value
    reduce = options.get("reduce")
    if reduce is None:
        raise ValueError(f"range(...): reduce is required ({'|'.join(REDUCERS)}), e.g. "
                         "range(reduce=max, step=30s): ...")
    if reduce not in REDUCERS:
        raise ValueError(f"range(...): reduce={reduce} is not one of {', '.join(REDUCERS)}")
    step: float | None = None
    if "step" in options:
        try:
            step = parse_duration(options["step"])
        except ValueError as exc:
            raise ValueError(f"range(...): step: {exc}") from None
        if step <= 0:
            raise ValueError("range(...): step must be longer than 0s")
    return RangeSpec(cast(Reducer, reduce), step)


def check_promql(expr: str) -> None:
    """Brackets and quotes must pair up (outside strings); PromQL is not parsed further.

    Raises ValueError naming the column.  Only `novactl validate` uses it: at run time
    the server's own parse error (``bad_data``) says more.
    """
    stack: list[tuple[str, int]] = []
    i = 0
    while i < len(expr):
        char = expr[i]
        if char in "\"'`":
            end = i + 1
            while end < len(expr) and expr[end] != char:
                end += 2 if expr[end] == "\\" and char != "`" else 1
            if end >= len(expr):
                raise ValueError(f"unterminated string starting at column {i + 1}: "
                                 f"{one_line(expr[i:], 40)}")
            i = end + 1
            continue
        if char == "#":  # a PromQL comment runs to the end of the line
            newline = expr.find("\n", i)
            i = len(expr) if newline < 0 else newline
            continue
        if char in _PAIRS:
            stack.append((char, i))
        elif char in _PAIRS.values():
            if not stack or _PAIRS[stack[-1][0]] != char:
                raise ValueError(f"unbalanced {char!r} at column {i + 1}")
            stack.pop()
        i += 1
    if stack:
        opener, at = stack[-1]
        raise ValueError(f"unclosed {opener!r} at column {at + 1}")


# --------------------------------------------------------------------------- the probe


class PrometheusProbe(HttpProbe):
    """Runs each query part as a PromQL instant query (or a range query, reduced)."""

    class Config(HttpConfig):
        url: str = Field(..., description="Base URL of the Prometheus-compatible API.")

        @field_validator("url")
        @classmethod
        def _check_url(cls, value: str) -> str:
            return http_url(value)

    def __repr__(self) -> str:
        return f"PrometheusProbe(name={self.name!r}, url={redacted(self.config.url)!r})"

    @property
    def endpoint(self) -> str:
        return f"{self.config.url}/api/v1/query"

    @property
    def range_endpoint(self) -> str:
        return f"{self.config.url}/api/v1/query_range"

    @staticmethod
    def check_query(text: str) -> str | None:
        """Used by `novactl validate`: a message if ``text`` is obviously not a query."""
        try:
            check_promql(parse_query(text).expr)
        except ValueError as exc:
            return str(exc)
        return None

    # -- queries
    def fetch(self, query: str, request: ProbeQuery) -> float:
        try:
            parsed = parse_query(query)
        except ValueError as exc:
            raise ProbeError(one_line(exc, 300), adapter=self.label) from exc
        if parsed.range is None:
            return self.instant(parsed.expr, at=request.at)
        at = request.at if request.at > 0 else self.context.clock.now()
        spec = parsed.range
        return self.range_query(parsed.expr, start=at - max(0.0, request.window), end=at,
                                step=spec.step_for(request.window), reduce=spec.reduce)

    histograms = True

    def fetch_buckets(self, query: str, request: ProbeQuery) -> list[tuple[float, float]]:
        """An instant query answering one series per bucket, labelled ``le``."""
        try:
            parsed = parse_query(query)
        except ValueError as exc:
            raise ProbeError(one_line(exc, 300), adapter=self.label) from exc
        shown = one_line(parsed.expr, 160)
        if parsed.range is not None:
            raise ProbeError(f"a histogram query is an instant query; drop range(...): {shown}",
                             adapter=self.label)
        params = {"query": parsed.expr}
        if request.at > 0:
            params["time"] = f"{request.at:.3f}"
        payload = self._payload(self.get(self.endpoint, params, subject=self._subject))
        result_type, result = self._result(payload)
        if result_type != "vector" or not isinstance(result, list):
            raise ProbeError(f"a histogram query must return an instant vector by le, got "
                             f"{result_type!r}: {shown}", adapter=self.label)
        if not result:
            raise NoDataError(f"no values found for {shown}")
        pairs: dict[float, float] = {}
        for series in result:
            try:
                labels, raw = series.get("metric", {}), series["value"][1]
                bound = parse_value(str(labels["le"]))
                count = parse_value(str(raw))
            except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
                raise ProbeError(f"a histogram query must return one series per bucket, "
                                 f"labelled le: aggregate with sum by (le) (...): {shown}",
                                 adapter=self.label) from exc
            if bound in pairs:
                raise ProbeError(f"several series for le={labels['le']}: aggregate with "
                                 f"sum by (le) (...): {shown}", adapter=self.label)
            pairs[bound] = count
        return list(pairs.items())

    def instant(self, query: str, at: float | None = None) -> float:
        """Evaluate ``query`` at ``at`` (epoch seconds; None: the server's now).

        Returns a finite number; raises NoDataError or ProbeError.
        """
        params = {"query": query}
        if at is not None and at > 0:
            params["time"] = f"{at:.3f}"
        response = self.get(self.endpoint, params, subject=self._subject)
        payload = self._payload(response)
        return self._value(query, payload)

    def range_query(self, query: str, *, start: float, end: float, step: float,
                    reduce: str = "last") -> float:
        """Evaluate ``query`` over ``[start, end]`` every ``step`` seconds; reduce the points.

        ``reduce`` is one of max, min, avg, last.  Returns a finite number; raises
        NoDataError or ProbeError.
        """
        shown = one_line(query, 160)
        if reduce not in REDUCERS:
            raise ProbeError(f"unknown reduce {reduce!r} (known: {', '.join(REDUCERS)})",
                             adapter=self.label)
        if step <= 0:
            raise ProbeError("the step of a range query must be longer than 0s",
                             adapter=self.label)
        points = int((end - start) // step) + 1
        if points > MAX_POINTS:
            raise ProbeError(f"a range of {format_duration(end - start)} with step "
                             f"{format_duration(step)} has {points} points; Prometheus "
                             f"allows {MAX_POINTS}: raise the step: {shown}",
                             adapter=self.label)
        params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}",
                  "step": f"{step:g}"}
        response = self.get(self.range_endpoint, params, subject=self._subject)
        payload = self._payload(response)
        values = self._series_values(query, payload)
        finite = [v for v in values if math.isfinite(v)]
        if not finite:
            raise NoDataError(f"no finite values between {start:.0f} and {end:.0f} for {shown}"
                              if values else f"no values found for {shown}")
        if reduce == "max":
            return max(finite)
        if reduce == "min":
            return min(finite)
        if reduce == "avg":
            return math.fsum(finite) / len(finite)
        return finite[-1]

    @property
    def _subject(self) -> str:
        return f"query to {redacted(self.config.url)}"

    def _payload(self, response: httpx.Response) -> dict[str, Any]:
        where = redacted(self.config.url)
        if not response.is_success:
            raise ProbeError(f"query to {where} failed: HTTP {response.status_code}"
                             f"{error_detail(response)}", adapter=self.label)
        try:
            payload = response.json()
        except ValueError as exc:
            raise ProbeError(f"{where} answered with invalid JSON "
                             f"(is url the Prometheus API?)", adapter=self.label) from exc
        if not isinstance(payload, dict):
            raise ProbeError(f"{where} answered with unexpected JSON", adapter=self.label)
        if payload.get("status") != "success":
            raise ProbeError(f"query failed: {payload.get('errorType', 'error')}: "
                             f"{one_line(payload.get('error', 'no details'))}",
                             adapter=self.label)
        for warning in payload.get("warnings") or []:
            self.context.log(f"{self.label}: warning: {one_line(warning)}")
        return payload

    def _result(self, payload: dict[str, Any]) -> tuple[Any, Any]:
        data = payload.get("data")
        if not isinstance(data, dict):
            raise ProbeError("answer has no data", adapter=self.label)
        return data.get("resultType"), data.get("result")

    def _one_series(self, shown: str, result: Any) -> dict[str, Any]:
        if not isinstance(result, list):
            raise ProbeError(f"malformed answer for {shown}: result is not a list",
                             adapter=self.label)
        if not result:
            raise NoDataError(f"no values found for {shown}")
        if len(result) > 1:
            raise ProbeError(f"query returned {len(result)} series; aggregate it, "
                             f"e.g. sum(...): {shown}", adapter=self.label)
        series = result[0]
        if not isinstance(series, dict):
            raise ProbeError(f"malformed answer for {shown}", adapter=self.label)
        return series

    def _value(self, query: str, payload: dict[str, Any]) -> float:
        shown = one_line(query, 160)
        result_type, result = self._result(payload)
        try:
            if result_type == "vector":
                sample = self._one_series(shown, result)
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
            raise ProbeError(f"malformed answer for {shown}: {one_line(exc)}",
                             adapter=self.label) from exc
        if not math.isfinite(value):
            raise NoDataError(f"query returned {raw} for {shown}")
        return value

    def _series_values(self, query: str, payload: dict[str, Any]) -> list[float]:
        """The points of the one series a range query returned (oldest first)."""
        shown = one_line(query, 160)
        result_type, result = self._result(payload)
        if result_type != "matrix":
            raise ProbeError(f"unexpected result type {result_type!r} for a range query: "
                             f"{shown}", adapter=self.label)
        series = self._one_series(shown, result)
        if "values" not in series:
            if "histograms" in series:
                raise ProbeError(f"query returned native histograms, not numbers: {shown}",
                                 adapter=self.label)
            raise NoDataError(f"no values found for {shown}")
        try:
            points = sorted((float(t), parse_value(str(v))) for t, v in series["values"])
        except (TypeError, ValueError) as exc:
            raise ProbeError(f"malformed answer for {shown}: {one_line(exc)}",
                             adapter=self.label) from exc
        return [value for _, value in points]
