"""The ``haproxy`` traffic shifter against a real HAProxy in front of two real SampleApps.

HAProxy's ``balance roundrobin`` is a smooth weighted round robin: over a number of
requests that is a multiple of the total weight, every server answers its weight's
share, give or take one request.  So the splits below are counted, not sampled.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _haproxy import DEBUG_HEADER, HAProxy, running_haproxy
from _servers import LOOPBACK, free_port
from pydantic import ValidationError

from novactl._errors import TrafficError
from novactl.adapters import AdapterContext, TrafficShifter, create
from novactl.adapters.haproxy import (
    HAProxyTrafficShifter,
    RuntimeAPIAddress,
    parse_socket,
    split_weight,
)
from novactl.sandbox.app import SampleApp

FAST = (0.0, 0.001)
STABLE, CANARY = "v1", "v2"


def port_of(app: SampleApp) -> int:
    return int(app.url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def haproxy() -> Iterator[HAProxy]:
    stable = SampleApp(STABLE, "stable", base_latency=FAST, seed=1).start()
    canary = SampleApp(CANARY, "canary", base_latency=FAST, seed=2).start()
    try:
        with tempfile.TemporaryDirectory(prefix="novactl-haproxy-") as directory, \
                running_haproxy(Path(directory), port_of(stable), port_of(canary)) as proxy:
            yield proxy
    finally:
        canary.stop()
        stable.stop()


def make(proxy: HAProxy, logs: list[str] | None = None, **config: Any) -> HAProxyTrafficShifter:
    settings: dict[str, Any] = {"socket": proxy.socket, "backend": "app",
                                "stable": ["stable"], "canary": ["canary"], "timeout": "2s"}
    settings.update(config)
    context = AdapterContext(log=logs.append if logs is not None else lambda _m: None)
    adapter = create("traffic", "haproxy", "traffic", settings, context)
    assert isinstance(adapter, HAProxyTrafficShifter)
    return adapter


@pytest.fixture
def shifter(haproxy: HAProxy) -> Iterator[HAProxyTrafficShifter]:
    adapter = make(haproxy, debug_map=haproxy.debug_map, canary_backend="canary_only")
    try:
        yield adapter
    finally:
        adapter.close()


def canary_share(counts: Any) -> int:
    assert set(counts) <= {STABLE, CANARY}, counts  # no 503s, no strangers
    return int(counts[CANARY])


def one_line(exc: pytest.ExceptionInfo[TrafficError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith("HAProxyTrafficShifter(traffic): ")
    return message


# ---------------------------------------------------------------- weights, counted


@pytest.mark.parametrize("which", ["unix", "tcp", "plain path"])
def test_weights_split_the_traffic_exactly(haproxy: HAProxy, which: str) -> None:
    sockets = {"unix": haproxy.socket, "tcp": haproxy.tcp_socket,
               "plain path": str(haproxy.directory / "admin.sock")}
    adapter = make(haproxy, socket=sockets[which])
    assert isinstance(adapter, TrafficShifter)
    for weight in (0, 10, 50, 100, 10):
        adapter.set_weight(weight)
        assert adapter.get_weight() == weight
        assert haproxy.runtime("get weight app/canary").startswith(f"{weight} (initial 0)")
        assert haproxy.runtime("get weight app/stable").startswith(f"{100 - weight} ")
        share = canary_share(haproxy.versions(200))
        assert abs(share - 2 * weight) <= 2, (weight, share)
    adapter.close()


def test_weight_zero_and_hundred_are_absolute(haproxy: HAProxy,
                                              shifter: HAProxyTrafficShifter) -> None:
    shifter.set_weight(0)
    assert haproxy.versions(50) == {STABLE: 50}
    shifter.set_weight(100)
    assert haproxy.versions(50) == {CANARY: 50}
    shifter.set_weight(0.0)
    assert shifter.get_weight() == 0.0


def test_set_weight_is_a_state_not_a_delta(shifter: HAProxyTrafficShifter) -> None:
    shifter.set_weight(25)
    shifter.set_weight(25)
    assert shifter.get_weight() == 25


def test_fractional_weights_round_half_up_and_say_so(haproxy: HAProxy) -> None:
    logs: list[str] = []
    adapter = make(haproxy, logs)
    adapter.set_weight(12.5)
    assert adapter.get_weight() == 13
    assert any("12.5% applied as 13%" in line for line in logs), logs
    logs.clear()
    adapter.set_weight(12.4)
    assert adapter.get_weight() == 12
    adapter.set_weight(40)  # exact: nothing to say
    assert len(logs) == 1 and "12.4% applied as 12%" in logs[0], logs


def test_weights_that_would_flip_a_group_on_or_off_are_refused(haproxy: HAProxy) -> None:
    adapter = make(haproxy)
    adapter.set_weight(10)
    with pytest.raises(TrafficError) as exc:
        adapter.set_weight(0.3)
    assert "would send the canary nothing" in one_line(exc)
    with pytest.raises(TrafficError) as exc:
        adapter.set_weight(99.7)
    assert "would send the stable nothing" in one_line(exc)
    assert adapter.get_weight() == 10  # nothing was changed
    fine = make(haproxy, scale=256)
    fine.set_weight(0.3)  # 0.768 units round to 1 of 256
    assert fine.get_weight() == pytest.approx(100 / 256)
    fine.set_weight(0)


def test_scale_and_several_servers_per_group(haproxy: HAProxy) -> None:
    adapter = make(haproxy, backend="pool", stable=["stable_a", "stable_b"],
                   canary=["canary_a", "canary_b"], scale=256)
    adapter.set_weight(10)  # canary 26 units -> 13 + 13, stable 230 -> 115 + 115
    assert [haproxy.runtime(f"get weight pool/{s}").split()[0]
            for s in ("canary_a", "canary_b", "stable_a", "stable_b")] == \
        ["13", "13", "115", "115"]
    assert adapter.get_weight() == pytest.approx(100 * 26 / 256)
    share = canary_share(haproxy.versions(256, port=haproxy.pool_port))
    assert abs(share - 26) <= 2, share
    adapter.set_weight(50.2)  # 128.5 units -> 129 = 65 + 64; stable 127 = 64 + 63
    assert [haproxy.runtime(f"get weight pool/{s}").split()[0]
            for s in ("canary_a", "canary_b", "stable_a", "stable_b")] == \
        ["65", "64", "64", "63"]
    adapter.set_weight(0)
    assert haproxy.versions(20, port=haproxy.pool_port) == {STABLE: 20}


def test_get_weight_with_every_weight_zero_is_an_error(haproxy: HAProxy,
                                                       shifter: HAProxyTrafficShifter) -> None:
    shifter.set_weight(0)
    assert haproxy.runtime("set weight app/stable 0").strip() == ""
    try:
        with pytest.raises(TrafficError) as exc:
            shifter.get_weight()
        assert "has weight 0" in one_line(exc)
        shifter.set_weight(0)  # raising stable first: no "all zero" left behind
        assert shifter.get_weight() == 0
    finally:
        haproxy.runtime("set weight app/stable 100")


def test_weight_outside_0_100_is_refused(shifter: HAProxyTrafficShifter) -> None:
    shifter.set_weight(20)
    for bad in (-1, 100.5, float("nan"), float("inf")):
        with pytest.raises(TrafficError) as exc:
            shifter.set_weight(bad)
        assert "outside 0..100" in one_line(exc)
    assert shifter.get_weight() == 20


# ---------------------------------------------------------------- header route


def test_header_route_sends_debug_requests_to_the_canary(
        haproxy: HAProxy, shifter: HAProxyTrafficShifter) -> None:
    shifter.set_weight(0)
    assert shifter.set_header_route(DEBUG_HEADER, "1") is True
    assert haproxy.versions(20, {DEBUG_HEADER: "1"}) == {CANARY: 20}
    assert haproxy.versions(20, {DEBUG_HEADER: "other"}) == {STABLE: 20}
    assert haproxy.versions(20) == {STABLE: 20}
    assert shifter.set_header_route(DEBUG_HEADER, "1") is True  # idempotent: one entry
    entries = [line for line in haproxy.runtime(f"show map {haproxy.debug_map}").splitlines()
               if line.strip()]
    assert [line.split()[1:] for line in entries].count(["1", "canary_only"]) == 1


def test_header_route_overwrites_an_entry_pointing_elsewhere(
        haproxy: HAProxy, shifter: HAProxyTrafficShifter) -> None:
    shifter.set_weight(0)
    assert haproxy.runtime(f"add map {haproxy.debug_map} moved app").strip() == ""
    assert haproxy.versions(5, {DEBUG_HEADER: "moved"}) == {STABLE: 5}
    assert shifter.set_header_route(DEBUG_HEADER, "moved") is True
    assert haproxy.versions(10, {DEBUG_HEADER: "moved"}) == {CANARY: 10}


def test_header_route_without_debug_map_is_unsupported(haproxy: HAProxy) -> None:
    adapter = make(haproxy)
    assert adapter.set_header_route(DEBUG_HEADER, "2") is False
    assert " 2 " not in haproxy.runtime(f"show map {haproxy.debug_map}")


def test_header_route_errors(haproxy: HAProxy) -> None:
    default = make(haproxy, debug_map=haproxy.debug_map)  # canary_backend: app_canary
    with pytest.raises(TrafficError) as exc:
        default.set_header_route(DEBUG_HEADER, "3")
    message = one_line(exc)
    assert "canary_backend app_canary is not a backend" in message
    assert "canary_only" in message  # the backends that do exist
    wrong_map = make(haproxy, debug_map="/nowhere/debug.map", canary_backend="canary_only")
    with pytest.raises(TrafficError) as exc:
        wrong_map.set_header_route(DEBUG_HEADER, "3")
    message = one_line(exc)
    assert "Unknown map identifier" in message and haproxy.debug_map in message
    adapter = make(haproxy, debug_map=haproxy.debug_map, canary_backend="canary_only")
    with pytest.raises(TrafficError) as exc:
        adapter.set_header_route(DEBUG_HEADER, "1;set weight app/stable 0")
    assert "runtime API cannot carry" in one_line(exc)
    assert haproxy.runtime("get weight app/stable").split()[0] != "0"


# ---------------------------------------------------------------- errors


def test_missing_socket_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.sock"
    adapter = create("traffic", "haproxy", "traffic",
                     {"socket": f"unix:{path}", "backend": "app", "stable": ["s"],
                      "canary": ["c"]}, AdapterContext())
    with pytest.raises(TrafficError) as exc:
        adapter.get_weight()
    assert one_line(exc) == (
        f"HAProxyTrafficShifter(traffic): cannot reach the HAProxy runtime API at "
        f"unix:{path}: no such file; is `stats socket ... level admin` in haproxy.cfg?")
    with pytest.raises(TrafficError):
        adapter.set_weight(10)


def test_connection_refused_on_tcp() -> None:
    port = free_port()
    adapter = create("traffic", "haproxy", "traffic",
                     {"socket": f"tcp:{LOOPBACK}:{port}", "backend": "app", "stable": ["s"],
                      "canary": ["c"]}, AdapterContext())
    with pytest.raises(TrafficError) as exc:
        adapter.get_weight()
    assert f"at tcp:{LOOPBACK}:{port}: connection refused" in one_line(exc)


def test_a_silent_runtime_api_times_out() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(4)  # accepts into the backlog, never answers
        port = listener.getsockname()[1]
        adapter = create("traffic", "haproxy", "traffic",
                         {"socket": f"tcp:{LOOPBACK}:{port}", "backend": "app",
                          "stable": ["s"], "canary": ["c"], "timeout": 0.3}, AdapterContext())
        with pytest.raises(TrafficError) as exc:
            adapter.get_weight()
    assert "no complete answer" in one_line(exc) and "within 0.3s" in one_line(exc)


def test_wrong_backend_or_server_carries_haproxys_message(haproxy: HAProxy) -> None:
    with pytest.raises(TrafficError) as exc:
        make(haproxy, backend="nope").set_weight(10)
    assert one_line(exc) == ("HAProxyTrafficShifter(traffic): HAProxy refused "
                             "`get weight nope/canary`: No such backend.")
    with pytest.raises(TrafficError) as exc:
        make(haproxy, canary=["ghost"]).get_weight()
    assert one_line(exc) == ("HAProxyTrafficShifter(traffic): HAProxy refused "
                             "`get weight app/ghost`: No such server.")


def test_read_only_socket_is_a_permission_error(haproxy: HAProxy) -> None:
    make(haproxy).set_weight(30)
    reader = make(haproxy, socket=haproxy.user_socket)
    assert reader.get_weight() == 30  # `get weight` is allowed at level user
    with pytest.raises(TrafficError) as exc:
        reader.set_weight(40)
    message = one_line(exc)
    assert "HAProxy refused `set weight app/" in message
    assert "Permission denied" in message and "needs `level admin`" in message


def test_not_a_runtime_api(haproxy: HAProxy) -> None:
    adapter = make(haproxy, socket=f"tcp:{LOOPBACK}:{haproxy.port}", timeout=2)
    with pytest.raises(TrafficError) as exc:
        adapter.get_weight()
    message = one_line(exc)
    assert "HAProxy refused `get weight app/canary`: HTTP/1.1 400" in message
    assert "is an HTTP listener, not the runtime API" in message


# ---------------------------------------------------------------- configuration


def test_config_validation() -> None:
    base = {"socket": "unix:/run/haproxy/admin.sock", "backend": "app",
            "stable": ["s"], "canary": ["c"]}
    config = HAProxyTrafficShifter.Config.model_validate(base)
    assert (config.scale, config.timeout, config.debug_map, config.canary_backend) == \
        (100, 5.0, None, None)
    bad: list[dict[str, Any]] = [
        {"scale": 0}, {"scale": 257}, {"stable": []}, {"canary": []},
        {"canary": ["s"]}, {"stable": ["s", "s"]}, {"stable": ["app/s"]},
        {"backend": "a b"}, {"debug_map": "x;y"}, {"socket": "tcp:host"},
        {"socket": ""}, {"timeout": 0}, {"weights": 1},
    ]
    for change in bad:
        with pytest.raises(ValidationError):
            HAProxyTrafficShifter.Config.model_validate({**base, **change})
    assert HAProxyTrafficShifter.Config.model_validate({**base, "timeout": "2s"}).timeout == 2


def test_socket_addresses(tmp_path: Path) -> None:
    assert parse_socket("unix:/run/haproxy/admin.sock") == \
        RuntimeAPIAddress(path="/run/haproxy/admin.sock")
    assert parse_socket("/run/haproxy/admin.sock") == \
        RuntimeAPIAddress(path="/run/haproxy/admin.sock")
    assert parse_socket("admin.sock", tmp_path) == RuntimeAPIAddress(
        path=str(tmp_path / "admin.sock"))
    assert parse_socket("tcp:127.0.0.1:9999") == RuntimeAPIAddress(host="127.0.0.1", port=9999)
    assert str(parse_socket("tcp:[::1]:9999")) == "tcp:[::1]:9999"
    adapter = create("traffic", "haproxy", "t",
                     {"socket": "run/admin.sock", "backend": "b", "stable": ["s"],
                      "canary": ["c"]}, AdapterContext(base_dir=tmp_path))
    assert str(adapter.address) == f"unix:{tmp_path / 'run/admin.sock'}"
    assert adapter.canary_backend == "b_canary"


def test_split_weight_rounds_half_up() -> None:
    assert split_weight(10, 100) == (10, 90)
    assert split_weight(12.5, 100) == (13, 87)
    assert split_weight(0.5, 100) == (1, 99)
    assert split_weight(0.49, 100) == (0, 100)
    assert split_weight(10, 256) == (26, 230)
    assert split_weight(100, 1) == (1, 0)
    assert split_weight(50, 1) == (1, 0)


def test_weight_zero_takes_the_debug_header_off_the_canary(
        haproxy: HAProxy, shifter: HAProxyTrafficShifter) -> None:
    shifter.set_weight(10)
    assert shifter.set_header_route(DEBUG_HEADER, "1") is True
    assert haproxy.versions(20, {DEBUG_HEADER: "1"}) == {CANARY: 20}
    shifter.set_weight(0)  # rollback: all stable, debug requests too
    assert haproxy.versions(20, {DEBUG_HEADER: "1"}) == {STABLE: 20}
    assert not [line for line in haproxy.runtime(f"show map {haproxy.debug_map}").splitlines()
                if line.strip()]
    assert shifter.get_weight() == 0.0
