"""Units: durations, percentages and how values are shown.

Canonical units inside novactl: durations and latencies in seconds, ratios and
percentages as fractions (0.001 == 0.1%), counts as plain numbers.  Parsing
turns text into canonical values; formatting turns them back into text a
human reads.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum

__all__ = [
    "Dimension",
    "format_duration",
    "format_value",
    "parse_duration",
    "prom_duration",
]

_DURATION_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


class Dimension(StrEnum):
    """What kind of quantity a metric measures; thresholds must match it."""

    FRACTION = "fraction"  # ratios and percentages
    TIME = "time"  # latencies and durations
    NUMBER = "number"  # counts, scores, money, anything else

    def __str__(self) -> str:
        return self.value


def parse_duration(value: object) -> float:
    """Parse ``"5m"``, ``"1h30m"``, ``"250ms"``, ``"7d"`` (or a number of seconds).

    Raises ValueError with a message fit for an operator.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 5m or 7d, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"a duration must be a finite number ≥ 0, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like 5m or 7d, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise ValueError("expected a duration like 5m or 7d, got an empty string")
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(
            f"invalid duration {text!r}: use a number with a unit ms, s, m, h, d or w "
            "(e.g. 30s, 5m, 1h30m, 7d)"
        )
    return total


def format_duration(seconds: float | None) -> str:
    """``604800`` → ``"7d"``; ``5400`` → ``"1h30m"``; ``0.25`` → ``"250ms"``."""
    if seconds is None:
        return "—"
    if not math.isfinite(seconds):
        return "∞"
    negative = seconds < 0
    seconds = abs(seconds)
    if seconds < 1:
        text = f"{seconds * 1000:.0f}ms"
    elif seconds < 60 and seconds != int(seconds):
        text = f"{seconds:.1f}s"
    else:
        rest = round(seconds)
        parts = []
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
            if rest >= size:
                parts.append(f"{rest // size}{unit}")
                rest %= size
        text = "".join(parts[:2]) or "0s"
    return f"-{text}" if negative else text


def prom_duration(seconds: float) -> str:
    """A duration in Prometheus range-selector syntax (whole seconds, at least 1s)."""
    return f"{max(1, math.ceil(seconds))}s"


def format_value(value: float | None, dimension: Dimension | str) -> str:
    """Show a canonical value the way an operator expects it."""
    if value is None:
        return "no data"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    dim = Dimension(dimension)
    if dim is Dimension.FRACTION:
        return _trim(value * 100) + "%"
    if dim is Dimension.TIME:
        if abs(value) < 1:
            return _trim(value * 1000) + "ms"
        if abs(value) < 60:
            return _trim(value) + "s"
        return format_duration(value)
    return _trim(value)


def _trim(number: float) -> str:
    """Up to four significant decimals, no trailing zeros: 0.05, 99.95, 120."""
    if number == 0:
        return "0"
    magnitude = abs(number)
    if magnitude >= 1000:
        text = f"{number:,.0f}" if magnitude >= 1e6 else f"{number:.0f}"
    elif magnitude >= 1:
        text = f"{number:.2f}"
    else:
        text = f"{number:.4g}"
        if "e" in text:
            return text
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
