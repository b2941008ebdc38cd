import pytest

from novactl._units import Dimension
from novactl.plan._expr import (
    ExprError,
    RefKind,
    ThresholdKind,
    parse_condition,
    parse_target,
)


def test_absolute_thresholds_are_canonical() -> None:
    c = parse_condition("error_rate < 0.1%")
    assert (c.metric, c.op, c.subject) == ("error_rate", "<", "canary")
    assert c.threshold.kind is ThresholdKind.ABSOLUTE
    assert c.threshold.value == pytest.approx(0.001)
    assert c.threshold.dimension is Dimension.FRACTION
    assert parse_condition("p95 > 200ms").threshold.value == pytest.approx(0.2)
    assert parse_condition("p95 > 2s").threshold.dimension is Dimension.TIME
    assert parse_condition("critical_errors == 0").threshold.dimension is None


def test_for_and_over_windows() -> None:
    c = parse_condition("p95_latency > 200ms for 10m")
    assert c.for_ == 600 and c.over is None
    c = parse_condition("customer_complaints > 10 over 24h for 1h")
    assert (c.over, c.for_) == (86400, 3600)


def test_relative_thresholds() -> None:
    c = parse_condition("support_tickets > 2x baseline")
    assert c.threshold.kind is ThresholdKind.FACTOR and c.threshold.value == 2
    assert c.threshold.reference is not None and c.threshold.reference.kind is RefKind.BASELINE
    assert c.threshold.resolve(10.0) == 20.0
    c = parse_condition("cost <= +10% baseline")
    assert c.threshold.kind is ThresholdKind.CHANGE
    assert c.threshold.resolve(100.0) == pytest.approx(110.0)
    c = parse_condition("p95 > +10% vs stable for 10m")
    assert c.threshold.reference.kind is RefKind.STABLE  # type: ignore[union-attr]
    c = parse_condition("p95 <= 1.05x stage:canary")
    assert c.threshold.reference.stage == "canary"  # type: ignore[union-attr]
    c = parse_condition("revenue < -5% baseline")
    assert c.threshold.resolve(200.0) == pytest.approx(190.0)


def test_subject() -> None:
    assert parse_condition("p95 of stable < 1s").subject == "stable"


@pytest.mark.parametrize(("text", "message", "offset"), [
    ("", "empty expression", 0),
    ("< 1", "expected a metric name", 0),
    ("error_rate 0.1%", "expected a comparison", 11),
    ("error_rate < ", "expected a number", 13),
    ("a < 1qq", "unknown unit 'qq'", 5),
    ("a < 2x", "a multiple needs a reference", 4),
    ("a < 10% baseline", "written as a change", 4),
    ("a < 1 for 5", "needs a duration with a unit", 10),
    ("a < 1 bar", "unexpected 'bar'", 6),
    ("a < 1 for 5m for 6m", "unexpected 'for'", 13),
    ("a of prod < 1", "expected 'canary' or 'stable'", 5),
    ("a < 1; import os", "unexpected character ';'", 5),
    ("__import__('os') < 1", "unexpected character", 10),
])
def test_errors_say_what_and_where(text: str, message: str, offset: int) -> None:
    with pytest.raises(ExprError) as info:
        parse_condition(text)
    assert message in str(info.value)
    assert info.value.offset == offset


def test_targets() -> None:
    t = parse_target("< 0.05%", "<")
    assert (t.op, t.value) == ("<", pytest.approx(0.0005))
    t = parse_target("99.95%", ">")
    assert t.op == ">" and t.met(0.9996) and not t.met(0.999)
    with pytest.raises(ExprError):
        parse_target("2x baseline", "<")


def test_describe_round_trip() -> None:
    c = parse_condition("p95_latency > 200ms for 10m")
    assert c.describe(Dimension.TIME) == "p95_latency > 200ms for 10m"
    c = parse_condition("x <= +10% baseline")
    assert c.describe(Dimension.NUMBER) == "x <= +10% baseline"
