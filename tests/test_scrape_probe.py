"""ScrapeProbe against a real HTTP server on 127.0.0.1, with a fake clock."""

from __future__ import annotations

import json
import math
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from novactl._clock import FakeClock
from novactl.adapters._base import AdapterContext
from novactl.adapters._promtext import SelectorError
from novactl.adapters._registry import create
from novactl.adapters.scrape import (
    MAX_AGE,
    MAX_SNAPSHOTS,
    ScrapeProbe,
    Snapshot,
    bucket_quantile,
    parse_query,
    prune,
)
from novactl.core.observations import Observation, ObsStatus, ProbeQuery

TOKEN = "s3cr3t-t0ken"


class MetricsServer:
    """Serves ``body`` on every path with ``status``; records the request headers."""

    def __init__(self) -> None:
        self.body = ""
        self.status = 200
        self.requests: list[dict[str, str]] = []
        self.on_request: Callable[[], None] = lambda: None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append({k.lower(): v for k, v in self.headers.items()})
                server.on_request()
                payload = server.body.encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/metrics"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    srv = MetricsServer()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_probe(targets: list[str], clock: FakeClock, state_dir: Path | None = None,
               **config: Any) -> ScrapeProbe:
    context = AdapterContext(clock=clock, state_dir=state_dir, env={"METRICS_TOKEN": TOKEN})
    return ScrapeProbe("app", ScrapeProbe.Config(targets=targets, **config), context)


def ask(probe: ScrapeProbe, clock: FakeClock, window: float = 300.0, kind: str = "value",
        **parts: str) -> Observation:
    return probe.observe(ProbeQuery(metric="m", kind=kind, parts=parts, version="v2",
                                    role="canary", window=window, at=clock.now()))


def counters(ok: float, errors: float | None = None, extra: str = "") -> str:
    lines = ["# TYPE http_requests_total counter",
             f'http_requests_total{{code="200",version="v2"}} {ok}']
    if errors is not None:
        lines.append(f'http_requests_total{{code="500",version="v2"}} {errors}')
    return "\n".join(lines) + "\n" + extra


# --------------------------------------------------------------------------- counters


def test_first_scrape_is_no_data_never_ok(server: MetricsServer, clock: FakeClock) -> None:
    server.body = counters(100, 5)
    probe = make_probe([server.url], clock)
    obs = ask(probe, clock, value="http_requests_total")
    assert obs.status is ObsStatus.NO_DATA
    assert obs.value is None
    assert "first scrape / not enough history" in obs.reason
    assert "two scrapes" in obs.reason
    probe.close()


def test_counter_increase_and_rate(server: MetricsServer, clock: FakeClock) -> None:
    probe = make_probe([server.url], clock)
    server.body = counters(100, 5)
    ask(probe, clock, value="http_requests_total")
    clock.advance(300)
    server.body = counters(160, 9)
    obs = ask(probe, clock, value='http_requests_total{code="200"}')
    assert obs.status is ObsStatus.OK and obs.value == 60
    assert ask(probe, clock, value="http_requests_total").value == 64
    assert ask(probe, clock, value="increase(http_requests_total[300s])").value == 64
    assert ask(probe, clock, value='rate(http_requests_total{code=~"5.."})').value == (
        pytest.approx(4 / 300))
    assert len(server.requests) == 2  # queries at one instant share one scrape
    probe.close()


def test_counter_reset_counts_from_zero(server: MetricsServer, clock: FakeClock) -> None:
    probe = make_probe([server.url], clock)
    server.body = counters(100)
    ask(probe, clock, value="http_requests_total")
    clock.advance(150)
    server.body = counters(130)
    ask(probe, clock, value="http_requests_total")
    clock.advance(150)
    server.body = counters(20)  # the process restarted
    obs = ask(probe, clock, value="http_requests_total")
    assert obs.status is ObsStatus.OK
    assert obs.value == 30 + 20
    probe.close()


