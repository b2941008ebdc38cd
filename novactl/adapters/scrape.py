"""Read metrics straight from ``/metrics`` endpoints: no Prometheus server needed.

::

    probes:
      app:
        type: scrape
        config:
          targets: [http://10.0.0.5:9100/metrics, http://10.0.0.6:9100/metrics]
          timeout: 5s
          token_env: METRICS_TOKEN        # optional bearer token, read from the environment
          headers: {X-Scope: canary}      # optional extra headers

Each target should be one process (a pod, an instance), not a load balancer
that answers from a different backend each time: counters are followed per
target and per series.

Query language
--------------
A query part is one of::

    selector                              sum over all matching series (see below)
    increase(selector[range])             counter increase over the window
    rate(selector[range])                 increase / seconds actually covered
    histogram_quantile(φ, selector[range])

``selector`` is PromQL's series selector, ``name{label="v", l2=~"re",
l3!="x", l4!~"re"}`` (regexes fully anchored; see :mod:`._promtext`).  The
``[range]`` is optional; without it the metric's window is used (the runner
renders ``{{window}}`` as e.g. ``300s``, so ``rate(x[{{window}}])`` works too).

* A bare ``selector`` sums every matching series of every target.  For
  counters (``# TYPE`` counter, the ``_bucket``/``_count``/``_sum`` series of
  histograms and summaries, and untyped names ending in ``_total``,
  ``_count``, ``_sum`` or ``_bucket``) the value is the *increase* over the
  window; for gauges it is the current sum.  A selector matching both kinds
  is an error.
* ``increase()`` and ``rate()`` treat what they select as counters.
* ``histogram_quantile(φ, h)`` names a histogram by its base name or its
  ``_bucket`` series; the buckets' increases over the window are summed by
  ``le`` across the matching series and φ (0 ≤ φ ≤ 1) is interpolated
  linearly inside its bucket, exactly as Prometheus does: a quantile in the
  ``+Inf`` bucket is the highest finite bound, the lowest bucket starts at 0
  (or is its own bound when that is ≤ 0).

A ``kind: histogram`` metric's query is the histogram itself —
``http_request_duration_seconds{version="{{version}}"}`` (or its ``_bucket``
series, optionally in ``increase(...[range])``): every bucket's increase
over the window, summed by ``le``.

Increases are reset-aware like Prometheus: a counter that drops was reset and
counts again from 0.  A series that appears within the window (a first 5xx
response, say) counts from 0 as well, so the first errors are not lost.

Windows and history
-------------------
Every query scrapes all targets together (a failed target fails the whole
scrape: a partial sum would lie) and timestamps the result with the
adapter's clock; queries within about a second share one scrape, and all
parts of one observation (numerator and denominator) always do.  The probe
keeps a bounded history of scrapes (dense for the latest, thinning out with
age, at most 25 h) and, for a window W, compares the newest scrape with the
newest one taken at or before ``now - W`` (with a small tolerance).  When no
scrape is that old it uses the oldest one if it covers at least half the
window; otherwise the answer is *no data*: counters need two scrapes, and
the probe never invents them.  The covered time is the true distance between
the two scrapes, which ``rate()`` divides by.

With a state directory the history is kept in ``scrape-<name>.json`` there,
so separate ``novactl run --once`` invocations (from cron) still see
increases.  The file holds no secrets.

Errors
------
*no data* (NoDataError): no series match, first scrape or not enough
history, no observations in the window for a quantile, NaN/Inf results.
*error* (ProbeError): a target unreachable, answering other than 200 or with
a body that does not parse (one line naming the target, never the token), a
malformed query, mixed counters and gauges, a histogram without ``+Inf``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import httpx
from pydantic import Field

from novactl._errors import NoDataError, ProbeError
from novactl._units import parse_duration
from novactl.adapters._base import AdapterConfig, AdapterContext, BaseProbe, Duration
from novactl.adapters._http import one_line, redacted
from novactl.adapters._promtext import (
    Selector,
    SelectorError,
    is_counter,
    parse,
    parse_selector_at,
    parse_value,
)
from novactl.core.histogram import quantile as bucket_quantile
from novactl.core.observations import ProbeQuery

__all__ = ["ScrapeProbe", "ScrapeQuery", "Snapshot", "bucket_quantile", "parse_query"]

REUSE_SECONDS = 1.0  # queries this close together share one scrape
MAX_AGE = 25 * 3600.0  # history older than this is dropped
MAX_SNAPSHOTS = 64  # and never more snapshots than this
KEEP_RECENT = 12  # the newest scrapes are all kept ...
RESOLUTION = 0.05  # ... older ones at least 5% of their age apart
STATE_FORMAT = 1

# (target index, metric name, sorted label pairs)
SeriesKey = tuple[int, str, tuple[tuple[str, str], ...]]
Function = Literal["value", "increase", "rate", "histogram_quantile"]


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class ScrapeQuery:
    """A parsed query: the function, its selector and arguments."""

    function: Function
    selector: Selector
    quantile: float | None = None
    range: float | None = None  # seconds, when the query gives ``[range]``


_FUNCTIONS = ("increase", "rate", "histogram_quantile")
_IDENT = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


@functools.lru_cache(maxsize=256)
def parse_query(text: str) -> ScrapeQuery:
    """Parse a scrape query; raises :class:`SelectorError` (a ValueError) with the position."""
    try:
        return _parse_query(text)
    except SelectorError as exc:
        raise SelectorError(text, exc.position, exc.reason, what="query") from None


def _parse_query(text: str) -> ScrapeQuery:
    pos = _skip(text, 0)
    ident = _IDENT.match(text, pos)
    if ident and _skip(text, ident.end()) < len(text) and text[_skip(text, ident.end())] == "(":
        name = ident.group()
        if name not in _FUNCTIONS:
            hint = ("; a bare selector already sums all matching series"
                    if name in ("sum", "avg", "max", "min", "count") else "")
            raise SelectorError(text, pos, f"unknown function {name} (supported: "
                                f"{', '.join(_FUNCTIONS)}){hint}")
        pos = _skip(text, _skip(text, ident.end()) + 1)
        quantile: float | None = None
        if name == "histogram_quantile":
            number = _NUMBER.match(text, pos)
            if number is None:
                raise SelectorError(text, pos, "expected the quantile φ (0 ≤ φ ≤ 1)")
            quantile = float(number.group())
            if not 0.0 <= quantile <= 1.0:
                raise SelectorError(text, pos, f"quantile {number.group()} is not in [0, 1]")
            pos = _skip(text, number.end())
            if pos >= len(text) or text[pos] != ",":
                raise SelectorError(text, pos, "expected ',' after the quantile")
            pos += 1
        selector, pos = parse_selector_at(text, pos)
        range_, pos = _range(text, _skip(text, pos))
        pos = _skip(text, pos)
        if pos >= len(text) or text[pos] != ")":
            raise SelectorError(text, pos, f"expected ')' to close {name}(")
        pos = _skip(text, pos + 1)
        query = ScrapeQuery(cast(Function, name), selector, quantile, range_)
    else:
        selector, pos = parse_selector_at(text, pos)
        pos = _skip(text, pos)
        if pos < len(text) and text[pos] == "[":
            raise SelectorError(text, pos, "a [range] needs increase(), rate() or "
                                "histogram_quantile() around the selector")
        query = ScrapeQuery("value", selector)
    if pos != len(text):
        raise SelectorError(text, pos, f"unexpected {text[pos]!r} after the query")
    if query.function == "histogram_quantile" and query.selector.name is None:
        raise SelectorError(text, 0, "histogram_quantile needs the histogram's metric name")
    return query


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _range(text: str, pos: int) -> tuple[float | None, int]:
    if pos >= len(text) or text[pos] != "[":
        return None, pos
    end = text.find("]", pos)
    if end < 0:
        raise SelectorError(text, pos, "unterminated [range]")
    try:
        seconds = parse_duration(text[pos + 1:end].strip())
    except ValueError as exc:
        raise SelectorError(text, pos + 1, str(exc)) from None
    if seconds <= 0:
        raise SelectorError(text, pos + 1, "the range must be longer than 0s")
    return seconds, end + 1


# --------------------------------------------------------------------------- quantiles


# --------------------------------------------------------------------------- history


@dataclass
class Snapshot:
    """One scrape of all targets."""

    at: float
    series: dict[SeriesKey, float]
    types: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "types": self.types,
            "series": [[i, name, dict(labels), value]
                       for (i, name, labels), value in self.series.items()],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        series: dict[SeriesKey, float] = {}
        for i, name, labels, value in data["series"]:
            series[(int(i), str(name), tuple(sorted((str(k), str(v))
                                                    for k, v in labels.items())))] = float(value)
        return cls(float(data["at"]), series, {str(k): str(v) for k, v in
                                                data.get("types", {}).items()})


def prune(snapshots: list[Snapshot], now: float) -> list[Snapshot]:
    """Bound the history: the newest scrapes, then ever sparser ones, nothing past 25 h."""
    snaps = sorted((s for s in snapshots if now - MAX_AGE <= s.at <= now),
                   key=lambda s: s.at)
    if len(snaps) <= KEEP_RECENT:
        return snaps
    recent = snaps[-KEEP_RECENT:]
    older: list[Snapshot] = []
    last = recent[0]
    for snap in reversed(snaps[:-KEEP_RECENT]):
        if last.at - snap.at >= RESOLUTION * (now - snap.at):
            older.append(snap)
            last = snap
    if not older or older[-1] is not snaps[0]:
        older.append(snaps[0])  # keep the oldest: it is the longest window we can answer
    kept = [*reversed(older), *recent]
    return kept[-MAX_SNAPSHOTS:]


def _increase(key: SeriesKey, snaps: list[Snapshot]) -> float:
    """Reset-aware increase of one series across ``snaps`` (oldest first)."""
    first = snaps[0].series.get(key)
    prev = 0.0 if first is None or math.isnan(first) else first  # new series: from 0
    total = 0.0
    for snap in snaps[1:]:
        value = snap.series.get(key)
        if value is None or math.isnan(value):
            continue
        total += value - prev if value >= prev else value  # a drop is a reset
        prev = value
    return total




# --------------------------------------------------------------------------- probe


class ScrapeProbe(BaseProbe):
    """Answers queries from the metrics endpoints of the service itself."""

    class Config(AdapterConfig):
        targets: list[str] = Field(..., min_length=1,
                                   description="URLs of /metrics endpoints, one per process.")
        timeout: Duration = Field(5.0, description="Timeout of one scrape.")
        token_env: str | None = Field(None, description="Environment variable with a "
                                      "bearer token.")
        headers: dict[str, str] = Field(default_factory=dict,
                                        description="Extra request headers.")

    def __init__(self, name: str, config: Any, context: AdapterContext | None = None) -> None:
        if isinstance(config, dict):
            config = self.Config.model_validate(config)
        super().__init__(name, config, context or AdapterContext())
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None
        self._history: list[Snapshot] = []
        self._finished = -math.inf  # when this process last finished a scrape
        self._load()

    def __repr__(self) -> str:
        targets = ", ".join(redacted(t) for t in self.config.targets)
        return f"ScrapeProbe(name={self.name!r}, targets=[{targets}])"

    # -- state
    @property
    def state_path(self) -> Path | None:
        state_dir = self.context.state_dir
        if state_dir is None:
            return None
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", self.name)
        return Path(state_dir) / f"scrape-{safe}.json"

    @property
    def history(self) -> list[Snapshot]:
        """The scrapes kept so far, oldest first (a copy)."""
        with self._lock:
            return list(self._history)

    def _fingerprint(self) -> str:
        joined = "\n".join(self.config.targets)
        return hashlib.sha256(joined.encode()).hexdigest()[:16]

    def _load(self) -> None:
        path = self.state_path
        if path is None or not path.exists():
            return
        try:
            data = json.loads(path.read_text())
            if data.get("format") != STATE_FORMAT or data.get("targets") != self._fingerprint():
                self.context.log(f"{self.label}: ignoring {path}: written for other targets")
                return
            snaps = [Snapshot.from_json(item) for item in data.get("snapshots", [])]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self.context.log(f"{self.label}: ignoring unreadable {path}: {one_line(exc)}")
            return
        self._history = prune(snaps, self.context.clock.now())

    def _save(self) -> None:
        path = self.state_path
        if path is None:
            return
        data = {
            "format": STATE_FORMAT,
            "probe": self.name,
            "targets": self._fingerprint(),
            "snapshots": [s.to_json() for s in self._history],
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data, separators=(",", ":")))
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            self.context.log(f"{self.label}: cannot save scrape history to {path}: "
                             f"{one_line(exc)}")

    # -- scraping
    def _client(self) -> httpx.Client:
        if self._http is None:
            headers = {
                "Accept": "text/plain;version=0.0.4;q=1.0, */*;q=0.1",
                "User-Agent": "novactl-scrape",
                **self.config.headers,
            }
            if self.config.token_env:
                token = self.context.secret(self.config.token_env, adapter=self.label)
                headers["Authorization"] = f"Bearer {token}"
            self._http = httpx.Client(timeout=self.config.timeout, headers=headers,
                                      follow_redirects=True)
        return self._http

    def _scrape_target(self, client: httpx.Client, index: int, target: str,
                       snapshot: Snapshot) -> None:
        where = redacted(target)
        try:
            response = client.get(target)
        except httpx.HTTPError as exc:
            detail = one_line(str(exc)) or "no details"
            raise ProbeError(f"cannot scrape {where}: {type(exc).__name__}: {detail}",
                             adapter=self.label) from exc
        if response.status_code != 200:
            raise ProbeError(f"cannot scrape {where}: HTTP {response.status_code} "
                             f"{response.reason_phrase}".rstrip(), adapter=self.label)
        try:
            exposition = parse(response.text)
        except ValueError as exc:
            raise ProbeError(f"cannot parse metrics from {where}: {one_line(exc)}",
                             adapter=self.label) from exc
        for name, labels, value, _timestamp in exposition.samples:
            snapshot.series[(index, name, tuple(sorted(labels.items())))] = value
        for family, kind in exposition.types.items():
            snapshot.types.setdefault(family, kind)

    def scrape(self, since: float | None = None) -> Snapshot:
        """The latest snapshot, scraping all targets unless a fresh one exists.

        A snapshot is fresh when it was finished at most a second ago, or
        (``since``) taken at or after that time: all parts of one observation
        share the query's time and therefore one scrape.
        """
        with self._lock:
            now = self.context.clock.now()
            if self._history:
                last = self._history[-1]
                if (0 <= now - max(last.at, self._finished) <= REUSE_SECONDS
                        or (since is not None and since <= last.at <= now)):
                    return last
            client = self._client()
            snapshot = Snapshot(now, {}, {})
            for index, target in enumerate(self.config.targets):
                self._scrape_target(client, index, target, snapshot)
            self._history = prune([*self._history, snapshot], now)
            if not self._history or self._history[-1] is not snapshot:  # clock went back
                self._history = [snapshot]
            self._finished = self.context.clock.now()
            self._save()
            return snapshot

    # -- evaluation
    @staticmethod
    def check_query(text: str) -> str | None:
        """Used by `novactl validate`: a message if ``text`` is not a valid scrape query."""
        try:
            parse_query(text)
        except ValueError as exc:
            return str(exc)
        return None

    def fetch(self, query: str, request: ProbeQuery) -> float:
        try:
            parsed = parse_query(query.strip())
        except ValueError as exc:
            raise ProbeError(one_line(exc, 300), adapter=self.label) from exc
        window = parsed.range if parsed.range is not None else float(request.window)
        current = self.scrape(since=request.at)
        with self._lock:
            history = list(self._history)
        if parsed.function == "histogram_quantile":
            return self._quantile(parsed, current, history, window)
        matched = [key for key in current.series
                   if parsed.selector.matches(key[1], dict(key[2]))]
        if not matched:
            raise NoDataError(f"no series match {parsed.selector}")
        if parsed.function == "value":
            kinds = {is_counter(key[1], current.types) for key in matched}
            if len(kinds) > 1:
                names = sorted({key[1] for key in matched})
                raise ProbeError(f"{parsed.selector} matches counters and gauges "
                                 f"({', '.join(names[:5])}); narrow the selector",
                                 adapter=self.label)
            if kinds == {False}:
                return math.fsum(current.series[key] for key in matched)
        snaps, covered = self._span(current, history, window)
        increase = math.fsum(_increase(key, snaps) for key in matched)
        return increase / covered if parsed.function == "rate" else increase

    def _span(self, current: Snapshot, history: list[Snapshot], window: float
              ) -> tuple[list[Snapshot], float]:
        """The snapshots from the window's start to ``current`` and the seconds they cover."""
        if window <= 0:
            raise ProbeError(f"the window must be longer than 0s, got {window:g}s",
                             adapter=self.label)
        older = [s for s in history if s.at < current.at]
        tolerance = max(1.0, 0.02 * window)
        starts = [s for s in older if s.at <= current.at - window + tolerance]
        if starts:
            base = starts[-1]
        elif older and current.at - older[0].at >= window / 2:
            base = older[0]
        else:
            oldest = current.at - older[0].at if older else 0.0
            raise NoDataError(
                "first scrape / not enough history: counters need two scrapes at least "
                f"{window / 2:g}s apart for a {window:g}s window "
                f"(oldest scrape is {oldest:g}s old)")
        span = [s for s in history if base.at <= s.at < current.at]
        return [*span, current], current.at - base.at

    def _quantile(self, query: ScrapeQuery, current: Snapshot, history: list[Snapshot],
                  window: float) -> float:
        assert query.selector.name is not None and query.quantile is not None
        by_bound = self._bucket_increases(query.selector, current, history, window)
        family = query.selector.name.removesuffix("_bucket")
        value = bucket_quantile(query.quantile, list(by_bound.items()))
        if math.isnan(value):
            raise NoDataError(f"no observations of {family} in the last {window:g}s")
        return value

    histograms = True

    def fetch_buckets(self, query: str, request: ProbeQuery) -> list[tuple[float, float]]:
        """``histogram{labels}`` or ``increase(histogram_bucket{labels}[range])``: each
        bucket's increase over the window, summed by ``le`` across the matching series."""
        try:
            parsed = parse_query(query.strip())
        except ValueError as exc:
            raise ProbeError(one_line(exc, 300), adapter=self.label) from exc
        if parsed.function not in ("value", "increase") or parsed.selector.name is None:
            raise ProbeError("a histogram query names the histogram, e.g. "
                             "http_request_duration_seconds{version=\"v1\"}, optionally in "
                             "increase(...[range])", adapter=self.label)
        window = parsed.range if parsed.range is not None else float(request.window)
        current = self.scrape(since=request.at)
        with self._lock:
            history = list(self._history)
        return list(self._bucket_increases(parsed.selector, current, history,
                                           window).items())

    def _bucket_increases(self, named: Selector, current: Snapshot, history: list[Snapshot],
                          window: float) -> dict[float, float]:
        assert named.name is not None
        family = named.name.removesuffix("_bucket")
        selector = Selector(f"{family}_bucket",
                            tuple(m for m in named.matchers if m.label != "le"))
        matched = [key for key in current.series
                   if selector.matches(key[1], dict(key[2]))]
        if not matched:
            raise NoDataError(f"no series match {selector}")
        snaps, _covered = self._span(current, history, window)
        by_bound: dict[float, float] = {}
        for key in matched:
            labels = dict(key[2])
            try:
                bound = parse_value(labels["le"])
            except (KeyError, ValueError) as exc:
                raise ProbeError(f"{family}_bucket series without a valid le label",
                                 adapter=self.label) from exc
            by_bound[bound] = by_bound.get(bound, 0.0) + _increase(key, snaps)
        if math.inf not in by_bound:
            raise ProbeError(f"histogram {family} has no le=\"+Inf\" bucket",
                             adapter=self.label)
        if len(by_bound) < 2:
            raise ProbeError(f"histogram {family} needs at least two buckets",
                             adapter=self.label)
        if by_bound[math.inf] <= 0:
            raise NoDataError(f"no observations of {family} in the last {window:g}s")
        return by_bound

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None
