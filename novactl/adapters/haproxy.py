"""HAProxy traffic shifter: server weights and a debug-header map, over the Runtime API.

Nothing is reloaded: every change goes through the ``stats socket ... level admin``
endpoint (the HAProxy Runtime API), one command per connection::

    spec:
      traffic:
        type: haproxy
        debug_header: {name: X-Canary-Debug, value: "1"}
        config:
          socket: unix:/run/haproxy/admin.sock     # or a plain path, or tcp:127.0.0.1:9999
          backend: app                              # the backend holding both groups
          stable: [stable1, stable2]                # server names in that backend
          canary: [canary1]
          debug_map: /etc/haproxy/debug.map         # optional: the header route
          canary_backend: app_canary                # optional (default: <backend>_canary)

Weights
    ``set_weight(w)`` gives the canary group ``round(w * scale / 100)`` HAProxy weight
    units (halves round up) and the stable group the rest, ``scale`` minus that; a
    group's units are spread evenly over its servers (the first servers get one more
    when they do not divide evenly).  Servers whose weight goes up are changed before
    those whose weight goes down, so the backend never passes through "every weight
    0".  Every weight is read back afterwards.  A non-zero weight that would round to
    no canary traffic at all (or a weight below 100 that would round to no stable
    traffic) is refused rather than silently changed into its opposite.

    ``get_weight()`` is ``sum(canary) / (sum(canary) + sum(stable)) * 100`` over the
    *current* weights from ``get weight`` (not the initial ones in haproxy.cfg).

Header route
    With ``debug_map``, ``set_header_route(header, value)`` makes the map entry
    ``value -> canary_backend`` (``add map`` or ``set map``) and checks it with
    ``show map``.  haproxy.cfg must select the backend through that map, reading the
    same header: ``use_backend %[req.hdr(X-Canary-Debug),map(<debug_map>,app)]``.
    Without ``debug_map`` it returns False (unsupported).

Runtime changes live in HAProxy's memory: a reload or restart goes back to the weights
in haproxy.cfg and the map file's contents.  Every failure is a one-line
:class:`~novactl._errors.TrafficError` naming the command and HAProxy's answer.
"""

from __future__ import annotations

import errno
import math
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from novactl._errors import TrafficError
from novactl.adapters._base import Adapter, AdapterConfig, AdapterContext, Duration

__all__ = ["HAProxyTrafficShifter", "RuntimeAPIAddress", "parse_socket", "split_weight"]

#: The highest weight HAProxy accepts for a server (``set weight``).
MAX_WEIGHT = 256

# A word passed to the Runtime API.  The CLI splits on blanks, treats ``;`` as a
# command separator and ``\`` as an escape, so none of those may appear in a value.
_WORD = re.compile(r"^[^\s;\\\x00-\x1f\x7f]+$")
_GET_WEIGHT = re.compile(r"^(\d+) \(initial (\d+)\)$")
_MAP_LINE = re.compile(r"^0x[0-9a-fA-F]+ (.+) (\S+)$")  # key (may hold blanks), value
_ANSWER_LIMIT = 1 << 20  # bytes; a runtime API answer larger than this is not ours


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _check_word(what: str, value: str) -> str:
    if not _WORD.match(value):
        raise ValueError(f"{what} {value!r} must be non-empty, without blanks, control "
                         "characters, ';' or '\\' (the runtime API cannot carry them)")
    return value


@dataclass(frozen=True)
class RuntimeAPIAddress:
    """Where the runtime API listens: a unix socket path, or a TCP host and port."""

    path: str | None = None
    host: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"


def parse_socket(text: str, base_dir: Path | None = None) -> RuntimeAPIAddress:
    """``unix:/path``, a plain path or ``tcp:host:port`` (``tcp:[::1]:9999``).

    A relative path is taken relative to ``base_dir`` (the plan file's directory).
    """
    text = text.strip()
    if text.startswith("tcp:"):
        rest = text[4:]
        match = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)", rest)
        if not match:
            raise ValueError(f"socket {text!r}: expected tcp:<host>:<port>")
        host = match.group(1) or match.group(3)
        port = int(match.group(2) or match.group(4))
        if not 0 < port < 65536:
            raise ValueError(f"socket {text!r}: port must be within 1..65535")
        return RuntimeAPIAddress(host=host, port=port)
    path = text[5:] if text.startswith("unix:") else text
    if not path:
        raise ValueError("socket must be unix:<path>, a path, or tcp:<host>:<port>")
    if base_dir is not None and not Path(path).is_absolute():
        path = str(base_dir / path)
    return RuntimeAPIAddress(path=path)


