"""PrometheusProbe against a mocked HTTP API (respx)."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from pydantic import ValidationError

from novactl._clock import FakeClock
from novactl._errors import NoDataError, ProbeError
from novactl.adapters._base import AdapterContext
from novactl.adapters._registry import create
from novactl.adapters.prometheus import PrometheusProbe
from novactl.core.observations import Observation, ObsStatus, ProbeQuery

URL = "http://prom.test:9090"
QUERY_URL = f"{URL}/api/v1/query"
TOKEN = "tok-3f9a-never-show"
PASSWORD = "pw-77c1-never-show"
ENV = {"PROM_TOKEN": TOKEN, "PROM_PASSWORD": PASSWORD}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def make_probe(clock: FakeClock, **config: Any) -> PrometheusProbe:
    context = AdapterContext(clock=clock, env=ENV)
    return PrometheusProbe("prom", PrometheusProbe.Config(url=URL, **config), context)


def vector(*values: str) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"pod": f"p{i}"}, "value": [1767225600.0, v]}
        for i, v in enumerate(values)]}}


def ask(probe: PrometheusProbe, clock: FakeClock, kind: str = "value",
        **parts: str) -> Observation:
    return probe.observe(ProbeQuery(metric="m", kind=kind, parts=parts, version="v2",
                                    role="canary", window=300, at=clock.now()))


def test_vector_with_one_sample(mock: respx.MockRouter, clock: FakeClock) -> None:
    route = mock.get(QUERY_URL).respond(json=vector("0.25"))
    probe = make_probe(clock)
    query = 'histogram_quantile(0.95, sum by (le) (rate(lat_bucket{version="v2"}[300s])))'
    obs = ask(probe, clock, value=query)
    assert obs.status is ObsStatus.OK and obs.value == 0.25
    request = route.calls.last.request
    assert request.url.params["query"] == query
    assert float(request.url.params["time"]) == clock.now()
    assert probe.instant("vector(1)") == 0.25
    assert "time" not in route.calls.last.request.url.params
    probe.close()


def test_ratio_from_two_queries(mock: respx.MockRouter, clock: FakeClock) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        errors = "errors" in request.url.params["query"]
        return httpx.Response(200, json=vector("12" if errors else "4000"))

    mock.get(QUERY_URL).mock(side_effect=answer)
    obs = ask(make_probe(clock), clock, kind="ratio", numerator="sum(increase(errors[5m]))",
              denominator="sum(increase(requests[5m]))")
    assert obs.status is ObsStatus.OK
    assert (obs.events, obs.trials, obs.value) == (12, 4000, 12 / 4000)


def test_scalar(mock: respx.MockRouter, clock: FakeClock) -> None:
    mock.get(QUERY_URL).respond(json={"status": "success", "data": {
        "resultType": "scalar", "result": [1767225600.0, "42"]}})
    assert ask(make_probe(clock), clock, value="scalar(x)").value == 42


def test_empty_vector_is_no_data(mock: respx.MockRouter, clock: FakeClock) -> None:
    mock.get(QUERY_URL).respond(json=vector())
    obs = ask(make_probe(clock), clock, value="sum(rate(nothing[5m]))")
    assert obs.status is ObsStatus.NO_DATA
    assert "no values found for sum(rate(nothing[5m]))" in obs.reason


@pytest.mark.parametrize("raw", ["NaN", "+Inf", "-Inf"])
def test_nan_and_inf_are_no_data(mock: respx.MockRouter, clock: FakeClock, raw: str) -> None:
    mock.get(QUERY_URL).respond(json=vector(raw))
    obs = ask(make_probe(clock), clock, value="x / y")
    assert obs.status is ObsStatus.NO_DATA
    with pytest.raises(NoDataError):
        make_probe(clock).instant("x / y")


def test_several_series_ask_for_aggregation(mock: respx.MockRouter, clock: FakeClock) -> None:
    mock.get(QUERY_URL).respond(json=vector("1", "2"))
    obs = ask(make_probe(clock), clock, value="rate(x[5m])")
    assert obs.status is ObsStatus.ERROR
    assert "query returned 2 series; aggregate it, e.g. sum(...)" in obs.reason


def test_matrix_is_an_error(mock: respx.MockRouter, clock: FakeClock) -> None:
    mock.get(QUERY_URL).respond(json={"status": "success", "data": {
        "resultType": "matrix", "result": []}})
    obs = ask(make_probe(clock), clock, value="x[5m]")
    assert obs.status is ObsStatus.ERROR and "range vector" in obs.reason


def test_status_error_carries_type_and_message(mock: respx.MockRouter, clock: FakeClock) -> None:
    route = mock.get(QUERY_URL).respond(400, json={
        "status": "error", "errorType": "bad_data",
        "error": 'invalid parameter "query": 1:6: parse error: unexpected end of input'})
    obs = ask(make_probe(clock, token_env="PROM_TOKEN"), clock, value="sum(x")
    assert obs.status is ObsStatus.ERROR
    assert "HTTP 400: bad_data: invalid parameter" in obs.reason
    assert route.call_count == 1  # 4xx is not retried
    assert TOKEN not in obs.reason


def test_status_error_in_a_200_answer(mock: respx.MockRouter, clock: FakeClock) -> None:
    mock.get(QUERY_URL).respond(json={"status": "error", "errorType": "execution",
                                      "error": "many-to-many matching not allowed"})
    with pytest.raises(ProbeError) as info:
        make_probe(clock).instant("a / b")
    assert "execution: many-to-many matching not allowed" in str(info.value)
    assert not isinstance(info.value, NoDataError)


def test_503_then_200_is_retried(mock: respx.MockRouter, clock: FakeClock) -> None:
    route = mock.get(QUERY_URL).mock(side_effect=[
        httpx.Response(503, json={"status": "error", "errorType": "unavailable",
                                  "error": "overloaded"}),
        httpx.Response(429),
        httpx.Response(200, json=vector("7")),
    ])
    start = clock.now()
    obs = ask(make_probe(clock), clock, value="sum(x)")
    assert obs.status is ObsStatus.OK and obs.value == 7
    assert route.call_count == 3
    assert clock.now() - start == pytest.approx(0.2 + 0.4)  # backoff on the fake clock


def test_transport_errors_are_retried(mock: respx.MockRouter, clock: FakeClock) -> None:
    route = mock.get(QUERY_URL).mock(side_effect=[httpx.ConnectError("refused"),
                                                  httpx.Response(200, json=vector("1"))])
    assert make_probe(clock).instant("up") == 1
    assert route.call_count == 2


def test_retries_exhausted_name_the_last_status(mock: respx.MockRouter,
                                                clock: FakeClock) -> None:
    route = mock.get(QUERY_URL).respond(502, text="bad gateway")
    probe = make_probe(clock, retries=2, token_env="PROM_TOKEN")
    obs = ask(probe, clock, value="sum(x)")
    assert obs.status is ObsStatus.ERROR
    assert route.call_count == 3
    assert "after 3 attempts: last status HTTP 502: bad gateway" in obs.reason
    assert TOKEN not in obs.reason and "\n" not in obs.reason

    mock.get(QUERY_URL).mock(side_effect=httpx.ConnectTimeout("timed out"))
    none = make_probe(clock, retries=0)
    with pytest.raises(ProbeError) as info:
        none.instant("up")
    assert "(no retries): last error ConnectTimeout: timed out" in str(info.value)


def test_400_is_not_retried(mock: respx.MockRouter, clock: FakeClock) -> None:
    route = mock.get(QUERY_URL).respond(400, text="nope")
    obs = ask(make_probe(clock), clock, value="x")
    assert obs.status is ObsStatus.ERROR and "HTTP 400: nope" in obs.reason
    assert route.call_count == 1


def test_bearer_token_from_env_is_sent_and_hidden(mock: respx.MockRouter,
                                                  clock: FakeClock) -> None:
    route = mock.get(QUERY_URL).respond(401, text="unauthorized")
    probe = make_probe(clock, token_env="PROM_TOKEN", headers={"X-Scope-OrgID": "team-a"})
    obs = ask(probe, clock, value="up")
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["X-Scope-OrgID"] == "team-a"
    assert obs.status is ObsStatus.ERROR
    for text in (obs.reason, repr(probe), repr(probe.config), str(obs.to_dict())):
        assert TOKEN not in text
    missing = PrometheusProbe("p", PrometheusProbe.Config(url=URL, token_env="UNSET"),
                              AdapterContext(clock=clock, env={}))
    gone = ask(missing, clock, value="up")
    assert gone.status is ObsStatus.ERROR and "UNSET is not set" in gone.reason
    probe.close()


def test_basic_auth(mock: respx.MockRouter, clock: FakeClock) -> None:
    route = mock.get(QUERY_URL).respond(json=vector("1"))
    probe = make_probe(clock, username="novactl", password_env="PROM_PASSWORD")
    assert probe.instant("up") == 1
    expected = base64.b64encode(f"novactl:{PASSWORD}".encode()).decode()
    assert route.calls.last.request.headers["Authorization"] == f"Basic {expected}"
    assert PASSWORD not in repr(probe) and PASSWORD not in repr(probe.config)


def test_config_validation() -> None:
    assert PrometheusProbe.Config(url="https://p.example/prometheus/").url == (
        "https://p.example/prometheus")
    assert PrometheusProbe.Config(url=URL, timeout="30s").timeout == 30.0
    for bad in ({"url": "prom:9090"}, {"url": URL, "retries": 11},
                {"url": URL, "username": "u"}, {"url": URL, "password_env": "P"},
                {"url": URL, "token_env": "T", "username": "u", "password_env": "P"},
                {"url": URL, "unknown": 1}):
        with pytest.raises(ValidationError):
            PrometheusProbe.Config(**bad)


def test_created_through_the_registry_with_a_path_prefix(mock: respx.MockRouter,
                                                         clock: FakeClock) -> None:
    route = mock.get("https://mimir.test/prometheus/api/v1/query").respond(json=vector("3"))
    probe = create("probe", "prometheus", "mimir", {"url": "https://mimir.test/prometheus"},
                   AdapterContext(clock=clock))
    assert isinstance(probe, PrometheusProbe)
    assert probe.instant("up") == 3
    assert route.called
    probe.close()


def test_missing_ca_file_is_an_error(clock: FakeClock, tmp_path: Any) -> None:
    probe = PrometheusProbe("p", PrometheusProbe.Config(url=URL, ca_file="nope.pem"),
                            AdapterContext(clock=clock, base_dir=tmp_path))
    obs = ask(probe, clock, value="up")
    assert obs.status is ObsStatus.ERROR and "cannot load ca_file" in obs.reason


def test_token_and_password_can_come_from_files(tmp_path) -> None:
    import respx
    from httpx import Response

    from novactl.adapters._base import AdapterContext
    from novactl.adapters.prometheus import PrometheusProbe

    (tmp_path / "token").write_text("tok-from-file\n")
    (tmp_path / "password").write_text("pw-from-file")
    context = AdapterContext(base_dir=tmp_path, env={})
    answer = {"status": "success", "data": {"resultType": "scalar", "result": [0, "1"]}}
    with respx.mock(base_url="http://prom.test") as mock:
        route = mock.get("/api/v1/query").mock(return_value=Response(200, json=answer))
        probe = PrometheusProbe("p", {"url": "http://prom.test", "token_file": "token"},
                                context)
        assert probe.instant("1") == 1.0
        assert route.calls[-1].request.headers["Authorization"] == "Bearer tok-from-file"
        basic = PrometheusProbe("p", {"url": "http://prom.test", "username": "u",
                                      "password_file": str(tmp_path / "password")}, context)
        assert basic.instant("1") == 1.0
        assert route.calls[-1].request.headers["Authorization"].startswith("Basic ")
    missing = PrometheusProbe("p", {"url": "http://prom.test", "token_file": "nope"}, context)
    from novactl._errors import AdapterError

    with pytest.raises(AdapterError) as info:
        missing.instant("1")
    assert "cannot read secret file" in str(info.value) and "tok-from-file" not in str(info.value)


def buckets_vector(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"le": le}, "value": [1767225600.0, v]} for le, v in pairs]}}


def test_histogram_buckets_by_le(mock: respx.MockRouter, clock: FakeClock) -> None:
    mock.get(QUERY_URL).respond(json=buckets_vector(
        ("0.1", "50"), ("0.25", "79.5"), ("0.5", "95"), ("+Inf", "100")))
    probe = make_probe(clock)
    obs = probe.observe(ProbeQuery(metric="m", kind="histogram",
                                   parts={"buckets": "sum by (le) (increase(x_bucket[5m]))"},
                                   version="v2", role="canary", window=300, at=clock.now(),
                                   quantile=0.9, scale=0.001))  # a histogram in ms
    assert obs.status is ObsStatus.OK and obs.samples == 100
    assert obs.buckets == ((0.0001, 50), (0.00025, 79.5), (0.0005, 95), (math.inf, 100))
    assert obs.value == pytest.approx(0.00025 + 0.00025 * (90 - 79.5) / (95 - 79.5))


@pytest.mark.parametrize(("answer", "message"), [
    (vector("3"), "one series per bucket, labelled le"),
    (buckets_vector(("0.1", "5"), ("0.1", "6"), ("+Inf", "7")), "several series for le=0.1"),
    (buckets_vector(("0.1", "5"), ("0.2", "7")), 'no le="+Inf" bucket'),
    ({"status": "success", "data": {"resultType": "scalar", "result": [0, "1"]}},
     "instant vector by le"),
])
def test_histogram_answers_that_are_not_buckets(mock: respx.MockRouter, clock: FakeClock,
                                                answer: dict[str, Any], message: str) -> None:
    mock.get(QUERY_URL).respond(json=answer)
    obs = make_probe(clock).observe(ProbeQuery(metric="m", kind="histogram",
                                               parts={"buckets": "x"}, version="v2",
                                               role="canary", window=300, at=clock.now()))
    assert obs.status is ObsStatus.ERROR and message in obs.reason


def test_empty_histogram_window_is_no_data(mock: respx.MockRouter, clock: FakeClock) -> None:
    mock.get(QUERY_URL).respond(json=buckets_vector(("0.1", "0"), ("+Inf", "0")))
    obs = make_probe(clock).observe(ProbeQuery(metric="m", kind="histogram",
                                               parts={"buckets": "x"}, version="v2",
                                               role="canary", window=300, at=clock.now()))
    assert obs.status is ObsStatus.NO_DATA
