"""A real HAProxy on loopback in front of two SampleApps, for the haproxy traffic shifter.

:func:`running_haproxy` writes a haproxy.cfg, an empty debug map and the admin sockets
into a temporary directory, starts ``haproxy -f <cfg> -db`` in the foreground and waits
(bounded) until its frontend and both runtime API sockets answer.  It is always stopped.

The configuration is the one docs/haproxy.md asks operators to add, on free ports::

    frontend fe:  use_backend %[req.hdr(X-Canary-Debug),map(<dir>/debug.map,app)]
                  default_backend app   (a request without the header: the fetch fails)
    backend app:  balance roundrobin; server stable (weight 100), server canary (weight 0)
    backend canary_only: server canary
    frontend fe_pool -> backend pool: stable_a, stable_b, canary_a, canary_b
"""

from __future__ import annotations

import http.client
import socket
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from _servers import LOOPBACK, free_port, log_tail, port_open, require_binary, stop, wait_for

DEBUG_HEADER = "X-Canary-Debug"

CONFIG = """\
global
    stats socket {dir}/admin.sock mode 600 level admin
    stats socket ipv4@{host}:{admin_port} level admin
    stats socket {dir}/user.sock mode 600 level user
    stats timeout 10s

defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s

frontend fe
    bind {host}:{port}
    use_backend %[req.hdr({header}),map({dir}/debug.map,app)]
    default_backend app

backend app
    balance roundrobin
    server stable {host}:{stable_port} weight 100
    server canary {host}:{canary_port} weight 0

backend canary_only
    server canary {host}:{canary_port}

# two servers per group (each pair points at the same app), for spreading weights
frontend fe_pool
    bind {host}:{pool_port}
    default_backend pool

backend pool
    balance roundrobin
    server stable_a {host}:{stable_port} weight 50
    server stable_b {host}:{stable_port} weight 50
    server canary_a {host}:{canary_port} weight 0
    server canary_b {host}:{canary_port} weight 0
"""


@dataclass
class HAProxy:
    """A running HAProxy: where it listens and where its runtime API is."""

    process: subprocess.Popen[bytes]
    directory: Path
    port: int
    admin_port: int
    pool_port: int

    @property
    def socket(self) -> str:
        """The admin unix socket, as the adapter's ``socket`` setting."""
        return f"unix:{self.directory / 'admin.sock'}"

    @property
    def tcp_socket(self) -> str:
        return f"tcp:{LOOPBACK}:{self.admin_port}"

    @property
    def user_socket(self) -> str:
        """A runtime API socket at ``level user`` (read only)."""
        return str(self.directory / "user.sock")

    @property
    def debug_map(self) -> str:
        return str(self.directory / "debug.map")

    def runtime(self, command: str) -> str:
        """Send one command to the admin socket and return the answer (like ``socat``)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.directory / "admin.sock"))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def versions(self, requests: int, headers: dict[str, str] | None = None,
                 port: int | None = None) -> Counter[str]:
        """``X-Version`` of ``requests`` sequential GETs through a frontend (default: fe)."""
        port = port or self.port
        seen: Counter[str] = Counter()
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=5)
        try:
            for _ in range(requests):
                conn.request("GET", "/", headers=headers or {})
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    seen[f"HTTP {response.status}"] += 1
                else:
                    seen[response.getheader("X-Version") or "?"] += 1
                if response.will_close:
                    conn.close()
                    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=5)
        finally:
            conn.close()
        return seen


@contextmanager
def running_haproxy(directory: Path, stable_port: int, canary_port: int) -> Iterator[HAProxy]:
    """HAProxy in the foreground with its config in ``directory``; stopped on exit."""
    binary = require_binary("haproxy")
    directory.mkdir(parents=True, exist_ok=True)
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    port, admin_port, pool_port = sorted(ports)
    (directory / "debug.map").write_text("")
    config = directory / "haproxy.cfg"
    config.write_text(CONFIG.format(dir=directory, host=LOOPBACK, port=port,
                                    admin_port=admin_port, pool_port=pool_port,
                                    header=DEBUG_HEADER,
                                    stable_port=stable_port, canary_port=canary_port))
    log = directory / "haproxy.log"
    process: subprocess.Popen[bytes] | None = None
    with log.open("wb") as out:
        try:
            process = subprocess.Popen([binary, "-f", str(config), "-db"], stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       cwd=directory)
            started = process

            def up() -> bool:
                if started.poll() is not None:
                    raise RuntimeError(f"haproxy exited with {started.returncode}:\n"
                                       + log_tail(log))
                return (port_open(port) and port_open(admin_port) and port_open(pool_port)
                        and (directory / "admin.sock").exists())

            wait_for(up, timeout=10, what="haproxy listening")
            yield HAProxy(process, directory, port, admin_port, pool_port)
        finally:
            stop(process)