def split_weight(weight: float, scale: int) -> tuple[int, int]:
    """The (canary, stable) HAProxy weight units for ``weight`` percent: half-up rounding."""
    canary = math.floor(weight * scale / 100 + 0.5)
    canary = min(max(canary, 0), scale)
    return canary, scale - canary


def _spread(total: int, servers: list[str]) -> dict[str, int]:
    """``total`` units over ``servers``: equal shares, the first ones get the remainder."""
    share, extra = divmod(total, len(servers))
    return {server: share + (1 if i < extra else 0) for i, server in enumerate(servers)}


class HAProxyTrafficShifter(Adapter):
    """Splits traffic between two server groups of one HAProxy backend."""

    class Config(AdapterConfig):
        socket: str = Field(description="The runtime API: unix:<path>, a path (relative to "
                            "the plan file) or tcp:<host>:<port> (a `stats socket ... level "
                            "admin` of haproxy.cfg).")
        backend: str = Field(description="The backend holding the stable and canary servers.")
        stable: list[str] = Field(description="The stable servers (names in `backend`).")
        canary: list[str] = Field(description="The canary servers (names in `backend`).")
        debug_map: str | None = Field(None, description="The map file selecting the backend "
                                      "for the debug header, as written in haproxy.cfg; "
                                      "unset: no header route.")
        canary_backend: str | None = Field(None, description="The backend debug requests go "
                                           "to (default: <backend>_canary).")
        timeout: Duration = Field(5.0, description="Timeout of each runtime API command.")
        scale: int = Field(100, description="HAProxy weight units shared by both groups "
                           "(1..256); the canary gets round(weight * scale / 100).")

        @field_validator("socket")
        @classmethod
        def _socket(cls, value: str) -> str:
            parse_socket(value)
            return value

        @field_validator("backend")
        @classmethod
        def _backend(cls, value: str) -> str:
            return _check_word("backend", value)

        @field_validator("canary_backend")
        @classmethod
        def _canary_backend(cls, value: str | None) -> str | None:
            return None if value is None else _check_word("canary_backend", value)

        @field_validator("debug_map")
        @classmethod
        def _debug_map(cls, value: str | None) -> str | None:
            return None if value is None else _check_word("debug_map", value)

        @field_validator("stable", "canary")
        @classmethod
        def _servers(cls, value: list[str]) -> list[str]:
            if not value:
                raise ValueError("name at least one server")
            for name in value:
                _check_word("server", name)
                if "/" in name:
                    raise ValueError(f"server {name!r}: give the name only, without "
                                     "'<backend>/'")
            if len(set(value)) != len(value):
                raise ValueError("a server is listed twice")
            return value

        @field_validator("timeout")
        @classmethod
        def _timeout(cls, value: float) -> float:
            if not value > 0:
                raise ValueError("timeout must be positive")
            return value

        @field_validator("scale")
        @classmethod
        def _scale(cls, value: int) -> int:
            if not 1 <= value <= MAX_WEIGHT:
                raise ValueError(f"scale must be within 1..{MAX_WEIGHT} "
                                 "(HAProxy server weights stop at 256)")
            return value

        @model_validator(mode="after")
        def _groups(self) -> HAProxyTrafficShifter.Config:
            both = set(self.stable) & set(self.canary)
            if both:
                raise ValueError(f"servers in both stable and canary: {', '.join(sorted(both))}")
            return self

    def __init__(self, name: str, config: Any, context: AdapterContext | None = None) -> None:
        super().__init__(name, config, context or AdapterContext())
        self.address = parse_socket(config.socket, self.context.base_dir)
        self.backend: str = config.backend
        self.stable: list[str] = list(config.stable)
        self.canary: list[str] = list(config.canary)
        self.debug_map: str | None = config.debug_map
        self.canary_backend: str = config.canary_backend or f"{config.backend}_canary"
        self.timeout: float = float(config.timeout)
        self.scale: int = int(config.scale)

    # ------------------------------------------------------------ the interface

    def set_weight(self, weight: float) -> None:
        weight = self._valid_weight(weight)
        canary_units, stable_units = split_weight(weight, self.scale)
        if weight > 0 and canary_units == 0:
            raise TrafficError(
                f"weight {weight:g}% is below half a step at scale {self.scale} "
                f"({50 / self.scale:g}%) and would send the canary nothing; use a weight "
                "of 0, a larger weight or a larger scale (at most 256)", adapter=self.label)
        if weight < 100 and stable_units == 0:
            raise TrafficError(
                f"weight {weight:g}% is within half a step of 100% at scale {self.scale} "
                "and would send the stable nothing; use 100, a smaller weight or a larger "
                "scale (at most 256)", adapter=self.label)
        target = {**_spread(canary_units, self.canary), **_spread(stable_units, self.stable)}
        current = self._weights()
        # raise first, lower afterwards: the backend never has every weight at 0 in between
        rising = [s for s in target if target[s] > current[s]]
        falling = [s for s in target if target[s] < current[s]]
        for server in rising + falling:
            self._command(f"set weight {self.backend}/{server} {target[server]}", expect="")
        applied = self._weights()
        wrong = [f"{s}={applied[s]} (wanted {target[s]})" for s in target
                 if applied[s] != target[s]]
        if wrong:
            raise TrafficError(f"weights did not stick in backend {self.backend}: "
                               + ", ".join(wrong), adapter=self.label)
        if weight == 0 and self.debug_map is not None:
            self._clear_header_routes()
        exact = 100 * canary_units / self.scale
        if not math.isclose(exact, weight, abs_tol=1e-9):
            self.context.log(f"{self.label}: weight {weight:g}% applied as {exact:g}% "
                             f"({canary_units}/{self.scale} HAProxy weight units)")

    def get_weight(self) -> float | None:
        weights = self._weights()
        canary = sum(weights[s] for s in self.canary)
        stable = sum(weights[s] for s in self.stable)
        if canary + stable == 0:
            raise TrafficError(f"every stable and canary server of backend {self.backend} "
                               "has weight 0: no traffic is routed, so there is no split",
                               adapter=self.label)
        return 100.0 * canary / (canary + stable)

    def set_header_route(self, header: str, value: str) -> bool:
        if self.debug_map is None:
            return False
        try:
            _check_word("header value", value)
        except ValueError as exc:
            raise TrafficError(f"header route {header}: {exc}", adapter=self.label) from exc
        backends = self._backends()
        if self.canary_backend not in backends:
            raise TrafficError(f"canary_backend {self.canary_backend} is not a backend of "
                               f"this HAProxy (backends: {', '.join(backends) or 'none'})",
                               adapter=self.label)
        entries = self._map_entries()
        if value in entries:
            if entries[value] != [self.canary_backend]:
                self._command(f"set map {self.debug_map} {value} {self.canary_backend}",
                              expect="")
        else:
            self._command(f"add map {self.debug_map} {value} {self.canary_backend}",
                          expect="")
        found = self._map_entries().get(value)
        if found != [self.canary_backend]:
            raise TrafficError(f"map {self.debug_map} has {value} -> "
                               f"{', '.join(found or ['nothing'])} after setting it to "
                               f"{self.canary_backend}", adapter=self.label)
        self.context.log(f"{self.label}: requests with {header}: {value} go to backend "
                         f"{self.canary_backend} (map {self.debug_map})")
        return True

    # ------------------------------------------------------------ helpers

    def _valid_weight(self, weight: float) -> float:
        try:
            value = float(weight)
        except (TypeError, ValueError) as exc:
            raise TrafficError(f"weight {weight!r} is not a number", adapter=self.label) from exc
        if not math.isfinite(value) or not 0 <= value <= 100:
            raise TrafficError(f"weight {weight!r} is outside 0..100", adapter=self.label)
        return value

    def _weights(self) -> dict[str, int]:
        """The current weight of every configured server."""
        weights: dict[str, int] = {}
        for server in [*self.canary, *self.stable]:
            command = f"get weight {self.backend}/{server}"
            answer = self._command(command)
            match = _GET_WEIGHT.match(answer.strip())
            if not match:
                raise self._refused(command, answer)
            weights[server] = int(match.group(1))
        return weights

    def _backends(self) -> list[str]:
        answer = self._command("show backend")
        lines = [line.strip() for line in answer.splitlines() if line.strip()]
        if not lines or not lines[0].startswith("#"):
            raise self._refused("show backend", answer)
        return lines[1:]

    def _clear_header_routes(self) -> None:
        """0% means all stable, debug requests too: drop the map entries to the canary
        (the canary is scaled down next, so they would only fail)."""
        ours = [key for key, backends in self._map_entries().items()
                if backends == [self.canary_backend]]
        for key in ours:
            self._command(f"del map {self.debug_map} {key}", expect="")
        if ours:
            self.context.log(f"{self.label}: 0% canary: header route(s) {', '.join(ours)} "
                             f"removed from map {self.debug_map}")

    def _map_entries(self) -> dict[str, list[str]]:
        command = f"show map {self.debug_map}"
        answer = self._command(command)
        entries: dict[str, list[str]] = {}
        for line in answer.splitlines():
            if not line.strip():
                continue
            match = _MAP_LINE.match(line.strip())
            if not match:
                raise self._refused(command, answer)
            entries.setdefault(match.group(1), []).append(match.group(2))
        return entries

    def _refused(self, command: str, answer: str) -> TrafficError:
        first = next((line for line in answer.splitlines() if line.strip()), "")
        message = _one_line(first) or "an empty answer"
        hint = ""
        if first.startswith("Permission denied"):
            hint = f" (the stats socket at {self.address} needs `level admin`)"
        elif first.startswith("Unknown map identifier"):
            hint = (f" (debug_map must be written exactly as in haproxy.cfg; "
                    f"`show map` lists: {', '.join(self._known_maps()) or 'no maps'})")
        elif first.startswith("Unknown command"):
            hint = " (is this HAProxy's runtime API?)"
        elif first.startswith("HTTP/"):
            hint = f" ({self.address} is an HTTP listener, not the runtime API)"
        return TrafficError(f"HAProxy refused `{command}`: {message}{hint}", adapter=self.label)

    def _known_maps(self) -> list[str]:
        try:
            answer = self._command("show map")
        except TrafficError:
            return []
        return re.findall(r"^\d+ \(([^)]*)\)", answer, flags=re.MULTILINE)

    def _command(self, command: str, *, expect: str | None = None) -> str:
        """Run one runtime API command; ``expect=""``: an answer other than blank is an error."""
        answer = self._send(command)
        if expect is not None and answer.strip() != expect:
            raise self._refused(command, answer)
        return answer

    def _send(self, command: str) -> str:
        address = self.address
        deadline = time.monotonic() + self.timeout
        sock = self._connect()
        with sock:
            chunks: list[bytes] = []
            size = 0
            try:
                sock.sendall(command.encode() + b"\n")
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError
                    sock.settimeout(remaining)
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > _ANSWER_LIMIT:
                        raise TrafficError(f"`{command}`: the answer from {address} exceeds "
                                           f"{_ANSWER_LIMIT} bytes", adapter=self.label)
            except TimeoutError as exc:
                raise TrafficError(f"`{command}`: no complete answer from the HAProxy runtime "
                                   f"API at {address} within {self.timeout:g}s",
                                   adapter=self.label) from exc
            except OSError as exc:
                raise TrafficError(f"`{command}`: the HAProxy runtime API at {address} "
                                   f"failed: {_reason(exc)}", adapter=self.label) from exc
        return b"".join(chunks).decode("utf-8", errors="replace")

    def _connect(self) -> socket.socket:
        address = self.address
        try:
            if address.path is None:
                return socket.create_connection((address.host, address.port),
                                                timeout=self.timeout)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect(address.path)
            except BaseException:
                sock.close()
                raise
            return sock
        except OSError as exc:
            if isinstance(exc, TimeoutError):
                reason = f"timed out after {self.timeout:g}s"
            else:
                reason = _reason(exc)
            hint = "is `stats socket ... level admin` in haproxy.cfg?"
            if exc.errno in (errno.EACCES, errno.EPERM):
                hint = ("the user running novactl needs read and write access to it "
                        "(`stats socket ... mode/user/group`)")
            raise TrafficError(f"cannot reach the HAProxy runtime API at {address}: "
                               f"{reason}; {hint}", adapter=self.label) from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        known = {
            errno.ENOENT: "no such file",
            errno.ECONNREFUSED: "connection refused",
            errno.EACCES: "permission denied",
            errno.EPERM: "permission denied",
            errno.ENOTSOCK: "not a socket",
            errno.ECONNRESET: "connection reset",
            errno.EPIPE: "connection closed",
        }
        if exc.errno in known:
            return known[exc.errno]
        if exc.strerror:
            return exc.strerror[:1].lower() + exc.strerror[1:]
    text = _one_line(str(exc)) or type(exc).__name__
    return re.sub(r"^\[Errno -?\d+\]\s*", "", text)