def test_window_picks_the_snapshot_at_now_minus_window(server: MetricsServer,
                                                       clock: FakeClock) -> None:
    probe = make_probe([server.url], clock)
    for value in (0, 10, 30, 60, 100):  # one scrape a minute
        server.body = counters(value)
        ask(probe, clock, value="http_requests_total")
        clock.advance(60)
    server.body = counters(150)
    assert ask(probe, clock, window=60, value="http_requests_total").value == 50
    assert ask(probe, clock, window=120, value="http_requests_total").value == 90
    # a window a little off the scrape grid still finds its snapshot (tolerance)
    assert ask(probe, clock, window=121, value="http_requests_total").value == 90
    assert ask(probe, clock, window=300, value="http_requests_total").value == 150
    # longer than the history but at least half covered: the oldest snapshot is used
    obs = ask(probe, clock, window=500, value="rate(http_requests_total)")
    assert obs.value == pytest.approx(150 / 300)
    # less than half covered: no data rather than a guess
    obs = ask(probe, clock, window=700, value="http_requests_total")
    assert obs.status is ObsStatus.NO_DATA and "not enough history" in obs.reason
    probe.close()


def test_ratio_gives_value_events_trials(server: MetricsServer, clock: FakeClock) -> None:
    probe = make_probe([server.url], clock)
    server.body = counters(1000, 10)
    ask(probe, clock, kind="ratio", numerator="x_total", denominator="x_total")
    clock.advance(300)
    # a 503 series appears inside the window: its first errors count (from 0)
    server.body = counters(1385, 13, 'http_requests_total{code="503",version="v2"} 2\n')
    obs = ask(probe, clock, kind="ratio",
              numerator='http_requests_total{code=~"5..", version="v2"}',
              denominator='http_requests_total{version="v2"}')
    assert obs.status is ObsStatus.OK, obs.reason
    assert obs.events == 5
    assert obs.trials == 390
    assert obs.value == pytest.approx(5 / 390)
    probe.close()


def test_parts_of_one_observation_share_a_slow_scrape(server: MetricsServer,
                                                     clock: FakeClock) -> None:
    server.on_request = lambda: clock.advance(5)  # every scrape takes 5 s
    probe = make_probe([server.url], clock)
    server.body = counters(1000, 10)
    ask(probe, clock, value="http_requests_total")
    clock.advance(300)
    server.body = counters(1100, 12)
    before = len(server.requests)
    obs = ask(probe, clock, kind="ratio", numerator='http_requests_total{code="500"}',
              denominator="http_requests_total")
    assert len(server.requests) == before + 1
    assert (obs.events, obs.trials) == (2, 102)
    probe.close()


def test_untyped_total_is_a_counter_and_gauges_are_current(server: MetricsServer,
                                                           clock: FakeClock) -> None:
    probe = make_probe([server.url], clock)
    server.body = ("jobs_done_total 10\n# TYPE queue_depth gauge\n"
                   'queue_depth{shard="a"} 4\nqueue_depth{shard="b"} 3\ninflight 7\n')
    # gauges need no history
    gauge = ask(probe, clock, value="queue_depth")
    assert gauge.status is ObsStatus.OK and gauge.value == 7
    assert ask(probe, clock, value="inflight").value == 7  # untyped, no counter suffix
    assert ask(probe, clock, value="jobs_done_total").status is ObsStatus.NO_DATA
    clock.advance(300)
    server.body = server.body.replace("jobs_done_total 10", "jobs_done_total 25").replace(
        'shard="a"} 4', 'shard="a"} 9')
    assert ask(probe, clock, value="jobs_done_total").value == 15
    assert ask(probe, clock, value='queue_depth{shard!="b"}').value == 9
    mixed = ask(probe, clock, value='{__name__=~"queue_depth|jobs_done_total"}')
    assert mixed.status is ObsStatus.ERROR and "counters and gauges" in mixed.reason
    probe.close()


def test_no_matching_series_is_no_data(server: MetricsServer, clock: FakeClock) -> None:
    server.body = counters(1, 1)
    probe = make_probe([server.url], clock)
    obs = ask(probe, clock, value='http_requests_total{version="v3"}')
    assert obs.status is ObsStatus.NO_DATA
    assert 'no series match http_requests_total{version="v3"}' in obs.reason
    probe.close()


def test_several_targets_are_summed_per_target(clock: FakeClock) -> None:
    one, two = MetricsServer(), MetricsServer()
    try:
        probe = make_probe([one.url, two.url], clock)
        one.body, two.body = counters(100), counters(100)  # identical series, two processes
        ask(probe, clock, value="http_requests_total")
        clock.advance(300)
        one.body, two.body = counters(150), counters(10)  # the second one restarted
        assert ask(probe, clock, value="http_requests_total").value == 50 + 10
        probe.close()
    finally:
        one.stop()
        two.stop()


