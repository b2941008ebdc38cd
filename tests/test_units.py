import math

import pytest

from novactl._units import Dimension, format_duration, format_value, parse_duration, prom_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("250ms", 0.25), ("30s", 30), ("5m", 300), ("1h30m", 5400), ("7d", 604800), ("2w", 1209600),
    ("1.5h", 5400), (45, 45.0), (2.5, 2.5),
])
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "5", "5 m", "m5", "5mm", "-5m", "1h 30m", True, None, [1],
                                 float("nan"), -3])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_format_duration_round_trips_common_values() -> None:
    for text in ("7d", "1h30m", "5m", "30s", "250ms", "1d"):
        assert format_duration(parse_duration(text)) == text
    assert format_duration(None) == "—"
    assert format_duration(math.inf) == "∞"


def test_format_value_by_dimension() -> None:
    assert format_value(0.0005, Dimension.FRACTION) == "0.05%"
    assert format_value(0.9995, Dimension.FRACTION) == "99.95%"
    assert format_value(0.095, Dimension.TIME) == "95ms"
    assert format_value(2.5, Dimension.TIME) == "2.5s"
    assert format_value(12.0, Dimension.NUMBER) == "12"
    assert format_value(None, Dimension.NUMBER) == "no data"
    assert format_value(math.nan, Dimension.NUMBER) == "NaN"


def test_prom_duration_is_whole_seconds() -> None:
    assert prom_duration(300) == "300s"
    assert prom_duration(0.2) == "1s"
    assert prom_duration(1.5) == "2s"
