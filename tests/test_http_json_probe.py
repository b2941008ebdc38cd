"""HttpJsonProbe against a real HTTP server on loopback (http.server in a thread)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from _servers import free_port, serve_http
from pydantic import ValidationError

from novactl._clock import FakeClock
from novactl._errors import PlanError
from novactl.adapters._base import AdapterContext
from novactl.adapters._registry import create
from novactl.adapters.http_json import HttpJsonProbe, extract, parse_path, parse_query
from novactl.core.observations import Observation, ObsStatus, ProbeQuery
from novactl.plan import load_plan
from novactl.plan._load import render_vars

TOKEN = "tok-91ac-never-show"
PASSWORD = "pw-5d2e-never-show"
ENV = {"API_TOKEN": TOKEN, "API_PASSWORD": PASSWORD}


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes
    delay: float = 0.0


@dataclass
class Api:
    """Routes by path (without query string); each route answers its replies in turn."""

    routes: dict[str, list[Reply]] = field(default_factory=dict)
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def route(self, path: str, *replies: Reply | Any) -> None:
        self.routes[path] = [r if isinstance(r, Reply) else Reply(200, r) for r in replies]

    def hits(self, path: str) -> int:
        return sum(1 for seen, _ in self.seen if seen.split("?", 1)[0] == path)

    def answer(self, path: str, headers: dict[str, str]) -> Reply:
        with self.lock:
            self.seen.append((path, headers))
            replies = self.routes.get(path.split("?", 1)[0])
            if not replies:
                return Reply(404, {"error": f"no route {path}"})
            return replies.pop(0) if len(replies) > 1 else replies[0]


@pytest.fixture
def api() -> Iterator[Api]:
    state = Api()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            reply = state.answer(self.path, dict(self.headers))
            if reply.delay:
                time.sleep(reply.delay)
            body = reply.body if isinstance(reply.body, bytes) else (
                b"" if reply.status == 204 else json.dumps(reply.body).encode())
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serve_http(Handler) as url:
        state.url = url
        yield state


def make(api: Api, clock: FakeClock | None = None, **config: Any) -> HttpJsonProbe:
    config.setdefault("base_url", f"{api.url}/api")
    return HttpJsonProbe("biz", config, AdapterContext(clock=clock or FakeClock(), env=ENV))


def ask(probe: HttpJsonProbe, kind: str = "value", *, version: str | None = "v3",
        window: float = 300, **parts: str) -> Observation:
    values = {"version": version or "", "window": f"{round(window)}s",
              "window_seconds": round(window), "role": "canary"}
    rendered = {part: render_vars(text, values) for part, text in parts.items()}
    return probe.observe(ProbeQuery("m", kind, rendered, version, "canary", window, 1.0))


SURVEY = {"data": {"satisfaction": 4.5, "responses": 120, "items": [
    {"value": 1}, {"value": "2.5"}, {"value": None}], "odd.key": 7, "empty": []},
    "meta": {"total": "12", "label": "high", "flag": True}}


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(("path", "expected"), [
    ("data.satisfaction", 4.5),
    ("$.data.responses", 120),
    ("data.items[0].value", 1),
    ("data.items[1].value", 2.5),  # a numeric string
    ("data.items.1.value", 2.5),  # items.1 works like items[1]
    ("data.items[-3].value", 1),
    ('data["odd.key"]', 7),
    ("$['data']['satisfaction']", 4.5),
    ("meta.total", 12),
])
def test_values_and_paths(api: Api, path: str, expected: float) -> None:
    api.route("/api/surveys", SURVEY)
    obs = ask(make(api), value=f"/surveys?window={{{{window_seconds}}}} | {path}")
    assert obs.status is ObsStatus.OK, obs.reason
    assert obs.value == expected


def test_templates_reach_the_server_and_parts_share_one_request(api: Api) -> None:
    api.route("/api/surveys", SURVEY)
    probe = make(api)
    obs = ask(probe, value="/surveys?version={{version}}&window={{window_seconds}} "
                           "| data.satisfaction",
              samples="/surveys?version={{version}}&window={{window_seconds}} "
                      "| data.responses")
    assert obs.status is ObsStatus.OK
    assert (obs.value, obs.samples) == (4.5, 120)
    assert [path for path, _ in api.seen] == ["/api/surveys?version=v3&window=300"]
    ask(probe, value="/surveys | data.satisfaction")  # the next observation asks again
    assert api.hits("/api/surveys") == 2
    probe.close()


def test_ratio_from_two_endpoints(api: Api) -> None:
    api.route("/api/tickets", {"count": 3})
    api.route("/api/orders", {"count": 600})
    obs = ask(make(api), "ratio", numerator="tickets | count", denominator="/orders | count")
    assert obs.status is ObsStatus.OK
    assert (obs.events, obs.trials, obs.value) == (3, 600, 3 / 600)


def test_whole_answer_and_full_urls(api: Api) -> None:
    api.route("/api/count", 42)
    api.route("/elsewhere/score", {"score": 9})
    probe = make(api)
    assert ask(probe, value="/count").value == 42
    assert ask(probe, value="/count | $").value == 42
    assert ask(probe, value=f"{api.url}/elsewhere/score | score").value == 9  # same origin
    other = ask(probe, value="http://127.0.0.2:1/score | score")
    assert other.status is ObsStatus.ERROR and "is not on" in other.reason
    loose = HttpJsonProbe("x", {}, AdapterContext(clock=FakeClock()))
    assert ask(loose, value=f"{api.url}/api/count").value == 42
    relative = ask(loose, value="/api/count")
    assert relative.status is ObsStatus.ERROR and "has no base_url" in relative.reason


@pytest.mark.parametrize(("body", "path", "reason"), [
    (SURVEY, "data.missing", "$.data has no key 'missing'"),
    (SURVEY, "data.items[2].value", "$.data.items[2].value is null"),
    (SURVEY, "data.items[5].value", "$.data.items has 3 items: there is no [5]"),
    (SURVEY, "data.empty[0]", "$.data.empty has 0 items"),
    ({"data": None}, "data.satisfaction", "$.data is null"),
    (None, "data", "$ is null"),
    (b'{"score": NaN}', "score", "query returned nan"),
    (b'{"score": "Infinity"}', "score", "query returned inf"),
])
def test_missing_and_null_are_no_data(api: Api, body: Any, path: str, reason: str) -> None:
    api.route("/api/x", Reply(200, body))
    obs = ask(make(api), value=f"/x | {path}")
    assert obs.status is ObsStatus.NO_DATA, obs.reason
    assert reason in obs.reason


def test_empty_answer_is_no_data(api: Api) -> None:
    api.route("/api/x", Reply(204))
    obs = ask(make(api), value="/x | a")
    assert obs.status is ObsStatus.NO_DATA and "empty answer (HTTP 204)" in obs.reason


@pytest.mark.parametrize(("path", "reason"), [
    ("meta.label", "$.meta.label is the string 'high', not a number"),
    ("meta.flag", "$.meta.flag is a boolean, not a number"),
    ("data", "$.data is an object, not a number"),
    ("data.items", "$.data.items is a list, not a number"),
    ("data.items.value", "$.data.items is a list, not an object: cannot take .value"),
    ("data[0]", "$.data is an object, not a list: cannot take [0]"),
])
def test_non_numbers_are_errors(api: Api, path: str, reason: str) -> None:
    api.route("/api/x", SURVEY)
    obs = ask(make(api), value=f"/x?window=300 | {path}")
    assert obs.status is ObsStatus.ERROR, obs.reason
    assert reason in obs.reason
    assert "in the answer of /x?…" in obs.reason  # no query string in messages


# --------------------------------------------------------------------------- HTTP


def test_server_errors_are_retried(api: Api) -> None:
    clock = FakeClock()
    api.route("/api/x", Reply(503, {"error": "warming up"}), Reply(429, {}), {"v": 1})
    start = clock.now()
    obs = ask(make(api, clock), value="/x | v")
    assert obs.status is ObsStatus.OK and obs.value == 1
    assert api.hits("/api/x") == 3
    assert clock.now() - start == pytest.approx(0.2 + 0.4)  # backoff on the adapter's clock


def test_retries_exhausted_name_the_last_status(api: Api) -> None:
    api.route("/api/x", Reply(502, {"message": "upstream down"}))
    obs = ask(make(api, retries=2), value="/x?token=abc | v")
    assert obs.status is ObsStatus.ERROR
    assert api.hits("/api/x") == 3
    assert obs.reason == (f"HttpJsonProbe(biz): GET {api.url}/api/x?… failed after 3 attempts: "
                          "last status HTTP 502: upstream down")


@pytest.mark.parametrize(("reply", "reason"), [
    (Reply(404, {"error": "no such survey"}), "HTTP 404: no such survey"),
    (Reply(401, b"unauthorized"), "HTTP 401: unauthorized"),
    (Reply(200, b"<html>login</html>"), "answered with invalid JSON (application/json)"),
])
def test_other_failures_are_errors_at_once(api: Api, reply: Reply, reason: str) -> None:
    api.route("/api/x", reply)
    obs = ask(make(api, token_env="API_TOKEN"), value="/x | v")
    assert obs.status is ObsStatus.ERROR
    assert reason in obs.reason
    assert api.hits("/api/x") == 1
    assert TOKEN not in obs.reason


def test_unreachable_and_timeouts(api: Api) -> None:
    closed = HttpJsonProbe("biz", {"base_url": f"http://127.0.0.1:{free_port()}",
                                   "retries": 1}, AdapterContext(clock=FakeClock()))
    obs = ask(closed, value="/x | v")
    assert obs.status is ObsStatus.ERROR
    assert "failed after 2 attempts: last error ConnectError" in obs.reason
    api.route("/api/slow", Reply(200, {"v": 1}, delay=0.5))
    slow = ask(make(api, timeout="100ms", retries=0), value="/slow | v")
    assert slow.status is ObsStatus.ERROR
    assert "(no retries): last error ReadTimeout" in slow.reason


def test_auth_and_headers(api: Api) -> None:
    api.route("/api/x", {"v": 5})
    bearer = make(api, token_env="API_TOKEN", headers={"X-Team": "checkout"})
    assert ask(bearer, value="/x | v").value == 5
    headers = api.seen[-1][1]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["X-Team"] == "checkout" and headers["Accept"] == "application/json"
    basic = make(api, username="novactl", password_env="API_PASSWORD")
    assert ask(basic, value="/x | v").value == 5
    expected = base64.b64encode(f"novactl:{PASSWORD}".encode()).decode()
    assert api.seen[-1][1]["Authorization"] == f"Basic {expected}"
    for text in (repr(bearer), repr(bearer.config), repr(basic), repr(basic.config)):
        assert TOKEN not in text and PASSWORD not in text
    unset = HttpJsonProbe("biz", {"base_url": api.url, "token_env": "UNSET"},
                          AdapterContext(clock=FakeClock(), env={}))
    missing = ask(unset, value="/x | v")
    assert missing.status is ObsStatus.ERROR and "UNSET is not set" in missing.reason


# --------------------------------------------------------------------------- syntax and config


@pytest.mark.parametrize(("text", "problem"), [
    ("/api/surveys?window=300 | data.satisfaction", None),
    ("https://x.example/api | items[0].value", None),
    ("/count", None),
    ("relative/path | $", None),
    ("/x | $[\"a b\"][-1]", None),
    ("", "empty query"),
    (" | data", "empty query"),
    ("/x |", "nothing after '|'"),
    ("/x y | v", "contains spaces"),
    ("ftp://x/y | v", "is not http:// or https://"),
    ("/x | data..v", "expected a key after '.'"),
    ("/x | data[one]", "expected [index] or [\"key\"]"),
    ("/x | data[0", "expected [index]"),
    ("/x | data['a", "unterminated string"),
    ("/x | $data", "unexpected 'd'"),
])
def test_check_query(text: str, problem: str | None) -> None:
    found = HttpJsonProbe.check_query(text)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found, found


def test_parse_and_extract() -> None:
    assert parse_query("/a?b=1|c").url == "/a?b=1"
    assert parse_query("/a | c[0].d").path_text == "$.c[0].d"
    assert parse_path("$") == ()
    assert extract({"a": [1, 2]}, parse_path("a[-1]")) == 2
    with pytest.raises(ValueError, match="not a number"):
        extract({"a": "1_000"}, parse_path("a"))


def test_config_and_registry(api: Api) -> None:
    assert HttpJsonProbe.Config(base_url="https://x.example/api/").base_url == (
        "https://x.example/api")
    assert HttpJsonProbe.Config(timeout="30s").timeout == 30
    for bad in ({"base_url": "x.example"}, {"retries": 11}, {"username": "u"},
                {"token_env": "T", "username": "u", "password_env": "P"}, {"url": "x"}):
        with pytest.raises(ValidationError):
            HttpJsonProbe.Config(**bad)
    api.route("/api/x", {"v": 2})
    probe = create("probe", "http-json", "biz", {"base_url": f"{api.url}/api"},
                   AdapterContext(clock=FakeClock()))
    assert isinstance(probe, HttpJsonProbe)
    assert ask(probe, value="x | v").value == 2
    assert repr(probe) == f"HttpJsonProbe(name='biz', base_url='{api.url}/api')"
    probe.close()


def test_validate_checks_queries(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("""\
apiVersion: novactl.dev/v1
kind: RolloutPlan
metadata: {name: biz-plan}
spec:
  versions: {stable: v1, canary: v2}
  traffic: {type: fake}
  workload: {type: fake}
  probes:
    biz: {type: http-json, config: {base_url: "https://analytics.example/api"}}
  metrics:
    satisfaction: {probe: biz, scope: global, query: "/surveys?w={{window_seconds}} | data..x"}
  stages:
    - {name: one, weight: 10, duration: 1m, criteria: {mandatory: [satisfaction > 4]}}
""")
    with pytest.raises(PlanError) as info:
        load_plan(plan)
    assert "spec.metrics.satisfaction.query" in str(info.value)
    assert "expected a key after '.'" in str(info.value)
