"""`novactl probe` against a real Prometheus scraping a stable and a canary SampleApp."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _prometheus import PrometheusServer, SampleFleet
from _servers import free_port, require_binary

STABLE, CANARY = "v2.9.0", "v3.0.0"

PLAN = """\
apiVersion: novactl.dev/v1
kind: RolloutPlan
metadata: {name: probe-plan}
spec:
  service: sample
  versions: {stable: @STABLE@, canary: @CANARY@}
  variables:
    prometheus: http://127.0.0.1:1        # --var prometheus=... in the tests
    job: sample
  traffic: {type: fake, config: {world: "@WORLD@"}}
  workload: {type: fake, config: {world: "@WORLD@"}}
  probes:
    prom:
      type: prometheus
      config: {url: "{{prometheus}}", timeout: 5s, retries: 1}
  defaults: {interval: 10s}
  metrics:
    error_rate:
      probe: prom
      kind: ratio
      query:
        numerator: >-
          sum(increase(http_requests_total{version="{{version}}",code=~"5.."}[{{window}}]))
        denominator: sum(increase(http_requests_total{version="{{version}}"}[{{window}}]))
    p95_latency:
      probe: prom
      unit: s
      query:
        value: >-
          histogram_quantile(0.95, sum by (le) (increase(
          http_request_duration_seconds_bucket{version="{{version}}"}[{{window}}])))
        samples: >-
          sum(increase(http_request_duration_seconds_count{version="{{version}}"}[{{window}}]))
    peak_rps:
      probe: prom
      query: >-
        range(reduce=max, step=1s): sum(rate(http_requests_total{version="{{version}}"}[3s]))
    requests:
      probe: prom
      kind: count
      scope: global
      query: sum(increase(http_requests_total{job="{{job}}"}[{{window}}]))
    not_found:
      probe: prom
      kind: count
      query: sum(increase(http_requests_total{version="{{version}}",code="404"}[{{window}}]))
    broken:
      probe: prom
      query: sum(rat(http_requests_total{version="{{version}}"}[{{window}}]))
  stages:
    - name: one
      weight: 10
      duration: 1m
      interval: 8s
      criteria: {mandatory: [error_rate < 50%, p95_latency < 1s]}
      rollback: [requests > 1000000]
    - name: two
      weight: 50
      duration: 1m
      criteria: {mandatory: [error_rate < 50%]}
