"""The ``local`` traffic and workload adapters, end to end against a real Sandbox."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import ValidationError

from novactl._errors import TrafficError, WorkloadError
from novactl.adapters import AdapterContext, Readiness, TrafficShifter, Workload, create
from novactl.adapters.local import LocalTrafficShifter, LocalWorkload
from novactl.sandbox import Sandbox

FAST = (0.0, 0.001)


def version_of(url: str, headers: dict[str, str] | None = None) -> tuple[int, str | None]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.request("GET", "/", headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("X-Version")
    finally:
        conn.close()


def wait_ready(workload: LocalWorkload, role: str, timeout: float = 3.0) -> Readiness:
    deadline = time.monotonic() + timeout
    state = workload.ready(role)
    while not state.ready and time.monotonic() < deadline:
        time.sleep(0.03)
        state = workload.ready(role)
    return state


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(startup_delay=0.2, seed=9, base_latency=FAST) as sb:
        yield sb


@pytest.fixture
def traffic(sandbox: Sandbox) -> Iterator[LocalTrafficShifter]:
    adapter = create("traffic", "local", "router", {"url": sandbox.router_url, "timeout": "2s"},
                     AdapterContext())
    try:
        yield adapter
    finally:
        adapter.close()


@pytest.fixture
def workload(sandbox: Sandbox) -> Iterator[LocalWorkload]:
    adapter = create("workload", "local", "sandbox", {"url": sandbox.control_url},
                     AdapterContext())
    try:
        yield adapter
    finally:
        adapter.close()


def assert_one_line(exc: pytest.ExceptionInfo[Any]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- configuration


def test_registry_builds_the_local_adapters(traffic: Any, workload: Any) -> None:
    assert isinstance(traffic, LocalTrafficShifter)
    assert isinstance(traffic, TrafficShifter)
    assert isinstance(workload, LocalWorkload)
    assert isinstance(workload, Workload)
    assert traffic.config.timeout == 2.0
    assert workload.config.timeout == 5.0


def test_config_rejects_unknown_keys_and_requires_url() -> None:
    with pytest.raises(ValidationError):
        LocalTrafficShifter.Config.model_validate({"url": "http://x", "weight": 3})
    with pytest.raises(ValidationError):
        LocalWorkload.Config.model_validate({})


# ---------------------------------------------------------------- traffic


def test_set_and_get_weight_round_trip(sandbox: Sandbox, traffic: LocalTrafficShifter) -> None:
    assert traffic.get_weight() == 0.0
    traffic.set_weight(12.5)
    assert traffic.get_weight() == 12.5
    assert sandbox.router.weight == 12.5
    traffic.set_weight(0)
    assert traffic.get_weight() == 0.0


def test_bad_weight_is_a_traffic_error(traffic: LocalTrafficShifter) -> None:
    with pytest.raises(TrafficError) as caught:
        traffic.set_weight(150)
    message = assert_one_line(caught)
    assert "HTTP 400" in message and "0..100" in message
    assert message.startswith("LocalTrafficShifter(router): ")


def test_header_route_reaches_the_canary(sandbox: Sandbox, traffic: LocalTrafficShifter,
                                         workload: LocalWorkload) -> None:
    workload.deploy("canary", "v3.0.0", 1)
    assert traffic.set_header_route("X-Beta-User", "yes") is True
    assert sandbox.router.header_routes["X-Beta-User"] == "yes"
    assert version_of(sandbox.router_url, {"X-Beta-User": "yes"}) == (200, "v3.0.0")
    assert version_of(sandbox.router_url) == (200, "v2.9.0")


# ---------------------------------------------------------------- workload


def test_deploy_then_ready(workload: LocalWorkload) -> None:
    workload.deploy("canary", "v3.0.0", 2)
    first = workload.ready("canary")
    assert first == Readiness(False, "canary v3.0.0: 0/2 replicas ready (starting)", 0, 2,
                              "v3.0.0")
    state = wait_ready(workload, "canary")
    assert state.ready is True
    assert (state.ready_replicas, state.desired_replicas, state.version) == (2, 2, "v3.0.0")


def test_scale_promote_retire(sandbox: Sandbox, workload: LocalWorkload) -> None:
    workload.deploy("canary", "v3.0.0", None)
    workload.scale("canary", 3)
    assert workload.ready("canary").desired_replicas == 3
    workload.promote("v3.0.0", 4)
    assert workload.ready("stable").version == "v3.0.0"
    assert wait_ready(workload, "stable").ready_replicas == 4
    assert version_of(sandbox.router_url) == (200, "v3.0.0")
    assert [p["version"] for p in sandbox.status()["previous"]] == ["v2.9.0"]
    workload.retire("v2.9.0")
    workload.retire("v2.9.0")  # idempotent
    assert sandbox.status()["previous"] == []
    workload.scale("canary", 0)
    assert workload.ready("canary").ready is True


def test_refused_operation_is_a_workload_error(workload: LocalWorkload) -> None:
    with pytest.raises(WorkloadError) as caught:
        workload.scale("canary", 1)
    message = assert_one_line(caught)
    assert "HTTP 409" in message and "not deployed" in message
    with pytest.raises(WorkloadError, match="unknown role"):
        workload.deploy("blue", "v1", 1)


# ---------------------------------------------------------------- sandbox down


def test_errors_when_the_sandbox_is_stopped() -> None:
    sandbox = Sandbox(base_latency=FAST).start()
    router_url, control_url = sandbox.router_url, sandbox.control_url
    traffic = LocalTrafficShifter("router", LocalTrafficShifter.Config(url=router_url))
    workload = LocalWorkload("sandbox", LocalWorkload.Config(url=control_url, timeout=1))
    try:
        traffic.set_weight(5)
        sandbox.stop()
        with pytest.raises(TrafficError) as caught:
            traffic.get_weight()
        assert assert_one_line(caught) == (
            f"LocalTrafficShifter(router): cannot reach router at {router_url}: "
            "connection refused")
        assert isinstance(caught.value.__cause__, httpx.ConnectError)
        with pytest.raises(TrafficError, match="cannot reach router"):
            traffic.set_weight(10)
        with pytest.raises(TrafficError, match="cannot reach router"):
            traffic.set_header_route("X-Canary-Debug", "1")
        for call in (lambda: workload.ready("canary"), lambda: workload.retire("v1"),
                     lambda: workload.deploy("canary", "v3", 1)):
            with pytest.raises(WorkloadError) as failed:
                call()
            assert assert_one_line(failed) == (
                f"LocalWorkload(sandbox): cannot reach sandbox control at {control_url}: "
                "connection refused")
            assert isinstance(failed.value.__cause__, httpx.HTTPError)
    finally:
        sandbox.stop()
        traffic.close()
        workload.close()
