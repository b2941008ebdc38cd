"""The local sandbox: sample app, weighted router, load generator and Sandbox control.

Everything runs on loopback with free ports; every server is stopped in a
fixture or a ``finally``.  Statistical checks use bounds of at least four
standard deviations of the binomial involved (and seeded RNGs besides).
"""

from __future__ import annotations

import http.client
import json
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest

from novactl.sandbox import LoadGenerator, SampleApp, Sandbox, SandboxError, WeightedRouter
from novactl.sandbox.app import BUCKETS

FAST = (0.0, 0.001)  # base latency for tests that only count


# ---------------------------------------------------------------- helpers


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, elapsed: float):
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed = elapsed

    def json(self) -> Any:
        return json.loads(self.body)


def request(url: str, method: str = "GET", *, body: Any = None, raw: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 5.0) -> Answer:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    sent = dict(headers or {})
    if data is not None:
        sent.setdefault("Content-Type", "application/json")
    started = time.perf_counter()
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        payload = response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()},
                      payload, time.perf_counter() - started)
    finally:
        conn.close()


def many(url: str, n: int, *, headers: dict[str, str] | None = None,
         workers: int = 16) -> list[Answer]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda _: request(url, headers=headers), range(n)))


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Sample = tuple[str, dict[str, str], float]


