"""Regressions for the third review's adapter and verify-split defects.

1. verify-split passed when almost every request failed;
2. a bearer token from token_env (trailing newline, control characters) leaked into messages;
3. verify-split printed a password embedded in the URL;
4. spec.traffic.verify.requests was ignored;
5. a malformed URL escaped as a raw httpx.InvalidURL (verify-split, nginx check_url, probes);
6. http-json: a JSON integer beyond the float range raised OverflowError out of observe;
7. http-json showed the query string (an API key) in two error messages.

Servers are http.server instances on 127.0.0.1 in a thread, always stopped.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from _servers import serve_http
from pydantic import ValidationError

from novactl._clock import FakeClock
from novactl._errors import TrafficError
from novactl.adapters._base import AdapterContext
from novactl.adapters.http_json import HttpJsonProbe, extract, parse_path
from novactl.adapters.nginx import NginxTrafficShifter
from novactl.adapters.prometheus import PrometheusProbe
from novactl.cli.verify_split import measure
from novactl.core.observations import Observation, ObsStatus, ProbeQuery
from novactl.core.stats import requests_for_tolerance

SECRET = "SECRET-4b1d-never-show"
VECTOR = {"status": "success", "data": {"resultType": "vector", "result": [
    {"metric": {}, "value": [1767225600.0, "1"]}]}}
HUGE = b'{"v": 1' + b"0" * 400 + b"}"  # a valid JSON integer far beyond 1e308


@dataclass
class Server:
    """Prometheus-like /api/v1/query, JSON bodies, and /split for verify-split.

    ``/split``: the first ``failing`` requests without the debug header get 503, the others
    alternate v1/v2 (so the canary share is exactly 50%).
    """

    url: str = ""
    failing: int = 0
    served: int = 0
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self, failing: int = 0) -> None:
        with self.lock:
            self.failing, self.served = failing, 0
            self.seen.clear()

    def answer(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        route = path.split("?", 1)[0]
        with self.lock:
            self.seen.append((path, headers))
            index = self.served
            if route == "/split":
                self.served += 1
        if route == "/split":
            if index < self.failing:
                return 503, {}, b""
            return 200, {"X-Version": "v2" if index % 2 else "v1"}, b""
        if route == "/api/v1/query":
            return 200, {}, json.dumps(VECTOR).encode()
        if route == "/big":
            return 200, {}, HUGE
        if route == "/ok":
            return 200, {}, b'{"v": 3}'
        return 404, {}, b'{"error": "no route"}'


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            status, headers, body = state.answer(self.path, dict(self.headers))
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serve_http(Handler) as url:
        state.url = url
        yield state


def query(text: str) -> ProbeQuery:
    return ProbeQuery(metric="m", kind="value", parts={"value": text}, version="v2",
                      role="canary", window=60, at=0)


def context(env: dict[str, str] | None = None) -> AdapterContext:
    return AdapterContext(clock=FakeClock(), env=env or {})


def observe(probe: PrometheusProbe | HttpJsonProbe, text: str) -> Observation:
    try:
        return probe.observe(query(text))
    finally:
        probe.close()


PLAN = """\
apiVersion: novactl.dev/v1
kind: RolloutPlan
metadata: {{name: review-fixes}}
spec:
  service: sample
  versions: {{stable: v1, canary: v2}}
  traffic:
    type: fake
    verify: {{url: "{url}", version_header: X-Version{extra}}}
  workload: {{type: fake}}
  probes:
    p: {{type: fake}}
  metrics:
    m: {{probe: p, query: x}}
  stages:
    - {{name: s1, weight: 10, duration: 1m}}
