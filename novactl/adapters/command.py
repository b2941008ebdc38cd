"""Command adapters: drive traffic and workloads with your own scripts.

For teams that already have deploy scripts::

    spec:
      traffic:
        type: command
        config:
          set_weight: ./canary-deploy.sh --version {{canary_version}} --canary-weight {{weight}}
          get_weight: ./current-weight.sh          # prints "10" or "10%"; omit: cannot read back
      workload:
        type: command
        config:
          deploy: ./canary-deploy.sh --version {{version}} --canary-weight 0
          scale: kubectl scale deployment/{{deployment}} --replicas={{replicas}}
          ready: kubectl rollout status deployment/{{deployment}} --timeout=5s
          promote: ./promote-canary-to-stable.sh {{version}}
          retire: ./retire-old-version.sh {{version}}
          roles:
            canary: {deployment: novacron-api-canary}
            stable: {deployment: novacron-api}

Placeholders
    A command is a template; ``{{name}}`` is replaced by a value when it runs.
    Which names a command may use:

    ==================  ===================================================
    set_weight          weight, canary_version, stable_version, service
    get_weight          canary_version, stable_version, service
    set_header_route    header, value, canary_version, stable_version, service
    deploy              role, version, replicas, + common
    scale               role, replicas, + common
    ready               role, + common
    promote, retire     role (always ``stable``), version, replicas (promote), + common
    ==================  ===================================================

    "common" (workload) is canary_version, stable_version, service, the keys
    of the acting role's ``roles`` entry (``{{deployment}}``) and every role's
    keys prefixed with its name (``{{canary_deployment}}``, ``{{stable_deployment}}``).
    Plan variables (``spec.variables``, ``--var``) are filled in by the
    adapter itself, after splitting, like every other value; they are also
    allowed in ``cwd``.  A weight is rendered without a useless decimal (``10``, not
    ``10.0``); ``replicas`` is empty when the plan leaves it unset.
    Unknown names are configuration errors (``novactl validate`` reports them).
    ``{{...}}`` that is not a plain name (a kubectl go-template such as
    ``{{.status.replicas}}``) is left alone.

Safety
    ``shell: false`` (the default): the template is split into arguments with
    :func:`shlex.split` *first*, and placeholders are filled in inside each
    argument afterwards, so a value (``v1; rm -rf /``) is always exactly one
    argument and never shell syntax.  No shell is involved.

    ``shell: true``: the whole string runs under ``/bin/sh -c`` and every value
    is quoted with :func:`shlex.quote`.  Do not put quotes around placeholders
    yourself (``'{{version}}'`` would undo the quoting); that is rejected.

Execution
    Commands run in ``cwd`` (relative to the plan file's directory; default:
    that directory) with stdin closed and a ``timeout`` (default 5m) after
    which the whole process group is killed.  The environment is novactl's own
    plus ``NOVACTL_PLAN``, ``NOVACTL_SERVICE``, ``NOVACTL_OPERATION``,
    ``NOVACTL_CANARY_VERSION``, ``NOVACTL_STABLE_VERSION`` and, where they
    apply, ``NOVACTL_WEIGHT``, ``NOVACTL_HEADER``, ``NOVACTL_HEADER_VALUE``,
    ``NOVACTL_ROLE``, ``NOVACTL_VERSION``, ``NOVACTL_REPLICAS``, then the
    config's ``env``.  A non-zero exit is an error naming the command's first
    word, the exit code and the last line it printed (stderr, else stdout),
    one line of at most 200 characters; values from ``env`` are masked in it.
    Arguments and environment values never appear in messages.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import shlex
import signal
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from novactl._errors import AdapterError, TrafficError, WorkloadError
from novactl._units import format_duration
from novactl.adapters._base import Adapter, AdapterConfig, AdapterContext, Duration, Readiness

__all__ = [
    "CommandResult",
    "CommandTrafficShifter",
    "CommandWorkload",
    "placeholders",
    "render_command",
]

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_MESSAGE = 200

# names each command may use (plus, for workloads, the roles' keys)
_TRAFFIC_COMMON = ("canary_version", "stable_version", "service")
TRAFFIC_NAMES: dict[str, tuple[str, ...]] = {
    "set_weight": ("weight", *_TRAFFIC_COMMON),
    "get_weight": _TRAFFIC_COMMON,
    "set_header_route": ("header", "value", *_TRAFFIC_COMMON),
}
_WORKLOAD_COMMON = ("role", "canary_version", "stable_version", "service")
WORKLOAD_NAMES: dict[str, tuple[str, ...]] = {
    "deploy": ("version", "replicas", *_WORKLOAD_COMMON),
    "scale": ("replicas", *_WORKLOAD_COMMON),
    "ready": _WORKLOAD_COMMON,
    "promote": ("version", "replicas", *_WORKLOAD_COMMON),
    "retire": ("version", *_WORKLOAD_COMMON),
}
_RESERVED = frozenset({"weight", "header", "value", "version", "replicas", "role",
                       "canary_version", "stable_version", "service"})


# ---------------------------------------------------------------- templates


def placeholders(template: str) -> list[str]:
    """The placeholder names ``template`` uses, in order of first appearance."""
    seen: dict[str, None] = {}
    for match in PLACEHOLDER.finditer(template):
        seen.setdefault(match.group(1), None)
    return list(seen)


def _quoted_placeholders(template: str) -> list[str]:
    """Placeholders that sit inside shell quotes (unsafe with ``shell: true``)."""
    found: list[str] = []
    state = ""  # "", "'" or '"'
    i = 0
    while i < len(template):
        char = template[i]
        if state:
            match = PLACEHOLDER.match(template, i)
            if match:
                found.append(match.group(1))
                i = match.end()
                continue
        if state == "'":
            if char == "'":
                state = ""
        elif char == "\\":
            i += 1  # the next character is escaped
        elif char == '"':
            state = "" if state == '"' else '"'
        elif char == "'" and not state:
            state = "'"
        i += 1
    return found


def _check_template(field: str, template: str | None, allowed: Iterable[str],
                    shell: bool) -> str | None:
    """Raise ValueError (one line) if ``template`` is empty, unparsable or uses unknown names."""
    if template is None:
        return None
    if not template.strip():
        raise ValueError("the command is empty")
    names = sorted(set(allowed))
    unknown = [n for n in placeholders(template) if n not in names]
    if unknown:
        parts = []
        for name in unknown:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean {{{{{close[0]}}}}}?)" if close else ""
            parts.append(f"{{{{{name}}}}}{hint}")
        raise ValueError(f"unknown placeholder {', '.join(parts)} in {field} "
                         f"(allowed: {', '.join(names)}, or a name from spec.variables)")
    try:
        words = shlex.split(_normalise(template))
    except ValueError as exc:  # no closing quotation, trailing backslash
        raise ValueError(f"cannot split the command into arguments: {exc}") from None
    if not words:
        raise ValueError("the command is empty")
    if shell:
        quoted = _quoted_placeholders(template)
        if quoted:
            raise ValueError(
                f"with shell: true values are quoted for you; remove the quotes around "
                f"{', '.join('{{' + q + '}}' for q in dict.fromkeys(quoted))}")
    return template


def _normalise(template: str) -> str:
    """``{{ name }}`` → ``{{name}}`` so shlex never splits a placeholder."""
    return PLACEHOLDER.sub(lambda m: "{{" + m.group(1) + "}}", template)


def render_command(template: str, values: Mapping[str, str], *, shell: bool) -> list[str]:
    """The argv for ``template`` with ``values`` filled in (see the module docstring).

    Raises KeyError for a placeholder without a value.
    """

    def sub(quote: bool) -> Any:
        def replace(match: re.Match[str]) -> str:
            value = str(values[match.group(1)])
            return shlex.quote(value) if quote else value

        return replace

    if shell:
        return ["/bin/sh", "-c", PLACEHOLDER.sub(sub(True), template)]
    return [PLACEHOLDER.sub(sub(False), word) for word in shlex.split(_normalise(template))]


def _first_word(template: str) -> str:
    try:
        words = shlex.split(_normalise(template))
    except ValueError:
        words = template.split()
    # taken from the template, never from the rendered argv: no value is ever shown
    return words[0] if words else "command"


def _weight_text(weight: float) -> str:
    if float(weight).is_integer():
        return str(int(weight))
    return f"{weight:.6f}".rstrip("0").rstrip(".")


def _one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _last_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()
    return ""


# ---------------------------------------------------------------- running


@dataclass(frozen=True)
class CommandResult:
    """What a finished command left behind."""

    returncode: int
    stdout: str
    stderr: str

    def last_line(self) -> str:
        """The last non-empty line of stderr, else of stdout."""
        return _last_line(self.stderr) or _last_line(self.stdout)


class _CommandConfig(AdapterConfig):
    cwd: str | None = Field(None, description="Working directory, relative to the plan file.")
    timeout: Duration = Field(300.0, gt=0, description="Kill a command after this long.")
    shell: bool = Field(False, description="Run under /bin/sh -c (values are shell-quoted).")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if not _ENV_NAME.match(k)]
        if bad:
            raise ValueError(f"invalid environment variable name(s): {', '.join(map(repr, bad))}")
        if any("\0" in v for v in value.values()):
            raise ValueError("environment values cannot contain NUL characters")
        return value


def _context_names(info: ValidationInfo) -> tuple[str, ...]:
    """Plan variables passed as ``model_validate(..., context={"variables": ...})``."""
    context = info.context if isinstance(info.context, Mapping) else {}
    return tuple(str(k) for k in context.get("variables", ()) or ())


class _CommandAdapter(Adapter):
    """Runs templated commands; subclasses say which error class they raise."""

    # the loader must not paste plan variables into our templates: we fill them
    # in per argument ourselves, which keeps a value from becoming syntax
    renders_variables: ClassVar[bool] = True

    error: ClassVar[type[AdapterError]] = AdapterError
    kind: ClassVar[str] = ""

    def __init__(self, name: str, config: Any, context: AdapterContext | None = None) -> None:
        context = context or AdapterContext()
        assert self.Config is not None
        if not isinstance(config, self.Config):
            config = self.Config.model_validate(
                config or {}, context={"variables": dict(context.variables)})
        super().__init__(name, config, context)

    # values every command of this adapter can use (plan variables first: ours win)
    def _values(self) -> dict[str, str]:
        values = {str(k): str(v) for k, v in self.context.variables.items()}
        values.update({
            "canary_version": self.context.canary_version,
            "stable_version": self.context.stable_version,
            "service": self.context.service,
        })
        return values

    def _env(self, operation: str, extra: Mapping[str, str]) -> dict[str, str]:
        env = dict(self.context.env)
        env.update({
            "NOVACTL_PLAN": self.context.plan_name,
            "NOVACTL_SERVICE": self.context.service,
            "NOVACTL_OPERATION": operation,
            "NOVACTL_CANARY_VERSION": self.context.canary_version,
            "NOVACTL_STABLE_VERSION": self.context.stable_version,
        })
        env.update(extra)
        env.update(self.config.env)
        return env

    def _cwd(self) -> Path:
        base = Path(self.context.base_dir)
        if not self.config.cwd:
            return base
        from novactl.plan._load import render_vars

        return base / render_vars(self.config.cwd, self.context.variables)

    def _mask(self, text: str) -> str:
        for value in self.config.env.values():
            if len(value) >= 4:
                text = text.replace(value, "***")
        return text

    def run(self, operation: str, template: str, values: Mapping[str, str],
            env: Mapping[str, str] | None = None, *, check: bool = True) -> CommandResult:
        """Run one command.

        Raises ``self.error`` if it cannot start, times out or (with ``check``) fails.
        """
        word = _first_word(template)
        try:
            argv = render_command(template, values, shell=self.config.shell)
        except KeyError as exc:
            raise self.error(f"{operation}: no value for placeholder {{{{{exc.args[0]}}}}}",
                             adapter=self.label) from None
        cwd = self._cwd()
        if not cwd.is_dir():
            raise self.error(f"{operation}: working directory {cwd} does not exist",
                             adapter=self.label)
        self.context.log(f"{self.kind}: {operation}: running {word}")
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=self._env(operation, env or {}), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except FileNotFoundError as exc:
            raise self.error(f"{operation}: command not found: {word} (cwd {cwd})",
                             adapter=self.label) from exc
        except PermissionError as exc:
            raise self.error(f"{operation}: {word} is not executable (permission denied)",
                             adapter=self.label) from exc
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise self.error(f"{operation}: cannot run {word}: {reason}",
                             adapter=self.label) from exc
        try:
            out, err = proc.communicate(timeout=self.config.timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise self.error(f"{operation}: {word} timed out after "
                             f"{format_duration(self.config.timeout)} (killed)",
                             adapter=self.label) from None
        except BaseException:
            _kill(proc)
            raise
        result = CommandResult(proc.returncode, out.decode("utf-8", "replace"),
                               err.decode("utf-8", "replace"))
        if check and result.returncode != 0:
            raise self.error(self._failure(operation, word, result), adapter=self.label)
        return result

    def _failure(self, operation: str, word: str, result: CommandResult) -> str:
        code = result.returncode
        if code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        line = self._mask(result.last_line())
        return _one_line(f"{operation}: {word} {how}" + (f": {line}" if line else ""))


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill the command's whole process group and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:  # a grandchild left the group and holds the pipes
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------- traffic


class CommandTrafficShifter(_CommandAdapter):
    """Shifts traffic by running commands (see the module docstring)."""

    error = TrafficError
    kind = "traffic"

    class Config(_CommandConfig):
        set_weight: str = Field(description="Sets the canary weight; uses {{weight}}.")
        get_weight: str | None = Field(
            None, description="Prints the current canary weight (10 or 10%); none: unreadable.")
        set_header_route: str | None = Field(
            None, description="Routes {{header}}: {{value}} to the canary; none: unsupported.")

        @field_validator("set_weight", "get_weight", "set_header_route")
        @classmethod
        def _templates(cls, value: str | None, info: ValidationInfo) -> str | None:
            field = str(info.field_name)
            allowed = (*TRAFFIC_NAMES[field], *_context_names(info))
            return _check_template(field, value, allowed, bool(info.data.get("shell", False)))

    def set_weight(self, weight: float) -> None:
        weight = float(weight)
        if not math.isfinite(weight) or not 0 <= weight <= 100:
            raise TrafficError(f"set_weight: weight must be between 0 and 100, got {weight!r}",
                               adapter=self.label)
        text = _weight_text(weight)
        self.run("set_weight", self.config.set_weight, {**self._values(), "weight": text},
                 {"NOVACTL_WEIGHT": text})

    def get_weight(self) -> float | None:
        if self.config.get_weight is None:
            return None
        result = self.run("get_weight", self.config.get_weight, self._values())
        line = _last_line(result.stdout)
        text = line.removesuffix("%").strip()
        try:
            weight = float(text)
        except ValueError:
            shown = _one_line(self._mask(line), 60) or "nothing"
            raise TrafficError(f"get_weight: expected a weight such as 10 or 10%, got {shown!r}",
                               adapter=self.label) from None
        if not math.isfinite(weight) or not 0 <= weight <= 100:
            raise TrafficError(f"get_weight: weight {text} is outside 0..100",
                               adapter=self.label)
        return weight

    def set_header_route(self, header: str, value: str) -> bool:
        if self.config.set_header_route is None:
            return False
        self.run("set_header_route", self.config.set_header_route,
                 {**self._values(), "header": header, "value": value},
                 {"NOVACTL_HEADER": header, "NOVACTL_HEADER_VALUE": value})
        return True


# ---------------------------------------------------------------- workload


class CommandWorkload(_CommandAdapter):
    """Deploys, scales, checks, promotes and retires by running commands."""

    error = WorkloadError
    kind = "workload"

    class Config(_CommandConfig):
        # declared before the commands: they are checked against its keys
        roles: dict[str, dict[str, str]] = Field(
            default_factory=dict,
            description="Extra placeholders per role, e.g. {canary: {deployment: api-canary}}.")
        deploy: str = Field(description="Runs {{version}} in {{role}} (with {{replicas}}).")
        scale: str | None = Field(None, description="Scales {{role}} to {{replicas}}.")
        ready: str | None = Field(None, description="Exit 0 when {{role}} is ready; none: ready.")
        promote: str | None = Field(None, description="Makes {{version}} the stable "
                                    "(none: promotion fails loudly).")
        retire: str | None = Field(None, description="Removes {{version}}; none: no-op.")

        @field_validator("roles")
        @classmethod
        def _roles(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
            for role, keys in value.items():
                if not _IDENTIFIER.match(role):
                    raise ValueError(f"role name {role!r} must be a plain name "
                                     "(letters, digits, _)")
                for key in keys:
                    if not _IDENTIFIER.match(key):
                        raise ValueError(f"roles.{role}: key {key!r} must be a plain name")
                    if key in _RESERVED:
                        raise ValueError(f"roles.{role}: {key!r} would hide the built-in "
                                         f"{{{{{key}}}}}")
                    if f"{role}_{key}" in _RESERVED:
                        raise ValueError(f"roles.{role}: {key!r} would hide the built-in "
                                         f"{{{{{role}_{key}}}}}")
            return value

        @field_validator("deploy", "scale", "ready", "promote", "retire")
        @classmethod
        def _templates(cls, value: str | None, info: ValidationInfo) -> str | None:
            field = str(info.field_name)
            roles = info.data.get("roles")
            allowed = [*WORKLOAD_NAMES[field], *_context_names(info)]
            if roles is None:  # roles itself is invalid (reported): do not pile on
                allowed += placeholders(value or "")
            else:
                allowed += _role_names(roles)
            return _check_template(field, value, allowed, bool(info.data.get("shell", False)))

        @model_validator(mode="after")
        def _roles_complete(self) -> Self:
            keys = {k for spec in self.roles.values() for k in spec}
            for field in WORKLOAD_NAMES:
                template = getattr(self, field)
                for name in placeholders(template or ""):
                    if name not in keys:
                        continue
                    missing = [r for r, spec in self.roles.items() if name not in spec]
                    if missing:
                        raise ValueError(f"{field} uses {{{{{name}}}}} but roles "
                                         f"{', '.join(missing)} do not define {name!r}")
            return self

    def _role_values(self, role: str, template: str) -> dict[str, str]:
        values = self._values()
        for name, spec in self.config.roles.items():
            values.update({f"{name}_{k}": v for k, v in spec.items()})
        own = self.config.roles.get(role, {})
        keys = {k for spec in self.config.roles.values() for k in spec}
        for name in placeholders(template):
            if name in keys and name not in own:
                known = ", ".join(sorted(self.config.roles)) or "none"
                raise WorkloadError(f"role {role!r} has no {name!r} in roles (roles: {known})",
                                    adapter=self.label)
        values.update(own)
        values["role"] = role
        return values

    def deploy(self, role: str, version: str, replicas: int | None) -> None:
        template = self.config.deploy
        count = "" if replicas is None else str(int(replicas))
        values = {**self._role_values(role, template), "version": version, "replicas": count}
        self.run("deploy", template, values, {"NOVACTL_ROLE": role, "NOVACTL_VERSION": version,
                                              "NOVACTL_REPLICAS": count})

    def scale(self, role: str, replicas: int) -> None:
        template = self.config.scale
        if template is None:
            raise WorkloadError("scale: no scale command configured", adapter=self.label)
        count = str(int(replicas))
        values = {**self._role_values(role, template), "replicas": count}
        self.run("scale", template, values, {"NOVACTL_ROLE": role, "NOVACTL_REPLICAS": count})

    def ready(self, role: str) -> Readiness:
        template = self.config.ready
        if template is None:
            return Readiness(True, f"{role}: no ready command configured; assumed ready")
        result = self.run("ready", template, self._role_values(role, template),
                          {"NOVACTL_ROLE": role}, check=False)
        if result.returncode == 0:
            line = _one_line(self._mask(_last_line(result.stdout)))
            return Readiness(True, line or f"{role}: ready")
        line = _one_line(self._mask(result.last_line()))
        return Readiness(False, line or f"{role}: not ready (exit code {result.returncode})")

    def promote(self, version: str, replicas: int | None) -> None:
        template = self.config.promote
        if template is None:  # never report a promotion that did not happen
            raise self.error("promote: no promote command configured (if your deploy scripts "
                             "already promote, say so with promote: \"true\")", adapter=self.label)
        count = "" if replicas is None else str(int(replicas))
        values = {**self._role_values("stable", template), "version": version,
                  "replicas": count}
        self.run("promote", template, values, {"NOVACTL_ROLE": "stable",
                                               "NOVACTL_VERSION": version,
                                               "NOVACTL_REPLICAS": count})

    def retire(self, version: str) -> None:
        template = self.config.retire
        if template is None:  # explicit no-op
            self.context.log("workload: retire: no retire command configured; nothing run")
            return
        values = {**self._role_values("stable", template), "version": version}
        self.run("retire", template, values, {"NOVACTL_ROLE": "stable",
                                              "NOVACTL_VERSION": version})


def _role_names(roles: Mapping[str, Mapping[str, str]]) -> list[str]:
    names: list[str] = []
    for role, spec in roles.items():
        for key in spec:
            names += [key, f"{role}_{key}"]
    return names
