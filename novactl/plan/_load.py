"""Load a plan file: YAML → variables → typed model → semantic checks → adapter configs.

Every problem becomes a :class:`PlanIssue` naming file, line, column and field;
all issues found are reported together, each on one line.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from novactl._errors import InputError, PlanError, PlanIssue
from novactl.plan._expr import ExprError
from novactl.plan._model import MetricKind, Plan, compile_checks
from novactl.plan._semantic import semantic_issues
from novactl.plan._yaml import PosDict, YamlProblem, load_yaml, locate

__all__ = ["load_plan", "load_plan_text", "render_vars"]

_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_MAX_ISSUES = 20


def load_plan(path: str | Path, variables: Mapping[str, str] | None = None) -> Plan:
    """Load and validate the plan at ``path``.  Raises PlanError / InputError."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(f"{file}: no such plan file") from exc
    except IsADirectoryError as exc:
        raise InputError(f"{file}: is a directory, not a plan file") from exc
    except UnicodeDecodeError as exc:
        raise PlanError([PlanIssue(str(file), None, None, "", "not UTF-8 text")]) from exc
    except OSError as exc:
        raise InputError(f"{file}: cannot read: {exc.strerror or exc}") from exc
    return load_plan_text(text, str(file), variables)


def load_plan_text(text: str, source: str = "<plan>",
                   variables: Mapping[str, str] | None = None) -> Plan:
    try:
        raw = load_yaml(text)
    except YamlProblem as exc:
        raise PlanError([PlanIssue(source, exc.line, exc.column, "", exc.message)]) from exc
    if raw is None:
        raise PlanError([PlanIssue(source, 1, 1, "", "the plan is empty")])
    if not isinstance(raw, dict):
        raise PlanError([PlanIssue(source, 1, 1, "", "the plan must be a mapping with "
                                   "apiVersion, kind, metadata and spec")])
    issues: list[PlanIssue] = []

    def issue(path: Sequence[str | int], message: str, offset: int | None = None) -> None:
        pos, exact = locate(raw, path)
        line = pos.line if pos else None
        column = pos.column if pos else None
        if exact and pos is not None and offset is not None:
            column = pos.offset_column(offset) or column
        issues.append(PlanIssue(source, line, column, _field(path), message))

    spec = raw.get("spec")
    if isinstance(spec, dict):
        _apply_variables(spec, variables or {}, issue)

    try:
        plan = Plan.model_validate(raw)
    except ValidationError as exc:
        for path, message, offset in _translate(exc, raw):
            issue(path, message, offset)
        raise PlanError(issues[:_MAX_ISSUES]) from None

    for path, message in semantic_issues(plan):
        issue(path, message)
    for path, message in _adapter_issues(plan):
        issue(path, message)
    if issues:
        raise PlanError(issues[:_MAX_ISSUES])

    compile_checks(plan)
    plan._source = source
    plan._text = text
    plan._digest = hashlib.sha256(
        json.dumps(plan.model_dump(mode="json", by_alias=True), sort_keys=True,
                   default=str).encode()
    ).hexdigest()[:16]
    return plan


# ---------------------------------------------------------------- variables