# --------------------------------------------------------------------------- histograms

BOUNDS = ("0.1", "0.25", "0.5", "1", "+Inf")


def histogram(cumulative_by_instance: dict[str, list[float]]) -> str:
    lines = ["# HELP latency_seconds Request latency.", "# TYPE latency_seconds histogram"]
    for instance, counts in cumulative_by_instance.items():
        for bound, count in zip(BOUNDS, counts, strict=True):
            lines.append(f'latency_seconds_bucket{{instance="{instance}",le="{bound}"}} {count}')
        lines.append(f'latency_seconds_count{{instance="{instance}"}} {counts[-1]}')
        lines.append(f'latency_seconds_sum{{instance="{instance}"}} 1')
    return "\n".join(lines) + "\n"


def test_histogram_quantile_matches_hand_computation(server: MetricsServer,
                                                     clock: FakeClock) -> None:
    probe = make_probe([server.url], clock)
    server.body = histogram({"a": [10, 20, 30, 40, 40], "b": [5, 5, 5, 5, 5]})
    assert ask(probe, clock, value="histogram_quantile(0.9, latency_seconds)").status is (
        ObsStatus.NO_DATA)
    clock.advance(300)
    # increases: a = [30, 50, 60, 64, 64], b = [20, 30, 35, 36, 36]
    # summed by le: 0.1→50, 0.25→80, 0.5→95, 1→100, +Inf→100
    server.body = histogram({"a": [40, 70, 90, 104, 104], "b": [25, 35, 40, 41, 41]})
    p90 = ask(probe, clock, value="histogram_quantile(0.9, latency_seconds)")
    assert p90.status is ObsStatus.OK
    assert p90.value == pytest.approx(0.25 + (0.5 - 0.25) * (90 - 80) / (95 - 80))
    p99 = ask(probe, clock, value="histogram_quantile(0.99, latency_seconds_bucket[300s])")
    assert p99.value == pytest.approx(0.5 + 0.5 * (99 - 95) / (100 - 95))
    p10 = ask(probe, clock, value="histogram_quantile(0.1, latency_seconds)")
    assert p10.value == pytest.approx(0.1 * 10 / 50)  # the lowest bucket starts at 0
    only_b = ask(probe, clock, value='histogram_quantile(0.5, latency_seconds{instance="b"})')
    assert only_b.value == pytest.approx(0.1 * 18 / 20)  # b alone: rank 18 of 36
    # with samples from the _count series, as value metrics use them
    obs = ask(probe, clock, value="histogram_quantile(0.9, latency_seconds)",
              samples="latency_seconds_count")
    assert obs.status is ObsStatus.OK and obs.samples == 100
    probe.close()


def test_histogram_quantile_in_inf_bucket_and_without_observations(
        server: MetricsServer, clock: FakeClock) -> None:
    probe = make_probe([server.url], clock)
    server.body = histogram({"a": [0, 0, 0, 0, 0]})
    ask(probe, clock, value="histogram_quantile(0.5, latency_seconds)")
    clock.advance(300)
    server.body = histogram({"a": [0, 0, 0, 0, 0]})
    empty = ask(probe, clock, value="histogram_quantile(0.5, latency_seconds)")
    assert empty.status is ObsStatus.NO_DATA and "no observations" in empty.reason
    clock.advance(300)
    server.body = histogram({"a": [10, 10, 10, 10, 40]})  # 30 slower than 1s
    top = ask(probe, clock, value="histogram_quantile(0.99, latency_seconds)")
    assert top.value == 1.0  # the highest finite bound, as Prometheus answers
    probe.close()


