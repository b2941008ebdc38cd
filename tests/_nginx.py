"""A private nginx on loopback for tests of the nginx traffic shifter.

:class:`NginxServer` runs one nginx master in the foreground (``daemon off;`` in its
nginx.conf, so the test owns the process) from a temporary prefix directory that holds
everything nginx writes: ``nginx.pid``, ``logs/error.log`` and the temp paths.  The same
``-p PREFIX -c PREFIX/nginx.conf`` arguments (:attr:`NginxServer.args`) work for
``nginx -t`` and ``nginx -s reload``: the pid file named in nginx.conf is where ``-s``
finds the master.  One worker process, so nginx's smooth weighted round-robin is exact
over each cycle of requests.

Its nginx.conf includes the file the shifter owns inside ``http { }`` and has::

    location / { proxy_pass http://$<name>_upstream; proxy_set_header Host $host; }
    location = /-/nginx-health { return 200 "ok"; }
    location = /-/novactl-weight { return 200 $<name>_weight; }
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from _servers import LOOPBACK, free_port, log_tail, port_open, require_binary, wait_for

from novactl.adapters._base import AdapterContext
from novactl.adapters.nginx import NginxTrafficShifter

CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
lock_file {prefix}/nginx.lock;
error_log {prefix}/logs/error.log notice;

events {{
    worker_connections 256;
}}

http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/client_body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;

    include {include};

    server {{
        listen {host}:{port};

        location / {{
            proxy_pass http://${name}_upstream;
            proxy_set_header Host $host;
        }}

        location = /-/nginx-health {{
            return 200 "ok";
        }}

        location = /-/novactl-weight {{
            return 200 ${name}_weight;
        }}
    }}
}}
"""


