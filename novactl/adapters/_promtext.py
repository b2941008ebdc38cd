"""The Prometheus text exposition format (0.0.4) and a tiny series selector language.

Exposition
----------
:func:`parse` reads what a ``/metrics`` endpoint serves::

    # HELP http_requests_total Requests served.
    # TYPE http_requests_total counter
    http_requests_total{code="200",path="/a\\"b"} 1027 1395066363000
    http_requests_total{code="500"} 3
    temperature NaN

and returns an :class:`Exposition`: the samples as ``(name, labels, value,
timestamp)`` tuples (:class:`Sample`, a named tuple whose ``timestamp`` in
milliseconds is ``None`` when the line has none) and the family types from
``# TYPE`` lines (``counter``, ``gauge``, ``histogram``, ``summary``,
``untyped``; OpenMetrics' ``unknown`` is read as ``untyped``).  Label values
may contain the escapes ``\\\\``, ``\\"`` and ``\\n``; values may be ``NaN``,
``+Inf`` and ``-Inf``; blank lines and other ``#`` comments are skipped.
Malformed input raises :class:`ValueError` naming the line and column.

Selectors
---------
:func:`parse_selector` reads the series selector of PromQL::

    http_requests_total{code=~"5..", path!="/health", method!~"HEAD|OPTIONS"}

``=`` and ``!=`` compare strings, ``=~`` and ``!~`` match regular
expressions that are fully anchored as in Prometheus (``5..`` matches ``500``
but not ``5000``).  The braces are optional; the name may be left out when
the braces hold at least one matcher (``{__name__=~"x_.*"}``).  A label a
series does not have compares as the empty string.  Errors raise
:class:`SelectorError` (a :class:`ValueError`) giving the position.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "COUNTER_SUFFIXES",
    "FAMILY_TYPES",
    "Exposition",
    "Matcher",
    "Sample",
    "Selector",
    "SelectorError",
    "family_of",
    "is_counter",
    "parse",
    "parse_selector",
    "parse_selector_at",
    "parse_value",
]

FAMILY_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")

_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:")
_NAME_CHARS = _NAME_START | frozenset("0123456789")
_LABEL_START = _NAME_START - {":"}
_LABEL_CHARS = _NAME_CHARS - {":"}
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
_WS = " \t"


class Sample(NamedTuple):
    """One sample line: metric name, labels, value and optional timestamp (ms)."""

    name: str
    labels: dict[str, str]
    value: float
    timestamp: int | None = None


@dataclass
class Exposition:
    """A parsed exposition: every sample, and each family's declared type and help."""

    samples: list[Sample] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)
    help: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- values


def parse_value(text: str) -> float:
    """A sample value as Prometheus writes it: a float, ``NaN``, ``+Inf`` or ``-Inf``."""
    lowered = text.lower()
    if lowered in ("nan", "+nan", "-nan"):
        return math.nan
    if lowered in ("+inf", "inf"):
        return math.inf
    if lowered == "-inf":
        return -math.inf
    if "_" in text:  # Python accepts 1_000; Prometheus does not
        raise ValueError(f"invalid value {text!r}")
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"invalid value {text!r}") from None


# --------------------------------------------------------------------------- exposition


