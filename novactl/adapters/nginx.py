"""nginx traffic shifter: a weighted split between two upstream groups, owned by novactl.

novactl owns ONE file, ``include_file``, and nothing else of nginx's configuration.
The file defines

    upstream <name>_stable   the stable servers
    upstream <name>_canary   the canary servers
    upstream <name>_split    both groups with integer weights: the canary share
    $<name>_upstream         "<name>_canary" for requests carrying the debug header
                             (once the header route is on), else "<name>_split"
    $<name>_weight           the canary weight this file stands for ("10"), for checks

The operator includes it once inside ``http { }`` and proxies to the variable::

    include /etc/nginx/novactl/api.conf;                 # in http { }
    location / { proxy_pass http://$novactl_upstream; }   # in the service's server { }

(:func:`nginx_snippet` prints the exact lines for a config.)

Weights
    The weight is kept in hundredths of a percent: canary ``round(w × 100)`` against
    stable ``10000 − that``, reduced by their gcd (10% → 1 : 9, 33.3% → 333 : 667).
    Several servers in a group share the group's weight evenly (still integers).
    nginx's weighted round-robin is smooth, so each worker process sends exactly that
    share over every cycle of ``sum(weights)`` requests.  nginx weights must be ≥ 1:
    at 0% the split holds only the stable servers, at 100% only the canary servers.
    A weight that is not a multiple of 0.01 is rounded to the nearest one, except
    that a weight above 0 never becomes 0 and one below 100 never becomes 100.
    :meth:`NginxTrafficShifter.get_weight` reports the weight written (the rounded one).

Changing the weight (``set_weight``, ``set_header_route``)
    1. read the current file (kept in memory to put it back; a file that exists but was
       not written by novactl is never overwritten);
    2. write the new one atomically beside it (temporary file, fsync, ``os.replace``);
    3. ``nginx -t`` (unless ``test: false``) — on failure the previous file is put back
       byte for byte and the error names nginx's first error line;
    4. ``nginx -s reload`` — on failure the previous file is put back, nginx is asked
       to reload once more (so it surely runs the previous file) and the error says so.

    Every nginx invocation gets ``args`` (``-p``, ``-c``...) and a timeout of
    ``reload_timeout``.  ``nginx`` may be a command prefix such as ``sudo -n nginx``.

Reading the weight back (``get_weight``)
    The number on the ``# novactl-weight:`` line, cross-checked against the weights on
    the server lines of ``<name>_split``.  A missing file is an error, not ``None``:
    ``None`` means "this router cannot report its weight" and novactl would then assume
    the weight it asked for; a file that vanished after a successful ``set_weight``
    must not pass as verified.  The file tells what nginx was asked to load; nginx
    switches gracefully (new workers take new connections, old ones finish theirs).

The debug header route
    ``set_header_route(header, value)`` turns on the route configured by ``debug_header``
    and ``debug_value``; the arguments (the plan's ``traffic.debug_header``) must name
    the same header (case-insensitively) and value, otherwise it raises — the file is
    always a pure function of this config, a weight and one on/off bit.  The route is
    recorded in the file (``# novactl-header-route: on``) and kept by later weight
    changes.  nginx's ``map`` compares the value case-insensitively.

Bootstrap: nginx refuses to start when an included file is missing, so write the initial
file (0%, header route off) before adding the include: ``python -m novactl.adapters.nginx
init PLAN`` (or :meth:`NginxTrafficShifter.write_file`).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from pydantic import Field, field_validator, model_validator

from novactl._errors import NovactlError, TrafficError
from novactl._units import format_duration
from novactl.adapters._base import Adapter, AdapterConfig, AdapterContext, Duration

SERVED_READS = 5  # matching answers in a row before a reload counts as served

__all__ = [
    "IncludeState",
    "NginxTrafficShifter",
    "main",
    "nginx_snippet",
    "parse_include",
    "render_include",
    "split_weights",
]

SCALE = 100  # weights are kept in hundredths of a percent
FULL = 100 * SCALE
MAX_MESSAGE = 300

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# nginx drops headers with other characters (underscores unless underscores_in_headers on)
_HEADER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_VALUE = re.compile(r"^[A-Za-z0-9._:/+=@-]+$")
_MAP_KEYWORDS = frozenset({"default", "hostnames", "include", "volatile"})
# a server address is one nginx token: no blanks, quotes, braces, ";", "#", "$" or "\"
_SERVER = re.compile(r"^[^\s;{}#$\"'\\]+$")
_OPTIONS = re.compile(r"^[^;{}#$\"'\\\n\r]*$")
_PATH = re.compile(r"^[^\s;{}#$\"'\\]+$")

_WEIGHT_LINE = re.compile(r"^#\s*novactl-weight:\s*(\S+)\s*$", re.MULTILINE)
_ROUTE_LINE = re.compile(r"^#\s*novactl-header-route:\s*(\S+)\s*$", re.MULTILINE)
_UPSTREAM = re.compile(r"^\s*upstream\s+([A-Za-z0-9_]+)\s*\{(.*?)\}", re.MULTILINE | re.DOTALL)
_SERVER_LINE = re.compile(r"^\s*server\s+(\S+)([^;]*);", re.MULTILINE)
_WEIGHT_PARAM = re.compile(r"(?:^|\s)weight=(\d+)(?:\s|$)")
# "2024/05/01 12:00:00 [emerg] 123#123: message" or "nginx: [emerg] message"
_NGINX_LOG = re.compile(
    r"^(?:nginx:\s*)?(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\s+)?\[(\w+)\]\s*(?:\d+#\d+:\s*)?"
    r"(?:\*\d+\s+)?(.*)$")
_SERIOUS = ("emerg", "alert", "crit", "error")


# ---------------------------------------------------------------- weights and rendering


def basis_points(weight: float) -> int:
    """``weight`` percent in hundredths of a percent (0..10000), see the module docstring."""
    points = math.floor(float(weight) * SCALE + 0.5)
    if weight > 0 and points <= 0:
        points = 1
    if weight < 100 and points >= FULL:
        points = FULL - 1
    return max(0, min(FULL, points))


def split_weights(points: int, stable_servers: int, canary_servers: int) -> tuple[int, int]:
    """Per-server nginx weights ``(stable, canary)`` for ``points`` hundredths of a percent.

    0 means the group is left out of the split (at 0% and 100%).
    """
    if not 0 <= points <= FULL:
        raise ValueError(f"points must be within 0..{FULL}, got {points}")
    if stable_servers < 1 or canary_servers < 1:
        raise ValueError("each group needs at least one server")
    if points == 0:
        return 1, 0
    if points == FULL:
        return 0, 1
    # n_s·s : n_c·c = (FULL − points) : points
    stable = (FULL - points) * canary_servers
    canary = points * stable_servers
    divisor = math.gcd(stable, canary)
    return stable // divisor, canary // divisor


def _weight_text(points: int) -> str:
    return f"{points / SCALE:.2f}".rstrip("0").rstrip(".")


def header_variable(header: str) -> str:
    """The nginx variable holding request header ``header`` (``$http_x_canary_debug``)."""
    return "$http_" + header.lower().replace("-", "_")


def render_include(config: NginxTrafficShifter.Config, weight: float, *,
                   header_route: bool) -> str:
    """The include file for ``weight`` percent to the canary (and the header route on/off)."""
    if not (math.isfinite(weight) and 0 <= weight <= 100):
        raise ValueError(f"weight must be within 0..100, got {weight!r}")
    name = config.name
    points = basis_points(weight)
    stable_w, canary_w = split_weights(points, len(config.stable), len(config.canary))
    options = f" {config.server_options.strip()}" if config.server_options.strip() else ""
    text = _weight_text(points)

    def servers(addresses: Sequence[str], server_weight: int | None) -> list[str]:
        extra = f" weight={server_weight}" if server_weight is not None else ""
        return [f"    server {address}{extra}{options};" for address in addresses]

    split: list[str] = []
    if points == 0:
        split_note = "0% canary: only the stable servers"
        split += servers(config.stable, None)
    elif points == FULL:
        split_note = "100% canary: only the canary servers"
        split += servers(config.canary, None)
    else:
        cycle = stable_w * len(config.stable) + canary_w * len(config.canary)
        split_note = (f"{text}% canary: per cycle of {cycle} requests, "
                      f"{canary_w * len(config.canary)} to the canary and "
                      f"{stable_w * len(config.stable)} to the stable")
        split += servers(config.stable, stable_w) + servers(config.canary, canary_w)

    route = "on" if header_route else "off"
    route_note = (f"requests with {config.debug_header}: {config.debug_value} go to the canary"
                  if header_route else "no header route: every request follows the split")
    lines = [
        f"# Managed by novactl (nginx traffic shifter, name {name!r}). Do not edit:",
        "# novactl rewrites this whole file on every change. Include it once inside",
        f"# http {{ }} and proxy_pass to http://${name}_upstream (see docs/nginx.md).",
        "#",
        f"# novactl-weight: {text}",
        f"# novactl-header-route: {route}",
        "",
        f"upstream {name}_stable {{",
        *servers(config.stable, None),
        "}",
        "",
        f"upstream {name}_canary {{",
        *servers(config.canary, None),
        "}",
        "",
        f"# {split_note}",
        f"upstream {name}_split {{",
        *split,
        "}",
        "",
        f"# {route_note}",
        f"map {header_variable(config.debug_header)} ${name}_upstream {{",
        f"    default {name}_split;",
    ]
    if header_route:
        lines.append(f'    "{config.debug_value}" {name}_canary;')
    lines += [
        "}",
        "",
        "# the canary weight this file stands for (e.g. for a status location)",
        f'map "" ${name}_weight {{',
        f'    default "{text}";',
        "}",
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class IncludeState:
    """What an include file says: its weight, header route and split."""

    weight: float
    header_route: bool
    canary_share: float  # percent, from the server weights of <name>_split


def _is_ours(text: str) -> bool:
    return _WEIGHT_LINE.search(text) is not None


def parse_include(text: str, name: str) -> IncludeState:
    """Read an include file back; ValueError (one line) if it is not consistent."""
    found = _WEIGHT_LINE.search(text)
    if found is None:
        raise ValueError("no '# novactl-weight:' line (not written by novactl)")
    try:
        weight = float(found.group(1))
    except ValueError:
        raise ValueError(f"unreadable weight {found.group(1)!r}") from None
    if not (math.isfinite(weight) and 0 <= weight <= 100):
        raise ValueError(f"weight {found.group(1)} outside 0..100")
    route_match = _ROUTE_LINE.search(text)
    route = route_match.group(1).lower() if route_match else "off"
    if route not in ("on", "off"):
        raise ValueError(f"unreadable header route {route!r}")

    blocks = {m.group(1): m.group(2) for m in _UPSTREAM.finditer(text)}
    for suffix in ("stable", "canary", "split"):
        if f"{name}_{suffix}" not in blocks:
            raise ValueError(f"no upstream {name}_{suffix} (written for another name?)")
    stable = {m.group(1) for m in _SERVER_LINE.finditer(blocks[f"{name}_stable"])}
    canary = {m.group(1) for m in _SERVER_LINE.finditer(blocks[f"{name}_canary"])}
    totals = {"stable": 0, "canary": 0}
    for match in _SERVER_LINE.finditer(blocks[f"{name}_split"]):
        address, params = match.group(1), match.group(2)
        weight_param = _WEIGHT_PARAM.search(params)
        server_weight = int(weight_param.group(1)) if weight_param else 1
        if address in canary:
            totals["canary"] += server_weight
        elif address in stable:
            totals["stable"] += server_weight
        else:
            raise ValueError(f"server {address} in {name}_split is in neither group")
    total = totals["stable"] + totals["canary"]
    if total <= 0:
        raise ValueError(f"upstream {name}_split has no servers")
    share = totals["canary"] * 100 / total
    if abs(share - weight) > 0.5 / SCALE:
        raise ValueError(f"the '# novactl-weight:' line says {weight:g}% but the server "
                         f"weights of {name}_split give {share:.4g}% (edited by hand?)")
    return IncludeState(weight=weight, header_route=route == "on", canary_share=share)


# ---------------------------------------------------------------- running nginx


class _Failed(Exception):
    """An nginx invocation failed; ``str()`` is one line for the operator."""


def _one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def nginx_error_line(stderr: str, stdout: str = "", returncode: int | None = None) -> str:
    """The first meaningful line of nginx's output: ``[emerg] ... in /path:12``."""
    lines = [line.strip() for line in (stderr + "\n" + stdout).splitlines() if line.strip()]
    for line in lines:
        match = _NGINX_LOG.match(line)
        if match and match.group(1) in _SERIOUS:
            return _one_line(f"[{match.group(1)}] {match.group(2)}")
    for line in lines:
        if _NGINX_LOG.match(line) is None and not line.endswith(("test failed", "syntax is ok")):
            return _one_line(line.removeprefix("nginx: "))
    if lines:
        return _one_line(lines[-1].removeprefix("nginx: "))
    return f"exit code {returncode}" if returncode is not None else "no output"


