"""One registry for every adapter kind.  Unknown types fail loudly.

Built-in adapters are listed here as import paths so that nothing heavy is
imported until a plan actually uses it.  Third-party adapters register
through entry points, one group per kind::

    [project.entry-points."novactl.traffic"]
    envoy = "novactl_envoy:EnvoyShifter"
"""

from __future__ import annotations

import importlib
from typing import Any

from novactl._errors import InputError

__all__ = ["ENTRY_POINT_GROUPS", "KINDS", "UnknownAdapter", "create", "known_types", "load_class"]

KINDS = ("traffic", "probe", "workload", "notifier")
ENTRY_POINT_GROUPS = {
    "traffic": "novactl.traffic",
    "probe": "novactl.probes",
    "workload": "novactl.workloads",
    "notifier": "novactl.notifiers",
}

_BUILTIN: dict[str, dict[str, str]] = {
    "traffic": {
        "local": "novactl.adapters.local:LocalTrafficShifter",
        "command": "novactl.adapters.command:CommandTrafficShifter",
        "nginx": "novactl.adapters.nginx:NginxTrafficShifter",
        "haproxy": "novactl.adapters.haproxy:HAProxyTrafficShifter",
        "ingress-nginx": "novactl.adapters.ingress_nginx:IngressNginxShifter",
        "gateway-api": "novactl.adapters.gateway_api:GatewayApiShifter",
        "istio": "novactl.adapters.istio:IstioShifter",
        "smi": "novactl.adapters.smi:SmiShifter",
        "fake": "novactl.adapters.fake:FakeTrafficShifter",
    },
    "probe": {
        "scrape": "novactl.adapters.scrape:ScrapeProbe",
        "prometheus": "novactl.adapters.prometheus:PrometheusProbe",
        "http-json": "novactl.adapters.http_json:HttpJsonProbe",
        "fake": "novactl.adapters.fake:FakeProbe",
    },
    "workload": {
        "local": "novactl.adapters.local:LocalWorkload",
        "command": "novactl.adapters.command:CommandWorkload",
        "deployment": "novactl.adapters.k8s_deployment:DeploymentWorkload",
        "fake": "novactl.adapters.fake:FakeWorkload",
    },
    "notifier": {
        "log": "novactl.adapters.log:LogNotifier",
        "webhook": "novactl.adapters.webhook:WebhookNotifier",
        "fake": "novactl.adapters.fake:MemoryNotifier",
    },
}


class UnknownAdapter(InputError):
    def __init__(self, kind: str, type_name: str) -> None:
        self.kind = kind
        self.type_name = type_name
        known = ", ".join(known_types(kind)) or "none"
        super().__init__(f"unknown {kind} type {type_name!r} (known: {known})")


def _entry_points(kind: str) -> dict[str, str]:
    from importlib.metadata import entry_points

    found: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUPS[kind]):
        found.setdefault(ep.name, ep.value)
    return found


def known_types(kind: str) -> list[str]:
    if kind not in _BUILTIN:
        raise ValueError(f"unknown adapter kind {kind!r}")
    return sorted({*_BUILTIN[kind], *_entry_points(kind)})


def _target(kind: str, type_name: str) -> str:
    if kind not in _BUILTIN:
        raise ValueError(f"unknown adapter kind {kind!r}")
    if type_name in _BUILTIN[kind]:
        return _BUILTIN[kind][type_name]
    plugins = _entry_points(kind)
    if type_name in plugins:
        return plugins[type_name]
    raise UnknownAdapter(kind, type_name)


def load_class(kind: str, type_name: str) -> Any:
    """The adapter class for ``type_name``; raises :class:`UnknownAdapter`."""
    target = _target(kind, type_name)
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"{kind} type {type_name!r}: cannot load {target}: {exc}") from exc


def create(kind: str, type_name: str, name: str, config: dict[str, Any], context: Any) -> Any:
    """Build an adapter: validate its config (if it declares a Config model) and construct it."""
    cls = load_class(kind, type_name)
    config_model = getattr(cls, "Config", None)
    parsed: Any = config
    if config_model is not None:
        variables = dict(getattr(context, "variables", {}) or {})
        parsed = config_model.model_validate(config, context={"variables": variables})
    return cls(name, parsed, context)