def test_bucket_quantile_prometheus_rules() -> None:
    inf = math.inf
    assert bucket_quantile(0.5, [(1.0, 10), (inf, 10)]) == 0.5
    assert bucket_quantile(0.5, [(-1.0, 10), (inf, 10)]) == -1.0  # lowest bound ≤ 0
    assert math.isnan(bucket_quantile(0.5, [(1.0, 10), (2.0, 10)]))  # no +Inf bucket
    assert math.isnan(bucket_quantile(0.5, [(1.0, 0), (inf, 0)]))
    assert math.isnan(bucket_quantile(0.5, [(inf, 10)]))
    # non-monotonic input is forced monotonic: (2, 5) counts as 10
    assert bucket_quantile(0.5, [(1.0, 10), (2.0, 5), (inf, 20)]) == 1.0
    assert bucket_quantile(0.75, [(1.0, 10), (2.0, 5), (inf, 20)]) == 2.0
    assert bucket_quantile(1.5, [(1.0, 1), (inf, 1)]) == inf
    assert bucket_quantile(-0.5, [(1.0, 1), (inf, 1)]) == -inf


# --------------------------------------------------------------------------- failures


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_target_down_is_an_error_naming_the_target(clock: FakeClock) -> None:
    url = f"http://127.0.0.1:{free_port()}/metrics"
    probe = make_probe([url], clock, timeout="2s", token_env="METRICS_TOKEN")
    obs = ask(probe, clock, value="up")
    assert obs.status is ObsStatus.ERROR
    assert url in obs.reason
    assert "\n" not in obs.reason
    assert TOKEN not in obs.reason
    probe.close()


def test_bad_status_and_unparsable_body_are_errors(server: MetricsServer,
                                                   clock: FakeClock) -> None:
    probe = make_probe([server.url], clock)
    server.status = 503
    obs = ask(probe, clock, value="up")
    assert obs.status is ObsStatus.ERROR
    assert f"cannot scrape {server.url}: HTTP 503" in obs.reason
    server.status = 200
    server.body = 'up{job="x" 1\n'
    clock.advance(5)
    obs = ask(probe, clock, value="up")
    assert obs.status is ObsStatus.ERROR
    assert f"cannot parse metrics from {server.url}: line 1" in obs.reason
    assert "\n" not in obs.reason
    assert probe.history == []  # failed scrapes are not history
    probe.close()


def test_bad_query_is_an_error_with_position(server: MetricsServer, clock: FakeClock) -> None:
    server.body = counters(1)
    probe = make_probe([server.url], clock)
    obs = ask(probe, clock, value='sum(rate(http_requests_total{code="500"}[5m]))')
    assert obs.status is ObsStatus.ERROR
    assert "unknown function sum" in obs.reason and "at position 0" in obs.reason
    obs = ask(probe, clock, value='rate(x{a="1"}')
    assert obs.status is ObsStatus.ERROR and "expected ')'" in obs.reason
    probe.close()


def test_parse_query_forms() -> None:
    assert parse_query('x{a="1"}').function == "value"
    q = parse_query(" rate( x_total{a=~'b.*'} [ 5m ] ) ")
    assert (q.function, q.range, q.selector.name) == ("rate", 300.0, "x_total")
    h = parse_query("histogram_quantile(0.95, lat_bucket[1h])")
    assert (h.function, h.quantile, h.range) == ("histogram_quantile", 0.95, 3600.0)
    for bad, position in [("histogram_quantile(1.5, x)", 19), ("x[5m]", 1),
                          ("rate(x[5q])", 7), ("histogram_quantile(0.5 x)", 23),
                          ('histogram_quantile(0.5, {a="1"})', 0)]:
        with pytest.raises(SelectorError) as info:
            parse_query(bad)
        assert info.value.position == position, (bad, str(info.value))


# --------------------------------------------------------------------------- auth, state


def test_bearer_token_is_sent_and_never_shown(server: MetricsServer, clock: FakeClock) -> None:
    server.body = counters(1)
    probe = make_probe([server.url], clock, token_env="METRICS_TOKEN",
                       headers={"X-Scope": "canary"})
    ask(probe, clock, value="http_requests_total")
    assert server.requests[-1]["authorization"] == f"Bearer {TOKEN}"
    assert server.requests[-1]["x-scope"] == "canary"
    assert TOKEN not in repr(probe)
    missing = ScrapeProbe("app", ScrapeProbe.Config(targets=[server.url], token_env="NOPE"),
                          AdapterContext(clock=clock, env={}))
    obs = ask(missing, clock, value="up")
    assert obs.status is ObsStatus.ERROR and "NOPE is not set" in obs.reason
    probe.close()