# ---------------------------------------------------------------- the adapter


class NginxTrafficShifter(Adapter):
    """Moves traffic by rewriting one included nginx file and reloading nginx."""

    class Config(AdapterConfig):
        include_file: str = Field(
            description="The file novactl owns (relative: to the plan file's directory).")
        name: str = Field(
            "novactl", description="Prefix of the upstream and variable names novactl defines.")
        stable: list[str] = Field(
            min_length=1, description="Stable upstream servers, host:port (at least one).")
        canary: list[str] = Field(
            min_length=1, description="Canary upstream servers, host:port (at least one).")
        server_options: str = Field(
            "", description="Appended to every server line, e.g. max_fails=3 fail_timeout=10s.")
        nginx: str = Field("nginx", description="The nginx binary (or a prefix: sudo -n nginx).")
        args: list[str] = Field(
            default_factory=list, description="Extra arguments for every nginx invocation.")
        test: bool = Field(True, description="Run nginx -t before reloading.")
        reload_timeout: Duration = Field(
            10.0, gt=0, description="Timeout of each nginx invocation (-t, -s reload).")
        debug_header: str = Field(
            "X-Canary-Debug", description="Requests with this header go to the canary.")
        debug_value: str = Field("1", description="... when the header has this value.")
        check_url: str | None = Field(
            None, description="URL on this nginx that answers $<name>_weight (a location "
            "with `return 200 $<name>_weight;`): then a change counts only once nginx "
            "serves it, and get_weight reports what nginx serves, not what the file says.")

        @field_validator("check_url")
        @classmethod
        def _check_url(cls, value: str | None) -> str | None:
            if value is None:
                return None
            from novactl.adapters._http import http_url

            return http_url(value)

        @field_validator("name")
        @classmethod
        def _name(cls, value: str) -> str:
            if not _NAME.match(value):
                raise ValueError(f"name must match ^[a-z][a-z0-9_]*$ (it names nginx upstreams "
                                 f"and variables), got {value!r}")
            return value

        @field_validator("include_file")
        @classmethod
        def _include_file(cls, value: str) -> str:
            value = value.strip()
            if not value:
                raise ValueError("include_file must not be empty")
            if not _PATH.match(value):
                raise ValueError("include_file must be a path without blanks, quotes, "
                                 "braces, ';', '#', '$' or '\\'")
            return value

        @field_validator("stable", "canary")
        @classmethod
        def _servers(cls, value: list[str]) -> list[str]:
            cleaned = [s.strip() for s in value]
            for server in cleaned:
                if not server or not _SERVER.match(server):
                    raise ValueError(f"invalid server address {server!r}: expected host:port "
                                     "(or unix:/path) without blanks, quotes, braces, ';' "
                                     "or '#'")
            duplicates = sorted({s for s in cleaned if cleaned.count(s) > 1})
            if duplicates:
                raise ValueError(f"server listed twice: {', '.join(duplicates)}")
            return cleaned

        @field_validator("server_options")
        @classmethod
        def _server_options(cls, value: str) -> str:
            if not _OPTIONS.match(value):
                raise ValueError("server_options must be one line of server parameters "
                                 "without ';', braces, quotes, '#' or '$'")
            if re.search(r"(?:^|\s)weight=", value):
                raise ValueError("server_options must not set weight= (novactl sets it)")
            return value.strip()

        @field_validator("nginx")
        @classmethod
        def _nginx(cls, value: str) -> str:
            try:
                words = shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"cannot split nginx into words: {exc}") from None
            if not words:
                raise ValueError("nginx must name the nginx binary")
            return value

        @field_validator("debug_header")
        @classmethod
        def _debug_header(cls, value: str) -> str:
            value = value.strip()
            if not _HEADER.match(value):
                raise ValueError(f"debug_header must be letters, digits and '-' (nginx ignores "
                                 f"headers with other characters), got {value!r}")
            return value

        @field_validator("debug_value")
        @classmethod
        def _debug_value(cls, value: str) -> str:
            if not _VALUE.match(value):
                raise ValueError("debug_value must be letters, digits and . _ : / + = @ -, "
                                 f"got {value!r}")
            if value.lower() in _MAP_KEYWORDS:
                raise ValueError(f"debug_value {value!r} is an nginx map keyword")
            return value

        @model_validator(mode="after")
        def _groups_disjoint(self) -> Self:
            both = sorted(set(self.stable) & set(self.canary))
            if both:
                raise ValueError(f"server in both stable and canary: {', '.join(both)}")
            return self

    def __init__(self, name: str, config: Any, context: AdapterContext | None = None) -> None:
        context = context or AdapterContext()
        if not isinstance(config, self.Config):
            config = self.Config.model_validate(config or {})
        super().__init__(name, config, context)
        self.path = resolve_include(config, context.base_dir)

    # ------------------------------------------------------------ protocol

    def set_weight(self, weight: float) -> None:
        weight = float(weight)
        if not (math.isfinite(weight) and 0 <= weight <= 100):
            raise TrafficError(f"set_weight: weight must be within 0..100, got {weight:g}",
                               adapter=self.label)
        previous = self._previous()
        route = False
        if previous and weight > 0:  # 0% = all stable: the header route goes off too
            route_match = _ROUTE_LINE.search(previous.decode("utf-8", errors="replace"))
            route = bool(route_match and route_match.group(1).lower() == "on")
        points = basis_points(weight)
        if points != round(weight * SCALE, 6):
            self.context.log(f"nginx: {weight:g}% rounded to {_weight_text(points)}% "
                             f"(nginx weights are kept in hundredths of a percent)")
        self._apply(f"set_weight {weight:g}%", weight, route, previous)

    def get_weight(self) -> float | None:
        """What nginx serves (with ``check_url``), else the weight in the include file."""
        if self.config.check_url:
            served = self._served()
            try:
                return float(served)
            except ValueError:
                raise TrafficError(f"{self.config.check_url} answered {served[:40]!r}, not a "
                                   "weight: it must return $" + self.config.name + "_weight",
                                   adapter=self.label) from None
        try:
            text = Path(os.path.realpath(self.path)).read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise TrafficError(f"{self.path} does not exist: novactl has not set a weight yet "
                               f"(or the file was removed)", adapter=self.label) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise TrafficError(f"cannot read {self.path}: {_reason(exc)}",
                               adapter=self.label) from exc
        try:
            state = parse_include(text, self.config.name)
        except ValueError as exc:
            raise TrafficError(f"{self.path}: {exc}", adapter=self.label) from exc
        return state.weight

    def set_header_route(self, header: str, value: str) -> bool:
        cfg = self.config
        if header.strip().lower() != cfg.debug_header.lower() or value != cfg.debug_value:
            raise TrafficError(
                f"set_header_route: asked to route {header}: {value}, but this adapter routes "
                f"{cfg.debug_header}: {cfg.debug_value}; make spec.traffic.debug_header and "
                f"the config's debug_header/debug_value agree", adapter=self.label)
        previous = self._previous()
        weight = 0.0
        if previous:
            try:
                weight = parse_include(previous.decode("utf-8", errors="replace"),
                                       cfg.name).weight
            except ValueError as exc:
                raise TrafficError(f"set_header_route: cannot tell the current weight from "
                                   f"{self.path}: {exc}", adapter=self.label) from exc
        self._apply(f"set_header_route {cfg.debug_header}: {cfg.debug_value}", weight, True,
                    previous)
        return True

    # ------------------------------------------------------------ helpers

    def render(self, weight: float, *, header_route: bool = False) -> str:
        """The file :meth:`set_weight` would write for ``weight``."""
        return render_include(self.config, weight, header_route=header_route)

    def write_file(self, weight: float = 0.0, *, header_route: bool = False) -> Path:
        """Write the include file without testing or reloading nginx (for bootstrapping)."""
        self._previous()  # refuses a file novactl did not write
        try:
            self._write(self.render(float(weight), header_route=header_route).encode())
        except OSError as exc:
            raise TrafficError(f"cannot write {self.path}: {_reason(exc)}",
                               adapter=self.label) from exc
        return self.path

    def snippet(self) -> str:
        return nginx_snippet(self.config, self.context.base_dir)

    def _previous(self) -> bytes | None:
        """The current file's bytes (None: there is none); refuses a file novactl did not write."""
        target = Path(os.path.realpath(self.path))
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            if not target.parent.is_dir():
                raise TrafficError(f"directory {target.parent} does not exist (include_file "
                                   f"{self.path})", adapter=self.label) from None
            return None
        except OSError as exc:
            raise TrafficError(f"cannot read {self.path}: {_reason(exc)}",
                               adapter=self.label) from exc
        if data.strip() and not _is_ours(data.decode("utf-8", errors="replace")):
            raise TrafficError(f"refusing to overwrite {self.path}: it was not written by "
                               "novactl (no '# novactl-weight:' line); give novactl a file of "
                               "its own", adapter=self.label)
        return data

    def _write(self, data: bytes) -> None:
        target = Path(os.path.realpath(self.path))
        mode, owner = 0o644, None
        with suppress(OSError):
            info = target.stat()
            mode, owner = info.st_mode & 0o7777, (info.st_uid, info.st_gid)
        write_atomic(target, data, mode=mode, owner=owner)

    def _restore(self, previous: bytes | None) -> str:
        """Put the previous file back; a phrase saying what happened."""
        try:
            if previous is None:
                with suppress(FileNotFoundError):
                    Path(os.path.realpath(self.path)).unlink()
                return f"removed the new {self.path} (there was none before)"
            self._write(previous)
        except OSError as exc:
            return f"could NOT put the previous {self.path} back: {_reason(exc)}"
        return f"the previous {self.path} is back in place"

    def _apply(self, operation: str, weight: float, header_route: bool,
               previous: bytes | None) -> None:
        command = self._command()  # a missing binary fails before anything is written
        data = self.render(weight, header_route=header_route).encode()
        try:
            self._write(data)
        except OSError as exc:
            raise TrafficError(f"{operation}: cannot write {self.path}: {_reason(exc)}",
                               adapter=self.label) from exc
        if self.config.test:
            try:
                self._run(command, ["-t"], "nginx -t")
            except _Failed as exc:
                restored = self._restore(previous)
                raise TrafficError(f"{operation}: {exc}; {restored} (nginx was not reloaded)",
                                   adapter=self.label) from exc.__cause__
        try:
            self._run(command, ["-s", "reload"], "nginx -s reload")
        except _Failed as exc:
            restored = self._restore(previous)
            if previous is None:
                again = ""
            else:
                try:
                    self._run(command, ["-s", "reload"], "nginx -s reload")
                    again = "; nginx reloaded it"
                except _Failed as second:
                    same = str(second) == str(exc)
                    again = "; reloading it failed too" + ("" if same else f" ({second})")
            raise TrafficError(f"{operation}: {exc}; {restored}{again}",
                               adapter=self.label) from exc.__cause__
        wanted = _weight_text(basis_points(weight))
        if self.config.check_url:
            served, steady = self._wait_served(wanted)
            if not steady:  # the reload did not take (nginx keeps its old config)
                restored = self._restore(previous)
                with suppress(_Failed):
                    self._run(command, ["-s", "reload"], "nginx -s reload")
                raise TrafficError(
                    f"{operation}: nginx did not apply the new config within "
                    f"{format_duration(self.config.reload_timeout)} (it serves "
                    f"{served or 'nothing'}% canary, wanted {wanted}%); {restored}; see nginx's "
                    "error log", adapter=self.label)
        route = "on" if header_route else "off"
        self.context.log(f"nginx: {self.path}: {wanted}% canary, header route {route}; "
                         "reloaded" + (" and serving" if self.config.check_url else ""))

    def _served(self) -> str:
        """The weight nginx serves now, from ``check_url``."""
        import httpx

        url = self.config.check_url or ""
        try:
            response = httpx.get(url, timeout=min(self.config.reload_timeout, 5.0))
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise TrafficError(f"cannot read the served weight from {url}: "
                               f"{type(exc).__name__}: {exc}", adapter=self.label) from exc
        if response.status_code != 200:
            raise TrafficError(f"{url} answered HTTP {response.status_code}",
                               adapter=self.label)
        return response.text.strip()

    def _wait_served(self, wanted: str) -> tuple[str, bool]:
        """Poll ``check_url`` until nginx serves ``wanted`` (reloads are asynchronous).

        Right after a reload, old workers may still accept connections for a moment,
        so it takes several matching answers in a row, not one.
        """
        deadline = time.monotonic() + self.config.reload_timeout
        served = ""
        in_a_row = 0
        while True:
            try:
                served = self._served()
            except TrafficError:
                served = ""
            in_a_row = in_a_row + 1 if served == wanted else 0
            if in_a_row >= SERVED_READS:
                return served, True
            if time.monotonic() >= deadline:
                return served, False
            time.sleep(0.05)

    def _command(self) -> list[str]:
        words = shlex.split(self.config.nginx)
        path = _which(words[0], self.context.env.get("PATH"))
        if path is None:
            raise TrafficError(f"nginx binary not found: {words[0]!r} (install nginx or set "
                               f"the config's nginx to its path)", adapter=self.label)
        return [path, *words[1:]]

    def _run(self, command: list[str], action: list[str], what: str) -> None:
        argv = [*command, *self.config.args, *action]
        timeout = self.config.reload_timeout
        cwd = Path(self.context.base_dir)
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd if cwd.is_dir() else None, env=dict(self.context.env),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True)
        except FileNotFoundError as exc:
            raise _Failed(f"{what}: nginx binary not found: {command[0]!r}") from exc
        except PermissionError as exc:
            raise _Failed(f"{what}: {command[0]} is not executable (permission denied)") from exc
        except OSError as exc:
            raise _Failed(f"{what}: cannot run {command[0]}: {_reason(exc)}") from exc
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise _Failed(f"{what} timed out after {format_duration(timeout)}") from exc
        if proc.returncode != 0:
            line = nginx_error_line(err.decode(errors="replace"), out.decode(errors="replace"),
                                    proc.returncode)
            raise _Failed(f"{what} failed: {line}")


