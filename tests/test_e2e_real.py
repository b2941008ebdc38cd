"""End to end against real servers: nginx or HAProxy routes, Prometheus measures, novactl
decides.

One environment for the module: a stable (v2.9.0) and a canary (v3.0.0) sample service,
a real Prometheus scraping both every second, a real nginx in front of them driven by the
nginx traffic shifter (with steady load through it), and a real HAProxy in front of the
same services driven through its runtime API.  Each scenario writes its own compressed
plan and state directory and runs the real runner with the real adapters.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from _haproxy import HAProxy, running_haproxy
from _nginx import NginxServer
from _prometheus import PrometheusServer
from _servers import require_binary, wait_for

from novactl.adapters._base import AdapterContext
from novactl.adapters.nginx import NginxTrafficShifter
from novactl.cli._common import make_runner
from novactl.core.state import Phase
from novactl.plan import load_plan
from novactl.runner import PassResult, Runner
from novactl.sandbox.app import SampleApp
from novactl.sandbox.load import LoadGenerator
from novactl.store import LocalStore

pytestmark = pytest.mark.integration

PLAN = """\
apiVersion: novactl.dev/v1
kind: RolloutPlan
metadata: {{name: e2e}}
spec:
  versions: {{stable: v2.9.0, canary: v3.0.0}}
  traffic:
    type: nginx
    debug_header: {{name: X-Canary-Debug, value: "1"}}
    config:
      include_file: "{include}"
      name: novactl
      stable: ["{stable}"]
      canary: ["{canary}"]
      nginx: "{nginx}"
      args: {args}
      check_url: "{router}/-/novactl-weight"
    verify: {{url: "{router}/", version_header: X-Version, tolerance: 8}}
  workload: {{type: fake, config: {{world: "{world}"}}}}
  probes:
    prom: {{type: prometheus, config: {{url: "{prometheus}", timeout: 2s, retries: 0}}}}
  metrics:
    error_rate:
      probe: prom
      kind: ratio
      window: 5s
      min_samples: 10
      query:
        numerator: sum(increase({requests},code=~"5.."}}[{{{{window}}}}]))
        denominator: sum(increase({requests}}}[{{{{window}}}}]))
    p95_latency:
      probe: prom
      unit: s
      window: 5s
      min_samples: 10
      query:
        value: histogram_quantile(0.95, sum by (le) (increase({buckets}}}[{{{{window}}}}])))
        samples: sum(increase({count}}}[{{{{window}}}}]))
  defaults: {{interval: 1s}}
  every_stage:
    rollback:
      - {{name: error-rate-threshold, check: error_rate > 5% for 2s}}
  # thresholds the traffic can show within seconds: a rate decides on its 99% interval,
  # and "< 1%" with no error at all takes ~660 requests (~8 s at 80 req/s), "< 10%" ~60
  stages:
    - name: one
      weight: 10
      duration: 5s
      sustain: 3s
      criteria: {{mandatory: [error_rate < 10%, p95_latency < 250ms]}}
    - name: two
      weight: 50
      duration: 5s
      sustain: 3s
      criteria: {{mandatory: [error_rate < 2%, p95_latency < 250ms]}}
    - name: full
      weight: 100
      duration: 3s
      sustain: 2s
      criteria: {{mandatory: [error_rate < 1%]}}
  promotion: {{retire_after: 1s, rollback_window: 2s}}
"""


SERIES = '{}{{version="{{{{version}}}}"'  # a metric of the measured version, selector open


@dataclass
class Environment:
    stable: SampleApp
    canary: SampleApp
    prometheus: PrometheusServer
    nginx: NginxServer
    load: LoadGenerator
    haproxy: HAProxy

    @property
    def router(self) -> str:
        return f"http://{self.nginx.host}:{self.nginx.port}"

    def reset(self) -> None:
        """Back to a clean start: no faults, 0% to the canary, and no canary errors left
        inside the metrics' 5-second window (Prometheus remembers the last scenario)."""
        self.canary.set_fault(errors=0.0, latency=0.0)
        if not self.prometheus.running:
            self.prometheus.start()
        assert self.nginx.shifter is not None
        self.nginx.shifter.set_weight(0.0)
        query = 'sum(increase(http_requests_total{version="v3.0.0",code=~"5.."}[5s]))'

        def clean() -> bool:
            result = self.prometheus.query(query).get("result", [])
            return not result or float(result[0]["value"][1]) == 0.0

        wait_for(clean, timeout=20, interval=0.5, what="no canary errors in the last 5s")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Environment]:
    for binary in ("nginx", "prometheus", "haproxy"):
        require_binary(binary)
    base = tmp_path_factory.mktemp("e2e")
    stable = SampleApp("v2.9.0", "stable", base_latency=(0.001, 0.005), seed=1).start()
    canary = SampleApp("v3.0.0", "canary", base_latency=(0.001, 0.005), seed=2).start()
    prometheus = PrometheusServer([stable.url, canary.url], base / "prometheus")
    nginx = NginxServer(base / "nginx", base / "nginx" / "novactl-split.conf")
    load: LoadGenerator | None = None
    stack = ExitStack()
    try:
        shifter = NginxTrafficShifter("traffic", NginxTrafficShifter.Config.model_validate(
            nginx.shifter_config(stable=[_hostport(stable)], canary=[_hostport(canary)])),
            AdapterContext())
        shifter.write_file(0.0)
        nginx.shifter = shifter
        nginx.start()
        prometheus.start()
        load = LoadGenerator(f"http://{nginx.host}:{nginx.port}/", 80, concurrency=8,
                             timeout=2.0).start()
        prometheus.wait_for_samples('sum(http_requests_total{version="v2.9.0"})')
        haproxy = stack.enter_context(running_haproxy(
            base / "haproxy", int(_hostport(stable).rsplit(":", 1)[1]),
            int(_hostport(canary).rsplit(":", 1)[1])))
        yield Environment(stable, canary, prometheus, nginx, load, haproxy)
    finally:
        stack.close()
        if load is not None:
            load.stop(timeout=5)
        nginx.stop()
        prometheus.stop()
        stable.stop()
        canary.stop()


