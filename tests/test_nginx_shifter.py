"""The nginx traffic shifter: rendering, and a real nginx in front of real SampleApps.

Backends are :class:`novactl.sandbox.app.SampleApp` instances on loopback (v2.9.0 as the
stable, v3.0.0 as the canary) that answer ``X-Version``.  nginx runs with one worker, so
its smooth weighted round-robin is exact over every cycle of ``sum(weights)`` requests:
the counts below are asserted exactly.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _nginx import NginxServer, nginx_server_factory
from _servers import require_binary

from novactl._errors import TrafficError
from novactl.adapters import TrafficShifter, load_class
from novactl.adapters._base import AdapterContext
from novactl.adapters.nginx import (
    NginxTrafficShifter,
    basis_points,
    main,
    nginx_error_line,
    nginx_snippet,
    parse_include,
    render_include,
    split_weights,
)
from novactl.sandbox.app import SampleApp

STABLE, CANARY = "v2.9.0", "v3.0.0"
HEADER = {"X-Canary-Debug": "1"}
ROOT = Path(__file__).resolve().parent.parent

Config = NginxTrafficShifter.Config


def config(tmp_path: Path, **overrides: object) -> Config:
    values: dict[str, object] = {"include_file": str(tmp_path / "split.conf"),
                                 "stable": ["127.0.0.1:8081"], "canary": ["127.0.0.1:8082"]}
    values.update(overrides)
    return Config.model_validate(values)


def split_servers(text: str, name: str = "novactl") -> list[tuple[str, int | None]]:
    block = re.search(rf"upstream {name}_split {{(.*?)}}", text, re.DOTALL)
    assert block is not None, text
    out: list[tuple[str, int | None]] = []
    for line in re.findall(r"server (\S+)([^;]*);", block.group(1)):
        weight = re.search(r"weight=(\d+)", line[1])
        out.append((line[0], int(weight.group(1)) if weight else None))
    return out


# ---------------------------------------------------------------- rendering (no nginx)


@pytest.mark.parametrize(("weight", "expected"), [
    (0, [("127.0.0.1:8081", None)]),
    (1, [("127.0.0.1:8081", 99), ("127.0.0.1:8082", 1)]),
    (10, [("127.0.0.1:8081", 9), ("127.0.0.1:8082", 1)]),
    (33.3, [("127.0.0.1:8081", 667), ("127.0.0.1:8082", 333)]),
    (50, [("127.0.0.1:8081", 1), ("127.0.0.1:8082", 1)]),
    (100, [("127.0.0.1:8082", None)]),
])
def test_render_weights(tmp_path: Path, weight: float, expected: list[tuple[str, int | None]]
                        ) -> None:
    text = render_include(config(tmp_path), weight, header_route=False)
    assert split_servers(text) == expected
    assert f"# novactl-weight: {weight:g}\n" in text
    assert "# novactl-header-route: off\n" in text
    assert "upstream novactl_stable {\n    server 127.0.0.1:8081;\n}" in text
    assert "upstream novactl_canary {\n    server 127.0.0.1:8082;\n}" in text
    assert f'map "" $novactl_weight {{\n    default "{weight:g}";\n}}' in text
    state = parse_include(text, "novactl")
    assert state.weight == pytest.approx(weight)
    assert state.canary_share == pytest.approx(weight)
    assert not state.header_route


def test_render_several_servers_per_group(tmp_path: Path) -> None:
    cfg = config(tmp_path, stable=["10.0.0.1:80", "10.0.0.2:80"],
                 canary=["10.0.0.3:80", "10.0.0.4:80", "10.0.0.5:80"],
                 server_options="max_fails=3 fail_timeout=10s", name="api")
    text = render_include(cfg, 10, header_route=False)
    servers = split_servers(text, "api")
    # 2 stable × 27 : 3 canary × 2 = 54 : 6 = 90% : 10%
    assert servers == [("10.0.0.1:80", 27), ("10.0.0.2:80", 27), ("10.0.0.3:80", 2),
                       ("10.0.0.4:80", 2), ("10.0.0.5:80", 2)]
    assert "    server 10.0.0.1:80 weight=27 max_fails=3 fail_timeout=10s;" in text
    assert "    server 10.0.0.3:80 max_fails=3 fail_timeout=10s;" in text  # canary group
    assert parse_include(text, "api").canary_share == pytest.approx(10)
    for weight in (0.01, 1, 12.5, 33.3, 50, 66.67, 99.99):
        text = render_include(cfg, weight, header_route=False)
        assert parse_include(text, "api").canary_share == pytest.approx(weight), weight
        assert all(w is not None and w >= 1 for _, w in split_servers(text, "api"))


def test_render_header_route(tmp_path: Path) -> None:
    cfg = config(tmp_path, debug_header="X-Debug-Canary", debug_value="yes")
    on = render_include(cfg, 10, header_route=True)
    assert ("map $http_x_debug_canary $novactl_upstream {\n"
            "    default novactl_split;\n"
            '    "yes" novactl_canary;\n'
            "}") in on
    assert "# novactl-header-route: on\n" in on
    assert parse_include(on, "novactl").header_route
    off = render_include(cfg, 10, header_route=False)
    assert ("map $http_x_debug_canary $novactl_upstream {\n"
            "    default novactl_split;\n"
            "}") in off
    assert "novactl_canary;" not in off


def test_weights_are_integers_in_hundredths() -> None:
    assert split_weights(1000, 1, 1) == (9, 1)
    assert split_weights(3330, 1, 1) == (667, 333)
    assert split_weights(0, 2, 2) == (1, 0)
    assert split_weights(10000, 2, 2) == (0, 1)
    assert basis_points(33.3) == 3330
    assert basis_points(0.001) == 1  # a canary above 0% never rounds to nothing
    assert basis_points(99.999) == 9999  # ... nor below 100% to everything
    assert basis_points(0) == 0
    assert basis_points(100) == 10000


def test_parse_rejects_hand_edits(tmp_path: Path) -> None:
    text = render_include(config(tmp_path), 10, header_route=False)
    with pytest.raises(ValueError, match=r"says 20% but the server weights .* give 10%"):
        parse_include(text.replace("# novactl-weight: 10", "# novactl-weight: 20"), "novactl")
    with pytest.raises(ValueError, match="not written by novactl"):
        parse_include("upstream x { server a:1; }\n", "novactl")
    with pytest.raises(ValueError, match="no upstream other_stable"):
        parse_include(text, "other")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"name": "Bad-Name"}, "name must match"),
    ({"canary": ["127.0.0.1:8081"]}, "in both stable and canary"),
    ({"stable": []}, "at least 1"),
    ({"stable": ["127.0.0.1:80; include /etc/passwd"]}, "invalid server address"),
    ({"stable": ["a:1", "a:1"]}, "listed twice"),
    ({"server_options": "max_fails=1; }"}, "server_options must be one line"),
    ({"server_options": "weight=5"}, "must not set weight"),
    ({"debug_header": "X_Canary"}, "debug_header must be"),
    ({"debug_value": "default"}, "map keyword"),
    ({"debug_value": "a b"}, "debug_value must be"),
    ({"include_file": "/etc/nginx/a b.conf"}, "include_file must be a path"),
    ({"reload_timeout": "0s"}, "greater than 0"),
    ({"colour": "blue"}, "Extra inputs"),
])
def test_config_validation(tmp_path: Path, overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config(tmp_path, **overrides)


def test_registered_and_implements_the_protocol(tmp_path: Path) -> None:
    assert load_class("traffic", "nginx") is NginxTrafficShifter
    shifter = NginxTrafficShifter("traffic", config(tmp_path))
    assert isinstance(shifter, TrafficShifter)
    # a dict config is validated too; reload_timeout takes durations
    built = NginxTrafficShifter("t", {"include_file": "split.conf", "stable": ["a:1"],
                                      "canary": ["b:1"], "reload_timeout": "2s"},
                                AdapterContext(base_dir=tmp_path))
    assert built.config.reload_timeout == 2.0
    assert built.path == tmp_path / "split.conf"  # relative: against the plan's directory


def test_snippet(tmp_path: Path) -> None:
    text = nginx_snippet({"include_file": "conf/split.conf", "name": "api",
                          "stable": ["a:1"], "canary": ["b:1"]}, base_dir=tmp_path)
    assert f"include {tmp_path}/conf/split.conf;" in text
    assert "proxy_pass http://$api_upstream;" in text


def test_nginx_error_line() -> None:
    stderr = ("2026/11/26 14:01:44 [warn] 1#1: something harmless\n"
              '2026/11/26 14:01:44 [emerg] 22601#22601: invalid port in upstream '
              '"127.0.0.1:99999" in /x/inc.conf:2\n'
              "nginx: configuration file /x/nginx.conf test failed\n")
    assert nginx_error_line(stderr) == ('[emerg] invalid port in upstream "127.0.0.1:99999" '
                                        'in /x/inc.conf:2')
    assert nginx_error_line('nginx: [error] open() "/x/nginx.pid" failed (2: No such file)') \
        == '[error] open() "/x/nginx.pid" failed (2: No such file)'
    assert nginx_error_line("", "", 3) == "exit code 3"


# ---------------------------------------------------------------- file handling (no nginx)


def test_get_weight_without_a_file_is_an_error(tmp_path: Path) -> None:
    shifter = NginxTrafficShifter("traffic", config(tmp_path))
    with pytest.raises(TrafficError, match="does not exist: novactl has not set a weight yet"):
        shifter.get_weight()
    shifter.write_file(0)
    assert shifter.get_weight() == 0.0
    shifter.write_file(12.5)
    assert shifter.get_weight() == 12.5


def test_never_overwrites_a_foreign_file(tmp_path: Path) -> None:
    cfg = config(tmp_path, nginx="/bin/true")
    foreign = b"user www-data;\nworker_processes auto;\n"
    Path(cfg.include_file).write_bytes(foreign)
    shifter = NginxTrafficShifter("traffic", cfg)
    with pytest.raises(TrafficError, match=r"refusing to overwrite .* not written by novactl"):
        shifter.set_weight(10)
    with pytest.raises(TrafficError, match="refusing to overwrite"):
        shifter.write_file(0)
    assert Path(cfg.include_file).read_bytes() == foreign
    Path(cfg.include_file).write_bytes(b"")  # an empty file (touched by the operator) is fine
    shifter.set_weight(10)  # /bin/true plays nginx: -t and reload succeed
    assert shifter.get_weight() == 10


def test_bad_requests_are_errors(tmp_path: Path) -> None:
    shifter = NginxTrafficShifter("traffic", config(tmp_path, nginx="/bin/true"))
    for weight in (-1, 100.5, float("nan")):
        with pytest.raises(TrafficError, match=r"within 0\.\.100"):
            shifter.set_weight(weight)
    with pytest.raises(TrafficError, match=r"make spec\.traffic\.debug_header and the config"):
        shifter.set_header_route("X-Other", "1")
    with pytest.raises(TrafficError, match="routes X-Canary-Debug: 1"):
        shifter.set_header_route("X-Canary-Debug", "2")
    assert not Path(shifter.path).exists()
    assert shifter.set_header_route("x-canary-debug", "1") is True  # header names: any case
    assert parse_include(shifter.path.read_text(), "novactl").header_route


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    shifter = NginxTrafficShifter("traffic", config(tmp_path, nginx="/nonexistent/sbin/nginx"))
    shifter.write_file(10)
    before = shifter.path.read_bytes()
    with pytest.raises(TrafficError) as caught:
        shifter.set_weight(50)
    assert "nginx binary not found: '/nonexistent/sbin/nginx'" in str(caught.value)
    assert str(caught.value).startswith("NginxTrafficShifter(traffic): ")
    assert shifter.path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split.conf"]  # no temp file left


def test_timeout_restores_the_previous_file(tmp_path: Path) -> None:
    slow = tmp_path / "slow-nginx"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    shifter = NginxTrafficShifter("traffic", config(tmp_path, nginx=str(slow),
                                                    reload_timeout="300ms"))
    shifter.write_file(10)
    before = shifter.path.read_bytes()
    with pytest.raises(TrafficError, match=r"nginx -t timed out after 300ms; the previous .* "
                                           r"is back in place"):
        shifter.set_weight(50)
    assert shifter.path.read_bytes() == before
    assert shifter.get_weight() == 10


# ---------------------------------------------------------------- a real nginx


@pytest.fixture(scope="module")
def apps() -> Iterator[dict[str, SampleApp]]:
    started: dict[str, SampleApp] = {}
    try:
        for key, version, role in (("stable", STABLE, "stable"), ("stable2", STABLE, "stable"),
                                   ("canary", CANARY, "canary")):
            started[key] = SampleApp(version, role, base_latency=(0.0, 0.0)).start()
        yield started
    finally:
        for app in started.values():
            app.stop()


def address(app: SampleApp) -> str:
    return app.url.removeprefix("http://")


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Callable[..., NginxServer]]:
    require_binary("nginx")
    yield from nginx_server_factory(tmp_path)


def shift(server: NginxServer, weight: float) -> None:
    """Set the weight and wait until nginx's workers run the new file."""
    assert server.shifter is not None
    before = server.workers()
    server.shifter.set_weight(weight)
    server.wait_reloaded(before)
    assert server.weight_served() == f"{weight:g}"