class NginxServer:
    """One private nginx master: :meth:`start` waits until it answers, :meth:`stop` ends it."""

    def __init__(self, prefix: Path, include_file: Path, *, name: str = "novactl",
                 binary: str | None = None, port: int | None = None) -> None:
        self.binary = binary or require_binary("nginx")
        self.prefix = prefix
        self.include_file = include_file
        self.name = name
        self.port = port or free_port()
        self.host = LOOPBACK
        self.conf = prefix / "nginx.conf"
        self.pid_file = prefix / "nginx.pid"
        self.error_log = prefix / "logs" / "error.log"
        self.stderr_log = prefix / "logs" / "stderr.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.shifter: NginxTrafficShifter | None = None  # set by the fixture factory
        for sub in ("logs", "tmp"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(CONF.format(prefix=prefix, include=include_file, host=self.host,
                                         port=self.port, name=name))

    # ------------------------------------------------------------ what the shifter needs

    @property
    def args(self) -> list[str]:
        """Arguments that point any nginx invocation (-t, -s reload) at this instance."""
        return ["-p", f"{self.prefix}/", "-c", str(self.conf)]

    def shifter_config(self, **overrides: Any) -> dict[str, Any]:
        """Shifter config keys that belong to this server (binary, args, include file, name)."""
        return {"include_file": str(self.include_file), "name": self.name,
                "nginx": self.binary, "args": self.args, **overrides}

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 10.0) -> NginxServer:
        if not self.include_file.exists():
            raise RuntimeError(f"{self.include_file} must exist before nginx starts "
                               "(write it with NginxTrafficShifter.write_file)")
        with self.stderr_log.open("ab") as stderr:
            self.process = subprocess.Popen(
                [self.binary, *self.args], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        try:
            wait_for(self._answers, timeout=timeout, what=f"nginx on port {self.port}")
        except TimeoutError as exc:
            self.stop()
            raise RuntimeError(f"nginx did not start: {exc}\n{self.logs()}") from None
        return self

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"nginx exited with code {self.process.returncode}\n"
                               f"{self.logs()}")
        if not port_open(self.port) or not self.pid_file.exists():
            return False
        try:
            return self.get("/-/nginx-health")[0] == 200
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGQUIT), then SIGTERM, then SIGKILL of the whole process group."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGQUIT, timeout / 2), (signal.SIGTERM, timeout / 2)):
            try:
                process.send_signal(sig)
                process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                return
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=timeout)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def logs(self, lines: int = 20) -> str:
        return (f"--- {self.error_log}\n{log_tail(self.error_log, lines)}\n"
                f"--- {self.stderr_log}\n{log_tail(self.stderr_log, lines)}")

    # ------------------------------------------------------------ reloads

    def workers(self) -> set[int]:
        """Pids of the master's worker processes (children, read from /proc)."""
        if self.process is None:
            return set()
        master = self.process.pid
        found: set[int] = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may contain blanks, so split after ")"
            fields = stat.rsplit(")", 1)[-1].split()
            if len(fields) > 1 and fields[1] == str(master):
                found.add(int(entry))
        return found

    def wait_reloaded(self, before: set[int], timeout: float = 10.0) -> None:
        """Wait until every worker in ``before`` is gone and a new one serves."""

        def switched() -> bool:
            now = self.workers()
            return bool(now) and not (now & before)

        try:
            wait_for(switched, timeout=timeout, interval=0.02, what="nginx reload")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}: workers before {sorted(before)}, now "
                                 f"{sorted(self.workers())}\n{self.logs()}") from None

    # ------------------------------------------------------------ requests

    def get(self, path: str = "/", headers: Mapping[str, str] | None = None,
            timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
        """One request on a fresh connection: (status, lower-cased headers, body)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Connection": "close", **(headers or {})})
            response = conn.getresponse()
            body = response.read()
            return (response.status, {k.lower(): v for k, v in response.getheaders()}, body)
        finally:
            conn.close()

    def weight_served(self) -> str:
        """The ``$<name>_weight`` nginx is running with."""
        status, _headers, body = self.get("/-/novactl-weight")
        assert status == 200, f"/-/novactl-weight answered {status}\n{self.logs()}"
        return body.decode()

    def count_versions(self, requests: int, headers: Mapping[str, str] | None = None
                       ) -> Counter[str]:
        """Send ``requests`` requests through nginx; count the ``X-Version`` answers."""
        counts: Counter[str] = Counter()
        for _ in range(requests):
            status, answer, _body = self.get("/", headers)
            counts[answer.get("x-version", f"HTTP {status}")] += 1
        return counts


def shifter_for(server: NginxServer, stable: list[str], canary: list[str],
                context: AdapterContext | None = None, **overrides: Any) -> NginxTrafficShifter:
    config = NginxTrafficShifter.Config.model_validate(
        server.shifter_config(stable=stable, canary=canary, **overrides))
    return NginxTrafficShifter("traffic", config, context or AdapterContext())


def nginx_server_factory(tmp_path: Path) -> Iterator[Callable[..., NginxServer]]:
    """Generator behind the ``nginx_server`` fixtures: make servers, stop them all after.

    ``make(stable, canary, start=True, **config)`` writes the include file at 0% (via
    the shifter), starts nginx unless ``start=False`` and returns the server; the
    server's ``shifter`` attribute is a ready :class:`NginxTrafficShifter`.
    """
    servers: list[NginxServer] = []

    def make(stable: list[str], canary: list[str], *, start: bool = True,
             name: str = "novactl", **config: Any) -> NginxServer:
        index = len(servers)
        prefix = tmp_path / f"nginx{index}"
        prefix.mkdir()
        server = NginxServer(prefix, prefix / "novactl-split.conf", name=name)
        servers.append(server)
        shifter = shifter_for(server, stable, canary, **config)
        shifter.write_file(0.0)
        server.shifter = shifter
        if start:
            server.start()
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def nginx_server(tmp_path: Path) -> Iterator[Callable[..., NginxServer]]:
    """Factory fixture: ``nginx_server(stable, canary)`` → a running :class:`NginxServer`."""
    yield from nginx_server_factory(tmp_path)