def test_history_persists_across_instances(server: MetricsServer, clock: FakeClock,
                                           tmp_path: Path) -> None:
    server.body = counters(100, 1)
    first = make_probe([server.url], clock, state_dir=tmp_path, token_env="METRICS_TOKEN")
    assert ask(first, clock, value="http_requests_total").status is ObsStatus.NO_DATA
    first.close()
    state = tmp_path / "scrape-app.json"
    assert state.exists()
    assert TOKEN not in state.read_text()
    assert server.url not in state.read_text()  # targets are kept as a fingerprint

    clock.advance(300)  # the next cron run: a new process, a new probe
    server.body = counters(175, 6)
    second = make_probe([server.url], clock, state_dir=tmp_path, token_env="METRICS_TOKEN")
    assert len(second.history) == 1
    obs = ask(second, clock, kind="ratio", numerator='http_requests_total{code="500"}',
              denominator="http_requests_total")
    assert obs.status is ObsStatus.OK
    assert (obs.events, obs.trials) == (5, 80)
    assert len(json.loads(state.read_text())["snapshots"]) == 2
    second.close()

    # other targets: the saved history does not apply
    other = make_probe([server.url + "?x=1"], clock, state_dir=tmp_path)
    assert other.history == []
    # a corrupt file is ignored, not fatal
    state.write_text("{not json")
    assert make_probe([server.url], clock, state_dir=tmp_path).history == []


def test_created_through_the_registry(server: MetricsServer, clock: FakeClock) -> None:
    server.body = "# TYPE g gauge\ng 2.5\n"
    probe = create("probe", "scrape", "app", {"targets": [server.url], "timeout": "3s"},
                   AdapterContext(clock=clock))
    assert isinstance(probe, ScrapeProbe)
    assert probe.config.timeout == 3.0
    assert ask(probe, clock, value="g").value == 2.5
    probe.close()


def test_prune_is_bounded_and_keeps_long_windows_answerable() -> None:
    now = 1_000_000.0
    snaps = [Snapshot(now - age, {}, {}) for age in range(30 * 3000, -1, -30)]
    kept = prune(snaps, now)
    assert len(kept) <= MAX_SNAPSHOTS
    assert kept[-1].at == now
    assert [s.at for s in kept] == sorted(s.at for s in kept)
    ages = [now - s.at for s in kept]
    assert max(ages) >= 3600  # an hour-long window still has its start
    # the newest scrapes are all kept, one per 30 s
    assert sorted(ages)[:12] == [30.0 * i for i in range(12)]
    # an hour ago is within 5% of some kept snapshot
    assert min(abs(age - 3600) for age in ages) <= 0.05 * 3600
    assert prune([Snapshot(now - MAX_AGE - 1, {}, {})], now) == []
    assert prune([Snapshot(now + 10, {}, {})], now) == []  # from the future: clock went back


def test_histogram_metric_answers_its_buckets(server: MetricsServer, clock: FakeClock) -> None:
    probe = make_probe([server.url], clock)
    server.body = histogram({"a": [10, 20, 30, 40, 40], "b": [5, 5, 5, 5, 5]})
    first = probe.observe(ProbeQuery(metric="m", kind="histogram",
                                     parts={"buckets": "latency_seconds"}, version="v2",
                                     role="canary", window=300, at=clock.now(), quantile=0.9))
    assert first.status is ObsStatus.NO_DATA
    clock.advance(300)
    server.body = histogram({"a": [40, 70, 90, 104, 104], "b": [25, 35, 40, 41, 41]})
    for query in ("latency_seconds", "increase(latency_seconds_bucket[300s])"):
        obs = probe.observe(ProbeQuery(metric="m", kind="histogram", parts={"buckets": query},
                                       version="v2", role="canary", window=300,
                                       at=clock.now(), quantile=0.9))
        assert obs.status is ObsStatus.OK and obs.samples == 100
        assert obs.buckets == ((0.1, 50), (0.25, 80), (0.5, 95), (1.0, 100), (math.inf, 100))
        assert obs.value == pytest.approx(0.25 + (0.5 - 0.25) * (90 - 80) / (95 - 80))
    bad = probe.observe(ProbeQuery(metric="m", kind="histogram",
                                   parts={"buckets": "histogram_quantile(0.5, latency_seconds)"},
                                   version="v2", role="canary", window=300, at=clock.now()))
    assert bad.status is ObsStatus.ERROR and "names the histogram" in bad.reason
    probe.close()
