"""A real Prometheus for tests: ``/usr/bin/prometheus`` on loopback, scraping every second.

:class:`PrometheusServer` writes a temporary config (``scrape_interval: 1s``,
one job scraping the given targets), keeps its TSDB and its log in a
temporary directory and listens on ``127.0.0.1:<free port>`` with
``--web.enable-lifecycle``.  :meth:`~PrometheusServer.start` waits (bounded)
for ``/-/ready``; :meth:`~PrometheusServer.stop` and
:meth:`~PrometheusServer.restart` keep port and storage, so data survives a
restart.  :class:`SampleFleet` is what it usually scrapes: a stable and a
canary :class:`~novactl.sandbox.app.SampleApp` with steady load on both.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from _servers import LOOPBACK, free_port, log_tail, port_open, require_binary, stop, wait_for

from novactl.sandbox.app import SampleApp
from novactl.sandbox.load import LoadGenerator

__all__ = ["PrometheusServer", "SampleFleet"]

START_TIMEOUT = 20.0  # seconds Prometheus may take to be ready


def _host_port(target: str) -> str:
    """``http://127.0.0.1:8080/metrics`` or ``127.0.0.1:8080`` → ``127.0.0.1:8080``."""
    parts = urllib.parse.urlsplit(target if "//" in target else f"//{target}")
    if not parts.hostname or not parts.port:
        raise ValueError(f"target {target!r} needs a host and a port")
    return f"{parts.hostname}:{parts.port}"


class PrometheusServer:
    """One Prometheus process scraping ``targets`` (URLs or host:port) every second."""

    def __init__(self, targets: Iterable[str], directory: Path, *, job: str = "sample",
                 binary: str | None = None, port: int | None = None) -> None:
        self.binary = binary or require_binary("prometheus")
        self.targets = [_host_port(t) for t in targets]
        self.job = job
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.config_path = self.directory / "prometheus.yml"
        self.storage = self.directory / "tsdb"
        self.log_path = self.directory / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    # -- lifecycle
    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def write_config(self) -> None:
        targets = ", ".join(json.dumps(t) for t in self.targets)
        self.config_path.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            f"  - job_name: {json.dumps(self.job)}\n"
            "    scrape_interval: 1s\n"
            "    scrape_timeout: 1s\n"
            f"    static_configs: [{{targets: [{targets}]}}]\n")

    def start(self, timeout: float = START_TIMEOUT) -> PrometheusServer:
        """Start (if not running) and wait until ``/-/ready`` answers 200; bounded."""
        if self.running:
            return self
        self.write_config()
        self.storage.mkdir(exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                [self.binary, f"--config.file={self.config_path}",
                 f"--storage.tsdb.path={self.storage}",
                 f"--web.listen-address={LOOPBACK}:{self.port}",
                 "--web.enable-lifecycle", "--log.level=info"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.directory)
        finally:
            log.close()
        try:
            wait_for(self._ready_or_dead, timeout=timeout, interval=0.1,
                     what=f"prometheus ready on {self.url}")
        except TimeoutError as exc:
            self.stop()
            raise RuntimeError(f"{exc}; log:\n{log_tail(self.log_path)}") from None
        if not self.running:
            code = self.process.returncode if self.process else None
            self.process = None
            raise RuntimeError(f"prometheus exited with {code}; log:\n"
                               f"{log_tail(self.log_path)}")
        return self

    def _ready_or_dead(self) -> bool:
        return not self.running or self.ready()

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (then SIGKILL), and wait until the port is closed."""
        process, self.process = self.process, None
        stop(process, timeout=timeout)
        if process is not None:
            wait_for(lambda: not port_open(self.port), timeout=timeout,
                     what=f"port {self.port} closed")

    def restart(self, timeout: float = START_TIMEOUT) -> PrometheusServer:
        """Stop and start again on the same port and storage (the data stays)."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"PrometheusServer({self.url}, targets={self.targets}, running={self.running})"

    # -- queries
    def query(self, promql: str, at: float | None = None) -> dict[str, Any]:
        """The ``data`` of an instant query; raises RuntimeError on an error answer."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"query {promql!r}: HTTP {exc.code}: "
                               f"{exc.read().decode(errors='replace')}") from None
        if body.get("status") != "success":
            raise RuntimeError(f"query {promql!r}: {body}")
        return dict(body["data"])

    def wait_for_samples(self, promql: str, timeout: float = 20.0,
                         series: int = 1) -> list[dict[str, Any]]:
        """Poll until ``promql`` returns at least ``series`` series with finite values.

        Returns the result; raises TimeoutError (with the log's tail) when it never does.
        """
        found: list[dict[str, Any]] = []

        def has_data() -> bool:
            nonlocal found
            try:
                data = self.query(promql)
            except (OSError, RuntimeError):
                return False
            result = data.get("result") or []
            if data.get("resultType") == "scalar":
                result = [{"metric": {}, "value": result}]
            found = [r for r in result if _finite(r.get("value", [0, "NaN"])[1])]
            return len(found) >= series

        try:
            wait_for(has_data, timeout=timeout, interval=0.25, what=f"samples for {promql}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; prometheus log:\n{log_tail(self.log_path)}") from None
        return found

    def targets_up(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=5) as response:
            body = json.loads(response.read())
        return [t for t in body["data"]["activeTargets"] if t.get("health") == "up"]


def _finite(raw: Any) -> bool:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return False
    return value == value and value not in (float("inf"), float("-inf"))


class SampleFleet:
    """A stable and a canary SampleApp on loopback, each under steady GET load."""

    def __init__(self, stable: str = "v2.9.0", canary: str = "v3.0.0", *,
                 canary_errors: float = 0.2, stable_errors: float = 0.0,
                 rps: float = 40.0, seed: int = 7) -> None:
        self.stable = SampleApp(stable, "stable", errors=stable_errors, seed=seed)
        self.canary = SampleApp(canary, "canary", errors=canary_errors, seed=seed + 1)
        self.rps = rps
        self.loads: list[LoadGenerator] = []

    @property
    def apps(self) -> Sequence[SampleApp]:
        return (self.stable, self.canary)

    @property
    def targets(self) -> list[str]:
        return [app.url for app in self.apps]

    def start(self) -> SampleFleet:
        try:
            for app in self.apps:
                app.start()
                self.loads.append(LoadGenerator(f"{app.url}/", self.rps, concurrency=4,
                                                timeout=2.0).start())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        loads, self.loads = self.loads, []
        for load in loads:
            load.stop(timeout=5)
        for app in self.apps:
            app.stop()

    def __enter__(self) -> SampleFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def settle(seconds: float) -> None:
    """Sleep a little (scrapes happen every second); kept in one place to keep it bounded."""
    time.sleep(min(seconds, 5.0))