class _LineError(ValueError):
    def __init__(self, column: int, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


def parse(text: str) -> Exposition:
    """Parse the text exposition format 0.0.4.

    Raises ValueError ``line N, column C: ...`` on the first malformed line.
    """
    out = Exposition()
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        try:
            if not line.strip(_WS):
                continue
            if line.lstrip(_WS).startswith("#"):
                _parse_comment(line, out)
                continue
            out.samples.append(_parse_sample(line))
        except _LineError as exc:
            raise ValueError(f"line {number}, column {exc.column + 1}: {exc.message}: "
                             f"{_clip(line)}") from None
    return out


def _clip(line: str, limit: int = 80) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _parse_comment(line: str, out: Exposition) -> None:
    body = line.lstrip(_WS)[1:]
    parts = body.split(None, 2)
    if len(parts) < 2 or parts[0] not in ("TYPE", "HELP"):
        return  # an ordinary comment
    keyword, name = parts[0], parts[1]
    rest = parts[2].strip() if len(parts) > 2 else ""
    column = line.find(name)
    if not _METRIC_NAME.match(name):
        raise _LineError(column, f"invalid metric name {name!r} in # {keyword}")
    if keyword == "HELP":
        out.help.setdefault(name, rest.replace("\\n", "\n").replace("\\\\", "\\"))
        return
    kind = rest.lower()
    if kind == "unknown":
        kind = "untyped"
    if kind not in FAMILY_TYPES:
        raise _LineError(line.find(rest, column + len(name)) if rest else len(line),
                         f"invalid metric type {rest!r} (expected one of "
                         f"{', '.join(FAMILY_TYPES)})")
    if name in out.types and out.types[name] != kind:
        raise _LineError(column, f"second # TYPE for {name}")
    out.types[name] = kind


def _skip_ws(line: str, pos: int) -> int:
    while pos < len(line) and line[pos] in _WS:
        pos += 1
    return pos


def _parse_sample(line: str) -> Sample:
    pos = _skip_ws(line, 0)
    start = pos
    if pos >= len(line) or line[pos] not in _NAME_START:
        raise _LineError(pos, "expected a metric name")
    while pos < len(line) and line[pos] in _NAME_CHARS:
        pos += 1
    name = line[start:pos]
    labels: dict[str, str] = {}
    brace = _skip_ws(line, pos)
    if brace < len(line) and line[brace] == "{":
        pos = _parse_labels(line, brace + 1, labels)
    elif pos < len(line) and line[pos] not in _WS:
        raise _LineError(pos, "expected a space before the value")
    rest = line[pos:]
    fields = rest.split()
    if not fields:
        raise _LineError(len(line), "missing value")
    if len(fields) > 2:
        raise _LineError(line.find(fields[2], pos), "unexpected text after the timestamp")
    try:
        value = parse_value(fields[0])
    except ValueError as exc:
        raise _LineError(line.find(fields[0], pos), str(exc)) from None
    timestamp: int | None = None
    if len(fields) == 2:
        try:
            timestamp = int(fields[1])
        except ValueError:
            raise _LineError(line.find(fields[1], pos + len(fields[0])),
                             f"invalid timestamp {fields[1]!r}") from None
    return Sample(name, labels, value, timestamp)


def _parse_labels(line: str, pos: int, labels: dict[str, str]) -> int:
    """Parse ``name="value", ...}`` starting after ``{``; return the position after ``}``."""
    while True:
        pos = _skip_ws(line, pos)
        if pos < len(line) and line[pos] == "}":
            return pos + 1
        if pos >= len(line) or line[pos] not in _LABEL_START:
            raise _LineError(pos, "expected a label name or '}'")
        start = pos
        while pos < len(line) and line[pos] in _LABEL_CHARS:
            pos += 1
        label = line[start:pos]
        pos = _skip_ws(line, pos)
        if pos >= len(line) or line[pos] != "=":
            raise _LineError(pos, f"expected '=' after label {label}")
        pos = _skip_ws(line, pos + 1)
        if pos >= len(line) or line[pos] != '"':
            raise _LineError(pos, f"expected '\"' to start the value of label {label}")
        value, pos = _read_quoted(line, pos)
        if label in labels:
            raise _LineError(start, f"duplicate label {label}")
        labels[label] = value
        pos = _skip_ws(line, pos)
        if pos < len(line) and line[pos] == ",":
            pos += 1
        elif pos >= len(line) or line[pos] != "}":
            raise _LineError(pos, "expected ',' or '}' after a label value")


def _read_quoted(line: str, pos: int) -> tuple[str, int]:
    """Read a ``"..."`` label value at ``pos``; unknown escapes are kept as written."""
    chars: list[str] = []
    i = pos + 1
    while i < len(line):
        char = line[i]
        if char == '"':
            return "".join(chars), i + 1
        if char == "\\" and i + 1 < len(line):
            nxt = line[i + 1]
            chars.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        chars.append(char)
        i += 1
    raise _LineError(pos, "unterminated label value")


# --------------------------------------------------------------------------- families


def family_of(name: str, types: Mapping[str, str]) -> tuple[str, str]:
    """The family a sample name belongs to and its type (``untyped`` when undeclared).

    ``x_bucket``, ``x_count`` and ``x_sum`` belong to histogram or summary ``x``;
    ``x_total`` belongs to counter ``x`` when only ``x`` is declared (OpenMetrics
    style).
    """
    if name in types:
        return name, types[name]
    for suffix, kinds in (("_bucket", ("histogram",)), ("_count", ("histogram", "summary")),
                          ("_sum", ("histogram", "summary")), ("_total", ("counter",))):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            if types.get(base) in kinds:
                return base, types[base]
    return name, "untyped"


def is_counter(name: str, types: Mapping[str, str]) -> bool:
    """Whether samples named ``name`` only go up (until a reset).

    Counters, and the ``_bucket``/``_count``/``_sum`` series of histograms and
    summaries, are; so are untyped names ending in ``_total``, ``_count``,
    ``_sum`` or ``_bucket``.  Gauges and summary quantiles are not.
    """
    family, kind = family_of(name, types)
    if kind == "counter":
        return True
    if kind in ("histogram", "summary"):
        return name != family
    if kind == "untyped":
        return name.endswith(COUNTER_SUFFIXES)
    return False


# --------------------------------------------------------------------------- selectors


class SelectorError(ValueError):
    """A selector could not be parsed; ``position`` is the 0-based offset of the problem."""

    def __init__(self, text: str, position: int, message: str, *, what: str = "selector"
                 ) -> None:
        self.text = text
        self.position = position
        self.reason = message
        super().__init__(f"invalid {what} {text!r} at position {position}: {message}")


_OPS = ("=~", "!~", "!=", "=")


@dataclass(frozen=True)
class Matcher:
    """One label matcher: ``label op value`` with op one of ``=``, ``!=``, ``=~``, ``!~``."""

    label: str
    op: str
    value: str
    pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def create(cls, label: str, op: str, value: str) -> Matcher:
        if op not in _OPS:
            raise ValueError(f"unknown matcher operator {op!r}")
        pattern = re.compile(value, re.DOTALL) if op in ("=~", "!~") else None
        return cls(label, op, value, pattern)

    def matches(self, actual: str) -> bool:
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.pattern is not None
        found = self.pattern.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.label}{self.op}"{escaped}"'