"""


def write_plan(directory: Path) -> Path:
    path = directory / "plan.yaml"
    path.write_text(PLAN.replace("@STABLE@", STABLE).replace("@CANARY@", CANARY)
                    .replace("@WORLD@", str(directory / "world.json")))
    return path


@pytest.fixture
def probe_cli(cli) -> Callable[..., tuple[int, str, str]]:
    """`novactl probe ...` in-process, through `novactl.cli.main`."""

    def run(*args: object) -> tuple[int, str, str]:
        return cli("probe", *args)

    return run


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    require_binary("prometheus")
    with SampleFleet(STABLE, CANARY, canary_errors=0.2) as fleet:
        server = PrometheusServer(fleet.targets, tmp_path_factory.mktemp("prometheus"))
        with server:
            server.wait_for_samples("sum by (version) (increase(http_requests_total[8s]))",
                                    timeout=25, series=2)
            server.wait_for_samples('sum(increase(http_requests_total{code="500"}[8s])) > 0',
                                    timeout=10)
            server.wait_for_samples('count_over_time(http_requests_total{code="200"}[8s]) >= 3',
                                    timeout=10, series=2)
            yield server


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    return write_plan(tmp_path)


@pytest.mark.integration
def test_canary_and_stable_side_by_side(probe_cli, prometheus: PrometheusServer,
                                        plan: Path) -> None:
    code, out, err = probe_cli(plan, "error_rate", "p95_latency", "peak_rps", "requests",
                               "--var", f"prometheus={prometheus.url}", "--window", "8s")
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0] == f"probe-plan: canary {CANARY} vs stable {STABLE}"
    header = lines[1].split()
    assert header[:3] == ["metric", "kind", "window"] and "status" in header
    assert f"canary {CANARY}" in lines[1] and f"stable {STABLE}" in lines[1]
    rows = {line.split()[0]: line for line in lines[2:6]}
    assert set(rows) == {"error_rate", "p95_latency", "peak_rps", "requests"}
    error_rate = rows["error_rate"].split()
    assert error_rate[1:3] == ["ratio", "8s"] and error_rate[-1] == "ok"
    assert error_rate[3].endswith("%") and error_rate[3] != "0%"  # the canary's 500s
    assert error_rate[4].count("/") == 1  # errors/requests
    assert error_rate[5] == "0%" and error_rate[6].startswith("0/")  # stable: none
    assert "ms" in rows["p95_latency"]
    assert "count, global" in rows["requests"] and "(global)" in rows["requests"]
    assert lines[-1] == "7 queries: 7 ok, 0 no data, 0 failed"
    assert err == ""


@pytest.mark.integration
def test_json_output(probe_cli, prometheus: PrometheusServer, plan: Path) -> None:
    code, out, err = probe_cli(plan, "error_rate", "peak_rps", "requests", "not_found",
                               "--var", f"prometheus={prometheus.url}", "-o", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["plan"] == "probe-plan" and data["stage"] is None
    assert data["versions"] == {"canary": CANARY, "stable": STABLE}
    assert data["summary"] == {"queries": 7, "ok": 5, "no_data": 2, "error": 0}
    assert data["exit_code"] == 0
    metrics = {m["metric"]: m for m in data["metrics"]}
    error_rate = metrics["error_rate"]
    assert error_rate["window"] == 10.0  # spec.defaults.interval
    canary, stable = error_rate["results"]["canary"], error_rate["results"]["stable"]
    assert canary["status"] == "ok" and canary["events"] > 0 and canary["trials"] > 50
    assert canary["version"] == CANARY and canary["role"] == "canary"
    assert stable["status"] == "ok" and stable["events"] == 0 and stable["value"] == 0
    assert stable["shown"] == "0%"
    assert stable["queries"]["numerator"] == (
        f'sum(increase(http_requests_total{{version="{STABLE}",code=~"5.."}}[10s]))')
    assert metrics["requests"]["results"]["global"]["queries"]["value"] == (
        'sum(increase(http_requests_total{job="sample"}[10s]))')
    assert metrics["peak_rps"]["results"]["canary"]["value"] > 0
    assert metrics["peak_rps"]["results"]["canary"]["queries"]["value"].startswith(
        "range(reduce=max, step=1s): ")
    assert list(metrics["requests"]["results"]) == ["global"]
    assert metrics["requests"]["results"]["global"]["value"] > 0
    not_found = metrics["not_found"]["results"]["canary"]
    assert not_found["status"] == "no_data" and "no values found" in not_found["reason"]
    assert "warning: no data for not_found" in err


@pytest.mark.integration
def test_a_broken_query_shows_its_error(probe_cli, prometheus: PrometheusServer,
                                        plan: Path) -> None:
    code, out, err = probe_cli(plan, "broken", "error_rate", "--verbose",
                               "--var", f"prometheus={prometheus.url}")
    assert code == 6, out + err
    broken = next(line for line in out.splitlines() if line.startswith("broken "))
    # the same failure on both sides is shown once
    assert "canary, stable: error: PrometheusProbe(prom): query to" in broken
    assert "HTTP 400: bad_data:" in broken and "unknown function" in broken
    assert broken.count("bad_data") == 1
    assert "queries" in out  # --verbose: the rendered queries
    assert f'sum(rat(http_requests_total{{version="{CANARY}"}}[10s]))' in out
    assert "4 queries: 2 ok, 0 no data, 2 failed" in out


@pytest.mark.integration
def test_stage_selects_its_metrics_and_window(probe_cli, prometheus: PrometheusServer,
                                              plan: Path) -> None:
    code, out, err = probe_cli(plan, "--stage", "one", "-o", "json",
                               "--var", f"prometheus={prometheus.url}")
    assert code == 0, err
    data = json.loads(out)
    assert data["stage"] == "one"
    assert [m["metric"] for m in data["metrics"]] == ["error_rate", "p95_latency", "requests"]
    assert {m["window"] for m in data["metrics"]} == {8.0}  # the stage's interval
    assert data["summary"]["error"] == 0


def test_bad_input(probe_cli, plan: Path) -> None:
    code, _, err = probe_cli(plan, "eror_rate")
    assert code == 2 and "unknown metric 'eror_rate' (did you mean 'error_rate'?)" in err
    code, _, err = probe_cli(plan, "--stage", "three")
    assert code == 2 and "unknown stage 'three'" in err and "stages: one, two" in err
    code, _, err = probe_cli(plan, "--window", "soon")
    assert code == 2 and "--window: invalid duration" in err


def test_unreachable_prometheus_is_exit_6(probe_cli, plan: Path) -> None:
    code, out, err = probe_cli(plan, "requests", "-o", "json",
                               "--var", f"prometheus=http://127.0.0.1:{free_port()}")
    assert code == 6
    data = json.loads(out)
    result = data["metrics"][0]["results"]["global"]
    assert result["status"] == "error"
    assert "failed after 2 attempts: last error ConnectError" in result["reason"]
    assert data["exit_code"] == 6 and err == ""
