"""The text exposition parser and the selector language."""

from __future__ import annotations

import math

import pytest

from novactl.adapters._promtext import (
    Sample,
    Selector,
    SelectorError,
    family_of,
    is_counter,
    parse,
    parse_selector,
    parse_selector_at,
    parse_value,
)

EXPOSITION = """\
# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT",\
error="Cannot find file:\\n\\"FILE.TXT\\""} 1.458255915e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47

# A weird metric from before the epoch:
something_weird{problem="division by zero"} +Inf -3982045

# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
# TYPE temperature gauge
temperature -Inf
nan_metric NaN
"""


def test_parse_reference_exposition() -> None:
    expo = parse(EXPOSITION)
    by_name: dict[str, list[Sample]] = {}
    for sample in expo.samples:
        by_name.setdefault(sample.name, []).append(sample)
    assert len(expo.samples) == 14
    first = by_name["http_requests_total"][0]
    name, labels, value, timestamp = first
    assert (name, labels, value, timestamp) == (
        "http_requests_total", {"method": "post", "code": "200"}, 1027.0, 1395066363000)
    assert by_name["http_requests_total"][1].value == 3.0
    msdos = by_name["msdos_file_access_time_seconds"][0]
    assert msdos.labels == {"path": "C:\\DIR\\FILE.TXT", "error": 'Cannot find file:\n"FILE.TXT"'}
    assert msdos.value == 1.458255915e9
    assert by_name["metric_without_timestamp_and_labels"][0] == Sample(
        "metric_without_timestamp_and_labels", {}, 12.47, None)
    weird = by_name["something_weird"][0]
    assert weird.value == math.inf and weird.timestamp == -3982045
    assert by_name["temperature"][0].value == -math.inf
    assert math.isnan(by_name["nan_metric"][0].value)
    assert expo.types == {
        "http_requests_total": "counter",
        "http_request_duration_seconds": "histogram",
        "rpc_duration_seconds": "summary",
        "temperature": "gauge",
    }
    assert expo.help["http_requests_total"] == "The total number of HTTP requests."


def test_parse_tolerates_whitespace_crlf_trailing_comma_and_empty_braces() -> None:
    text = "c{x=\"1\"}3\na{} 1\r\n\tb { x = \"1\" , y=\"2\", } 2\r\n   \n# just a comment\n# EOF\n"
    expo = parse(text)
    assert expo.samples == [
        Sample("c", {"x": "1"}, 3.0),
        Sample("a", {}, 1.0),
        Sample("b", {"x": "1", "y": "2"}, 2.0),
    ]


def test_unknown_escape_is_kept_literally() -> None:
    (sample,) = parse('m{a="x\\ty"} 1').samples
    assert sample.labels == {"a": "x\\ty"}


def test_type_unknown_is_untyped_and_types_are_case_insensitive() -> None:
    expo = parse("# TYPE a unknown\n# TYPE b COUNTER\na 1\nb 2\n")
    assert expo.types == {"a": "untyped", "b": "counter"}


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("ok 1\nbad{a=1} 2\n", "line 2, column 7", "expected '\"'"),
        ('m{a="x} 1', "line 1, column 5", "unterminated label value"),
        ("m 1 2 3", "line 1, column 7", "unexpected text after the timestamp"),
        ("m abc", "line 1, column 3", "invalid value 'abc'"),
        ("m 1 1.5", "line 1, column 5", "invalid timestamp"),
        ("m", "line 1, column 2", "missing value"),
        ("1m 2", "line 1, column 1", "expected a metric name"),
        ('m{a="1" b="2"} 1', "line 1, column 9", "expected ',' or '}'"),
        ('m{a="1",a="2"} 1', "line 1, column 9", "duplicate label a"),
        ("# TYPE m countr\n", "line 1, column 10", "invalid metric type 'countr'"),
        ("# TYPE m counter\n# TYPE m gauge\n", "line 2", "second # TYPE for m"),
        ("m+1", "line 1, column 2", "expected a space before the value"),
    ],
)
def test_parse_errors_name_line_and_column(text: str, where: str, what: str) -> None:
    with pytest.raises(ValueError) as info:
        parse(text)
    assert where in str(info.value)
    assert what in str(info.value)


def test_parse_value() -> None:
    assert parse_value("+Inf") == math.inf
    assert parse_value("-Inf") == -math.inf
    assert math.isnan(parse_value("NaN"))
    assert parse_value("1e-3") == 0.001
    with pytest.raises(ValueError):
        parse_value("1_000")