def parse_metrics(text: str) -> tuple[list[tuple[str, str, str]], list[Sample]]:
    """A tiny exposition-format parser: (HELP/TYPE lines, samples); fails on any odd line."""
    meta: list[tuple[str, str, str]] = []
    samples: list[Sample] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("# "):
            kind, name, rest = line[2:].split(" ", 2)
            assert kind in ("HELP", "TYPE"), line
            meta.append((kind, name, rest))
            continue
        match = _SAMPLE.match(line)
        assert match, f"unparsable line: {line!r}"
        name, labels, value = match.groups()
        parsed = dict(_LABEL.findall(labels or ""))
        samples.append((name, parsed, float(value)))
    return meta, samples


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [v for n, ls, v in samples if n == name and all(ls.get(k) == x
                                                           for k, x in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {len(found)} series"
    return found[0]


def family_of(sample_name: str, types: dict[str, str]) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample_name.removesuffix(suffix)
        if base != sample_name and types.get(base) == "histogram":
            return base
    return sample_name


def wait_for(predicate: Any, timeout: float = 3.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def binomial_bound(p: float, n: int, sigmas: float = 4.5) -> float:
    return sigmas * math.sqrt(p * (1 - p) / n)


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def make_app() -> Iterator[Any]:
    apps: list[SampleApp] = []

    def make(version: str = "v1", role: str = "stable", **kwargs: Any) -> SampleApp:
        kwargs.setdefault("base_latency", FAST)
        kwargs.setdefault("seed", 7)
        app = SampleApp(version, role, **kwargs).start()
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.stop()


@pytest.fixture
def pair(make_app: Any) -> Iterator[tuple[WeightedRouter, SampleApp, SampleApp]]:
    stable = make_app("v1", "stable")
    canary = make_app("v2", "canary")
    router = WeightedRouter(stable.url, canary.url, seed=11).start()
    try:
        yield router, stable, canary
    finally:
        router.stop()


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(startup_delay=0.3, seed=3, base_latency=FAST) as sb:
        yield sb


# ---------------------------------------------------------------- SampleApp


def test_app_answers_with_its_version(make_app: Any) -> None:
    app = make_app("v2.9.0", "stable")
    for path in ("/", "/health"):
        answer = request(app.url + path)
        assert answer.status == 200
        assert answer.json() == {"version": "v2.9.0", "role": "stable"}
        assert answer.headers["x-version"] == "v2.9.0"
    assert request(app.url + "/nope").status == 404


def test_app_base_latency_is_a_few_milliseconds(make_app: Any) -> None:
    app = make_app(base_latency=(0.002, 0.015))
    many(app.url, 20)
    _, samples = parse_metrics(request(app.url + "/metrics").body.decode())
    mean = (value(samples, "http_request_duration_seconds_sum")
            / value(samples, "http_request_duration_seconds_count"))
    assert 0.002 <= mean < 0.1


def test_app_metrics_exist_from_the_start(make_app: Any) -> None:
    app = make_app("v1", "canary", replicas=3)
    answer = request(app.url + "/metrics")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    meta, samples = parse_metrics(answer.body.decode())
    types = {name: rest for kind, name, rest in meta if kind == "TYPE"}
    assert types == {
        "http_requests_total": "counter",
        "http_request_duration_seconds": "histogram",
        "app_critical_errors_total": "counter",
        "app_data_loss_events_total": "counter",
        "app_resource_utilization_ratio": "gauge",
        "app_replicas": "gauge",
    }
    assert {name for kind, name, _ in meta if kind == "HELP"} == set(types)
    labels = {"version": "v1", "role": "canary"}
    assert value(samples, "http_requests_total", code="200", **labels) == 0
    assert value(samples, "http_requests_total", code="500", **labels) == 0
    assert value(samples, "app_critical_errors_total", **labels) == 0
    assert value(samples, "app_data_loss_events_total", **labels) == 0
    assert value(samples, "app_replicas", **labels) == 3
    assert 0.3 <= value(samples, "app_resource_utilization_ratio", **labels) < 1
    assert value(samples, "http_request_duration_seconds_count", **labels) == 0
    les = [ls["le"] for n, ls, _ in samples if n == "http_request_duration_seconds_bucket"]
    assert [float(x) for x in les] == [*BUCKETS, math.inf]
    assert all(ls.get("version") == "v1" and ls.get("role") == "canary" for _, ls, _ in samples)


def test_app_metrics_count_requests(make_app: Any) -> None:
    app = make_app()
    many(app.url, 30)
    request(app.url + "/health")
    request(app.url + "/metrics")  # not counted
    _, samples = parse_metrics(app.metrics_text())
    assert value(samples, "http_requests_total", code="200") == 31
    assert value(samples, "http_requests_total", code="500") == 0
    assert value(samples, "http_request_duration_seconds_count") == 31
    assert value(samples, "http_request_duration_seconds_sum") > 0
    buckets = [v for n, _, v in samples if n == "http_request_duration_seconds_bucket"]
    assert buckets == sorted(buckets)  # cumulative
    assert buckets[-1] == 31


def test_error_fault_fraction_and_critical_counter(make_app: Any) -> None:
    app = make_app(errors=0.2, critical=1.0)
    answers = many(app.url, 400)
    failed = sum(a.status == 500 for a in answers)
    assert abs(failed / 400 - 0.2) <= binomial_bound(0.2, 400)
    assert all(a.headers["x-version"] == "v1" for a in answers)
    _, samples = parse_metrics(app.metrics_text())
    assert value(samples, "http_requests_total", code="500") == failed
    assert value(samples, "http_requests_total", code="200") == 400 - failed
    assert value(samples, "app_critical_errors_total") == failed
    assert value(samples, "app_data_loss_events_total") == 0


def test_faults_change_at_runtime(make_app: Any) -> None:
    app = make_app()
    assert all(a.status == 200 for a in many(app.url, 20))
    app.set_fault(errors=1.0, data_loss=1.0)
    assert all(a.status == 500 for a in many(app.url, 10))
    _, samples = parse_metrics(app.metrics_text())
    assert value(samples, "app_data_loss_events_total") == 10
    assert value(samples, "app_critical_errors_total") == 0  # critical defaults to 0
    app.errors = 0.0
    assert request(app.url).status == 200


def test_latency_fault_raises_observed_latency(make_app: Any) -> None:
    app = make_app(latency=0.12)
    slow = [request(app.url) for _ in range(3)]
    assert min(a.elapsed for a in slow) >= 0.12
    _, samples = parse_metrics(app.metrics_text())
    assert value(samples, "http_request_duration_seconds_bucket", le="0.1") == 0
    assert value(samples, "http_request_duration_seconds_sum") >= 0.36
    app.latency = 0
    assert request(app.url).elapsed < 0.12


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="errors"):
        SampleApp("v1", errors=1.5)
    with pytest.raises(ValueError, match="latency"):
        SampleApp("v1", latency=-1)
    app = SampleApp("v1")
    with pytest.raises(ValueError, match="critical"):
        app.set_fault(critical=2)
    with pytest.raises(RuntimeError):
        _ = app.url  # not started


# ---------------------------------------------------------------- WeightedRouter


def test_router_splits_by_weight(pair: Any) -> None:
    router, _, _ = pair
    router.set_weight(30)
    n = 1000
    answers = many(router.url, n)
    routed = Counter(a.headers["x-routed-to"] for a in answers)
    assert all(a.status == 200 for a in answers)
    # ±5 points is 3.4 standard deviations of Binomial(1000, 0.3)/1000: a false
    # failure has probability < 0.1% (and the router's RNG is seeded besides)
    assert binomial_bound(0.3, n, sigmas=3.4) <= 0.05
    assert abs(routed["canary"] / n - 0.30) <= 0.05
    for a in answers:  # the answer really came from the backend it says
        assert a.headers["x-version"] == {"stable": "v1", "canary": "v2"}[a.headers["x-routed-to"]]
    stats = router.stats()
    assert stats["canary"]["proxied"] == routed["canary"]
    assert stats["stable"]["proxied"] == routed["stable"]


def test_router_extreme_weights(pair: Any) -> None:
    router, _, _ = pair
    assert {a.headers["x-routed-to"] for a in many(router.url, 40)} == {"stable"}
    router.set_weight(100)
    assert {a.headers["x-routed-to"] for a in many(router.url, 40)} == {"canary"}


def test_debug_header_always_reaches_canary(pair: Any) -> None:
    router, _, _ = pair
    answers = many(router.url, 50, headers={"X-Canary-Debug": "1"})
    assert [a.headers["x-version"] for a in answers] == ["v2"] * 50
    assert all(a.headers["x-routed-to"] == "canary" for a in answers)
    # another value of the header is an ordinary request (weight 0: stable)
    assert request(router.url, headers={"X-Canary-Debug": "0"}).headers["x-version"] == "v1"


def test_router_admin_api(pair: Any) -> None:
    router, stable, canary = pair
    state = request(router.url + "/-/weight").json()
    assert state == {"weight": 0.0, "header_routes": {"X-Canary-Debug": "1"},
                     "backends": {"stable": stable.url, "canary": canary.url}}
    assert request(router.url + "/-/weight", "PUT", body={"weight": 12.5}).status == 200
    assert request(router.url + "/-/weight").json()["weight"] == 12.5
    assert router.weight == 12.5
    for bad in ({"weight": 150}, {"weight": -1}, {"weight": "ten"}, {"weight": True}, {}, [1]):
        answer = request(router.url + "/-/weight", "PUT", body=bad)
        assert answer.status == 400, bad
        assert "error" in answer.json()
    assert request(router.url + "/-/weight", "PUT", raw=b"{not json").status == 400
    assert router.weight == 12.5

    answer = request(router.url + "/-/header-route", "PUT",
                     body={"header": "X-Beta", "value": "yes"})
    assert answer.status == 200
    assert answer.json()["header_routes"] == {"X-Canary-Debug": "1", "X-Beta": "yes"}
    assert request(router.url, headers={"x-beta": "yes"}).headers["x-routed-to"] == "canary"
    assert request(router.url + "/-/header-route", "PUT", body={"header": ""}).status == 400

    answer = request(router.url + "/-/backends", "PUT", body={"canary": None})
    assert answer.json()["backends"] == {"stable": stable.url, "canary": None}
    assert request(router.url + "/-/backends", "PUT", body={"other": None}).status == 400
    assert request(router.url + "/-/backends", "PUT", body={"stable": "ftp://x"}).status == 400
    assert request(router.url + "/-/nope").status == 404
    assert request(router.url + "/-/stats", "PUT", body={}).status == 405
    assert set(request(router.url + "/-/stats").json()) == {"stable", "canary"}


def test_router_502_when_backend_missing_or_down(make_app: Any) -> None:
    stable = make_app("v1")
    router = WeightedRouter(stable.url, None, weight=100).start()
    try:
        answer = request(router.url)
        assert answer.status == 502
        assert answer.headers["x-routed-to"] == "canary"
        assert b"no canary backend" in answer.body
        stopped = SampleApp("v2", base_latency=FAST).start()
        dead_url = stopped.url
        stopped.stop()
        router.set_backend("canary", dead_url)
        answer = request(router.url)
        assert answer.status == 502
        assert b"unreachable" in answer.body
        assert router.stats()["canary"]["failed"] == 2
        router.set_weight(0)
        assert request(router.url).status == 200
        assert request(router.url, "POST", body={}).status == 405
    finally:
        router.stop()


def test_router_rejects_bad_constructor_values() -> None:
    with pytest.raises(ValueError):
        WeightedRouter(weight=101)
    with pytest.raises(ValueError):
        WeightedRouter("not a url")


# ---------------------------------------------------------------- LoadGenerator


def test_load_generator_paces_and_counts(pair: Any) -> None:
    router, _, _ = pair
    router.set_weight(50)
    load = LoadGenerator(router.url, 100, duration=0.5, concurrency=4).start()
    try:
        assert load.wait(5)
    finally:
        load.stop()
    stats = load.stats()
    assert 35 <= stats["sent"] <= 60  # ~50 at 100 rps for 0.5 s
    assert stats["completed"] == stats["sent"] == stats["ok"]
    assert stats["network_errors"] == 0
    assert sum(stats["by_version"].values()) == stats["completed"]
    assert set(stats["by_version"]) <= {"v1", "v2"}
    assert stats["by_status"] == {200: stats["completed"]}


def test_load_generator_max_requests_and_network_errors() -> None:
    app = SampleApp("v1", base_latency=FAST).start()
    url = app.url
    try:
        with LoadGenerator(url, 500, max_requests=25) as load:
            assert load.wait(5)
        assert load.stats()["completed"] == 25
    finally:
        app.stop()
    down = LoadGenerator(url, 200, max_requests=10, timeout=1).start()
    try:
        assert down.wait(5)
    finally:
        down.stop()
    stats = down.stats()
    assert stats["network_errors"] == 10
    assert stats["completed"] == 0


def test_load_generator_stop_is_prompt() -> None:
    load = LoadGenerator("http://127.0.0.1:9", 1, concurrency=2).start()
    started = time.monotonic()
    load.stop()
    assert time.monotonic() - started < 1.5
    assert not load.running
    with pytest.raises(ValueError):
        LoadGenerator("http://127.0.0.1:9", 0)


# ---------------------------------------------------------------- Sandbox


def test_sandbox_starts_with_stable_ready(sandbox: Sandbox) -> None:
    answer = request(sandbox.router_url)
    assert answer.status == 200
    assert answer.headers["x-version"] == "v2.9.0"
    assert sandbox.ready("stable") == {
        "ready": True, "message": "stable v2.9.0: 2/2 replicas ready",
        "ready_replicas": 2, "desired_replicas": 2, "version": "v2.9.0",
    }
    assert sandbox.ready("canary")["ready"] is False
    assert sandbox.router.state()["weight"] == 0.0
    assert sandbox.router.backends["canary"] is None


def test_deploy_is_not_ready_until_startup_delay(sandbox: Sandbox) -> None:
    started = time.monotonic()
    state = sandbox.deploy("canary", "v3.0.0", 2)
    assert state["ready"] is False
    assert state["ready_replicas"] == 0 and state["desired_replicas"] == 2
    # the router already knows the canary: the debug header reaches it
    debug = request(sandbox.router_url, headers={"X-Canary-Debug": "1"})
    assert debug.headers["x-version"] == "v3.0.0"
    assert wait_for(lambda: sandbox.ready("canary")["ready"], timeout=3)
    assert time.monotonic() - started >= 0.3
    assert sandbox.ready("canary")["ready_replicas"] == 2


def test_deploy_new_version_switches_then_stops_old(sandbox: Sandbox) -> None:
    sandbox.deploy("canary", "v3.0.0", 1)
    old_url = sandbox.router.backends["canary"]
    sandbox.deploy("canary", "v3.0.1", 1)
    new_url = sandbox.router.backends["canary"]
    assert new_url != old_url
    assert request(new_url).headers["x-version"] == "v3.0.1"
    with pytest.raises(OSError):
        request(old_url, timeout=1)
    # the same version again only scales
    sandbox.deploy("canary", "v3.0.1", 4)
    assert sandbox.router.backends["canary"] == new_url
    assert sandbox.ready("canary")["desired_replicas"] == 4


def test_scale_semantics(sandbox: Sandbox) -> None:
    with pytest.raises(SandboxError, match="not deployed"):
        sandbox.scale("canary", 1)
    sandbox.deploy("canary", "v3.0.0", 1)
    zero = sandbox.scale("canary", 0)
    assert zero["ready"] is True and zero["desired_replicas"] == 0
    assert sandbox.router.backends["canary"] is None
    assert request(sandbox.router_url, headers={"X-Canary-Debug": "1"}).status == 502
    back = sandbox.scale("canary", 2)
    assert back["ready"] is False and back["version"] == "v3.0.0"
    assert wait_for(lambda: sandbox.ready("canary")["ready"], timeout=3)
    # scaling up keeps the ready replicas ready while the new ones start
    up = sandbox.scale("stable", 5)
    assert up["ready"] is False and up["ready_replicas"] == 2
    down = sandbox.scale("canary", 1)
    assert down["ready"] is True
    with pytest.raises(SandboxError):
        sandbox.scale("canary", -1)
    with pytest.raises(SandboxError, match="unknown role"):
        sandbox.scale("blue", 1)


def test_promote_keeps_previous_until_retired(sandbox: Sandbox) -> None:
    sandbox.deploy("canary", "v3.0.0", 1)
    old_stable = sandbox.router.backends["stable"]
    state = sandbox.promote("v3.0.0", 3)
    assert state["version"] == "v3.0.0" and state["desired_replicas"] == 3
    assert state["ready"] is False  # a new stable instance is starting
    new_stable = sandbox.router.backends["stable"]
    assert new_stable not in (old_stable, sandbox.router.backends["canary"])
    assert request(sandbox.router_url).headers["x-version"] == "v3.0.0"
    # the old stable still runs, unrouted, labelled "previous"
    assert request(old_stable).headers["x-version"] == "v2.9.0"
    previous = sandbox.status()["previous"]
    assert previous == [{"version": "v2.9.0", "replicas": 2, "url": old_stable}]
    _, samples = parse_metrics(sandbox.metrics_text())
    assert value(samples, "app_replicas", version="v2.9.0", role="previous") == 2
    # retiring a routed version does nothing; retiring the previous stops it
    assert sandbox.retire("v3.0.0") == {"version": "v3.0.0", "retired": 0}
    assert sandbox.retire("v2.9.0") == {"version": "v2.9.0", "retired": 1}
    with pytest.raises(OSError):
        request(old_stable, timeout=1)
    assert sandbox.retire("v2.9.0")["retired"] == 0  # idempotent
    assert request(sandbox.router_url).status == 200


def test_promote_back_reuses_the_previous_instance(sandbox: Sandbox) -> None:
    old_stable = sandbox.router.backends["stable"]
    sandbox.promote("v3.0.0", None)
    assert sandbox.ready("stable")["desired_replicas"] == 2  # kept from the old stable
    state = sandbox.promote("v2.9.0", 2)
    assert sandbox.router.backends["stable"] == old_stable
    assert state["ready"] is True  # its replicas never stopped
    assert [p["version"] for p in sandbox.status()["previous"]] == ["v3.0.0"]


def test_faults_apply_to_running_and_future_instances() -> None:
    faults = {"v3.0.0": {"errors": 1.0}}
    with Sandbox(startup_delay=0, faults=faults, base_latency=FAST, seed=1) as sb:
        sb.deploy("canary", "v3.0.0", 1)
        debug = {"X-Canary-Debug": "1"}
        assert request(sb.router_url, headers=debug).status == 500
        assert sb.set_fault("v3.0.0", errors=0.0, latency=0.05) == {"errors": 0.0,
                                                                    "latency": 0.05}
        answer = request(sb.router_url, headers=debug)
        assert answer.status == 200 and answer.elapsed >= 0.05
        sb.set_fault("v4.0.0", errors=1.0)  # not running yet
        sb.deploy("canary", "v4.0.0", 1)
        assert request(sb.router_url, headers=debug).status == 500
        assert request(sb.router_url).status == 200  # stable untouched
        with pytest.raises(SandboxError, match="errors"):
            sb.set_fault("v4.0.0", errors=2)
    with pytest.raises(SandboxError, match="unknown fault"):
        Sandbox(faults={"v1": {"explode": 1.0}})


def test_control_http_api(sandbox: Sandbox) -> None:
    url = sandbox.control_url
    status = request(url + "/-/status").json()
    assert status["router_url"] == sandbox.router_url
    assert status["roles"]["stable"]["version"] == "v2.9.0"

    answer = request(url + "/-/deploy", "POST",
                     body={"role": "canary", "version": "v3.0.0", "replicas": 1})
    assert answer.status == 200
    assert answer.json()["version"] == "v3.0.0"
    ready = request(url + "/-/ready?role=canary").json()
    assert set(ready) == {"ready", "message", "ready_replicas", "desired_replicas", "version"}
    assert request(url + "/-/scale", "POST", body={"role": "canary", "replicas": 2}).status == 200
    answer = request(url + "/-/fault", "POST", body={"version": "v3.0.0", "latency": 0.01})
    assert answer.json() == {"version": "v3.0.0", "faults": {"latency": 0.01}}
    answer = request(url + "/-/promote", "POST", body={"version": "v3.0.0", "replicas": 2})
    assert answer.status == 200 and answer.json()["version"] == "v3.0.0"
    assert request(url + "/-/retire", "POST", body={"version": "v2.9.0"}).json()["retired"] == 1

    errors = [
        (request(url + "/-/deploy", "POST", body={"role": "blue", "version": "v1"}), 400),
        (request(url + "/-/deploy", "POST", body={"role": "canary"}), 400),
        (request(url + "/-/deploy", "POST",
                 body={"role": "canary", "version": "v1", "replicas": "two"}), 400),
        (request(url + "/-/deploy", "POST", raw=b"[1, 2"), 400),
        (request(url + "/-/deploy", "POST", body=["role"]), 400),
        (request(url + "/-/ready"), 400),
        (request(url + "/-/fault", "POST", body={"version": "v1", "errors": 2}), 400),
        (request(url + "/-/fault", "POST", body={"version": "v1", "boom": 1}), 400),
        (request(url + "/-/promote", "POST", body={"version": "v9", "replicas": 0}), 400),
        (request(url + "/-/nope"), 404),
        (request(url + "/-/deploy"), 405),
        (request(url + "/-/status", "POST", body={}), 405),
    ]
    for answer, expected in errors:
        assert answer.status == expected, answer.body
        assert isinstance(answer.json()["error"], str)


def test_control_api_conflict_is_409() -> None:
    with Sandbox(base_latency=FAST) as sb:
        answer = request(sb.control_url + "/-/scale", "POST",
                         body={"role": "canary", "replicas": 1})
        assert answer.status == 409
        assert "not deployed" in answer.json()["error"]


def test_metrics_aggregation_one_help_type_per_family(sandbox: Sandbox) -> None:
    sandbox.deploy("canary", "v3.0.0", 1)
    sandbox.router.set_weight(50)
    many(sandbox.router_url, 40)
    answer = request(sandbox.control_url + "/metrics")
    assert answer.status == 200
    meta, samples = parse_metrics(answer.body.decode())
    helps = Counter(name for kind, name, _ in meta if kind == "HELP")
    types = Counter(name for kind, name, _ in meta if kind == "TYPE")
    assert set(helps.values()) == {1} and set(types.values()) == {1}
    assert set(helps) == set(types) and len(types) == 6
    # every sample follows its family's HELP/TYPE, and families are not interleaved
    type_of = {name: rest for kind, name, rest in meta if kind == "TYPE"}
    current = None
    seen: list[str] = []
    for line in answer.body.decode().splitlines():
        if line.startswith("# TYPE "):
            current = line.split()[2]
            seen.append(current)
        elif line and not line.startswith("#"):
            name = _SAMPLE.match(line).group(1)  # type: ignore[union-attr]
            assert family_of(name, type_of) == current, line
    assert len(seen) == len(set(seen))
    total = sum(value(samples, "http_requests_total", version=v, role=r, code="200")
                for v, r in (("v2.9.0", "stable"), ("v3.0.0", "canary")))
    assert total == 40


def test_sandbox_operations_after_stop_fail() -> None:
    sb = Sandbox(base_latency=FAST).start()
    sb.stop()
    sb.stop()  # idempotent
    with pytest.raises(SandboxError, match="not running"):
        sb.deploy("canary", "v3.0.0", 1)
    with pytest.raises(SandboxError):
        _ = sb.router_url


def test_sandbox_stop_leaves_no_threads() -> None:
    time.sleep(0.05)
    baseline = threading.active_count()
    sb = Sandbox(startup_delay=0, base_latency=FAST, seed=5).start()
    try:
        sb.deploy("canary", "v3.0.0", 1)
        sb.router.set_weight(50)
        sb.promote("v3.0.0", 2)
        load = sb.start_load(200, concurrency=8)
        assert wait_for(lambda: load.stats()["completed"] >= 30, timeout=5)
        assert threading.active_count() > baseline
    finally:
        sb.stop()
    assert not load.running
    assert wait_for(lambda: threading.active_count() <= baseline, timeout=2), \
        [t.name for t in threading.enumerate()]