def render_vars(text: str, values: Mapping[str, Any], *, strict: bool = False) -> str:
    """Replace ``{{name}}`` with ``values[name]``; unknown names stay unless ``strict``."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in values:
            return str(values[name])
        if strict:
            raise KeyError(name)
        return match.group(0)

    return _VAR.sub(sub, text)


def _apply_variables(spec: dict[str, Any], overrides: Mapping[str, str],
                     issue: Any) -> None:
    variables = spec.get("variables")
    if variables is None:
        variables = PosDict()
        spec["variables"] = variables
    if not isinstance(variables, dict):
        return  # pydantic reports the type error
    for key, value in overrides.items():
        variables[key] = value
    values = {k: v for k, v in variables.items() if isinstance(v, str | int | float)}

    def walk(node: Any, path: tuple[str | int, ...]) -> None:
        if isinstance(node, dict):
            for key in list(node):
                value = node[key]
                if isinstance(value, str):
                    node[key] = render_vars(value, values)
                else:
                    walk(value, (*path, key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                if isinstance(value, str):
                    node[i] = render_vars(value, values)
                else:
                    walk(value, (*path, i))

    # adapter configs and URLs take plan variables; queries are rendered at run time.
    # Adapters that fill in variables themselves (command templates, where a value
    # must stay one argument) get their config untouched.
    def adapter(kind: str, node: Any, path: tuple[str | int, ...]) -> None:
        if not isinstance(node, dict):
            return
        if _renders_variables(kind, node.get("type")):
            for key in node:
                if key != "config":
                    value = node[key]
                    if isinstance(value, str):
                        node[key] = render_vars(value, values)
                    else:
                        walk(value, (*path, key))
            return
        walk(node, path)

    for kind, section in (("traffic", "traffic"), ("workload", "workload")):
        adapter(kind, spec.get(section), ("spec", section))
    if isinstance(spec.get("probes"), dict):
        for name, node in spec["probes"].items():
            adapter("probe", node, ("spec", "probes", name))
    notifications = spec.get("notifications")
    if isinstance(notifications, dict) and isinstance(notifications.get("targets"), dict):
        for name, node in notifications["targets"].items():
            adapter("notifier", node, ("spec", "notifications", "targets", name))
    if isinstance(spec.get("dashboards"), list):
        walk(spec["dashboards"], ("spec", "dashboards"))
    if isinstance(spec.get("state"), dict):
        walk(spec["state"], ("spec", "state"))


_SAMPLE_RUNTIME = {"version": "v0", "role": "canary", "window": "60s", "window_seconds": "60",
                   "stage": "stage", "service": "service"}


def _query_issues(plan: Plan) -> list[tuple[tuple[str | int, ...], str]]:
    """Ask each probe type to check its metrics' queries (``check_query``), if it can."""
    from novactl.adapters._registry import load_class

    values = {**{k: str(v) for k, v in plan.spec.variables.items()}, **_SAMPLE_RUNTIME}
    out: list[tuple[tuple[str | int, ...], str]] = []
    for name, metric in plan.spec.metrics.items():
        probe = plan.spec.probes.get(metric.probe)
        if probe is None:
            continue  # reported by the semantic checks
        try:
            probe_class = load_class("probe", probe.type)
        except Exception:
            continue  # unknown probe types are reported with their position elsewhere
        if metric.kind is MetricKind.HISTOGRAM and not getattr(probe_class, "histograms",
                                                               False):
            out.append((("spec", "metrics", name, "kind"),
                        f"probe {metric.probe!r} ({probe.type}) cannot answer histogram "
                        "metrics (prometheus, scrape and fake probes can)"))
            continue
        check = getattr(probe_class, "check_query", None)
        if check is None:
            continue
        for part, text in metric.queries().items():
            problem = check(render_vars(text, values))
            if problem:
                path: tuple[str | int, ...] = ("spec", "metrics", name, "query")
                if not isinstance(metric.query, str):
                    path = (*path, part)
                out.append((path, problem))
    return out


def _renders_variables(kind: str, type_name: object) -> bool:
    if not isinstance(type_name, str):
        return False
    from novactl.adapters._registry import load_class

    try:
        return bool(getattr(load_class(kind, type_name), "renders_variables", False))
    except Exception:  # unknown types are reported later, with their position
        return False


# ---------------------------------------------------------------- pydantic errors


def _translate(exc: ValidationError, raw: Any
               ) -> list[tuple[tuple[str | int, ...], str, int | None]]:
    """Turn pydantic errors into (yaml path, message, offset-in-scalar)."""
    grouped: dict[tuple[str | int, ...], list[tuple[str, int | None]]] = {}
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        path = _strip_type_tags(loc, raw)
        message, offset = _message(error, path)
        grouped.setdefault(path, [])
        if all(m != message for m, _ in grouped[path]):
            grouped[path].append((message, offset))
    out: list[tuple[tuple[str | int, ...], str, int | None]] = []
    for path, messages in grouped.items():
        if len(messages) > 1:
            text = " or ".join(m for m, _ in messages)
            out.append((path, f"expected one of: {text}", None))
        else:
            out.append((path, messages[0][0], messages[0][1]))
    return out


_FIELD_NAME = re.compile(r"^[a-z_][A-Za-z0-9_]*$")


