"""The gate expression language.  Parsed by hand, never ``eval``'d.

    condition  := METRIC [of SUBJECT] OP threshold [over DURATION] [for DURATION]
                  [sequential]
    threshold  := NUMBER [UNIT]                 absolute:  error_rate < 0.1%
                | NUMBER x [vs] REFERENCE       multiple:  support_tickets > 2x baseline
                | REFERENCE                     the same:  latency > stable sequential
                | (+|-)NUMBER % [vs] REFERENCE  change:    cost_per_hour <= +10% baseline
    SUBJECT    := canary | stable
    OP         := < | <= | > | >= | == | !=
    UNIT       := % | ms | s | m | h | d
    REFERENCE  := baseline | stable | stage:NAME

``over`` sets the window the metric is measured over (``customer_complaints >
10 over 24h``); ``for`` says how long the condition must hold before a trigger
or alert fires (``error_rate > 1% for 5m``).

    target     := [OP] NUMBER [UNIT]            "< 0.05%", "99.95%"
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from novactl._units import Dimension, format_duration, format_value

__all__ = [
    "OPS",
    "Condition",
    "ExprError",
    "RefKind",
    "Reference",
    "Target",
    "Threshold",
    "ThresholdKind",
    "parse_condition",
    "parse_target",
]

OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}

_TIME_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class ExprError(ValueError):
    """A syntax error in an expression; ``offset`` is 0-based within the text."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


class RefKind(StrEnum):
    BASELINE = "baseline"  # recorded before the rollout began
    STABLE = "stable"  # the stable version, measured at the same time
    STAGE = "stage"  # what the canary showed during an earlier stage


@dataclass(frozen=True)
class Reference:
    kind: RefKind
    stage: str | None = None

    def __str__(self) -> str:
        return f"stage:{self.stage}" if self.kind is RefKind.STAGE else self.kind.value


class ThresholdKind(StrEnum):
    ABSOLUTE = "absolute"
    FACTOR = "factor"  # value × reference
    CHANGE = "change"  # reference × (1 + value)


@dataclass(frozen=True)
class Threshold:
    kind: ThresholdKind
    value: float  # canonical for ABSOLUTE; factor for FACTOR; fraction for CHANGE
    dimension: Dimension | None = None  # ABSOLUTE only: what its unit says (None: bare)
    reference: Reference | None = None
    unit: str = ""  # as written, for display

    @property
    def multiple(self) -> float:
        """A relative threshold as a multiple of its reference: 1.5 for ``+50% stable``,
        2 for ``2x stable`` (an absolute one is its own value)."""
        if self.kind is ThresholdKind.CHANGE:
            return 1.0 + self.value
        return self.value

    def resolve(self, reference_value: float | None) -> float | None:
        """The absolute threshold, given the reference's value (if relative)."""
        if self.kind is ThresholdKind.ABSOLUTE:
            return self.value
        if reference_value is None:
            return None
        return self.multiple * reference_value

    def describe(self, dimension: Dimension) -> str:
        if self.kind is ThresholdKind.ABSOLUTE:
            return format_value(self.value, self.dimension or dimension)
        if self.kind is ThresholdKind.FACTOR:
            return f"{_num(self.value)}x {self.reference}" if self.unit else str(self.reference)
        return f"{'+' if self.value >= 0 else ''}{_num(self.value * 100)}% {self.reference}"


@dataclass(frozen=True)
class Condition:
    text: str
    metric: str
    op: str
    threshold: Threshold
    subject: str = "canary"
    over: float | None = None
    for_: float | None = None
    metric_offset: int = 0
    sequential: bool = False  # an anytime-valid test on the stage's counts (gates.md)

    def holds(self, value: float, threshold: float) -> bool:
        return OPS[self.op](value, threshold)

    def describe(self, dimension: Dimension) -> str:
        text = f"{self.metric}"
        if self.subject != "canary":
            text += f" of {self.subject}"
        text += f" {self.op} {self.threshold.describe(dimension)}"
        if self.over is not None:
            text += f" over {format_duration(self.over)}"
        if self.for_ is not None:
            text += f" for {format_duration(self.for_)}"
        if self.sequential:
            text += " sequential"
        return text