def _hostport(app: SampleApp) -> str:
    return app.url.removeprefix("http://").rstrip("/")


@pytest.fixture
def rollout(env: Environment, tmp_path: Path) -> Callable[[], Runner]:
    """A fresh plan and state directory for one scenario, against the shared servers."""
    env.reset()

    def make() -> Runner:
        text = PLAN.format(requests=SERIES.format("http_requests_total"),
                           buckets=SERIES.format("http_request_duration_seconds_bucket"),
                           count=SERIES.format("http_request_duration_seconds_count"),
                           include=env.nginx.include_file, stable=_hostport(env.stable),
                           canary=_hostport(env.canary), nginx=env.nginx.binary,
                           args=json.dumps(env.nginx.args), router=env.router,
                           world=tmp_path / "world.json", prometheus=env.prometheus.url)
        path = tmp_path / "plan.yaml"
        path.write_text(text)
        plan = load_plan(path)
        return make_runner(plan, LocalStore(tmp_path / "state"), by="e2e")

    return make


def run_until(runner: Runner, done: Callable[[PassResult], bool], timeout: float) -> PassResult:
    deadline = time.monotonic() + timeout
    result = runner.run(poll=0.25, until=lambda r: done(r) or time.monotonic() > deadline)
    assert done(result), (f"not reached within {timeout:g}s: phase {result.state.phase.value}, "
                          f"step {result.state.step}, waiting: "
                          f"{result.wait.reason if result.wait else None}")
    return result


def baking(index: int) -> Callable[[PassResult], bool]:
    return lambda r: (r.state.phase is Phase.STAGE and r.state.stage_index == index
                      and r.state.step == "bake")


def verify_split(cli, plan: Path, expected: float) -> dict:
    # after a rollback or promotion the debug route may lead to a retired or broken
    # canary: only probe it while the canary is meant to serve
    probes = 20 if expected > 0 else 0
    code, out, err = cli("verify-split", plan, "--expected-canary-percent", expected,
                         "--requests", 300, "--tolerance", 8, "--header-probes", probes,
                         "--output", "json")
    result = json.loads(out)
    assert code == 0, (expected, result, err)
    return result


def test_healthy_canary_is_promoted_and_every_split_verified(env, rollout, cli, tmp_path):
    runner = rollout()
    plan = tmp_path / "plan.yaml"
    shares = {}
    for index, weight in ((0, 10), (1, 50), (2, 100)):
        run_until(runner, baking(index), timeout=40)
        shares[weight] = verify_split(cli, plan, weight)["canary_share"]
    result = run_until(runner, lambda r: r.state.phase.terminal, timeout=60)
    assert result.state.phase is Phase.COMPLETED
    assert [r.outcome for r in result.state.stages] == ["passed"] * 3
    assert abs(shares[10] - 0.10) < 0.08 and abs(shares[50] - 0.50) < 0.08
    assert shares[100] == 1.0
    # promotion moved all traffic to the stable backend group (weight 0 in nginx)
    assert verify_split(cli, plan, 0)["canary_share"] == 0.0
    # every decision was made on real measurements: no stage passed on missing data
    audit = [json.loads(line) for line in
             (tmp_path / "state" / "audit.jsonl").read_text().splitlines() if line.strip()]
    assert any(e["action"] == "stage.passed" for e in audit)


def test_canary_failing_mid_stage_rolls_back_naming_the_trigger(env, rollout, cli, tmp_path):
    runner = rollout()
    run_until(runner, baking(1), timeout=40)
    env.canary.set_fault(errors=0.5)  # the canary breaks in the middle of stage two
    result = run_until(runner, lambda r: r.state.phase.terminal, timeout=40)
    state = result.state
    assert state.phase is Phase.ROLLED_BACK
    assert state.rollback.reason.startswith("trigger error-rate-threshold:")
    assert state.rollback.stage == "two"
    split = verify_split(cli, tmp_path / "plan.yaml", 0)
    assert split["counts"]["canary"] == 0 and split["canary_share"] == 0.0
    assert env.nginx.weight_served() == "0"