@dataclass(frozen=True)
class Selector:
    """A metric name (optional) and label matchers, as in ``name{l="v"}``."""

    name: str | None
    matchers: tuple[Matcher, ...] = ()

    def matches(self, name: str, labels: Mapping[str, str]) -> bool:
        """Whether the series ``name{labels}`` is selected."""
        if self.name is not None and name != self.name:
            return False
        for matcher in self.matchers:
            actual = name if matcher.label == "__name__" else labels.get(matcher.label, "")
            if not matcher.matches(actual):
                return False
        return True

    def with_name(self, name: str) -> Selector:
        return Selector(name, self.matchers)

    def __str__(self) -> str:
        inner = ", ".join(str(m) for m in self.matchers)
        if self.name is None:
            return "{" + inner + "}"
        return self.name + ("{" + inner + "}" if inner else "")


class _SelectorParser:
    def __init__(self, text: str, pos: int = 0) -> None:
        self.text = text
        self.pos = pos

    def error(self, message: str, pos: int | None = None) -> SelectorError:
        return SelectorError(self.text, self.pos if pos is None else pos, message)

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def describe(self) -> str:
        char = self.peek()
        return f"{char!r}" if char else "end of input"

    def ident(self, start: frozenset[str], chars: frozenset[str]) -> str | None:
        if self.peek() not in start:
            return None
        begin = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1
        return self.text[begin:self.pos]

    def selector(self) -> Selector:
        self.skip_ws()
        begin = self.pos
        name = self.ident(_NAME_START, _NAME_CHARS)
        self.skip_ws()
        matchers: list[Matcher] = []
        if self.peek() == "{":
            self.pos += 1
            matchers = self.matchers()
        elif name is None:
            raise self.error(f"expected a metric name or '{{', found {self.describe()}")
        if name is None and not matchers:
            raise self.error("a selector needs a metric name or at least one matcher", begin)
        return Selector(name, tuple(matchers))

    def matchers(self) -> list[Matcher]:
        found: list[Matcher] = []
        while True:
            self.skip_ws()
            if self.peek() == "}":
                self.pos += 1
                return found
            label = self.ident(_LABEL_START, _LABEL_CHARS)
            if label is None:
                raise self.error(f"expected a label name or '}}', found {self.describe()}")
            self.skip_ws()
            op = next((o for o in _OPS if self.text.startswith(o, self.pos)), None)
            if op is None:
                raise self.error(f"expected one of = != =~ !~ after label {label}, "
                                 f"found {self.describe()}")
            self.pos += len(op)
            self.skip_ws()
            value_pos = self.pos
            value = self.string()
            try:
                found.append(Matcher.create(label, op, value))
            except re.error as exc:
                raise self.error(f"invalid regular expression for {label}: {exc.msg}",
                                 value_pos) from None
            self.skip_ws()
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != "}":
                raise self.error(f"expected ',' or '}}' after a matcher, found "
                                 f"{self.describe()}")

    def string(self) -> str:
        quote = self.peek()
        if quote not in ('"', "'", "`"):
            raise self.error(f"expected a quoted string, found {self.describe()}")
        begin = self.pos
        self.pos += 1
        chars: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == quote:
                self.pos += 1
                return "".join(chars)
            if char == "\\" and quote != "`":
                if self.pos + 1 >= len(self.text):
                    break
                nxt = self.text[self.pos + 1]
                escapes = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r"}
                if nxt not in escapes:
                    raise self.error(f"unknown escape \\{nxt} in string", self.pos)
                chars.append(escapes[nxt])
                self.pos += 2
                continue
            chars.append(char)
            self.pos += 1
        raise self.error("unterminated string", begin)


def parse_selector(text: str) -> Selector:
    """Parse ``name{label="v", l2=~"re", l3!="x", l4!~"re"}``; raises :class:`SelectorError`."""
    parser = _SelectorParser(text)
    selector = parser.selector()
    parser.skip_ws()
    if parser.pos != len(text):
        raise parser.error(f"unexpected {parser.describe()} after the selector")
    return selector


def parse_selector_at(text: str, start: int) -> tuple[Selector, int]:
    """Parse one selector starting at ``start``; return it and the position after it.

    Used by query languages that embed selectors; errors carry positions in ``text``.
    """
    parser = _SelectorParser(text, start)
    selector = parser.selector()
    return selector, parser.pos