@dataclass(frozen=True)
class Target:
    """A goal shown beside a threshold ("target < 0.05%"); reported, never decides."""

    op: str
    value: float
    dimension: Dimension | None
    text: str

    def met(self, value: float) -> bool:
        return OPS[self.op](value, self.value)


# --------------------------------------------------------------------------- lexer

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<op><=|>=|==|!=|<|>)
  | (?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<unit>%)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]*)?)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _lex(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ExprError(f"unexpected character {text[pos]!r}", pos)
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(_Tok(kind, match.group(), pos))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _lex(text)
        self.i = 0

    # -- helpers
    def peek(self, offset: int = 0) -> _Tok | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def end_pos(self) -> int:
        return len(self.text)

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise ExprError("unexpected end of expression", self.end_pos())
        self.i += 1
        return tok

    def expect(self, kind: str, what: str) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise ExprError(f"expected {what} at the end", self.end_pos())
        if tok.kind != kind:
            raise ExprError(f"expected {what}, found {tok.text!r}", tok.pos)
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "ident" and tok.text == word:
            self.i += 1
            return True
        return False

    # -- grammar
    def number_with_unit(self, what: str) -> tuple[float, str, int, bool]:
        """NUMBER followed by an optional unit written right after (or after a space)."""
        tok = self.expect("num", what)
        number = float(tok.text)
        signed = tok.text[0] in "+-"
        unit = ""
        nxt = self.peek()
        if nxt is not None and nxt.kind == "unit":
            unit = "%"
            self.i += 1
        elif nxt is not None and nxt.kind == "ident":
            word = nxt.text
            if word in _TIME_UNITS or word == "x":
                unit = word
                self.i += 1
            elif nxt.pos == tok.pos + len(tok.text):
                raise ExprError(f"unknown unit {word!r} (use %, ms, s, m, h, d or x)", nxt.pos)
        return number, unit, tok.pos, signed

    def duration(self, keyword: str) -> float:
        tok = self.peek()
        if tok is None:
            raise ExprError(f"expected a duration after {keyword!r} (e.g. 5m)", self.end_pos())
        number, unit, pos, signed = self.number_with_unit(f"a duration after {keyword!r}")
        if unit not in _TIME_UNITS:
            raise ExprError(
                f"{keyword!r} needs a duration with a unit (e.g. 5m, 24h), found {tok.text!r}"
                + (unit if unit else ""),
                pos,
            )
        if signed and number < 0:
            raise ExprError(f"{keyword!r} needs a positive duration", pos)
        return number * _TIME_UNITS[unit]

    def reference(self) -> Reference | None:
        self.keyword("vs")
        tok = self.peek()
        if tok is None or tok.kind != "ident":
            return None
        word = tok.text
        if word == "baseline":
            self.i += 1
            return Reference(RefKind.BASELINE)
        if word == "stable":
            self.i += 1
            return Reference(RefKind.STABLE)
        if word.startswith("stage:"):
            self.i += 1
            name = word.split(":", 1)[1]
            if not name:
                raise ExprError("expected a stage name after 'stage:'", tok.pos)
            return Reference(RefKind.STAGE, name)
        if word == "stage":
            self.i += 1
            name_tok = self.expect("ident", "a stage name after 'stage'")
            return Reference(RefKind.STAGE, name_tok.text)
        return None

    def threshold(self) -> Threshold:
        tok = self.peek()
        if tok is not None and tok.kind == "ident":
            ref = self.reference()  # a bare reference: "p95_latency <= stable" is 1x stable
            if ref is not None:
                return Threshold(ThresholdKind.FACTOR, 1.0, None, ref, "")
        number, unit, pos, signed = self.number_with_unit("a number after the operator")
        ref = self.reference()
        if unit == "x":
            if ref is None:
                raise ExprError(
                    "a multiple needs a reference: write e.g. '2x baseline', '1.1x stable' "
                    "or '1.1x stage:canary'",
                    pos,
                )
            if number < 0:
                raise ExprError("a multiple must not be negative", pos)
            return Threshold(ThresholdKind.FACTOR, number, None, ref, "x")
        if ref is not None:
            if unit == "%" and signed:
                return Threshold(ThresholdKind.CHANGE, number / 100.0, None, ref, "%")
            raise ExprError(
                f"a comparison with {ref} is written as a change ('+10% {ref}') "
                f"or a multiple ('2x {ref}')",
                pos,
            )
        if unit == "%":
            return Threshold(ThresholdKind.ABSOLUTE, number / 100.0, Dimension.FRACTION, None, "%")
        if unit in _TIME_UNITS:
            return Threshold(
                ThresholdKind.ABSOLUTE, number * _TIME_UNITS[unit], Dimension.TIME, None, unit
            )
        return Threshold(ThresholdKind.ABSOLUTE, number, None, None, "")

    def condition(self) -> Condition:
        metric_tok = self.peek()
        if metric_tok is None:
            raise ExprError("empty expression: expected e.g. 'error_rate < 0.1%'", 0)
        if metric_tok.kind != "ident" or ":" in metric_tok.text:
            raise ExprError(
                f"expected a metric name, found {metric_tok.text!r}", metric_tok.pos
            )
        self.i += 1
        subject = "canary"
        if self.keyword("of"):
            tok = self.expect("ident", "'canary' or 'stable' after 'of'")
            if tok.text not in ("canary", "stable"):
                raise ExprError(f"expected 'canary' or 'stable' after 'of', found {tok.text!r}",
                                tok.pos)
            subject = tok.text
        op_tok = self.peek()
        if op_tok is None or op_tok.kind != "op":
            found = "the end" if op_tok is None else repr(op_tok.text)
            pos = self.end_pos() if op_tok is None else op_tok.pos
            raise ExprError(f"expected a comparison (<, <=, >, >=, ==, !=), found {found}", pos)
        self.i += 1
        threshold = self.threshold()
        over = for_ = None
        sequential = False
        while (nxt := self.peek()) is not None:
            tok = nxt
            if tok.kind == "ident" and tok.text == "over" and over is None:
                self.i += 1
                over = self.duration("over")
            elif tok.kind == "ident" and tok.text == "for" and for_ is None:
                self.i += 1
                for_ = self.duration("for")
            elif tok.kind == "ident" and tok.text == "sequential" and not sequential:
                self.i += 1
                sequential = True
            else:
                raise ExprError(f"unexpected {tok.text!r} (expected 'over', 'for' or "
                                "'sequential')", tok.pos)
        if over is not None and over <= 0:
            raise ExprError("'over' needs a window longer than zero", self.end_pos())
        return Condition(
            text=self.text.strip(),
            metric=metric_tok.text,
            op=op_tok.text,
            threshold=threshold,
            subject=subject,
            over=over,
            for_=for_,
            metric_offset=metric_tok.pos,
            sequential=sequential,
        )


def parse_condition(text: str) -> Condition:
    """Parse a gate expression; raises :class:`ExprError` with an offset."""
    if not isinstance(text, str):
        raise ExprError(f"expected an expression string, got {type(text).__name__}")
    return _Parser(text).condition()


def parse_target(text: object, default_op: str) -> Target:
    """Parse ``"< 0.05%"`` or ``"99.95%"`` (the operator defaults to the check's)."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        text = repr(text)
    if not isinstance(text, str):
        raise ExprError(f"expected a target like '< 0.05%', got {type(text).__name__}")
    parser = _Parser(text)
    op = default_op
    tok = parser.peek()
    if tok is not None and tok.kind == "op":
        op = tok.text
        parser.i += 1
    threshold = parser.threshold()
    if threshold.kind is not ThresholdKind.ABSOLUTE:
        raise ExprError("a target must be an absolute value such as '< 0.05%'", 0)
    rest = parser.peek()
    if rest is not None:
        raise ExprError(f"unexpected {rest.text!r} in target", rest.pos)
    return Target(op, threshold.value, threshold.dimension, text.strip())


def _num(value: float) -> str:
    return f"{value:g}"