def test_family_of_and_counter_detection() -> None:
    types = {"h": "histogram", "s": "summary", "c": "counter", "g": "gauge", "o": "counter"}
    assert family_of("h_bucket", types) == ("h", "histogram")
    assert family_of("s_count", types) == ("s", "summary")
    assert family_of("o_total", types) == ("o", "counter")  # OpenMetrics-style family
    assert family_of("x", types) == ("x", "untyped")
    assert is_counter("c", types)
    assert is_counter("h_bucket", types) and is_counter("h_sum", types)
    assert is_counter("s_count", types) and not is_counter("s", types)
    assert not is_counter("g", types)
    assert is_counter("requests_total", {}) and is_counter("lat_bucket", {})
    assert not is_counter("queue_depth", {})
    assert not is_counter("g_total", {"g_total": "gauge"})


# --------------------------------------------------------------------------- selectors


def test_selector_parse_and_match() -> None:
    sel = parse_selector('http_requests_total{code=~"5..", path!="/health", '
                         'method!~"HEAD|OPTIONS", job="api"}')
    assert sel.name == "http_requests_total"
    assert [(m.label, m.op, m.value) for m in sel.matchers] == [
        ("code", "=~", "5.."), ("path", "!=", "/health"),
        ("method", "!~", "HEAD|OPTIONS"), ("job", "=", "api")]
    base = {"code": "500", "path": "/a", "method": "GET", "job": "api"}
    assert sel.matches("http_requests_total", base)
    assert not sel.matches("other", base)
    assert not sel.matches("http_requests_total", {**base, "code": "5000"})  # anchored
    assert not sel.matches("http_requests_total", {**base, "code": "x500"})
    assert not sel.matches("http_requests_total", {**base, "path": "/health"})
    assert not sel.matches("http_requests_total", {**base, "method": "HEAD"})
    assert not sel.matches("http_requests_total", {**base, "job": "web"})


def test_selector_without_labels_and_missing_labels_compare_as_empty() -> None:
    assert parse_selector("up") == Selector("up")
    assert parse_selector("  up { } ") == Selector("up")
    sel = parse_selector('up{zone="", env!="prod"}')
    assert sel.matches("up", {})
    assert not sel.matches("up", {"zone": "a"})
    assert parse_selector('up{x=~".*"}').matches("up", {})


def test_selector_without_name_and_name_matcher() -> None:
    sel = parse_selector('{__name__=~"app_.*_total", env=\'prod\'}')
    assert sel.name is None
    assert sel.matches("app_requests_total", {"env": "prod"})
    assert not sel.matches("web_requests_total", {"env": "prod"})


def test_selector_string_escapes_and_dotall() -> None:
    sel = parse_selector('m{a="x\\"y\\\\z\\n"}')
    assert sel.matchers[0].value == 'x"y\\z\n'
    assert parse_selector('m{a=~"a.b"}').matches("m", {"a": "a\nb"})
    assert parse_selector("m{a=`c:\\dir`}").matchers[0].value == "c:\\dir"


def test_selector_str_round_trips() -> None:
    text = 'm{a="1", b=~"x|y", c!="q\\"", d!~".+"}'
    sel = parse_selector(text)
    assert parse_selector(str(sel)) == sel


@pytest.mark.parametrize(
    ("text", "position", "what"),
    [
        ('m{a="1"', 7, "expected ',' or '}' after a matcher, found end of input"),
        ('m{a="1",', 8, "expected a label name or '}'"),
        ('m{a~"1"}', 3, "expected one of = != =~ !~"),
        ("m{a=1}", 4, "expected a quoted string"),
        ('m{a=~"("}', 5, "invalid regular expression"),
        ('m{a="1"} x', 9, "unexpected 'x'"),
        ('m{a="1}', 4, "unterminated string"),
        ("{}", 0, "needs a metric name or at least one matcher"),
        ("", 0, "expected a metric name"),
        ('m{a="1" b="2"}', 8, "expected ',' or '}'"),
        ('m{a="\\q"}', 5, "unknown escape"),
        ("9m", 0, "expected a metric name"),
    ],
)
def test_selector_errors_give_position(text: str, position: int, what: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_selector(text)
    assert info.value.position == position
    assert what in str(info.value)
    assert f"at position {position}" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_parse_selector_at_stops_after_the_selector() -> None:
    text = 'rate(m{a="1"}[5m])'
    sel, end = parse_selector_at(text, 5)
    assert sel == parse_selector('m{a="1"}')
    assert text[end:] == "[5m])"