"""


def write_plan(directory: Path, url: str, extra: str = "", name: str = "plan.yaml") -> Path:
    path = directory / name
    path.write_text(PLAN.format(url=url, extra=extra))
    return path


# ------------------------------------------------------- 1. verify-split with failures


def test_verify_split_mostly_failing_is_inconclusive(cli, server: Server,
                                                     tmp_path: Path) -> None:
    server.reset(failing=398)  # 2 of 400 answered: the interval is wide enough to "pass"
    plan = write_plan(tmp_path, f"{server.url}/split")
    code, out, err = cli("verify-split", plan, "--expected-canary-percent", "50",
                         "--tolerance", "10", "--requests", "400", "--header-probes", "0",
                         "--output", "json")
    result = json.loads(out)
    assert result["counts"] == {"canary": 1, "stable": 1, "other": 0, "error": 398}
    assert (result["verdict"], code) == ("inconclusive", 6), err
    server.reset(failing=398)
    code, _out, err = cli("verify-split", plan, "--expected-canary-percent", "50",
                          "--tolerance", "10", "--requests", "400", "--header-probes", "0")
    assert code == 6
    assert "inconclusive: 398 of 400 requests failed" in err, err


def test_verify_split_failure_threshold_is_five_percent(server: Server) -> None:
    url = f"{server.url}/split"

    def run(failing: int) -> dict[str, Any]:
        server.reset(failing=failing)
        return measure(url, 400, 8, "X-Version", "v2", "v1", 50.0, 10.0, None, 0)

    over = run(21)  # 21 > 5% of 400
    assert over["counts"]["error"] == 21
    assert (over["verdict"], over["exit_code"]) == ("inconclusive", 6)
    at = run(20)  # exactly 5%: still judged
    assert (at["verdict"], at["exit_code"]) == ("pass", 0)


# ------------------------------------------------------- 2. bearer tokens from the environment


def test_env_token_with_trailing_newline_is_stripped(server: Server) -> None:
    probe = PrometheusProbe("prom", {"url": server.url, "token_env": "TOK", "retries": 0},
                            context({"TOK": f"{SECRET}\n"}))
    obs = observe(probe, "up")
    assert obs.status is ObsStatus.OK, obs.reason
    assert SECRET not in obs.reason
    assert server.seen[-1][1]["Authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize("token", [f"abc\n{SECRET}", f"abc\x01{SECRET}", f"tök{SECRET}",
                                   f"abc {SECRET}"],
                         ids=["newline", "control", "non-ascii", "space"])
def test_bad_env_token_is_refused_naming_only_the_variable(server: Server,
                                                           token: str) -> None:
    probe = PrometheusProbe("prom", {"url": server.url, "token_env": "PROM_TOKEN",
                                     "retries": 0}, context({"PROM_TOKEN": token}))
    obs = observe(probe, "up")
    assert obs.status is ObsStatus.ERROR, obs
    assert "the token in PROM_TOKEN holds characters a bearer token cannot" in obs.reason
    assert SECRET not in obs.reason and "abc" not in obs.reason
    assert server.seen == []  # nothing was sent


def test_env_password_with_trailing_newline_is_stripped(server: Server) -> None:
    probe = PrometheusProbe("prom", {"url": server.url, "username": "ops",
                                     "password_env": "PW", "retries": 0},
                            context({"PW": f"{SECRET}\r\n"}))
    obs = observe(probe, "up")
    assert obs.status is ObsStatus.OK, obs.reason
    expected = base64.b64encode(f"ops:{SECRET}".encode()).decode()
    assert server.seen[-1][1]["Authorization"] == f"Basic {expected}"


@pytest.mark.parametrize("error", [httpx.LocalProtocolError, httpx.UnsupportedProtocol])
def test_malformed_request_is_permanent_and_its_text_never_shown(
        error: type[httpx.TransportError]) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get("http://prom.test:9090/api/v1/query").mock(
            side_effect=error(f"Illegal header value b'Bearer {SECRET}\\n'"))
        probe = PrometheusProbe("prom", {"url": "http://prom.test:9090", "retries": 3},
                                context())
        obs = observe(probe, "up")
    assert obs.status is ObsStatus.ERROR
    assert SECRET not in obs.reason and "Illegal header" not in obs.reason
    assert f"failed: {error.__name__} (the URL, a header or the credentials are malformed)" \
        in obs.reason, obs.reason
    assert route.call_count == 1  # not retried


# ------------------------------------------------------- 3. a password in the verify URL


def test_verify_split_never_prints_a_url_password(cli, server: Server, tmp_path: Path) -> None:
    plan = write_plan(tmp_path, f"{server.url}/split")
    port = server.url.rsplit(":", 1)[1]
    url = f"http://ops:{SECRET}@127.0.0.1:{port}/split"
    for output in ("text", "json"):
        server.reset()
        code, out, err = cli("verify-split", plan, "--url", url, "--expected-canary-percent",
                             "50", "--tolerance", "10", "--requests", "100",
                             "--header-probes", "0", "--output", output)
        assert code == 0, err
        assert SECRET not in out + err, out + err
        assert f"127.0.0.1:{port}/split" in out
    assert json.loads(out)["url"] == f"http://127.0.0.1:{port}/split"


# ------------------------------------------------------- 4. spec.traffic.verify.requests


def test_verify_split_uses_the_plan_request_count(cli, server: Server, tmp_path: Path) -> None:
    split = f"{server.url}/split"
    args = ("--expected-canary-percent", "50", "--tolerance", "10", "--header-probes", "0",
            "--output", "json")
    server.reset()
    code, out, err = cli("verify-split", write_plan(tmp_path, split, ", requests: 123"), *args)
    assert code == 0, err
    result = json.loads(out)
    assert result["requests"] == 123
    assert sum(result["counts"].values()) == 123 == len(server.seen)
    # --requests still wins over the plan
    server.reset()
    code, out, err = cli("verify-split", write_plan(tmp_path, split, ", requests: 123"),
                         *args, "--requests", "150")
    assert (code, json.loads(out)["requests"]) == (0, 150), err
    # without spec.traffic.verify.requests: as many as the tolerance needs
    server.reset()
    code, out, err = cli("verify-split", write_plan(tmp_path, split, name="plain.yaml"), *args)
    assert (code, json.loads(out)["requests"]) == (0, requests_for_tolerance(0.5, 0.1)), err


# ------------------------------------------------------- 5. malformed URLs


def test_verify_split_malformed_url_is_an_input_error(cli, tmp_path: Path) -> None:
    plan = write_plan(tmp_path, "http://127.0.0.1:9/")
    code, out, err = cli("verify-split", plan, "--url", "http://127.0.0.1:abc/",
                         "--expected-canary-percent", "10", "--requests", "5",
                         "--header-probes", "0")
    assert code == 2, (out, err)
    assert "http://127.0.0.1:abc/" in err and "Invalid port" in err, err
    assert "Traceback" not in err
    code, _out, err = cli("verify-split", write_plan(tmp_path, "http://127.0.0.1:abc/",
                                                     name="bad.yaml"),
                          "--expected-canary-percent", "10", "--requests", "5",
                          "--header-probes", "0")
    assert code == 2 and "Invalid port" in err, err


def test_nginx_check_url_is_validated(tmp_path: Path) -> None:
    base = {"include_file": str(tmp_path / "split.conf"), "stable": ["127.0.0.1:8081"],
            "canary": ["127.0.0.1:8082"], "nginx": "/bin/true"}
    with pytest.raises(ValidationError, match=r"invalid url .*Invalid port"):
        NginxTrafficShifter.Config.model_validate(
            {**base, "check_url": "http://127.0.0.1:abc/-/novactl-weight"})
    with pytest.raises(ValidationError, match="must start with http"):
        NginxTrafficShifter.Config.model_validate({**base, "check_url": "127.0.0.1/w"})
    good = NginxTrafficShifter.Config.model_validate(
        {**base, "check_url": "http://127.0.0.1:9/-/novactl-weight/"})
    assert good.check_url == "http://127.0.0.1:9/-/novactl-weight"


def test_nginx_check_url_invalid_at_runtime_is_a_traffic_error(tmp_path: Path) -> None:
    cfg = NginxTrafficShifter.Config.model_validate({
        "include_file": str(tmp_path / "split.conf"), "stable": ["127.0.0.1:8081"],
        "canary": ["127.0.0.1:8082"], "nginx": "/bin/true"})
    # a config built without validation (model_copy): the request itself must not escape
    cfg = cfg.model_copy(update={"check_url": "http://127.0.0.1:abc/-/novactl-weight"})
    shifter = NginxTrafficShifter("traffic", cfg)
    shifter.write_file(0)
    with pytest.raises(TrafficError, match=r"cannot read the served weight .*InvalidURL"):
        shifter.get_weight()


@pytest.mark.parametrize("url", ["http://127.0.0.1:abc", "http://[::1", "http://",
                                 "http://exa\u00e9mple..com"])
def test_probe_urls_are_validated(url: str) -> None:
    with pytest.raises(ValidationError, match="invalid url"):
        PrometheusProbe("prom", {"url": url}, context())
    with pytest.raises(ValidationError, match="invalid url"):
        HttpJsonProbe("j", {"base_url": url}, context())


def test_probe_url_validation_in_the_plan(tmp_path: Path) -> None:
    from conftest import run_novactl

    plan = write_plan(tmp_path, "http://127.0.0.1:9/")
    plan.write_text(plan.read_text().replace(
        "p: {type: fake}", 'p: {type: prometheus, config: {url: "http://127.0.0.1:abc"}}'))
    done = run_novactl("validate", plan, timeout=30)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "spec.probes.p.config.url: invalid url" in done.stderr


@pytest.mark.parametrize("text", ["http://host:port/x | v", "http://[::1/x | v"])
@pytest.mark.parametrize("with_base", [True, False])
def test_http_json_malformed_query_url_is_an_error_observation(
        server: Server, text: str, with_base: bool) -> None:
    config = {"base_url": server.url} if with_base else {}
    obs = observe(HttpJsonProbe("j", {**config, "retries": 0}, context()), text)
    assert obs.status is ObsStatus.ERROR
    assert "Invalid" in obs.reason or "InvalidURL" in obs.reason, obs.reason
    assert server.seen == []


# ------------------------------------------------------- 6. huge JSON integers


def test_http_json_huge_integer_is_not_an_overflow(server: Server) -> None:
    with pytest.raises(ValueError, match="too large a number"):
        extract(json.loads(HUGE), parse_path("v"))
    obs = observe(HttpJsonProbe("j", {"base_url": server.url, "retries": 0}, context()),
                  "/big | v")
    assert obs.status in (ObsStatus.ERROR, ObsStatus.NO_DATA)
    assert "$.v is too large a number" in obs.reason, obs.reason
    ok = observe(HttpJsonProbe("j", {"base_url": server.url, "retries": 0}, context()),
                 "/ok | v")
    assert (ok.status, ok.value) == (ObsStatus.OK, 3.0)


# ------------------------------------------------------- 7. query strings in messages


def test_http_json_relative_url_without_base_hides_the_query_string() -> None:
    obs = observe(HttpJsonProbe("j", {}, context()), f"/v1/nps?api_key={SECRET} | score")
    assert obs.status is ObsStatus.ERROR
    assert "is a relative URL but the probe has no base_url" in obs.reason
    assert SECRET not in obs.reason and "api_key" not in obs.reason, obs.reason
    assert "/v1/nps" in obs.reason


def test_http_json_url_with_spaces_hides_the_query_string(server: Server) -> None:
    obs = observe(HttpJsonProbe("j", {"base_url": server.url}, context()),
                  f"/v1/nps?api_key={SECRET} x | score")
    assert obs.status is ObsStatus.ERROR
    assert "contains spaces" in obs.reason
    assert SECRET not in obs.reason and "api_key" not in obs.reason, obs.reason
    assert "'/v1/nps'" in obs.reason
    assert server.seen == []