# ---------------------------------------------------------------- module helpers


def resolve_include(config: NginxTrafficShifter.Config, base_dir: Path | str | None) -> Path:
    """The absolute path of ``include_file`` (relative paths: against ``base_dir``)."""
    path = Path(config.include_file).expanduser()
    if not path.is_absolute():
        path = Path(base_dir if base_dir is not None else Path.cwd()) / path
    return Path(os.path.abspath(path))


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644,
                 owner: tuple[int, int] | None = None) -> None:
    """Replace ``path`` with ``data`` atomically: temporary file beside it, fsync, rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".novactl-tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if owner is not None and hasattr(os, "geteuid") and os.geteuid() == 0:
            with suppress(OSError):
                os.chown(tmp, *owner)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    with suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _which(name: str, path: str | None) -> str | None:
    found = shutil.which(name, path=path)
    if found is None and os.sep not in name:
        # Debian and most distributions install nginx in sbin, often not on a user's PATH
        for directory in ("/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"):
            candidate = os.path.join(directory, name)
            if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
                return candidate
    return found


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return _one_line(str(exc)) or type(exc).__name__


def nginx_snippet(config: NginxTrafficShifter.Config | Mapping[str, Any],
                  base_dir: Path | str | None = None) -> str:
    """The one-time nginx.conf lines for ``config``: the include and the location."""
    if not isinstance(config, NginxTrafficShifter.Config):
        config = NginxTrafficShifter.Config.model_validate(dict(config))
    path = resolve_include(config, base_dir)
    return "\n".join([
        "# nginx.conf, inside http { }, once:",
        f"include {path};",
        "",
        "# inside the server { } that serves the service:",
        "location / {",
        f"    proxy_pass http://${config.name}_upstream;",
        "    proxy_set_header Host $host;",
        "}",
        "",
    ])


# ---------------------------------------------------------------- bootstrap command


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m novactl.adapters.nginx init|snippet PLAN [--var KEY=VALUE]``."""
    parser = argparse.ArgumentParser(
        prog="python -m novactl.adapters.nginx",
        description="Set up the nginx include file novactl owns (see docs/nginx.md).")
    commands = parser.add_subparsers(dest="command", required=True)
    for command, text in (
        ("init", "write the initial include file (0%% canary, no header route) if there is "
                 "none, without testing or reloading nginx; print the nginx.conf lines"),
        ("snippet", "print the nginx.conf lines for the plan"),
    ):
        sub = commands.add_parser(command, help=text)
        sub.add_argument("plan", help="the plan file")
        sub.add_argument("--var", action="append", default=[], metavar="KEY=VALUE",
                         help="set a plan variable (repeatable)")
    args = parser.parse_args(argv)
    try:
        shifter = _shifter_for_plan(args.plan, args.var)
        if args.command == "init":
            existing = shifter.path.exists() and shifter.path.stat().st_size > 0
            if existing:
                shifter._previous()  # refuses a file novactl did not write
                print(f"{shifter.path} exists; left as it is", file=sys.stderr)
            else:
                shifter.write_file(0.0)
                print(f"wrote {shifter.path} (0% canary, header route off)", file=sys.stderr)
        print(shifter.snippet(), end="")
    except NovactlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except OSError as exc:
        print(f"error: {_reason(exc)}", file=sys.stderr)
        return 1
    return 0


def _shifter_for_plan(plan_file: str, pairs: Sequence[str]) -> NginxTrafficShifter:
    from novactl._errors import InputError
    from novactl.plan import load_plan
    from novactl.runner import context_for

    variables: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--var expects KEY=VALUE, got {pair!r}")
        variables[key] = value
    plan = load_plan(plan_file, variables)
    traffic = plan.spec.traffic
    if traffic.type != "nginx":
        raise InputError(f"{plan_file}: spec.traffic.type is {traffic.type!r}, not 'nginx'")
    config = NginxTrafficShifter.Config.model_validate(traffic.config)
    return NginxTrafficShifter("traffic", config, context_for(plan))


if __name__ == "__main__":
    raise SystemExit(main())