def test_split_follows_the_weight(nginx: Callable[..., NginxServer],
                                  apps: dict[str, SampleApp]) -> None:
    server = nginx([address(apps["stable"])], [address(apps["canary"])])
    assert server.shifter is not None
    assert server.weight_served() == "0"
    assert server.count_versions(20) == {STABLE: 20}
    for weight, requests in ((10, 100), (50, 100), (33.3, 1000), (100, 20), (0, 20)):
        shift(server, weight)
        assert server.shifter.get_weight() == pytest.approx(weight)
        counts = server.count_versions(requests)
        canary = round(requests * weight / 100)  # whole cycles: exact
        assert counts == {k: v for k, v in {CANARY: canary, STABLE: requests - canary}.items()
                          if v}, (weight, counts, server.logs())


def test_several_stable_servers_share_the_stable_weight(
        nginx: Callable[..., NginxServer], apps: dict[str, SampleApp]) -> None:
    server = nginx([address(apps["stable"]), address(apps["stable2"])],
                   [address(apps["canary"])])
    first, second = (apps[k].request_counts()["200"] for k in ("stable", "stable2"))
    shift(server, 10)  # per server 9 : 9 : 2, a cycle of 20 requests
    assert server.count_versions(100) == {STABLE: 90, CANARY: 10}
    assert apps["stable"].request_counts()["200"] - first == 45
    assert apps["stable2"].request_counts()["200"] - second == 45


