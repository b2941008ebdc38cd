"""PrometheusProbe against a real Prometheus scraping two SampleApps under load.

The first part needs no server: the ``range(...)`` syntax, ``check_query`` and how
range (matrix) answers are reduced, against a mocked API.  The second part starts
``/usr/bin/prometheus`` on loopback (skipped without it, a failure under CI=true);
Prometheus waits about 5 s before its first scrape, so the module shares one server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from _prometheus import PrometheusServer, SampleFleet
from _servers import require_binary

from novactl._clock import FakeClock
from novactl._errors import PlanError
from novactl.adapters._base import AdapterContext
from novactl.adapters._registry import create
from novactl.adapters.prometheus import PrometheusProbe, RangeSpec, parse_query
from novactl.core.observations import Observation, ObsStatus, ProbeQuery
from novactl.plan import load_plan
from novactl.plan._load import render_vars

STABLE, CANARY = "v2.9.0", "v3.0.0"
ERRORS = 'sum(increase(http_requests_total{version="{{version}}",code=~"5.."}[{{window}}]))'
REQUESTS = 'sum(increase(http_requests_total{version="{{version}}"}[{{window}}]))'


def ask(probe: PrometheusProbe, kind: str = "value", *, version: str | None = CANARY,
        window: float = 10.0, at: float | None = None, **parts: str) -> Observation:
    """Render the parts as the runner does and observe them."""
    values = {"version": version or "", "window": f"{round(window)}s",
              "window_seconds": round(window)}
    rendered = {part: render_vars(text, values) for part, text in parts.items()}
    return probe.observe(ProbeQuery(metric="m", kind=kind, parts=rendered, version=version,
                                    role="canary", window=window,
                                    at=time.time() if at is None else at))


# --------------------------------------------------------------------------- no server


@pytest.mark.parametrize(("text", "problem"), [
    ("sum(rate(x[5m]))", None),
    ('sum(x{path=~"/a(b|c)["})', None),  # brackets inside strings do not count
    ("range(reduce=max, step=30s): sum(rate(x[1m]))", None),
    ("  range ( step = 1m , reduce = last ) :  x  ", None),
    ("range(reduce=avg): x", None),
    ("", "empty query"),
    ("   ", "empty query"),
    ("range(reduce=max):", "no PromQL expression after ':'"),
    ("range(step=30s): x", "reduce is required"),
    ("range(reduce=median): x", "reduce=median is not one of max, min, avg, last"),
    ("range(reduce=max, step=0s): x", "step must be longer than 0s"),
    ("range(reduce=max, step=soon): x", "step: invalid duration 'soon'"),
    ("range(reduce=max, every=1m): x", "unknown option 'every' (known: reduce, step)"),
    ("range(reduce=max, reduce=min): x", "reduce is given twice"),
    ("range(reduce=max) sum(x)", "expected ':'"),
    ("range(reduce=max: x", "missing ')'"),
    ("sum(rate(x[5m])", "unclosed '(' at column 4"),
    ("sum(rate(x[5m)))", "unbalanced ')' at column 14"),
    ('x{a="b}', "unterminated string"),
])
def test_check_query(text: str, problem: str | None) -> None:
    found = PrometheusProbe.check_query(text)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_range_prefix_parses() -> None:
    assert parse_query("sum(x)").range is None
    parsed = parse_query("range(reduce=min, step=2m): sum(x) / sum(y)")
    assert parsed.expr == "sum(x) / sum(y)"
    assert parsed.range == RangeSpec("min", 120.0)
    assert str(parsed.range) == "range(reduce=min, step=2m)"
    assert RangeSpec("max").step_for(300) == 5.0  # about 60 points by default
    assert RangeSpec("max").step_for(10) == 1.0  # at least 1s
    assert parse_query("range_total").range is None  # a metric name, not the prefix


def test_validate_reports_bad_range_syntax(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(_plan_text("http://prom.test:9090",
                               'range(reduce=mode): sum(x{version="{{version}}"})'))
    with pytest.raises(PlanError) as info:
        load_plan(plan)
    assert "reduce=mode is not one of max, min, avg, last" in str(info.value)
    assert "spec.metrics.p95" in str(info.value)


URL = "http://prom.test:9090"
RANGE_URL = f"{URL}/api/v1/query_range"


def matrix(*series: list[Any]) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"pod": f"p{i}"}, "values": [[1000.0 + j, v] for j, v in enumerate(values)]}
        for i, values in enumerate(series)]}}


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def mocked_probe(clock: FakeClock, **config: Any) -> PrometheusProbe:
    return PrometheusProbe("prom", {"url": URL, **config}, AdapterContext(clock=clock))


@pytest.mark.parametrize(("reduce", "expected"), [("max", 9.0), ("min", 1.0),
                                                  ("avg", 5.0), ("last", 5.0)])
def test_range_reductions_skip_nan(mock: respx.MockRouter, reduce: str,
                                   expected: float) -> None:
    clock = FakeClock()
    route = mock.get(RANGE_URL).respond(json=matrix(["1", "NaN", "9", "+Inf", "5", "NaN"]))
    obs = ask(mocked_probe(clock), at=clock.now(), window=300,
              value=f"range(reduce={reduce}, step=30s): sum(rate(x[1m]))")
    assert obs.status is ObsStatus.OK and obs.value == pytest.approx(expected)
    params = route.calls.last.request.url.params
    assert params["query"] == "sum(rate(x[1m]))"
    assert float(params["end"]) == clock.now()
    assert float(params["start"]) == clock.now() - 300
    assert params["step"] == "30"


def test_range_default_step_and_ratio(mock: respx.MockRouter) -> None:
    clock = FakeClock()

    def answer(request: httpx.Request) -> httpx.Response:
        errors = "errors" in request.url.params["query"]
        return httpx.Response(200, json=matrix(["2", "4"] if errors else ["100", "200"]))

    route = mock.get(RANGE_URL).mock(side_effect=answer)
    obs = ask(mocked_probe(clock), "ratio", at=clock.now(), window=600,
              numerator="range(reduce=max): sum(rate(errors[1m]))",
              denominator="range(reduce=max): sum(rate(requests[1m]))")
    assert obs.status is ObsStatus.OK
    assert (obs.events, obs.trials) == (4, 200)
    assert route.calls.last.request.url.params["step"] == "10"  # 600s / 60


@pytest.mark.parametrize(("answer", "status", "reason"), [
    (matrix(), ObsStatus.NO_DATA, "no values found for sum(x)"),
    (matrix([]), ObsStatus.NO_DATA, "no values found for sum(x)"),
    (matrix(["NaN", "-Inf"]), ObsStatus.NO_DATA, "no finite values between"),
    (matrix(["1"], ["2"]), ObsStatus.ERROR, "query returned 2 series; aggregate it"),
    ({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {}, "histograms": [[1000, {"count": "1"}]]}]}},
     ObsStatus.ERROR, "native histograms"),
    ({"status": "success", "data": {"resultType": "vector", "result": []}},
     ObsStatus.ERROR, "unexpected result type 'vector' for a range query"),
    (matrix(["one"]), ObsStatus.ERROR, "malformed answer"),
])
def test_range_answers(mock: respx.MockRouter, answer: dict[str, Any], status: ObsStatus,
                       reason: str) -> None:
    mock.get(RANGE_URL).respond(json=answer)
    clock = FakeClock()
    obs = ask(mocked_probe(clock), at=clock.now(), value="range(reduce=max, step=1m): sum(x)")
    assert obs.status is status, obs.reason
    assert reason in obs.reason


def test_range_retries_and_point_limit(mock: respx.MockRouter) -> None:
    clock = FakeClock()
    route = mock.get(RANGE_URL).mock(side_effect=[httpx.Response(503),
                                                  httpx.Response(200, json=matrix(["3"]))])
    probe = mocked_probe(clock)
    assert probe.range_query("x", start=0, end=60, step=15, reduce="last") == 3
    assert route.call_count == 2
    obs = ask(probe, at=clock.now(), window=7 * 86400, value="range(reduce=max, step=1s): x")
    assert obs.status is ObsStatus.ERROR
    assert "has 604801 points; Prometheus allows 11000: raise the step" in obs.reason
    assert route.call_count == 2  # refused before asking


def test_empty_query_is_an_error_without_a_request(mock: respx.MockRouter) -> None:
    route = mock.get(f"{URL}/api/v1/query").respond(json=matrix())
    obs = ask(mocked_probe(FakeClock()), value="  ")
    assert obs.status is ObsStatus.ERROR and "empty query" in obs.reason
    assert not route.called


# --------------------------------------------------------------------------- real server


@pytest.fixture(scope="module")
def fleet() -> Iterator[SampleFleet]:
    require_binary("prometheus")
    with SampleFleet(STABLE, CANARY, canary_errors=0.2) as running:
        yield running


@pytest.fixture(scope="module")
def prometheus(fleet: SampleFleet, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[PrometheusServer]:
    server = PrometheusServer(fleet.targets, tmp_path_factory.mktemp("prometheus"))
    with server:
        # two scrapes of both versions, and the canary's first errors
        server.wait_for_samples("sum by (version) (increase(http_requests_total[10s]))",
                                timeout=25, series=2)
        server.wait_for_samples('sum(increase(http_requests_total{code="500"}[10s])) > 0',
                                timeout=10)
        yield server


@pytest.fixture
def probe(prometheus: PrometheusServer) -> Iterator[PrometheusProbe]:
    built = create("probe", "prometheus", "prom", {"url": prometheus.url, "timeout": "5s"},
                   AdapterContext())
    yield built
    built.close()


@pytest.mark.integration
def test_error_ratio_from_raw_counts_per_version(probe: PrometheusProbe) -> None:
    canary = ask(probe, "ratio", version=CANARY, numerator=ERRORS, denominator=REQUESTS)
    assert canary.status is ObsStatus.OK, canary.reason
    assert canary.trials is not None and canary.trials > 50
    assert canary.events is not None and canary.events > 0
    assert 0.03 < (canary.value or 0) < 0.5  # 20% injected, a few seconds of traffic
    stable = ask(probe, "ratio", version=STABLE, numerator=ERRORS, denominator=REQUESTS)
    assert stable.status is ObsStatus.OK, stable.reason
    assert stable.events == 0 and stable.value == 0
    assert stable.trials is not None and stable.trials > 50


@pytest.mark.integration
def test_latency_quantile_with_samples(probe: PrometheusProbe) -> None:
    obs = ask(probe, version=STABLE, value=(
        'histogram_quantile(0.95, sum by (le) (increase('
        'http_request_duration_seconds_bucket{version="{{version}}"}[{{window}}])))'),
        samples='sum(increase(http_request_duration_seconds_count{version="{{version}}"}'
                '[{{window}}]))')
    assert obs.status is ObsStatus.OK, obs.reason
    assert 0.001 < (obs.value or 0) < 1.0
    assert obs.samples is not None and obs.samples > 50


@pytest.mark.integration
def test_range_queries_reduce_the_series(prometheus: PrometheusServer,
                                         probe: PrometheusProbe) -> None:
    prometheus.wait_for_samples(
        f'count_over_time(http_requests_total{{version="{CANARY}",code="200"}}[10s]) >= 5')
    at = time.time() - 1.5  # every scrape up to here is in: all four see the same points
    rate = 'sum(rate(http_requests_total{version="{{version}}"}[3s]))'
    found = {}
    for reduce in ("max", "min", "avg", "last"):
        obs = ask(probe, at=at, window=10, value=f"range(reduce={reduce}, step=1s): {rate}")
        assert obs.status is ObsStatus.OK, obs.reason
        found[reduce] = obs.value
    assert 0 < found["min"] <= found["avg"] <= found["max"]
    assert found["min"] <= found["last"] <= found["max"]
    ratio = ask(probe, "ratio", at=at, window=10,
                numerator=f"range(reduce=avg, step=1s): {ERRORS.replace('{{window}}', '3s')}",
                denominator=f"range(reduce=avg, step=1s): {REQUESTS.replace('{{window}}', '3s')}")
    assert ratio.status is ObsStatus.OK, ratio.reason
    assert 0 < (ratio.value or 0) < 1


@pytest.mark.integration
@pytest.mark.parametrize("prefix", ["", "range(reduce=max, step=1s): "])
def test_empty_result_is_no_data(probe: PrometheusProbe, prefix: str) -> None:
    obs = ask(probe, version="v0.0.0", value=prefix + REQUESTS)
    assert obs.status is ObsStatus.NO_DATA
    assert 'no values found for sum(increase(http_requests_total{version="v0.0.0"}' in obs.reason


@pytest.mark.integration
@pytest.mark.parametrize("query", [
    # the stable version serves no 500s: zero errors over zero errors
    'sum(increase(http_requests_total{version="{{version}}",code="500"}[{{window}}])) / '
    'sum(increase(http_requests_total{version="{{version}}",code="500"}[{{window}}]))',
    "0 / 0",  # a scalar
    "range(reduce=avg, step=1s): 0 / 0",
])
def test_nan_is_no_data(probe: PrometheusProbe, query: str) -> None:
    obs = ask(probe, version=STABLE, value=query)
    assert obs.status is ObsStatus.NO_DATA, obs.reason
    assert "NaN" in obs.reason or "no finite values" in obs.reason


@pytest.mark.integration
@pytest.mark.parametrize("prefix", ["", "range(reduce=last, step=1s): "])
def test_several_series_are_an_error(probe: PrometheusProbe, prefix: str) -> None:
    obs = ask(probe, value=prefix + "sum by (version) (http_requests_total)")
    assert obs.status is ObsStatus.ERROR
    assert "query returned 2 series; aggregate it, e.g. sum(...)" in obs.reason


@pytest.mark.integration
def test_bad_queries_are_errors(probe: PrometheusProbe) -> None:
    broken = ask(probe, value="sum(rate(http_requests_total[10s])")
    assert broken.status is ObsStatus.ERROR
    assert "HTTP 400: bad_data:" in broken.reason and "parse error" in broken.reason
    bare = ask(probe, value='http_requests_total{version="{{version}}"}[10s]')
    assert bare.status is ObsStatus.ERROR and "range vector" in bare.reason


@pytest.mark.integration
def test_stopped_prometheus_is_an_error_then_recovers(fleet: SampleFleet,
                                                      tmp_path: Path) -> None:
    server = PrometheusServer(fleet.targets, tmp_path / "prom").start()
    probe = PrometheusProbe("prom", {"url": server.url, "retries": 1, "timeout": "2s"})
    try:
        assert ask(probe, value="vector(1)").value == 1
        server.stop()
        started = time.monotonic()
        down = ask(probe, value="vector(1)")
        assert down.status is ObsStatus.ERROR
        assert f"query to {server.url} failed after 2 attempts: last error ConnectError" in (
            down.reason)
        assert time.monotonic() - started < 3
        server.start()
        assert ask(probe, value="vector(2)").value == 2
        server.restart()  # same port and storage
        assert ask(probe, value="vector(3)").value == 3
    finally:
        probe.close()
        server.stop()


def _plan_text(url: str, p95: str) -> str:
    return f"""\
apiVersion: novactl.dev/v1
kind: RolloutPlan
metadata: {{name: prom-plan}}
spec:
  versions: {{stable: {STABLE}, canary: {CANARY}}}
  traffic: {{type: fake}}
  workload: {{type: fake}}
  probes:
    prom: {{type: prometheus, config: {{url: "{url}"}}}}
  metrics:
    p95: {{probe: prom, unit: s, query: '{p95}'}}
  stages:
    - {{name: one, weight: 10, duration: 1m, criteria: {{mandatory: [p95 < 200ms]}}}}
"""