def test_prometheus_down_holds_the_rollout_then_it_continues(env, rollout, tmp_path):
    runner = rollout()
    run_until(runner, baking(1), timeout=40)
    env.prometheus.stop()
    stop_at = time.monotonic() + 10  # longer than the stage's 5 s
    held = runner.run(poll=0.25, until=lambda r: time.monotonic() > stop_at)
    state = held.state
    assert state.phase is Phase.STAGE and state.stage_index == 1, "advanced without data"
    problems = [r.get("problem", "") for r in state.last_results.values()]
    assert problems and all("probe error" in p for p in problems), problems
    assert "not holding" in held.wait.reason and "probe error" in held.wait.reason
    env.prometheus.start()
    result = run_until(runner, lambda r: r.state.phase.terminal, timeout=90)
    assert result.state.phase is Phase.COMPLETED


def test_nginx_config_test_failure_keeps_the_old_config_and_the_state(env, rollout, tmp_path):
    runner = rollout()
    run_until(runner, baking(0), timeout=40)
    conf = env.nginx.conf
    good = conf.read_text()
    conf.write_text(good + "\nthis is not nginx syntax;\n")  # someone broke nginx.conf
    try:
        stop_at = time.monotonic() + 12
        held = runner.run(poll=0.25, until=lambda r: time.monotonic() > stop_at)
        state = held.state
        # the stage's gates passed, but the shift to 50% could not be applied
        assert state.stage_index == 1 and state.step == "shift"
        assert state.weight_actual == 10.0 and state.weight_desired == 10.0
        assert "nginx -t failed" in state.step_error
        assert env.nginx.weight_served() == "10"  # the old config is what nginx serves
        audit = (tmp_path / "state" / "audit.jsonl").read_text()
        assert '"action":"failed.set_weight"' in audit and "nginx -t failed" in audit
    finally:
        conf.write_text(good)
    result = run_until(runner, lambda r: r.state.phase.terminal, timeout=60)
    assert result.state.phase is Phase.COMPLETED


HAPROXY_TRAFFIC = """\
  traffic:
    type: haproxy
    debug_header: {{name: X-Canary-Debug, value: "1"}}
    config:
      socket: "{socket}"
      backend: app
      stable: [stable]
      canary: [canary]
      debug_map: "{debug_map}"
      canary_backend: canary_only
"""


@pytest.fixture
def haproxy_rollout(env: Environment, rollout, tmp_path: Path) -> Iterator[Callable[[], Runner]]:
    """The same compressed plan, with HAProxy's runtime API as the traffic shifter and load
    through HAProxy."""
    env.haproxy.runtime("set weight app/canary 0")
    env.haproxy.runtime("set weight app/stable 100")
    load = LoadGenerator(f"http://127.0.0.1:{env.haproxy.port}/", 60, concurrency=6,
                         timeout=2.0).start()

    def make() -> Runner:
        rollout()  # writes plan.yaml for nginx; swap the traffic section
        path = tmp_path / "plan.yaml"
        text = path.read_text()
        start = text.index("  traffic:")
        end = text.index("  workload:")
        traffic = HAPROXY_TRAFFIC.format(socket=env.haproxy.socket,
                                         debug_map=env.haproxy.debug_map)
        path.write_text(text[:start] + traffic + text[end:])
        return make_runner(load_plan(path), LocalStore(tmp_path / "state"), by="e2e")

    try:
        yield make
    finally:
        load.stop(timeout=5)


def haproxy_share(env: Environment, requests: int = 200) -> float:
    seen = env.haproxy.versions(requests)
    return seen.get("v3.0.0", 0) / max(1, sum(seen.values()))


def test_haproxy_healthy_canary_is_promoted(env, haproxy_rollout):
    runner = haproxy_rollout()
    for index, weight in ((0, 10), (1, 50), (2, 100)):
        run_until(runner, baking(index), timeout=40)
        assert abs(haproxy_share(env) - weight / 100) < 0.08
        assert env.haproxy.versions(20, {"X-Canary-Debug": "1"}) == {"v3.0.0": 20}
    result = run_until(runner, lambda r: r.state.phase.terminal, timeout=60)
    assert result.state.phase is Phase.COMPLETED
    assert haproxy_share(env) == 0.0  # promoted: all traffic on the stable servers
    assert env.haproxy.runtime("get weight app/canary").startswith("0 ")


def test_haproxy_canary_failing_rolls_back(env, haproxy_rollout):
    runner = haproxy_rollout()
    run_until(runner, baking(1), timeout=40)
    env.canary.set_fault(errors=0.5)
    result = run_until(runner, lambda r: r.state.phase.terminal, timeout=40)
    assert result.state.phase is Phase.ROLLED_BACK
    assert result.state.rollback.reason.startswith("trigger error-rate-threshold:")
    assert haproxy_share(env) == 0.0