def test_debug_header_always_reaches_the_canary(nginx: Callable[..., NginxServer],
                                                apps: dict[str, SampleApp]) -> None:
    server = nginx([address(apps["stable"])], [address(apps["canary"])])
    shifter = server.shifter
    assert shifter is not None
    assert server.count_versions(20, HEADER) == {STABLE: 20}  # no route yet
    before = server.workers()
    assert shifter.set_header_route("X-Canary-Debug", "1") is True
    server.wait_reloaded(before)
    assert shifter.get_weight() == 0
    assert server.count_versions(20, HEADER) == {CANARY: 20}
    assert server.count_versions(20) == {STABLE: 20}
    assert server.count_versions(5, {"X-Canary-Debug": "0"}) == {STABLE: 5}
    shift(server, 10)  # a weight change keeps the route
    assert "# novactl-header-route: on" in shifter.path.read_text()
    assert server.count_versions(20, HEADER) == {CANARY: 20}
    assert server.count_versions(100) == {STABLE: 90, CANARY: 10}
    shift(server, 0)  # ... except to 0%: all stable, debug requests too (rollback)
    assert "# novactl-header-route: off" in shifter.path.read_text()
    assert server.count_versions(20, HEADER) == {STABLE: 20}


def test_failed_nginx_t_restores_the_file_and_the_old_weight_stays(
        nginx: Callable[..., NginxServer], apps: dict[str, SampleApp]) -> None:
    stable, canary = address(apps["stable"]), address(apps["canary"])
    server = nginx([stable], [canary])
    assert server.shifter is not None
    shift(server, 10)
    good = server.shifter.path.read_bytes()
    workers = server.workers()
    for overrides, expected in (
        ({"canary": ["127.0.0.1:99999"]}, 'invalid port in upstream "127.0.0.1:99999"'),
        ({"canary": [canary], "server_options": "max_fails=often"},
         'invalid parameter "max_fails=often"'),
    ):
        broken = NginxTrafficShifter("traffic", Config.model_validate(
            server.shifter_config(stable=[stable], **overrides)))
        with pytest.raises(TrafficError) as caught:
            broken.set_weight(50)
        message = str(caught.value)
        assert "set_weight 50%: nginx -t failed: [emerg] " in message, message
        assert expected in message and f"{server.include_file}:" in message, message
        assert f"the previous {server.include_file} is back in place" in message, message
        assert server.include_file.read_bytes() == good  # byte for byte
    assert server.workers() == workers  # never reloaded
    assert server.weight_served() == "10"
    assert server.count_versions(100) == {STABLE: 90, CANARY: 10}
    assert server.shifter.get_weight() == 10