def _strip_type_tags(loc: tuple[Any, ...], raw: Any) -> tuple[str | int, ...]:
    """Keep the parts of an error location that name real YAML nodes.

    Pydantic adds union-branch tags ('str', 'dict[str,str]', model names) to
    locations; they are dropped by walking the raw YAML alongside.  A part
    that is absent from a mapping but looks like a field name is kept (a
    missing required field) and ends the walk.
    """
    kept: list[str | int] = []
    node = raw
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            kept.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and (
            _FIELD_NAME.match(part) or part == "apiVersion"
        ) and part not in ("str", "int", "float", "bool", "none"):
            kept.append(part)
            break
    return tuple(kept)


def _message(error: Mapping[str, Any], path: tuple[str | int, ...]) -> tuple[str, int | None]:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    inner = ctx.get("error")
    if isinstance(inner, ExprError):
        return f"invalid expression: {inner}", inner.offset
    if kind == "extra_forbidden":
        name = path[-1] if path else "?"
        allowed = _allowed_fields(path[:-1])
        hint = ""
        if allowed:
            close = difflib.get_close_matches(str(name), allowed, n=1)
            hint = (f" (did you mean {close[0]!r}?)" if close
                    else f" (allowed: {', '.join(allowed)})")
        return f"unknown field {name!r}{hint}", None
    if kind == "missing":
        return f"required field {path[-1]!r} is missing" if path else "missing", None
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    if kind == "literal_error":
        return f"{message}, got {error.get('input')!r}", None
    return message, None


def _allowed_fields(path: tuple[str | int, ...]) -> list[str]:
    """Field names (by alias) of the model found at ``path`` inside a Plan."""
    model: Any = Plan
    for part in path:
        model = _descend(model, part)
        if model is None:
            return []
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [info.alias or name for name, info in model.model_fields.items()]
    return []


def _descend(annotation: Any, part: str | int) -> Any:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, info in annotation.model_fields.items():
            if part in (name, info.alias):
                return _unwrap(info.annotation)
        return None
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (list, tuple) and args:
        return _unwrap(args[0])
    if origin is dict and len(args) == 2:
        return _unwrap(args[1])
    return None


def _unwrap(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation)
                  if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1:
            return models[0]
        containers = [a for a in typing.get_args(annotation)
                      if typing.get_origin(a) in (list, dict)]
        if len(containers) == 1:
            return containers[0]
    return annotation


def _field(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif text:
            text += f".{part}"
        else:
            text = str(part)
    return text


# ---------------------------------------------------------------- adapters


def _adapter_issues(plan: Plan) -> list[tuple[tuple[str | int, ...], str]]:
    """Unknown adapter types and adapter configs that do not validate."""
    from novactl.adapters._registry import UnknownAdapter, load_class

    spec = plan.spec
    entries: list[tuple[str, Any, tuple[str | int, ...]]] = [
        ("traffic", spec.traffic, ("spec", "traffic")),
        ("workload", spec.workload, ("spec", "workload")),
    ]
    entries += [("probe", p, ("spec", "probes", n)) for n, p in spec.probes.items()]
    entries += [("notifier", t, ("spec", "notifications", "targets", n))
                for n, t in spec.notifications.targets.items()]
    out: list[tuple[tuple[str | int, ...], str]] = []
    out += _query_issues(plan)
    for kind, adapter_spec, path in entries:
        try:
            cls = load_class(kind, adapter_spec.type)
        except UnknownAdapter as exc:
            out.append(((*path, "type"), exc.message))
            continue
        except InputError as exc:
            out.append(((*path, "type"), exc.message))
            continue
        config_model = getattr(cls, "Config", None)
        if config_model is None:
            continue
        try:
            config_model.model_validate(adapter_spec.config,
                                        context={"variables": dict(spec.variables)})
        except ValidationError as exc:
            for sub, message, _offset in _translate(exc, adapter_spec.config):
                if message.startswith("unknown field"):
                    allowed = list(config_model.model_fields)
                    close = difflib.get_close_matches(str(sub[-1]), allowed, n=1)
                    hint = (f" (did you mean {close[0]!r}?)" if close
                            else f" (allowed: {', '.join(allowed)})")
                    message = f"unknown field {sub[-1]!r}{hint}"
                out.append(((*path, "config", *sub), message))
    return out