def test_failed_reload_restores_the_file(nginx: Callable[..., NginxServer],
                                         apps: dict[str, SampleApp]) -> None:
    server = nginx([address(apps["stable"])], [address(apps["canary"])], start=False)
    shifter = server.shifter
    assert shifter is not None
    before = server.include_file.read_bytes()
    with pytest.raises(TrafficError) as caught:
        shifter.set_weight(10)  # nginx -t passes; nobody is there to reload
    message = str(caught.value)
    assert "set_weight 10%: nginx -s reload failed: [error] " in message, message
    assert "nginx.pid" in message, message
    assert "is back in place; reloading it failed too" in message, message
    assert server.include_file.read_bytes() == before
    assert shifter.get_weight() == 0


def test_snippet_is_valid_nginx(tmp_path: Path) -> None:
    binary = require_binary("nginx")
    cfg = config(tmp_path, name="api")
    NginxTrafficShifter("traffic", cfg).write_file(10)
    snippet = nginx_snippet(cfg)
    include = next(line for line in snippet.splitlines() if line.startswith("include "))
    location = snippet[snippet.index("location /"):]
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\n"
                    f"events {{}}\nhttp {{\n{include}\nserver {{\nlisten 127.0.0.1:1;\n"
                    f"{location}}}\n}}\n")
    result = subprocess.run([binary, "-p", f"{tmp_path}/", "-c", str(conf), "-t"],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- the documented plan


def documented_plan(directory: Path) -> Path:
    text = (ROOT / "docs" / "nginx.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    plan = next(b for b in blocks if "kind: RolloutPlan" in b and "type: nginx" in b)
    path = directory / "plan.yaml"
    path.write_text(plan)
    return path


def test_documented_plan_loads_and_init_bootstraps(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    plan = documented_plan(tmp_path)
    include = tmp_path / "novacron-api.conf"
    assert main(["init", str(plan), "--var", f"nginx_include={include}"]) == 0
    out, err = capsys.readouterr()
    assert f"wrote {include} (0% canary, header route off)" in err
    assert f"include {include};" in out
    assert "proxy_pass http://$novacron_api_upstream;" in out
    assert parse_include(include.read_text(), "novacron_api").weight == 0
    assert main(["init", str(plan), "--var", f"nginx_include={include}"]) == 0
    assert "exists; left as it is" in capsys.readouterr().err
    assert main(["snippet", str(plan)]) == 0  # the plan's default include path
    assert "include /etc/nginx/novactl/novacron-api.conf;" in capsys.readouterr().out


def test_with_check_url_a_change_counts_only_once_nginx_serves_it(
        nginx: Callable[..., NginxServer], apps: dict[str, SampleApp]) -> None:
    server = nginx([address(apps["stable"])], [address(apps["canary"])])
    check = f"http://{server.host}:{server.port}/-/novactl-weight"
    shifter = NginxTrafficShifter("traffic", NginxTrafficShifter.Config.model_validate(
        server.shifter_config(stable=[address(apps["stable"])],
                              canary=[address(apps["canary"])], check_url=check)),
        AdapterContext())
    for weight in (10, 50, 0):
        shifter.set_weight(weight)  # returns only when nginx serves it: no waiting here
        assert server.weight_served() == f"{weight:g}"
        assert shifter.get_weight() == weight


def test_a_reload_that_does_not_take_is_an_error_and_the_file_goes_back(
        nginx: Callable[..., NginxServer], apps: dict[str, SampleApp]) -> None:
    server = nginx([address(apps["stable"])], [address(apps["canary"])])
    before = server.include_file.read_bytes()
    # a check URL that never reports the new weight stands for a reload nginx did not apply
    wrong = f"{apps['stable'].url}/health"
    shifter = NginxTrafficShifter("traffic", NginxTrafficShifter.Config.model_validate(
        server.shifter_config(stable=[address(apps["stable"])],
                              canary=[address(apps["canary"])], check_url=wrong,
                              reload_timeout="500ms")), AdapterContext())
    with pytest.raises(TrafficError, match="nginx did not apply the new config within 500ms"):
        shifter.set_weight(30)
    assert server.include_file.read_bytes() == before
